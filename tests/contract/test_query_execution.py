"""Every query in queries/ executed, not only compiled: each runs over the demo's records in a local KQL engine
(duckdb-kql over DuckDB, tests/support/kql_engine.py), and its answer is compared with what the CLI summary and the
HTML report compute in Python from the same records — two independent computations of the same findings.

Two data sets: the demo as a person runs it (`python -m shared demo`: two good runs of three accounts, with a key
created, deactivated, deleted and rotated in between), and the same records followed by a further run, in which one
account failed (PartiallySucceeded), one key became due for rotation, and rows and the run record were delivered
twice. The second exercises the stale fallback, the
failing-accounts history, the "newly due" alert and the at-least-once de-duplication.

A query the engine cannot run is listed in UNSUPPORTED with the construct that stops it; it stays covered by the
Kusto language-service check (tests/contract/test_kql_language_service.py). A query with no Python counterpart to
compare with is listed in NOT_COMPARED with the reason. Any other new query fails
test_every_query_is_compared_or_listed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

duckdb_kql = pytest.importorskip("duckdb_kql", reason="duckdb-kql is a test dependency (requirements-dev.txt)")

from shared.insight import report  # noqa: E402
from shared.insight import snapshot as snapshot_module  # noqa: E402
from shared.records import KEYS_TABLE, RUNS_TABLE  # noqa: E402
from tests.support.kql_engine import Row, Workspace  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "queries"

# Queries the engine refuses, with the construct that stops it (the engine's own words must mention it).
UNSUPPORTED = {
    "key-creation-trend.kql": "MakeSeriesOperator",  # make-series (zero-filled daily series)
    "two-active-keys.kql": "strcat_array",  # strcat_array(make_list(AccessKeyId), ", ")
    # A let-bound tabular function (KeyChanges(window) { let runs = ...; ... }): the engine takes only scalar ones.
    "key-changes.kql": "let function:KeyChanges",
    "key-changes-per-day.kql": "let function:KeyChanges",
    "alert-new-key.kql": "let function:KeyChanges",
    "alert-key-new-source.kql": "ingestion_time",  # ingestion_time(): when a row reached the workspace
    "alert-key-usage-mismatch.kql": "ingestion_time",
    "key-usage.kql": "geo_info_from_ip_address",  # the source IP's country and city
    "key-usage-sources.kql": "geo_info_from_ip_address",
}
NOT_COMPARED: dict[str, str] = {
    # The report and the CLI list expired exceptions from the exceptions file itself (the entries past their date);
    # the query finds them in the records' history (a key excepted before and not now): no Python twin to compare.
    "expired-exceptions.kql": "the report reads expired exceptions from the exceptions file, not from the records",
}


@dataclass(frozen=True)
class DataSet:
    name: str
    keys: list[Row]
    runs: list[Row]
    cli_summary: str  # what `python -m shared demo` printed
    report_html: str = ""  # the report it wrote

    def snapshot(self) -> report.Snapshot:
        return report.latest_snapshot(self.keys, self.runs)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def shifted(row: Row, delta: timedelta, **changes: Any) -> Row:
    return {**row, "TimeGenerated": iso(report.parse_time(row["TimeGenerated"]) + delta), **changes}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DataSet:
    out = tmp_path_factory.mktemp("demo") / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "shared", "demo", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return DataSet("demo", report.read_jsonl(out / KEYS_TABLE.file_name), report.read_jsonl(out / RUNS_TABLE.file_name),
                   completed.stdout, (out / "report.html").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def two_runs(demo: DataSet) -> DataSet:
    """The demo's runs moved two hours back, then a further run now: the Sandbox account failed, one Management key
    became due for rotation; its row, the failed account's root key row and the new run record arrived twice."""
    first_run = snapshot_module.newest(demo.runs)
    assert first_run is not None
    failed_account = next(k["AccountId"] for k in demo.keys if k["AccountName"] == "Sandbox")
    earlier = timedelta(hours=-2)
    keys = [shifted(k, earlier) for k in demo.keys]
    runs = [shifted(r, earlier) for r in demo.runs]
    newest_keys = [k for k in demo.keys if k["RunId"] == first_run["RunId"]]
    second_id = "00000000-0000-4000-8000-000000000002"
    newly_due = next(k for k in newest_keys if k["AccountName"] == "Management" and not k["RotationDue"]
                     and k["Status"] == "Active")
    second_keys = [
        {**k, "RunId": second_id, "RotationDue": True if k is newly_due else k["RotationDue"]}
        for k in newest_keys if k["AccountId"] != failed_account
    ]
    # Delivered twice: the newly due key's row of the new run, and the failed account's root key row that the latest
    # snapshot falls back to (from the demo's newest run).
    twice_due = next(k for k in second_keys if k["AccessKeyFingerprint"] == newly_due["AccessKeyFingerprint"])
    twice_root = next(k for k in keys if k["IsRootKey"] and k["RunId"] == first_run["RunId"])
    keys += [*second_keys, twice_due, twice_root]
    second_run = {**first_run, "RunId": second_id, "Status": "PartiallySucceeded",
                  "AccountsSucceeded": first_run["AccountsTotal"] - 1, "AccountsFailed": 1,
                  "KeysCollected": len(second_keys),
                  "FailedAccounts": json.dumps([{"AccountId": failed_account, "Error": "AccessDenied (AssumeRole)"}])}
    runs += [second_run, second_run]  # delivered twice
    return DataSet("two-runs", keys, runs, demo.cli_summary)


@pytest.fixture(scope="module", params=["demo", "two_runs"])
def data(request: pytest.FixtureRequest) -> DataSet:
    result: DataSet = request.getfixturevalue(request.param)
    return result


def run_query(data: DataSet, text: str) -> list[Row]:
    workspace = Workspace(data.keys, data.runs)
    try:
        return workspace.query(text)
    finally:
        workspace.close()


def t(value: Any) -> datetime | None:
    """A datetime from the engine or an ISO string from the records, to compare."""
    if value is None:
        return None
    return value if isinstance(value, datetime) else report.parse_time(str(value))


def pick(rows: list[Row], *fields: str) -> list[tuple[Any, ...]]:
    return [tuple(t(r.get(f)) if f in TIME_FIELDS else r.get(f) for f in fields) for r in rows]


TIME_FIELDS = {"TimeGenerated", "CreatedAt", "LastUsedAt", "LastSeen", "FirstFailure", "LastFailure", "LastRun"}


# --------------------------------------------------------------------------------------------------------------------
# Each query's answer and the Python computation of the same question: (from KQL, from Python).

Comparison = Callable[[list[Row], DataSet], tuple[Any, Any]]


def latest_snapshot(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    fields = ("AccountId", "UserName", "AccessKeyFingerprint", "Status", "AgeDays", "RotationDue", "Unused",
              "NeverUsed", "Stale")
    return sorted(pick(rows, *fields)), sorted(pick(data.snapshot().keys, *fields))


def findings_summary(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    return pick(rows, "Finding", "Count"), [(label, n) for _, label, n in report.findings_summary(data.snapshot().keys)]


BY_ACCOUNT = ("Account", "AccountId", "AccountName", "Keys", "ActiveKeys", "RootKeys", "QuarantinedKeys",
              "RotationDueKeys", "UnusedKeys", "NeverUsedKeys", "TwoActiveKeys", "UnownedKeys", "Findings",
              "ExceptedKeys", "Stale")
BY_OWNER = ("Owner", "Accounts", "ActiveKeys", "QuarantinedKeys", "RotationDueKeys", "UnusedKeys", "NeverUsedKeys",
            "TwoActiveKeys", "UnownedKeys", "Findings", "ExceptedKeys")
KILL_FIRST = ("RiskScore", "RiskReasons", "AccountId", "UserName", "AccessKeyId", "AccessKeyFingerprint", "Privileged",
              "PrivilegeReasons", "Quarantined", "Excepted", "Stale")


def findings_by_account(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    return pick(rows, *BY_ACCOUNT), pick(report.findings_by_account(data.snapshot().keys), *BY_ACCOUNT)


def findings_by_owner(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    return pick(rows, *BY_OWNER), pick(report.findings_by_owner(data.snapshot().keys), *BY_OWNER)


def unowned_keys(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    fields = ("AccountId", "UserName", "UserArn", "AccessKeyId", "AgeDays", "Stale")
    return pick(rows, *fields), pick(report.unowned_keys(data.snapshot().keys), *fields)


def excepted_keys(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    fields = ("AccountId", "UserName", "Owner", "AccessKeyId", "ExceptionReason", "Stale")
    return (sorted(pick(rows, *fields), key=str), sorted(pick(report.excepted_keys(data.snapshot().keys), *fields),
                                                          key=str))


def kill_first(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    """In order: the ranking is the answer."""
    return pick(rows, *KILL_FIRST), pick(report.kill_first_keys(data.snapshot().keys), *KILL_FIRST)


def quarantined_keys(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    fields = ("AccountId", "UserName", "AccessKeyId", "Description", "PrivilegeReasons", "RiskScore", "Stale")
    return pick(rows, *fields), pick(report.quarantined_keys(data.snapshot().keys), *fields)


def alert_key_quarantined(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    """Each account's newest collection: the snapshot's rows (a failed account's own newest run included)."""
    fields = ("AccountId", "UserName", "AccessKeyFingerprint", "RiskScore")
    return sorted(pick(rows, *fields)), sorted(pick(report.quarantined_keys(data.snapshot().keys), *fields))


def rotation_due(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    fields = ("AccountId", "UserName", "AccessKeyId", "IsRootKey", "AgeDays", "Stale")
    return pick(rows, *fields), pick(report.rotation_due(data.snapshot().keys), *fields)


def unused_keys(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    fields = ("AccountId", "UserName", "AccessKeyId", "Finding", "AgeDays", "Stale")
    return pick(rows, *fields), pick(report.unused_keys(data.snapshot().keys), *fields)


def root_keys(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    snapshot = data.snapshot()
    fields = ("AccountId", "Status", "AgeDays", "CreatedAt")
    return pick(rows, *fields), pick(report.root_keys(snapshot.keys, snapshot.newest_run), *fields)


def collector_runs(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    fields = ("TimeGenerated", "RunId", "Status", "AccountsTotal", "AccountsFailed", "KeysCollected")
    return pick(rows, *fields), pick(data.snapshot().runs, *fields)


def collector_runs_by_status(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    return pick(rows, "Status", "Runs", "LastSeen"), pick(report.runs_by_status(data.snapshot().runs), "Status",
                                                          "Runs", "LastSeen")


def failing_accounts(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    fields = ("AccountId", "FailingNow", "Failures", "FirstFailure", "LastFailure", "LastError")
    return pick(rows, *fields), pick(report.failing_accounts(data.snapshot().runs), *fields)


def collector_last_run(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    latest = data.snapshot().latest_run
    assert latest is not None
    fields = ("Status", "AccountsTotal", "AccountsFailed", "KeysCollected")
    return pick(rows, "LastRun", *fields), [(t(latest["TimeGenerated"]), *(latest[f] for f in fields))]


def cli_summary_accounts(summary: str) -> dict[str, dict[str, int]]:
    """The per-account table the CLI prints: account id -> {column: figure}."""
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Account ") and "Rotation due" in line)
    header = re.split(r"\s{2,}", lines[start].strip())
    table = {}
    for line in lines[start + 2:]:
        if not re.match(r"^\d{12}\s", line):
            break
        cells = re.split(r"\s{2,}", line.strip())
        table[cells[0]] = {h: int(c) for h, c in zip(header[2:], cells[2:], strict=True)}
    return table


def accounts(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    return [r["AccountId"] for r in rows], sorted(cli_summary_accounts(data.cli_summary))


def alert_root_key(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    snapshot = data.snapshot()
    root = [r for r in report.root_keys(snapshot.keys, snapshot.newest_run) if r.get("IsRootKey")]
    fields = ("AccountId", "Status", "AgeDays", "CreatedAt")
    return sorted(pick(rows, *fields)), sorted(pick(root, *fields))


def alert_rotation_due_new(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    """Due in each account's newest collection (the snapshot: the newest good run, or a failed account's own newest
    one) and not due in its collection before that."""
    snapshot = data.snapshot()
    newest = {(k["AccountId"], k["RunId"]) for k in snapshot.keys}
    earlier = [k for k in snapshot_module.once(data.keys, "RunId", "AccessKeyFingerprint")
               if (k["AccountId"], k["RunId"]) not in newest]
    due_before = set()
    for account in {k["AccountId"] for k in earlier}:
        previous = snapshot_module.newest(k for k in earlier if k["AccountId"] == account)
        assert previous is not None
        due_before |= {k["AccessKeyFingerprint"] for k in earlier
                       if k["RunId"] == previous["RunId"] and k["AccountId"] == account and k["RotationDue"]}
    expected = [k for k in report.rotation_due(snapshot.keys) if k["AccessKeyFingerprint"] not in due_before]
    fields = ("AccountId", "UserName", "AccessKeyId", "AgeDays")
    return sorted(pick(rows, *fields)), sorted(pick(expected, *fields))


def runs_within(data: DataSet, hours: int, statuses: tuple[str, ...] | None = None) -> list[str]:
    now = datetime.now(UTC)
    return sorted({r["RunId"] for r in data.runs if report.parse_time(r["TimeGenerated"]) > now - timedelta(hours=hours)
                   and (statuses is None or r["Status"] in statuses)})


def alert_collector_silent(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    return sorted({r["RunId"] for r in rows}), runs_within(data, 12)


def alert_run_failed(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    return sorted({r["RunId"] for r in rows}), runs_within(data, 6, ("Failed", "PartiallySucceeded"))


COMPARISONS: dict[str, Comparison] = {
    "latest-snapshot.kql": latest_snapshot,
    "findings-summary.kql": findings_summary,
    "findings-by-account.kql": findings_by_account,
    "findings-by-owner.kql": findings_by_owner,
    "unowned-keys.kql": unowned_keys,
    "excepted-keys.kql": excepted_keys,
    "rotation-due.kql": rotation_due,
    "kill-first.kql": kill_first,
    "quarantined-keys.kql": quarantined_keys,
    "alert-key-quarantined.kql": alert_key_quarantined,
    "unused-keys.kql": unused_keys,
    "root-keys.kql": root_keys,
    "collector-runs.kql": collector_runs,
    "collector-runs-by-status.kql": collector_runs_by_status,
    "failing-accounts.kql": failing_accounts,
    "collector-last-run.kql": collector_last_run,
    "accounts.kql": accounts,
    "alert-root-key.kql": alert_root_key,
    "alert-rotation-due-new.kql": alert_rotation_due_new,
    "alert-collector-silent.kql": alert_collector_silent,
    "alert-run-failed.kql": alert_run_failed,
}

QUERY_NAMES = sorted(p.name for p in QUERIES.glob("*.kql"))


def test_every_query_is_compared_or_listed() -> None:
    unaccounted = set(QUERY_NAMES) - set(COMPARISONS) - set(UNSUPPORTED) - set(NOT_COMPARED)
    assert not unaccounted, (
        f"{sorted(unaccounted)}: add a comparison with the Python computation of the same question to COMPARISONS, "
        "or list the query in UNSUPPORTED (with the construct the engine refuses) or NOT_COMPARED (with why)"
    )
    assert not (set(COMPARISONS) | set(UNSUPPORTED) | set(NOT_COMPARED)) - set(QUERY_NAMES), "a listed query is gone"


@pytest.mark.parametrize("name", [n for n in QUERY_NAMES if n not in UNSUPPORTED])
def test_query_runs_and_agrees_with_python(name: str, data: DataSet) -> None:
    rows = run_query(data, (QUERIES / name).read_text(encoding="utf-8"))
    if name in COMPARISONS:
        from_kql, from_python = COMPARISONS[name](rows, data)
        assert from_kql == from_python, f"{name} over the {data.name} records"


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_query_is_refused_for_the_listed_construct(name: str, demo: DataSet) -> None:
    with pytest.raises(duckdb_kql.KqlUnsupportedError) as refused:
        run_query(demo, (QUERIES / name).read_text(encoding="utf-8"))
    assert UNSUPPORTED[name] in str(refused.value)


def test_the_two_runs_data_exercises_what_one_run_cannot(two_runs: DataSet) -> None:
    snapshot = two_runs.snapshot()
    assert any(k["Stale"] for k in snapshot.keys) and not all(k["Stale"] for k in snapshot.keys)
    assert report.failing_accounts(snapshot.runs)
    _, expected_new = alert_rotation_due_new([], two_runs)
    assert 0 < len(expected_new) < len(report.rotation_due(snapshot.keys))


def test_cli_summary_agrees_with_findings_by_account(demo: DataSet) -> None:
    """The CLI's per-account table, as printed, against the query's answer over the same run's records."""
    rows = {r["AccountId"]: r for r in run_query(demo, (QUERIES / "findings-by-account.kql").read_text("utf-8"))}
    printed = cli_summary_accounts(demo.cli_summary)
    columns = {"Keys": "Keys", "Active": "ActiveKeys", "Root keys": "RootKeys", "Quarantined": "QuarantinedKeys",
               "Rotation due": "RotationDueKeys",
               "Unused": "UnusedKeys", "Never used": "NeverUsedKeys", "2 active/user": "TwoActiveKeys",
               "No owner": "UnownedKeys", "Excepted": "ExceptedKeys"}
    assert printed and set(printed) == set(rows)
    for account, figures in printed.items():
        assert figures == {label: rows[account][column] for label, column in columns.items()}, account


class _TableRows(HTMLParser):
    """The cell texts of each row of one ``data-table`` of the report, in order."""

    def __init__(self, table: str) -> None:
        super().__init__()
        self.table = table
        self.rows: list[list[str]] = []
        self._inside = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._inside = dict(attrs).get("data-table") == self.table
        elif self._inside and tag == "tr":
            self.rows.append([])
        elif self._inside and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._inside = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def cli_kill_first(summary: str) -> list[tuple[int, str, str, str]]:
    """(score, account, user, key) of each row of the CLI's kill-first table, as printed."""
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Kill first"))
    found = []
    for line in lines[start + 3:]:
        if not line.strip() or line.startswith("..."):
            break
        score, account, user, _owner, key = re.split(r"\s{2,}", line.strip())[:5]
        found.append((int(score), account, user, key))
    return found


def test_the_kill_first_order_is_the_same_in_the_cli_the_report_and_the_executed_kql(demo: DataSet) -> None:
    from_kql = [(r["RiskScore"], r["AccountId"], r["UserName"], r["AccessKeyId"] or "(root)")
                for r in run_query(demo, (QUERIES / "kill-first.kql").read_text("utf-8"))]
    printed = cli_kill_first(demo.cli_summary)
    parser = _TableRows("kill-first")
    parser.feed(demo.report_html)
    # the report's columns: Score, Why, Account, Name, User, Owner, Key, ...; "—" stands for an empty cell
    in_report = [(int(r[0]), r[2], r[4], "(root)" if r[6] == "—" else r[6]) for r in parser.rows if r]
    assert len(from_kql) >= 10 and printed == from_kql[:len(printed)] and in_report == from_kql
    # the demo's blast radius, first to last: the root key, the quarantined user's, then the admins'
    users = [user for _, _, user, _ in from_kql]
    assert users[:2] == ["<root_account>", "build-agent"]
    assert {"ops-admin", "release-bot", "deploy-bot"} <= set(users[2:7])


# --------------------------------------------------------------------------------------------------------------------
# A wrong query fails: mutants of the shipped texts.

DEDUPE = "\n    | summarize arg_max(TimeGenerated, *) by RunId, AccessKeyFingerprint;\nlet newestPerAccount"
MUTANTS = [
    ("rotation-due.kql", "| where RotationDue and", "| where not(RotationDue) and"),
    ("findings-summary.kql", "UnusedKeys = countif(Unused and", "UnusedKeys = countif(NeverUsed and"),
    ("findings-by-account.kql", "countif(RotationDue and Open)", "countif(RotationDue)"),  # counts the excepted key
    ("findings-by-owner.kql", "UnownedKeys = countif(Owner ==", "UnownedKeys = countif(Owner !="),
    ("unused-keys.kql", 'iff(NeverUsed, "Never used", "Unused")', 'iff(Unused, "Never used", "Unused")'),
    ("latest-snapshot.kql", "| extend Stale = true)", "| extend Stale = false)"),
    ("alert-rotation-due-new.kql", "!in (dueBefore)", "in (dueBefore)"),
    ("failing-accounts.kql", "Failures = count()", "Failures = dcount(RunId) * 2"),
    # without the de-duplication a row delivered twice is counted twice
    ("alert-rotation-due-new.kql", DEDUPE, ";\nlet newestPerAccount"),
    ("alert-root-key.kql", DEDUPE, ";\nlet newestPerAccount"),
    ("findings-summary.kql", "\n    | summarize arg_max(TimeGenerated, *) by RunId, AccessKeyFingerprint;", ";"),
    # the ranking's tie-break, and a ranking that leaves the excepted keys out
    ("kill-first.kql", "AgeDays desc, AccountId asc", "AgeDays asc, AccountId asc"),
    ("kill-first.kql", "| where RiskScore > 0", "| where RiskScore > 0 and Excepted != true"),
    ("quarantined-keys.kql", 'where Status == "Active" and Quarantined', 'where Quarantined'),
]


@pytest.mark.parametrize(("name", "old", "new"), MUTANTS, ids=[f"{m[0]}-{i}" for i, m in enumerate(MUTANTS)])
def test_a_wrong_query_disagrees(name: str, old: str, new: str, demo: DataSet, two_runs: DataSet) -> None:
    text = (QUERIES / name).read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {name}: update the mutant"
    mutant = text.replace(old, new)
    disagreements = []
    for data in (demo, two_runs):
        from_kql, from_python = COMPARISONS[name](run_query(data, mutant), data)
        disagreements.append(from_kql != from_python)
    assert any(disagreements), f"the mutant of {name} ({new.strip()!r}) agrees with Python on every data set"
