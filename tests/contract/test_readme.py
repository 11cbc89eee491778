"""The README can never lie: its settings table is the settings' own defaults, its failure table says what the fault
matrix asserts, and its two commands are the ones the Makefile and CI run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.config.defaults import DEFAULTS
from tests.support.fault_cells import CELLS, OUTBOX_CELLS, Cell, OutboxCell

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no section '## {title}'"
    return match[1]


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text`` (header and separator rows included)."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|")]


def test_settings_table_gives_every_default() -> None:
    rows = {row[0].strip("`"): row for row in table_rows(section("The contract: settings, secrets, tables and fields"))
            if len(row) == 3 and row[0].startswith("`")}
    for name, default in DEFAULTS.items():
        assert name in rows, f"{name} is missing from the README's settings table"
        assert rows[name][2] == f"`{default}`", f"README gives {rows[name][2]} as {name}'s default, the code {default}"


def outcome(cell: Cell) -> str:
    """The README's word for what a cell of the fault matrix asserts."""
    if cell.expect.delivered == "outbox":
        return "failed, outbox" if cell.expect.status == "Failed" else "outbox"
    return {"Succeeded": "ok", "PartiallySucceeded": "partial", "Failed": "failed"}[cell.expect.status]


def tables(text: str) -> list[list[list[str]]]:
    """Each Markdown table in ``text``, as its rows of cells."""
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


def failure_table() -> dict[str, dict[str, str]]:
    rows = tables(section("Failure behaviour"))[0]
    header = rows[0]
    assert header[0].startswith("Dependency")
    table = {}
    for row in rows[2:]:
        found = re.search(r"`(\w+)`", row[0])
        assert found, row[0]
        table[found[1]] = dict(zip(header[1:], row[1:], strict=True))
    return table


def test_failure_table_covers_every_cell_of_the_matrix() -> None:
    table = failure_table()
    assert set(table) == {cell.dependency for cell in CELLS}
    assert {(dependency, fault) for dependency, faults in table.items() for fault in faults} == {
        (cell.dependency, cell.fault) for cell in CELLS}


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_failure_table_says_what_the_test_asserts(cell: Cell) -> None:
    assert failure_table()[cell.dependency][cell.fault] == outcome(cell)


def outbox_table() -> dict[str, str]:
    header, _, row = tables(section("Failure behaviour"))[1]
    assert header[0].startswith("Outbox") and "`outbox`" in row[0]
    return dict(zip(header[1:], row[1:], strict=True))


def test_outbox_table_covers_every_outbox_cell() -> None:
    assert set(outbox_table()) == {cell.fault for cell in OUTBOX_CELLS}


@pytest.mark.parametrize("cell", OUTBOX_CELLS, ids=[c.id for c in OUTBOX_CELLS])
def test_outbox_table_says_what_the_test_asserts(cell: OutboxCell) -> None:
    assert outbox_table()[cell.fault] == cell.outcome


def test_every_guarantee_is_asserted_by_a_named_test_that_exists() -> None:
    guarantees = section("Failure behaviour").split("### What is guaranteed", 1)[1]
    assert "at least once, and the queries count a row once" in guarantees
    header, _, *rows = tables(guarantees)[0]
    assert header == ["Guarantee", "Asserted by"] and len(rows) >= 10
    defined = {m for p in (ROOT / "tests").glob("test_*.py")
               for m in re.findall(r"^def (test_\w+)\(", p.read_text(encoding="utf-8"), re.M)}
    for guarantee, tests in rows:
        named = re.findall(r"`(test_\w+)`", tests)
        assert named, f"no test named for: {guarantee}"
        missing = [t for t in named if t not in defined]
        assert not missing, f"{missing} named for '{guarantee[:60]}...' do not exist"


def test_the_two_commands_are_what_make_and_ci_run() -> None:
    commands = section("Try it — two commands")
    assert re.search(r"^make demo\b", commands, re.M) and re.search(r"^make test\b", commands, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


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
