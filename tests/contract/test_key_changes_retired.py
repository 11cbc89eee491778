"""KeyChanges' ``retired`` condition (an Active key that stopped being Active: deactivated or deleted), in every copy
that ships, executed and compared with the Python twin (shared/insight/changes.py, which the report and the CLI use).

KeyChanges is a let-bound tabular function, which duckdb-kql cannot run (tests/contract/test_query_execution.py lists
the
three queries built on it as UNSUPPORTED). So its ``retired`` predicate is cut out of each copy (queries/*.kql, the
workbook's items; the alert and Sentinel rules load the .kql files themselves) and executed by duckdb-kql over one row
per case of the key's status before and now (a deleted key's StatusNow is "", what take_anyif gives a string column
without a matching row), and each case is compared with what shared.changes.key_changes decides for the same two
snapshots: whether the user's newer Active key counts as a rotation.

Proven on the broken copy the issue names: ``StatusNow == "Inactive"`` (a deleted key is then not retired).
"""

from __future__ import annotations

import json
import re
from itertools import product
from pathlib import Path
from typing import Any

import pytest

from shared.insight.changes import ROTATED, key_changes

duckdb_kql = pytest.importorskip("duckdb_kql", reason="duckdb-kql is a test dependency (requirements-dev.txt)")

ROOT = Path(__file__).resolve().parents[2]
RETIRED = re.compile(r"let retired = compared\n\s*\| where (?P<predicate>[^\n|]+)\n")
DELETED = ""  # StatusNow of a key the newer snapshot no longer has
CASES = list(product(("Active", "Inactive"), ("Active", "Inactive", DELETED), (False, True)))


def shipped_copies() -> dict[str, str]:
    """Every text that carries KeyChanges: name -> text."""
    copies = {f"queries/{p.name}": p.read_text(encoding="utf-8") for p in sorted((ROOT / "queries").glob("*.kql"))}
    workbook = json.loads((ROOT / "infra" / "workbook" / "aws-iam-keys.workbook.json").read_text(encoding="utf-8"))

    def items(node: Any) -> Any:
        if isinstance(node, dict):
            if isinstance(node.get("content"), dict) and isinstance(node["content"].get("query"), str):
                yield node.get("name", "?"), node["content"]["query"]
            for value in node.values():
                yield from items(value)
        elif isinstance(node, list):
            for value in node:
                yield from items(value)

    copies |= {f"workbook:{name}": query for name, query in items(workbook)}
    return {name: text for name, text in copies.items() if "let KeyChanges" in text}


def retired_predicate(text: str) -> str:
    (match,) = RETIRED.finditer(text)
    return match["predicate"].strip()


def kql_retired(predicate: str) -> set[tuple[str, str, bool]]:
    """The cases the KQL predicate calls retired, executed by duckdb-kql."""
    connection = duckdb_kql.connect()
    try:
        connection.execute('CREATE TABLE compared ("StatusBefore" VARCHAR, "StatusNow" VARCHAR, "IsRootKey" BOOLEAN)')
        connection.executemany("INSERT INTO compared VALUES (?, ?, ?)", [list(c) for c in CASES])
        rows = duckdb_kql.kql(connection, f"compared | where {predicate}").fetchall()
    finally:
        connection.close()
    return {(before, now, root) for before, now, root in rows}


def twin_retired() -> set[tuple[str, str, bool]]:
    """The cases shared.changes counts as retired: its key, replaced by a newer Active key of the same user, makes a
    Rotated event."""
    retired = set()
    for before, now, root in CASES:
        def key(run: str, fingerprint: str, status: str, created: str, is_root: bool) -> dict[str, Any]:
            return {"TimeGenerated": run, "RunId": run, "AccountId": "111111111111", "AccountName": "a",
                    "UserName": "alice", "UserArn": "arn:aws:iam::111111111111:user/alice", "AccessKeyId": fingerprint,
                    "AccessKeyFingerprint": fingerprint, "Status": status, "IsRootKey": is_root, "CreatedAt": created}

        first, second = "2026-01-01T00:00:00Z", "2026-01-01T06:00:00Z"
        keys = [key(first, "old", before, "2025-01-01T00:00:00Z", root)]
        if now != DELETED:
            keys.append(key(second, "old", now, "2025-01-01T00:00:00Z", root))
        keys.append(key(second, "new", "Active", "2025-12-31T00:00:00Z", False))
        runs = [{"TimeGenerated": t, "RunId": t, "Status": "Succeeded", "FailedAccounts": "[]"}
                for t in (first, second)]
        if any(change.EventType == ROTATED for change in key_changes(keys, runs)):
            retired.add((before, now, root))
    return retired


def disagreements(text: str) -> set[tuple[str, str, bool]]:
    return kql_retired(retired_predicate(text)) ^ twin_retired()


def test_every_copy_is_found() -> None:
    names = set(shipped_copies())
    assert {"queries/key-changes.kql", "queries/key-changes-per-day.kql", "queries/alert-new-key.kql",
            "workbook:key-changes", "workbook:key-changes-per-day"} <= names, names


def test_the_twin_retires_a_deactivated_and_a_deleted_active_key_only() -> None:
    assert twin_retired() == {("Active", "Inactive", False), ("Active", DELETED, False)}


@pytest.mark.parametrize("name", sorted(shipped_copies()))
def test_each_copys_retired_condition_agrees_with_the_python_twin(name: str) -> None:
    assert disagreements(shipped_copies()[name]) == set(), name


def test_the_inverted_condition_is_caught() -> None:
    text = shipped_copies()["queries/key-changes.kql"]
    broken = text.replace('StatusBefore == "Active" and StatusNow != "Active"',
                          'StatusBefore == "Active" and StatusNow == "Inactive"')
    assert broken != text
    assert disagreements(broken) == {("Active", DELETED, False)}  # a deleted key would no longer be retired
