"""The README and the docs can never lie: the README is a short front door whose two commands are the ones the Makefile
and CI run, the settings reference gives the settings' own defaults and every setting of the contract, the failure
matrix says what the fault matrix asserts, every guarantee names tests that exist, and every relative link lands.

Each check reads its text as an argument, and is shown failing on a broken copy of it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from shared.config.defaults import DEFAULTS
from tests.support.contract import CONTRACT, Contract
from tests.support.fault_cells import CELLS, OUTBOX_CELLS, Cell, OutboxCell

ROOT = Path(__file__).resolve().parents[2]
README_PATH = ROOT / "README.md"
SETTINGS_PATH = ROOT / "docs" / "settings.md"
FAILURE_PATH = ROOT / "docs" / "failure-behaviour.md"
README = README_PATH.read_text(encoding="utf-8")
SETTINGS_DOC = SETTINGS_PATH.read_text(encoding="utf-8")
FAILURE_DOC = FAILURE_PATH.read_text(encoding="utf-8")
README_MAX_LINES = 180


def section(text: str, title: str, level: int = 2) -> str:
    hashes = "#" * level
    match = re.search(rf"^{hashes} {re.escape(title)}\n(.*?)(?=^#{{1,{level}}} |\Z)", text, re.M | re.S)
    assert match, f"no section '{hashes} {title}'"
    return match[1]


def tables(text: str) -> list[list[list[str]]]:
    """Each Markdown table in ``text``, as its rows of cells (header and separator rows included)."""
    found: list[list[list[str]]] = []
    previous_was_row = False
    for line in text.splitlines():
        is_row = line.startswith("|")
        if is_row and not previous_was_row:
            found.append([])
        if is_row:
            found[-1].append([cell.strip() for cell in line.strip().strip("|").split("|")])
        previous_was_row = is_row
    return found


# --------------------------------------------------------------------------------------------------------------------
# README: a front door


def readme_problems(readme: str, makefile: str, ci_run: str) -> list[str]:
    problems = []
    lines = readme.count("\n") + (not readme.endswith("\n"))
    if lines > README_MAX_LINES:
        problems.append(f"README.md has {lines} lines; at most {README_MAX_LINES} (move details to docs/)")
    first_block = re.search(r"^```[^\n]*\n(.*?)^```", readme, re.M | re.S)
    commands = first_block[1] if first_block else ""
    for command in ("make demo", "make test"):
        if not re.search(rf"^{command}(\s|$)", commands, re.M):
            problems.append(f"the README's first code block does not start a line with `{command}`")
        if not re.search(rf"^{command.split()[1]}:", makefile, re.M):
            problems.append(f"the Makefile has no target for `{command}`")
    if not ci_run.strip().endswith("make test"):
        problems.append(".ci/run does not end with `make test`")
    return problems


def makefile() -> str:
    return (ROOT / "Makefile").read_text(encoding="utf-8")


def ci_run() -> str:
    return (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_readme_is_a_short_front_door_with_the_two_commands_first() -> None:
    assert readme_problems(README, makefile(), ci_run()) == []


def test_a_long_readme_or_commands_out_of_place_are_found() -> None:
    long = README + "\n" * (README_MAX_LINES - README.count("\n") + 1)
    assert readme_problems(long, makefile(), ci_run()) == [
        f"README.md has {README_MAX_LINES + 1} lines; at most {README_MAX_LINES} (move details to docs/)"]
    first, rest = README.split("```bash\n", 1)
    moved = first + "```bash\necho the demo comes later\n```\n\n```bash\n" + rest
    assert readme_problems(moved, makefile(), ci_run()) == [
        "the README's first code block does not start a line with `make demo`",
        "the README's first code block does not start a line with `make test`"]
    assert readme_problems(README, makefile().replace("\ndemo:", "\nshow:"), "make lint\n") == [
        "the Makefile has no target for `make demo`", ".ci/run does not end with `make test`"]


# --------------------------------------------------------------------------------------------------------------------
# docs/settings.md: the settings reference


def settings_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for row in tables(section(text, "App settings"))[0][2:]:
        for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_<>]*)`", row[0]):
            rows[name] = row
    return rows


def settings_doc_problems(text: str, defaults: Mapping[str, str], contract: Contract) -> list[str]:
    rows = settings_rows(text)
    problems = []
    for name, default in defaults.items():
        if name not in rows:
            problems.append(f"{name} is missing from docs/settings.md")
        elif rows[name][2] != f"`{default}`":
            problems.append(f"docs/settings.md gives {rows[name][2]} as {name}'s default, the code `{default}`")
    for name in sorted(set(contract.in_force()) - set(rows)):
        problems.append(f"{name}: in the contract, not in docs/settings.md")
    for name in sorted(set(rows) - set(contract.settings) - contract.foreign_settings):
        problems.append(f"{name}: in docs/settings.md, not in the contract (docs/contract.md)")
    return problems


def test_the_settings_reference_gives_every_default_and_every_contract_setting() -> None:
    assert settings_doc_problems(SETTINGS_DOC, DEFAULTS, CONTRACT) == []


def test_a_wrong_default_or_a_missing_setting_in_the_reference_is_found() -> None:
    broken = SETTINGS_DOC.replace("| `24` |", "| `16` |", 1)
    assert settings_doc_problems(broken, DEFAULTS, CONTRACT) == [
        "docs/settings.md gives `16` as COLLECTOR_IAM_CONCURRENCY's default, the code `24`"]
    without = "\n".join(line for line in SETTINGS_DOC.splitlines() if not line.startswith("| `AWS_EXTERNAL_ID`"))
    assert settings_doc_problems(without, DEFAULTS, CONTRACT) == [
        "AWS_EXTERNAL_ID: in the contract, not in docs/settings.md"]
    extra = SETTINGS_DOC.replace("| `AWS_REGION` |", "| `AWS_ZONE` | a zone | `a` |\n| `AWS_REGION` |", 1)
    assert settings_doc_problems(extra, DEFAULTS, CONTRACT) == [
        "AWS_ZONE: in docs/settings.md, not in the contract (docs/contract.md)"]
    no_mode = "\n".join(line for line in SETTINGS_DOC.splitlines() if not line.startswith("| `NOTIFY_MODE`"))
    assert settings_doc_problems(no_mode, DEFAULTS, CONTRACT) == ["NOTIFY_MODE is missing from docs/settings.md"]


# --------------------------------------------------------------------------------------------------------------------
# docs/failure-behaviour.md: the matrix at a glance and the guarantees


def outcome(cell: Cell) -> str:
    """The failure table's word for what a cell of the fault matrix asserts."""
    if cell.expect.delivered == "outbox":
        return "failed, outbox" if cell.expect.status == "Failed" else "outbox"
    return {"Succeeded": "ok", "PartiallySucceeded": "partial", "Failed": "failed"}[cell.expect.status]


def failure_table(text: str = FAILURE_DOC) -> dict[str, dict[str, str]]:
    rows = tables(section(text, "The matrix at a glance"))[0]
    header = rows[0]
    assert header[0].startswith("Dependency")
    table = {}
    for row in rows[2:]:
        found = re.search(r"`(\w+)`", row[0])
        assert found, row[0]
        table[found[1]] = dict(zip(header[1:], row[1:], strict=True))
    return table


def failure_table_problems(text: str, cells: list[Cell]) -> list[str]:
    table = failure_table(text)
    problems = []
    covered = {(dependency, fault) for dependency, faults in table.items() for fault in faults}
    tested = {(cell.dependency, cell.fault) for cell in cells}
    problems += [f"{d}-{f}: in the table, not a test" for d, f in sorted(covered - tested)]
    problems += [f"{d}-{f}: a test, not in the table" for d, f in sorted(tested - covered)]
    for cell in cells:
        said = table.get(cell.dependency, {}).get(cell.fault)
        if said is not None and said != outcome(cell):
            problems.append(f"{cell.id}: the table says {said!r}, the test asserts {outcome(cell)!r}")
    return problems


def test_failure_table_covers_every_cell_of_the_matrix() -> None:
    assert failure_table_problems(FAILURE_DOC, CELLS) == []


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_failure_table_says_what_the_test_asserts(cell: Cell) -> None:
    assert failure_table()[cell.dependency][cell.fault] == outcome(cell)


def test_a_failure_table_that_differs_from_the_tests_is_found() -> None:
    row = "| Key Vault (`key_vault`) | failed | failed | ok | ok | failed | failed | failed | failed |"
    assert row in FAILURE_DOC
    broken = FAILURE_DOC.replace(row, row.replace("| ok | ok | failed |", "| ok | ok | ok |"), 1)
    assert failure_table_problems(broken, CELLS) == ["key_vault-503: the table says 'ok', the test asserts 'failed'"]
    assert failure_table_problems(FAILURE_DOC.replace(row + "\n", "", 1), CELLS) == [
        f"key_vault-{fault}: a test, not in the table"
        for fault in sorted(cell.fault for cell in CELLS if cell.dependency == "key_vault")]


def outbox_table(text: str = FAILURE_DOC) -> dict[str, str]:
    header, _, row = tables(section(text, "The matrix at a glance"))[1]
    assert header[0].startswith("Outbox") and "`outbox`" in row[0]
    return dict(zip(header[1:], row[1:], strict=True))


def test_outbox_table_covers_every_outbox_cell() -> None:
    assert set(outbox_table()) == {cell.fault for cell in OUTBOX_CELLS}


@pytest.mark.parametrize("cell", OUTBOX_CELLS, ids=[c.id for c in OUTBOX_CELLS])
def test_outbox_table_says_what_the_test_asserts(cell: OutboxCell) -> None:
    assert outbox_table()[cell.fault] == cell.outcome


def test_an_outbox_table_that_differs_from_the_tests_is_found() -> None:
    broken = FAILURE_DOC.replace("| ok, replay skipped |", "| failed |", 1)
    assert outbox_table(broken)["503"] != next(c.outcome for c in OUTBOX_CELLS if c.fault == "503")


def defined_tests() -> set[str]:
    return {m for p in (ROOT / "tests").rglob("test_*.py")
            for m in re.findall(r"^def (test_\w+)\(", p.read_text(encoding="utf-8"), re.M)}


def guarantee_problems(text: str, defined: set[str]) -> list[str]:
    guarantees = section(text, "What is guaranteed")
    problems = []
    if "at least once, and the queries count a row once" not in guarantees:
        problems.append("the delivery promise is not stated")
    header, _, *rows = tables(guarantees)[0]
    if header != ["Guarantee", "Asserted by"] or len(rows) < 10:
        problems.append(f"the guarantees table has header {header} and {len(rows)} rows")
    for guarantee, named_tests in rows:
        named = re.findall(r"`(test_\w+)`", named_tests)
        if not named:
            problems.append(f"no test named for: {guarantee[:60]}")
        missing = [t for t in named if t not in defined]
        if missing:
            problems.append(f"{missing} named for '{guarantee[:60]}...' do not exist")
    return problems


def test_every_guarantee_is_asserted_by_a_named_test_that_exists() -> None:
    assert guarantee_problems(FAILURE_DOC, defined_tests()) == []


def test_a_guarantee_naming_a_test_that_does_not_exist_is_found() -> None:
    row = "| `test_a_row_delivered_twice_counts_once` |"
    assert row in FAILURE_DOC
    broken = FAILURE_DOC.replace(row, "| `test_a_row_counts_once` |", 1)
    assert guarantee_problems(broken, defined_tests()) == [
        "['test_a_row_counts_once'] named for 'A record delivered twice counts once in the queries and the ...' "
        "do not exist"]


# --------------------------------------------------------------------------------------------------------------------
# Links: every relative link in the README and the docs lands on a file (and a heading)


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def anchors(text: str) -> set[str]:
    """GitHub's ids for a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # a "# comment" in a code block is no heading
    found = set()
    for title in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def link_problems(documents: Mapping[Path, str]) -> list[str]:
    problems = []
    for path, text in documents.items():
        text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
        text = re.sub(r"`[^`\n]*`", "", text)
        for target in LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto: ...
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT)}: link to {target}"
            if not linked.exists():
                problems.append(f"{where}: no such file")
            elif anchor and linked.suffix == ".md":
                other = documents.get(linked) or linked.read_text(encoding="utf-8")
                if anchor not in anchors(other):
                    problems.append(f"{where}: no such heading")
    return problems


def documents() -> dict[Path, str]:
    paths = [README_PATH, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {path.resolve(): path.read_text(encoding="utf-8") for path in paths}


def test_every_relative_link_lands() -> None:
    assert link_problems(documents()) == []


def test_a_link_to_a_missing_file_or_heading_is_found() -> None:
    docs = documents()
    readme = README_PATH.resolve()
    docs[readme] = docs[readme] + "\nSee [the guide](docs/guide.md) and [retries](docs/azure.md#retries).\n"
    assert link_problems(docs) == ["README.md: link to docs/guide.md: no such file",
                                   "README.md: link to docs/azure.md#retries: no such heading"]


def test_the_delivery_cells_are_in_the_failure_behaviour_doc_as_the_tests_assert() -> None:
    """docs/failure-behaviour.md's delivery table: one row per DELIVERY_CELLS cell, its outcome the cell's own."""
    from tests.support.fault_cells import DELIVERY_CELLS

    doc = (ROOT / "docs" / "failure-behaviour.md").read_text(encoding="utf-8")
    title = "## Delivery: what no fault of the sink or the outbox may cost"
    match = re.search(rf"^{re.escape(title)}\n(.*?)(?=^## |\Z)", doc, re.M | re.S)
    assert match, "docs/failure-behaviour.md has no delivery section"
    header, _, *rows = tables(match[1])[0]
    assert header == ["Test id", "Fault", "Outcome"]
    documented = {row[0].strip("`"): row[2] for row in rows}
    assert documented == {cell.id: cell.outcome for cell in DELIVERY_CELLS}
    matrix = (ROOT / "tests" / "integration" / "test_fault_matrix.py").read_text(encoding="utf-8")
    for cell in DELIVERY_CELLS:  # each cell is looked up by a test of the matrix: by its id, or "{sink}-hangs"
        fault = cell.id.split("-", 1)[1]
        assert f'deliver_cell("{cell.id}")' in matrix or f'deliver_cell(f"{{sink}}-{fault}")' in matrix, cell.id
