"""queries/owner-digest.kql executed (duckdb-kql over DuckDB, tests/support/kql_engine.py) and compared with the Python
rule of shared/notify/digest.py, the one definition of what a digest lists: over the demo's records (whose dry_run
digests, written by `python -m shared demo`, must list exactly what the query selects for each owner and the
fallback), over keys 16 days from their due date to overdue (15, 7, 1, 0 and overdue are listed, other days not),
and with the Privileged and Quarantined columns present and absent (column_ifexists). Broken copies of the query and
of the rule are shown to disagree."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("duckdb_kql", reason="duckdb-kql is a test dependency (requirements-dev.txt)")

from shared.findings.catalogue import Thresholds
from shared.insight.snapshot import latest_snapshot, read_jsonl
from shared.notify import digest as digest_module
from shared.notify.digest import (
    NOTICE_KQL,
    OPEN_KEYS_KQL,
    build_digests,
    findings_kql,
    is_notice_day,
    notice_rows,
    owner_digest_query,
    rows_from_query,
)
from shared.records import CREDENTIALS_TABLE, KEYS_TABLE, RUNS_TABLE
from shared.tools.demo import DEMO_FALLBACK_RECIPIENT
from tests.support.kql_engine import Row, Workspace

ROOT = Path(__file__).resolve().parents[2]
QUERY = ROOT / "queries" / "owner-digest.kql"
LIMITS = Thresholds(90, 45)


def query_rows(keys: list[Row], runs: list[Row], text: str | None = None,
               dropped_columns: tuple[str, ...] = ()) -> list[Row]:
    """The query's answer over these records; ``dropped_columns``: key columns an older table does not have yet
    (a workspace whose table predates them: the query reads them through column_ifexists)."""
    workspace = Workspace([], [])
    try:
        for column in dropped_columns:
            workspace.connection.execute(f'ALTER TABLE "{KEYS_TABLE.table}" DROP COLUMN "{column}"')
        if dropped_columns:  # a workspace that old predates the credentials table too (it has the columns)
            workspace.connection.execute(f'DROP TABLE "{CREDENTIALS_TABLE.table}"')
        for table, rows in ((KEYS_TABLE.table, keys), (RUNS_TABLE.table, runs)):
            cols = [name for (name,) in workspace.connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [table]).fetchall()]
            if rows:
                insert = f'INSERT INTO "{table}" VALUES ({", ".join("?" for _ in cols)})'  # noqa: S608 - bound values
                workspace.connection.executemany(insert, [[row.get(c) for c in cols] for row in rows])
        return workspace.query(owner_digest_query(LIMITS, text))
    finally:
        workspace.close()


def compared(keys: list[Row], runs: list[Row], text: str | None = None, dropped: tuple[str, ...] = ()) -> tuple[
        list[Any], list[Any]]:
    """(what the query selects, what the Python rule selects), each as sorted (account, user, key, finding, days,
    due date) tuples."""
    now = datetime.now(UTC)
    kql = sorted((*r.key, r.days_to_due, r.due_date) for r in rows_from_query(query_rows(keys, runs, text, dropped)))
    python = sorted((*r.key, r.days_to_due, r.due_date)
                    for r in notice_rows(latest_snapshot(keys, runs).keys, now, LIMITS))
    return kql, python


# --------------------------------------------------------------------------------------------------------------------
# One definition


def test_the_query_holds_the_rule_generated_from_the_python() -> None:
    text = QUERY.read_text(encoding="utf-8")
    assert findings_kql() in text and f"| where {OPEN_KEYS_KQL}\n" in text
    assert NOTICE_KQL == "DaysToDue in (15, 7, 1) or DaysToDue <= 0"
    assert owner_digest_query(Thresholds(30, 10)).count("let rotationDays = 30;\nlet unusedDays = 10;") == 1
    with pytest.raises(ValueError, match="let rotationDays"):
        owner_digest_query(LIMITS, text.replace("let rotationDays = 90;", "let rotation = 90;"))


def test_the_cadence() -> None:
    assert [d for d in range(-3, 20) if is_notice_day(d)] == [-3, -2, -1, 0, 1, 7, 15]


# --------------------------------------------------------------------------------------------------------------------
# The demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    completed = subprocess.run([sys.executable, "-m", "shared", "demo", "--out", str(out)], cwd=ROOT,
                               capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Owner digests (dry_run): " in completed.stdout
    return out


def records(out: Path) -> tuple[list[Row], list[Row]]:
    return read_jsonl(out / KEYS_TABLE.file_name), read_jsonl(out / RUNS_TABLE.file_name)


def test_the_query_and_the_python_rule_agree_on_the_demo(demo: Path) -> None:
    kql, python = compared(*records(demo))
    assert kql == python and kql
    findings = {row[3] for row in kql}
    assert {"Rotation due", "Unused", "Never used"} <= findings
    assert {row[4] for row in kql} & {15, 7, 1}  # the demo has a key due in 7 days (kim)


def test_the_demo_wrote_a_digest_per_owner_and_one_for_the_fallback_listing_what_the_query_selects(
        demo: Path) -> None:
    (folder,) = (demo / "digests").iterdir()
    written = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in folder.glob("*.json")}
    selected = build_digests(rows_from_query(query_rows(*records(demo))), DEMO_FALLBACK_RECIPIENT)
    expected = {d.recipient: sorted(r.key for r in d.rows) for d in selected.digests}
    assert DEMO_FALLBACK_RECIPIENT in expected and len(expected) > 2  # owners, and the keys without one
    assert {name: sorted((r["AccountId"], r["UserName"], r["AccessKeyId"], r["Finding"]) for r in d["rows"])
            for name, d in written.items()} == expected
    assert written[DEMO_FALLBACK_RECIPIENT]["fallback"] is True
    keys, _ = records(demo)
    full_ids = {k["AccessKeyId"] for k in keys if k["AccessKeyId"]}
    for path in folder.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "..." in text and not any(len(i) > 11 and i in text for i in full_ids)
    # the demo's own summary line and record
    (record,) = read_jsonl(demo / "AwsIamOwnerDigestRuns.jsonl")
    assert (record["Status"], record["Mode"], record["DigestsBuilt"], record["DigestsSent"]) == (
        "Succeeded", "dry_run", len(expected), len(expected))


# --------------------------------------------------------------------------------------------------------------------
# 16 days from due to overdue


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def fixture(days_to_due: list[int], **extra: Any) -> tuple[list[Row], list[Row]]:
    """One good run; per entry an Active key, used yesterday, whose rotation is due in that many days (owner
    k<days>@example.com), created an hour past the whole day so that the day count cannot tip during the test."""
    now = datetime.now(UTC)
    run = {"TimeGenerated": iso(now - timedelta(minutes=5)), "RunId": "run-1", "Status": "Succeeded",
           "FailedAccounts": "[]"}
    keys = []
    for n, days in enumerate(days_to_due):
        age = LIMITS.rotation_days - days
        keys.append({"TimeGenerated": run["TimeGenerated"], "RunId": "run-1", "AccountId": "111122223333",
                     "AccountName": "Fixture", "UserName": f"user{n}", "AccessKeyId": f"AKIA...{n:04d}",
                     "AccessKeyFingerprint": f"{n:016x}", "Status": "Active",
                     "CreatedAt": iso(now - timedelta(days=age, hours=1)),
                     "LastUsedAt": iso(now - timedelta(days=1)), "AgeDays": age, "DaysSinceLastUse": 1,
                     "NeverUsed": False, "RotationDue": age > LIMITS.rotation_days, "Unused": False,
                     "UserActiveKeyCount": 1, "IsRootKey": False, "Owner": f"k{days}@example.com",
                     "Excepted": False, **extra})
    return keys, [run]


DAYS = [16, 15, 14, 8, 7, 6, 2, 1, 0, -1, -30]


def test_15_7_1_and_overdue_produce_a_digest_other_days_do_not() -> None:
    kql, python = compared(*fixture(DAYS))
    assert kql == python
    assert sorted(row[4] for row in kql) == [-30, -1, 0, 1, 7, 15]
    digests = build_digests(rows_from_query(query_rows(*fixture(DAYS))), None)
    assert sorted(d.recipient for d in digests.digests) == sorted(f"k{d}@example.com" for d in (15, 7, 1, 0, -1, -30))


def test_privileged_and_quarantined_when_the_records_have_them() -> None:
    keys, runs = fixture([40, 41], Privileged=False, Quarantined=False)
    keys[0]["Privileged"] = True
    keys[1]["Quarantined"] = True
    kql, python = compared(keys, runs)
    assert kql == python and sorted(row[3] for row in kql) == ["Privileged", "Quarantined"]
    # a table from before the blast-radius fields (column_ifexists): no such row, and no failure
    assert compared(keys, runs, dropped=("Privileged", "Quarantined"))[0] == []


# --------------------------------------------------------------------------------------------------------------------
# Broken copies


@pytest.mark.parametrize(("old", "new"), [
    ("DaysToDue in (15, 7, 1)", "DaysToDue in (14, 7, 1)"),  # the cadence drifted in the query
    (f"| where {OPEN_KEYS_KQL}\n", '| where Status == "Active"\n'),  # excepted keys listed (the demo's deploy-bot)
    ("DaysToDue = rotationDays - toint", "DaysToDue = rotationDays + 1 - toint"),  # off by one day
])
def test_a_broken_query_disagrees(old: str, new: str, demo: Path) -> None:
    text = QUERY.read_text(encoding="utf-8")
    assert old in text
    cases = [records(demo), fixture(DAYS)]
    assert any(compared(keys, runs, text.replace(old, new))[0] != compared(keys, runs)[1] for keys, runs in cases)


def test_a_broken_python_rule_disagrees(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest_module, "NOTICE_DAYS", (14, 7, 1))
    kql, python = compared(*fixture(DAYS))
    assert kql != python
