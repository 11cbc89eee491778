"""Compile KQL with Microsoft's Kusto language service (npm @kusto/language-service-next, run by node through
tests/support/kql_check.js) against the schema of the tables the product writes and reads.

- ``table_schemas()``: our two tables from ``shared/records.py`` (the single source of truth), Python types mapped to
  Kusto types, plus ``AWSCloudTrail`` from tests/data/schemas/ (a copy of Azure Monitor's table reference).
- ``shipped_kql()``: every KQL text the product ships: queries/*.kql, every ``query`` property of a resource in
  infra/**/*.bicep (alert rules, and any future Sentinel rule), every query item of infra/workbook/*.json.
- ``compile_kql(texts)``: the language service's diagnostics per text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from shared.records import TABLES, columns
from tests.support import bicep

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "queries"
WORKBOOKS = ROOT / "infra" / "workbook"
SCHEMAS = ROOT / "tests" / "data" / "schemas"
SCRIPT = Path(__file__).with_name("kql_check.js")
LANGUAGE_SERVICE = ROOT / "node_modules" / "@kusto" / "language-service-next"

# Log Analytics column type (shared.records.columns) -> Kusto scalar type. Log Analytics "int" columns of custom
# tables are Kusto int; "real" is Kusto real.
KUSTO_TYPES = {"string": "string", "int": "int", "long": "long", "boolean": "bool", "real": "real",
               "datetime": "datetime", "dynamic": "dynamic", "guid": "guid", "timespan": "timespan"}

# What a workbook substitutes for its parameters when it runs a query: the multi-select "Account" parameter with
# its "All" value, which the queries' filter spells '*'.
WORKBOOK_PARAMETERS = {"{Account}": "'*'"}
WORKBOOK_PARAMETER = re.compile(r"\{[A-Za-z_]\w*(?::[\w-]+)?\}")  # {Name} or {Name:format}


def table_schemas() -> dict[str, list[tuple[str, str]]]:
    tables: dict[str, list[tuple[str, str]]] = {
        table.table: [(name, KUSTO_TYPES[type_]) for name, type_ in columns(table.record_type)]
        for table in TABLES
    }
    for schema_file in sorted(SCHEMAS.glob("*.json")):
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        tables[schema["table"]] = [(name, type_) for name, type_ in schema["columns"]]
    return tables


def query_files() -> list[Path]:
    return sorted(QUERIES.glob("*.kql"))


def bicep_queries() -> dict[str, str]:
    """'<file>:<resource or variable>:<path>' -> the KQL text of each ``query`` property in infra/: of a resource (alert
    rules), or of an object in a variable that a resource loop reads (the Sentinel module's table of rules)."""
    found: dict[str, str] = {}
    for path in bicep.bicep_files():
        tree = bicep.parse(path)
        variables = tree.get("variables") or {}
        for name, variable in variables.items():
            for where, value in bicep.walk(variable["value"]):
                if where and where[-1] == "query" and (text := bicep.loaded_text(value, path, variables)) is not None:
                    found[f"{path.relative_to(ROOT)}:{name}:{'.'.join(where)}"] = text
        for name, resource in (tree.get("resources") or {}).items():
            loop_items = bicep.loop_names(resource)
            for where, value in bicep.walk(bicep.body(resource)):
                if not where or where[-1] != "query":
                    continue
                text = bicep.loaded_text(value, path, variables)
                if text is None and _reads_loop_item(value, loop_items):
                    continue  # item.query of a loop over a variable: its texts are collected from the variable
                assert text is not None, f"{path.name}: resource {name}: {'.'.join(where)} is not a text " \
                    "the checks can read (use loadTextContent of a queries/*.kql file)"
                found[f"{path.relative_to(ROOT)}:{name}:{'.'.join(where)}"] = text
    return found


def _reads_loop_item(value: object, loop_items: set[str]) -> bool:
    if isinstance(value, str):
        return value.split(".")[0] in loop_items
    operands = value.get("operator", {}).get("operands", {}) if isinstance(value, dict) else {}
    return operands.get("operand_1") in loop_items


def workbook_queries() -> dict[str, str]:
    """'<workbook>:<json path>' -> every query of a workbook item, its parameters substituted as the workbook does."""
    found: dict[str, str] = {}
    for path in sorted(WORKBOOKS.glob("*.json")):
        for where, value in bicep.walk(json.loads(path.read_text(encoding="utf-8"))):
            if isinstance(value, dict) and value.get("queryType") == 0 and isinstance(value.get("query"), str):
                text = value["query"]
                for parameter, substitute in WORKBOOK_PARAMETERS.items():
                    text = text.replace(parameter, substitute)
                name = f"{path.relative_to(ROOT)}:{'/'.join(where)}"
                left = WORKBOOK_PARAMETER.findall(text)
                assert not left, f"{name}: workbook parameter(s) {left}: add what the workbook substitutes for them " \
                    "to WORKBOOK_PARAMETERS in tests/support/kusto.py"
                found[name] = text
    return found


def shipped_kql() -> dict[str, str]:
    texts = {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8") for path in query_files()}
    texts.update(bicep_queries())
    texts.update(workbook_queries())
    return texts


def compile_kql(texts: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Diagnostics (severity, code, message, start, length) of each text, by the Kusto language service."""
    return dict(_compile(json.dumps(texts, sort_keys=True)))


@cache
def _compile(texts_json: str) -> dict[str, list[dict[str, Any]]]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH: install Node.js (the Kusto language service runs on it)")
    if not LANGUAGE_SERVICE.exists():
        raise RuntimeError(f"{LANGUAGE_SERVICE} is missing: run `make test` (or `npm ci`) in {ROOT} first")
    request = json.dumps({"tables": table_schemas(), "queries": json.loads(texts_json)})
    completed = subprocess.run(
        [node, str(SCRIPT)], input=request, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"kql_check.js failed ({completed.returncode}): {completed.stderr.strip()}")
    result: dict[str, list[dict[str, Any]]] = json.loads(completed.stdout)
    return result


def errors(diagnostics: list[dict[str, Any]], text: str) -> list[str]:
    """Readable error lines (line:column code message) of one text's diagnostics."""
    lines = []
    for d in diagnostics:
        if d["severity"] != "Error":
            continue
        line = text.count("\n", 0, d["start"]) + 1
        column = d["start"] - (text.rfind("\n", 0, d["start"]) + 1) + 1
        lines.append(f"{line}:{column} {d['code']} {d['message']} [{text[d['start']:d['start'] + d['length']]!r}]")
    return lines


def query_replacements() -> list[tuple[str, str, bool]]:
    """(where, the string replaced, whether the loaded file contains it) for every replace() over a loadTextContent()
    in infra/: a replace() that finds nothing silently ships the file unchanged."""
    found = []
    for path in bicep.bicep_files():
        tree = bicep.parse(path)
        variables = tree.get("variables") or {}
        for section in ("variables", "resources"):
            for name, node in (tree.get(section) or {}).items():
                for where, value in bicep.walk(node):
                    call = bicep.function_call(value)
                    if not call or call[0] != "replace":
                        continue
                    inner = bicep.function_call(call[1]["original_string"])
                    old = bicep.literal_text(call[1]["old_string"], variables)
                    if inner and inner[0] == "load_text_content" and old is not None:
                        text = (path.parent / inner[1]["file_path"]).read_text(encoding="utf-8")
                        found.append((f"{path.name}:{name}:{'.'.join(where)}", old, old in text))
    return found
