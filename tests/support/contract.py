"""The project's contract, docs/contract.md, read into names the tests compare the code and the other docs with.

The contract is Markdown written for people; this reads only its tables (and the one paragraph that declares the new
credentials table), by section, so that a test can say which setting or field differs and where. Everything takes the
text as an argument, so a test can feed it a broken copy."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CONTRACT_PATH = ROOT / "docs" / "contract.md"

# The section holding names fixed ahead of their implementation: the code may lack them, never differ from them.
PENDING_SECTION = "Additions of 2026-12-04"
_NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_<>]*)`")  # a setting, field or mode
_VALUE = re.compile(r"`([^`]+)`")
_SECRET_NAME = re.compile(r"`([0-9A-Za-z-]+)`")  # a Key Vault secret name (not the `*_SECRET` settings' pattern)
_SINGLE_VALUE = re.compile(r"^`([^`]*)`$")
_INFRA_SETS = re.compile(r"infra sets `([^`]+)`")


@dataclass(frozen=True)
class Setting:
    name: str
    default_cell: str
    pending: bool

    @property
    def default(self) -> str | None:
        """The default when the cell is one literal value (`x`); None when it says "required", "unset", "none"..."""
        found = _SINGLE_VALUE.match(self.default_cell)
        return found[1] if found else None


@dataclass(frozen=True)
class Field:
    name: str
    type_cell: str
    pending: bool


@dataclass(frozen=True)
class TableRow:
    table: str
    log_type: str
    stream: str


@dataclass(frozen=True)
class Contract:
    settings: dict[str, Setting]
    foreign_settings: frozenset[str]  # named by the platform and the SDKs, read by the collector
    secrets: list[tuple[frozenset[str], frozenset[str]]]  # (modes a row applies to, secret names)
    tables: list[TableRow]
    files: frozenset[str]  # the file sink's file names
    key_fields: dict[str, Field]
    run_fields: dict[str, Field]
    credential_fields: dict[str, Field]  # AwsIamCredentials_CL (its "as in the key record" rows take the key's types)
    pending_table_text: str  # the paragraphs declaring new tables (names only, not a field table)

    def in_force(self) -> dict[str, Setting]:
        return {name: s for name, s in self.settings.items() if not s.pending}

    def infra_values(self) -> dict[str, str]:
        """Settings with no default in code whose value the infrastructure sets ("infra sets `x`")."""
        values = {}
        for setting in self.in_force().values():
            found = _INFRA_SETS.search(setting.default_cell)
            if found:
                values[setting.name] = found[1]
        return values


def sections(text: str) -> dict[str, str]:
    """The body of every ``## `` section (its ``###`` subsections included), by title."""
    parts = re.split(r"^## (.+)\n", text, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def tables(text: str) -> list[list[list[str]]]:
    """Each Markdown table in ``text``: its rows (header first, separator dropped) of stripped cells."""
    found: list[list[list[str]]] = []
    previous_was_row = False
    for line in text.splitlines():
        is_row = line.startswith("|")
        if is_row and not previous_was_row:
            found.append([])
        if is_row and not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()):
            found[-1].append([cell.strip() for cell in line.strip().strip("|").split("|")])
        previous_was_row = is_row
    return found


def names(cell: str) -> list[str]:
    return _NAME.findall(cell)


def _table(body: str, first_header: str) -> list[list[str]]:
    """The rows (without header) of the first table in ``body`` whose first header cell starts with the given text."""
    for table in tables(body):
        if table and table[0][0].startswith(first_header):
            return table[1:]
    return []


def _settings(rows: list[list[str]], pending: bool) -> dict[str, Setting]:
    found: dict[str, Setting] = {}
    for row in rows:
        row_names = names(row[0])
        defaults = _VALUE.findall(row[2]) if len(row_names) > 1 else []
        for i, name in enumerate(row_names):
            # A row of several settings gives one default each ("`a`, `b`"), or one cell for all of them.
            cell = f"`{defaults[i]}`" if len(defaults) == len(row_names) else row[2]
            found[name] = Setting(name, cell, pending)
    return found


def _fields(rows: list[list[str]], pending: bool, inherited: dict[str, Field]) -> dict[str, Field]:
    found: dict[str, Field] = {}
    for row in rows:
        for name in names(row[0]):
            # "as above": the run record repeats the key record's TimeGenerated and RunId
            type_cell = row[1] or inherited[name].type_cell
            found[name] = Field(name, type_cell, pending)
    return found


def parse(text: str) -> Contract:
    by_title = sections(text)
    settings_body = by_title["App settings"]
    pending_body = by_title[PENDING_SECTION]
    settings = _settings(_table(settings_body, "Setting"), pending=False)
    foreign = frozenset(n for row in _table(settings_body.split("###", 1)[1], "Setting") for n in names(row[0]))
    for name, setting in _settings(_table(pending_body, "Setting"), pending=True).items():
        settings.setdefault(name, setting)
    secrets = [(frozenset(names(row[0])), frozenset(_SECRET_NAME.findall(row[1])))
               for row in _table(by_title["Key Vault secrets (only what the modes need)"], "Mode")]
    tables_body = by_title["Tables"]
    table_rows = [TableRow(*(_VALUE.findall(cell)[0] for cell in row[:3]))
                  for row in _table(tables_body, "Table")]
    files = frozenset(re.findall(r"`(\w+\.jsonl)`", tables_body))
    key_fields = _fields(_table(by_title["Key record (JSON field names as sent)"], "Field"), False, {})
    run_fields = _fields(_table(by_title["Run record"], "Field"), False, key_fields)
    for name, field in _fields(_table(pending_body, "Key record field"), True, {}).items():
        key_fields.setdefault(name, field)
    credential_fields = _fields(_table(by_title.get("Credential record", ""), "Field"), False, key_fields)
    # Each new table is declared by a paragraph starting "New table" (names only); all of them are read together.
    new_table = "\n\n".join(p for p in pending_body.split("\n\n") if p.startswith("New table"))
    return Contract(settings, foreign, secrets, table_rows, files, key_fields, run_fields, credential_fields,
                    new_table)


def contract_text() -> str:
    return CONTRACT_PATH.read_text(encoding="utf-8")


CONTRACT = parse(contract_text())

# Values the contract fixes beyond the settings' defaults ("infra sets ..."), for the tests of the Bicep.
# AWS_WEB_IDENTITY_AUDIENCE has no contract value ("required in that mode"): the deployment sets it to the Application
# ID URI of the collector's own Entra application (infra/hooks/entra-app.sh), never the shared api://AzureADTokenExchange.
CONTRACT_VALUES = CONTRACT.infra_values()
