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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

duckdb_kql = pytest.importorskip("duckdb_kql", reason="duckdb-kql is a test dependency (requirements-dev.txt)")

from shared.domain import RunContext, RunResult  # noqa: E402
from shared.findings.catalogue import FINDINGS, ROOT_KEY, Finding, is_active  # noqa: E402
from shared.insight import credentials as other_credentials  # noqa: E402
from shared.insight import snapshot as report  # noqa: E402  # the HTML report's data (report.py renders it)
from shared.insight import summary as summary_module  # noqa: E402
from shared.insight.changes import credential_changes  # noqa: E402
from shared.insight.summary import summarize  # noqa: E402
from shared.records import CREDENTIALS_TABLE, KEYS_TABLE, RUNS_TABLE  # noqa: E402
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
    "alert-key-created-for-another-user.kql": "ingestion_time",  # executed with it replaced: test_key_creators.py
    "key-usage.kql": "geo_info_from_ip_address",  # the source IP's country and city
    "key-usage-sources.kql": "geo_info_from_ip_address",
}
NOT_COMPARED: dict[str, str] = {
    # Reads AWSCloudTrail, which the demo has no rows of: executed over fixture trail rows in test_key_creators.py.
    "key-creators.kql": "executed over fixture AWSCloudTrail rows in tests/contract/test_key_creators.py",
    "cloudtrail-coverage.kql": "executed over fixture AWSCloudTrail rows in tests/contract/test_cloudtrail_coverage.py",
    # The digests' rows, compared with the Python rule (shared/notify/digest.py) over the demo's records and over keys
    # 16 days from due to overdue, with and without the Privileged and Quarantined columns.
    "owner-digest.kql": "compared with the Python rule in tests/contract/test_owner_digest_query.py",
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
    # AwsIamCredentials_CL: the long-lived credentials other than access keys
    credentials: list[Row] = field(default_factory=list)

    def snapshot(self) -> report.Snapshot:
        return report.latest_snapshot(self.keys, self.runs)

    def latest_credentials(self) -> list[Row]:
        return other_credentials.latest_credentials(self.credentials, self.runs)

    def long_lived(self) -> list[Row]:
        return other_credentials.long_lived(self.snapshot().keys, self.latest_credentials())


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
                   completed.stdout, (out / "report.html").read_text(encoding="utf-8"),
                   report.read_jsonl(out / CREDENTIALS_TABLE.file_name))


@pytest.fixture(scope="module")
def two_runs(demo: DataSet) -> DataSet:
    """The demo's runs moved two hours back, then a further run now: the Sandbox account failed, one Management key
    became due for rotation; its row, the failed account's root key row and the new run record arrived twice. Of the
    other credentials: Management's service-specific ones could not be read (unknown, not none: the snapshot keeps
    the earlier run's, stale), Production has a new never-expiring API key (delivered twice), and the others are as
    before, but for the expiring API key, which an exception now accepts."""
    first_run = report.newest(demo.runs)
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
    management = next(k["AccountId"] for k in demo.keys if k["AccountName"] == "Management")
    second_run["CredentialsUnknownAccounts"] = json.dumps([{
        "AccountId": management, "CredentialType": "ServiceSpecificCredential",
        "Error": "service-specific credentials unknown: IAM in account ...: AccessDenied (needs "
                 "iam:ListServiceSpecificCredentials)"}])
    credentials = [shifted(c, earlier) for c in demo.credentials]
    newest_credentials = [c for c in demo.credentials if c["RunId"] == first_run["RunId"]]
    second_credentials = [
        {**c, "RunId": second_id} for c in newest_credentials if c["AccountId"] != failed_account
        and not (c["AccountId"] == management and c["CredentialType"] == "ServiceSpecificCredential")]
    # an exception in force accepts the expiring API key in the new run (it counts under no finding)
    second_credentials = [{**c, "Excepted": True, "ExceptionReason": "pilot ends with the key"} if c["ExpiringSoon"]
                          else c for c in second_credentials]
    template = next(c for c in second_credentials if c["NoExpiry"])
    new_key = {**template, "UserName": "intruder", "UserArn": template["UserArn"].rsplit("/", 1)[0] + "/intruder",
               "CredentialId": "ACCA...NEW1", "CredentialFingerprint": "00000000000000a1", "AgeDays": 0}
    credentials += [*second_credentials, new_key, new_key]
    second_run["CredentialsCollected"] = len(second_credentials) + 1
    runs += [second_run, second_run]  # delivered twice
    return DataSet("two-runs", keys, runs, demo.cli_summary, credentials=credentials)


@pytest.fixture(scope="module", params=["demo", "two_runs"])
def data(request: pytest.FixtureRequest) -> DataSet:
    result: DataSet = request.getfixturevalue(request.param)
    return result


def run_query(data: DataSet, text: str) -> list[Row]:
    workspace = Workspace(data.keys, data.runs, credential_rows=data.credentials)
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


TIME_FIELDS = {"TimeGenerated", "CreatedAt", "LastUsedAt", "LastSeen", "FirstFailure", "LastFailure", "LastRun",
               "ExpiresAt", "PreviousRun"}


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
    earlier = [k for k in report.once(data.keys, "RunId", "AccessKeyFingerprint")
               if (k["AccountId"], k["RunId"]) not in newest]
    due_before = set()
    for account in {k["AccountId"] for k in earlier}:
        previous = report.newest(k for k in earlier if k["AccountId"] == account)
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


def silent_since(runs: list[Row], hours: int) -> list[datetime]:
    """The collector is silent: it reported before, and its newest run record is older than ``hours``."""
    newest = max((report.parse_time(r["TimeGenerated"]) for r in runs), default=None)
    return [newest] if newest is not None and newest < datetime.now(UTC) - timedelta(hours=hours) else []


def alert_collector_silent(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    return [t(r["LastRun"]) for r in rows], silent_since(data.runs, 12)


def alert_run_failed(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    return sorted({r["RunId"] for r in rows}), runs_within(data, 6, ("Failed", "PartiallySucceeded"))


LONG_LIVED = ("CredentialType", "AccountId", "UserName", "CredentialFingerprint", "Service", "Status", "AgeDays",
              "ExpiresAt", "RotationDue", "NoExpiry", "ExpiringSoon", "Excepted", "Stale")


def long_lived_credentials(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    return pick(rows, *LONG_LIVED), pick(data.long_lived(), *LONG_LIVED)


BY_TYPE = ("CredentialType", "Service", *other_credentials.BY_TYPE_COLUMNS)


def long_lived_by_type(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    return pick(rows, *BY_TYPE), pick(other_credentials.long_lived_by_type(data.long_lived()), *BY_TYPE)


def credentials_summary(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    return (pick(rows, "Finding", "Count"),
            [(label, n) for _, label, n in other_credentials.credentials_summary(data.latest_credentials())])


def credential_findings(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    fields = ("AccountId", "UserName", "CredentialId", "Service", "AgeDays", "ExpiresAt", "NoExpiry", "PrivilegedUser",
              "RotationDue", "ExpiringSoon", "Stale")
    return pick(rows, *fields), pick(other_credentials.credential_findings(data.latest_credentials()), *fields)


def credential_changes_(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    fields = ("TimeGenerated", "PreviousRun", "EventType", "AccountId", "UserName", "CredentialType",
              "CredentialFingerprint", "Detail")
    events = credential_changes(data.credentials, data.runs, window=timedelta(days=30))
    return sorted(pick(rows, *fields), key=str), sorted(pick([vars_of(e) for e in events], *fields), key=str)


def vars_of(event: Any) -> Row:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


def alert_api_key_no_expiry_new(rows: list[Row], data: DataSet) -> tuple[Any, Any]:
    """Never-expiring API keys of the newest good run (within a day) that no earlier good run of the day had."""
    good = runs_within(data, 24, ("Succeeded", "PartiallySucceeded"))
    newest = report.newest(r for r in data.runs if r["RunId"] in good)
    assert newest is not None
    rows_of_day = report.once((c for c in data.credentials if c["RunId"] in good), "RunId",
                                     "CredentialFingerprint")
    before = {c["CredentialFingerprint"] for c in rows_of_day if c["RunId"] != newest["RunId"] and c["NoExpiry"]}
    expected = [c for c in rows_of_day if c["RunId"] == newest["RunId"] and c["NoExpiry"] and c["Excepted"] is not True
                and c["CredentialFingerprint"] not in before]
    fields = ("AccountId", "UserName", "Service", "CredentialId", "AgeDays")
    return sorted(pick(rows, *fields)), sorted(pick(expected, *fields))


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
    "long-lived-credentials.kql": long_lived_credentials,
    "long-lived-by-type.kql": long_lived_by_type,
    "credentials-summary.kql": credentials_summary,
    "credential-findings.kql": credential_findings,
    "credential-changes.kql": credential_changes_,
    "alert-api-key-no-expiry-new.kql": alert_api_key_no_expiry_new,
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
    credentials = two_runs.latest_credentials()
    assert any(c["Stale"] for c in credentials) and not all(c["Stale"] for c in credentials)
    _, alerted = alert_api_key_no_expiry_new([], two_runs)
    assert [user for _, user, *_ in alerted] == ["intruder"]  # the older never-expiring keys were seen before


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


def test_a_fresh_deployment_is_not_a_silent_collector() -> None:
    """No run record yet (a new deployment whose AWS side is not done): no row, so the severity-1 rule stays quiet;
    run records that stopped arriving: one row; a recent one: none."""
    text = (QUERIES / "alert-collector-silent.kql").read_text(encoding="utf-8")
    now = datetime.now(UTC)
    cases = {"no run yet": [], "stopped 13 hours ago": [now - timedelta(hours=13), now - timedelta(hours=19)],
             "ran an hour ago": [now - timedelta(hours=1), now - timedelta(hours=13)]}
    for case, times in cases.items():
        runs = [{"TimeGenerated": iso(when), "RunId": f"run-{i}", "Status": "Failed"} for i, when in enumerate(times)]
        data = DataSet(case, [], runs, "")
        from_kql, from_python = alert_collector_silent(run_query(data, text), data)
        assert from_kql == from_python, case
        assert len(from_kql) == (1 if case == "stopped 13 hours ago" else 0), case
    # A wrong copy: "silent" judged by any old record, not the newest, fires although a run arrived an hour ago.
    broken = text.replace("| summarize LastRun = max(TimeGenerated)\n| where LastRun < ago(lookback)",
                          "| where TimeGenerated < ago(lookback)\n| project LastRun = TimeGenerated")
    assert broken != text
    runs = [{"TimeGenerated": iso(when), "RunId": f"run-{i}", "Status": "Failed"}
            for i, when in enumerate(cases["ran an hour ago"])]
    data = DataSet("broken", [], runs, "")
    from_kql, from_python = alert_collector_silent(run_query(data, broken), data)
    assert from_kql != from_python


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
def demo_first_run(demo: DataSet) -> DataSet:
    first = min(demo.runs, key=lambda r: r["TimeGenerated"])
    return DataSet("first-run", [k for k in demo.keys if k["RunId"] == first["RunId"]], [first], demo.cli_summary,
                   credentials=[c for c in demo.credentials if c["RunId"] == first["RunId"]])


def test_every_seeded_credential_is_a_row_once_per_run(demo: DataSet) -> None:
    first, second = sorted(demo.runs, key=lambda r: r["TimeGenerated"])
    per_run = {run["RunId"]: [c for c in demo.credentials if c["RunId"] == run["RunId"]] for run in (first, second)}
    seeded = {(c["UserName"], c["Service"] or c["CredentialType"], c["AgeDays"]) for c in per_run[first["RunId"]]}
    assert len(seeded) == len(per_run[first["RunId"]]) == first["CredentialsCollected"] == 4
    assert {kind for _, kind, _ in seeded} == {"bedrock.amazonaws.com", "codecommit.amazonaws.com",
                                              "SigningCertificate"}
    again = {(c["UserName"], c["Service"] or c["CredentialType"], c["AgeDays"]) for c in per_run[second["RunId"]]}
    assert again == seeded | {("frank", "bedrock.amazonaws.com", 0)}  # created between the runs
    assert len(per_run[second["RunId"]]) == second["CredentialsCollected"] == 5
    flags = {(c["UserName"], c["AgeDays"]): (c["NoExpiry"], c["RotationDue"], c["ExpiringSoon"])
             for c in per_run[second["RunId"]]}
    assert flags == {("ml-pipeline", 40): (True, False, False), ("ml-pipeline", 25): (False, False, True),
                     ("carol", 150): (False, True, False), ("judy", 30): (False, False, False),
                     ("frank", 0): (True, False, False)}


def test_the_never_expiring_api_keys_are_flagged_and_alerted_on(demo: DataSet) -> None:
    flagged = run_query(demo, (QUERIES / "credential-findings.kql").read_text(encoding="utf-8"))
    assert {(r["UserName"], r["Service"]) for r in flagged if r["NoExpiry"]} == {
        ("ml-pipeline", "bedrock.amazonaws.com"), ("frank", "bedrock.amazonaws.com")}
    assert flagged[0]["NoExpiry"] and flagged[1]["NoExpiry"]  # never-expiring API keys first
    alert = (QUERIES / "alert-api-key-no-expiry-new.kql").read_text(encoding="utf-8")
    assert [(r["UserName"], r["AgeDays"]) for r in run_query(demo, alert)] == [("frank", 0)]  # new in the 2nd run
    # the first run is the collector's first sight of the seeded one: new then
    assert [(r["UserName"], r["AgeDays"]) for r in run_query(demo_first_run(demo), alert)] == [("ml-pipeline", 40)]


def report_table(page: str, key: str) -> list[list[str]]:
    """The cells of one table of the rendered report, by its data-table key."""
    body = re.search(rf'<table data-table="{key}">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert body, key
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body[1])]


def cli_long_lived(summary: str) -> list[list[str]]:
    lines = summary.splitlines()
    start = lines.index("Long-lived credentials by kind (access keys and the others):") + 3
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def test_the_one_view_counts_what_the_report_and_the_cli_count(demo: DataSet) -> None:
    """AwsIamLongLivedCredentials (long-long-lived-credentials.kql), counted by kind in KQL, against the report's
    rendered table and the table the demo printed: the same kinds, the same counts."""
    view = run_query(demo, (QUERIES / "long-lived-credentials.kql").read_text(encoding="utf-8"))
    by_kind = run_query(demo, (QUERIES / "long-lived-by-type.kql").read_text(encoding="utf-8"))
    assert sum(r["Credentials"] for r in by_kind) == len(view) == len(demo.snapshot().keys) + 5
    from_kql = [[r["CredentialType"], r["Service"] or "-", *(str(r[c]) for c in other_credentials.BY_TYPE_COLUMNS)]
                for r in by_kind]
    from_report = [[cells[0], cells[1].replace("—", "-"), *cells[2:]]
                   for cells in report_table(demo.report_html, "long-lived-by-type")]  # the report the demo wrote
    assert from_kql == from_report == cli_long_lived(demo.cli_summary)
    assert {r[0] for r in from_kql} == {"AccessKey", "ServiceSpecificCredential", "SigningCertificate"}


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
    # the other credentials: the stale fallback, the alert's "new", a count, the changes' snapshots, the union
    ("long-lived-credentials.kql", "    | extend Stale = true);", "    | extend Stale = false);"),
    ("long-lived-credentials.kql", "(failedNow | extend CredentialType = \"SigningCertificate\"),\n", ""),
    ("credential-findings.kql", "| where Excepted != true and (NoExpiry or", "| where (NoExpiry or"),
    ("alert-api-key-no-expiry-new.kql", "!in (seenBefore)", "in (seenBefore)"),
    ("alert-api-key-no-expiry-new.kql", "\n    | summarize arg_max(TimeGenerated, *) by RunId, CredentialFingerprint;",
     ";"),
    ("credentials-summary.kql", "ExpiringSoonCredentials = countif(ExpiringSoon and",
     "ExpiringSoonCredentials = countif(NoExpiry and"),
    ("long-lived-by-type.kql", "ExpiringSoon = countif(ExpiringSoon and Excepted != true)",
     "ExpiringSoon = countif(ExpiringSoon)"),
    ("credential-changes.kql", "    | join kind=leftanti notSnapshots on RunId, AccountId, CredentialType\n", ""),
    ("credential-changes.kql", "    | where PreviousRun < RunTime\n", "    | where PreviousRun <= RunTime\n"),
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


# --------------------------------------------------------------------------------------------------------------------
# Every finding count of the demo, three ways: the CLI summary, the HTML report's Python and the executed KQL.
#
# The demo has no inactive root key, which is why a CLI that re-checked Status (and so left an inactive root key out
# of "Root keys", while the report and findings-by-account.kql count it, as the catalogue says) agreed with both on
# the demo. The data set below is the demo's records with the Sandbox root key deactivated, summarized by the same
# function the CLI prints with; the broken copies after it show the check fails on that drift.

TALLY_COLUMNS = (("Keys", "Keys"), ("Active", "ActiveKeys"), *((f.cli_column, f.column) for f in FINDINGS),
                 ("Excepted", "ExceptedKeys"))
OWNER_TALLY = (("Active", "ActiveKeys"), *((f.cli_column, f.column) for f in FINDINGS if f is not ROOT_KEY),
               ("Excepted", "ExceptedKeys"))


def cli_tables(summary: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every table the CLI printed, as (header, rows), cut at the columns of its dashed line (a cell may be empty)."""
    lines = summary.splitlines()
    tables = []
    for i in range(1, len(lines)):
        if not re.fullmatch(r"-+(  -+)*", lines[i]):
            continue
        starts = [m.start() for m in re.finditer(r"-+", lines[i])]

        def cells(line: str, starts: list[int] = starts) -> list[str]:
            return [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]

        end = next((j for j in range(i + 1, len(lines)) if not lines[j] or lines[j].startswith("...")), len(lines))
        tables.append((cells(lines[i - 1]), [cells(line) for line in lines[i + 1:end]]))
    return tables


def cli_table(summary: str, first_columns: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """The printed table whose header starts with ``first_columns``: first cell -> {column: cell}."""
    (header, rows), = [t for t in cli_tables(summary) if tuple(t[0][:len(first_columns)]) == first_columns]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def cli_summary_of(data: DataSet) -> str:
    """The CLI summary of the data set's newest run, as `python -m shared demo` prints it (the same function, the
    rows of that run: shared/tools/cli.py reads them back from the file sink by RunId)."""
    run = report.newest(data.runs)
    assert run is not None
    rows = [k for k in data.keys if k["RunId"] == run["RunId"]]
    credentials = [c for c in data.credentials if c["RunId"] == run["RunId"]]
    context = RunContext(run["RunId"], report.parse_time(run["TimeGenerated"]), rotation_days=90, unused_days=45)
    result = RunResult(context, run["AuthMode"], run["Sink"], run["AccountsTotal"], (), len(rows),
                       run["DurationSeconds"], run["CollectorVersion"], credentials_collected=len(credentials))
    return summarize(result, rows, credential_rows=credentials)


def finding_count_disagreements(data: DataSet, cli_summary: str) -> list[str]:
    """Each count the three disagree on: per account (keys, active keys, every finding of the catalogue, excepted
    keys), in total (the CLI's Total row, the accounts' sums and the tiles of findings-summary) and per owner."""
    keys = data.snapshot().keys
    found: list[str] = []

    def agree(what: str, **answers: Any) -> None:
        if len({None if v is None else int(v) for v in answers.values()}) != 1:
            found.append(f"{what}: {answers}")

    by_account_kql = {r["AccountId"]: r for r in run_query(data, (QUERIES / "findings-by-account.kql").read_text())}
    by_account_py = {r["AccountId"]: r for r in report.findings_by_account(keys)}
    by_account_cli = cli_table(cli_summary, ("Account", "Name"))
    total_cli = by_account_cli.pop("Total")
    for account in sorted(set(by_account_kql) | set(by_account_py) | set(by_account_cli)):
        for printed, column in TALLY_COLUMNS:
            agree(f"{account} {column}", cli=by_account_cli.get(account, {}).get(printed),
                  report=by_account_py.get(account, {}).get(column), kql=by_account_kql.get(account, {}).get(column))

    tiles_kql = {r["Finding"]: r["Count"] for r in run_query(data, (QUERIES / "findings-summary.kql").read_text())}
    tiles_py = {label: count for _, label, count in report.findings_summary(keys)}
    for printed, column in TALLY_COLUMNS:
        sums = {"kql_accounts": sum(r[column] for r in by_account_kql.values()),
                "report_accounts": sum(r[column] for r in by_account_py.values())}
        finding = next((f for f in FINDINGS if f.column == column), None)
        if column == "ActiveKeys" or (finding is not None and finding.distinct_by is None):
            label = "Active keys" if finding is None else finding.label  # a tile that counts keys: the same total
            sums |= {"kql_tile": tiles_kql[label], "report_tile": tiles_py[label]}
        agree(f"total {column}", cli=total_cli[printed], **sums)
    for label in tiles_py:
        agree(f"tile {label}", kql=tiles_kql.get(label), report=tiles_py[label])  # a tile of users, too

    by_owner_kql = {r["Owner"]: r for r in run_query(data, (QUERIES / "findings-by-owner.kql").read_text())}
    by_owner_py = {r["Owner"]: r for r in report.findings_by_owner(keys)}
    by_owner_cli = cli_table(cli_summary, ("Owner", "Active"))
    if "more owners" not in cli_summary:  # else the CLI shows the first 15 only
        agree("owners", cli=len(by_owner_cli), report=len(by_owner_py), kql=len(by_owner_kql))
    for owner in sorted(by_owner_cli):
        for printed, column in OWNER_TALLY:
            agree(f"owner {owner} {column}", cli=by_owner_cli[owner][printed],
                  report=by_owner_py.get(owner, {}).get(column), kql=by_owner_kql.get(owner, {}).get(column))
    return found


@pytest.fixture(scope="module")
def inactive_root(demo: DataSet) -> DataSet:
    """The demo's records with the Sandbox root key of the newest run deactivated, as the transform records an
    inactive key (no rotation or unused flag, no active key on the root user)."""
    run = report.newest(demo.runs)
    assert run is not None
    keys = [{**k, "Status": "Inactive", "RotationDue": False, "Unused": False, "UserActiveKeyCount": 0}
            if k["IsRootKey"] and k["RunId"] == run["RunId"] else k for k in demo.keys]
    assert any(k["IsRootKey"] and k["Status"] == "Inactive" and not k["Excepted"] for k in keys)
    data = DataSet("inactive-root", keys, demo.runs, "")
    return DataSet(data.name, keys, demo.runs, cli_summary_of(data))


def test_cli_report_and_kql_agree_on_every_finding_count_of_the_demo(demo: DataSet) -> None:
    assert finding_count_disagreements(demo, demo.cli_summary) == []
    # the in-process summary is the printed one: its keys' part, then (after the demo's expired exceptions, which the
    # in-process one is not given) its other credentials' part
    keys_part, credentials_part = cli_summary_of(demo).split("\n", 1)[1].split("\nLong-lived credentials by kind")
    assert keys_part in demo.cli_summary and "\nLong-lived credentials by kind" + credentials_part in demo.cli_summary


def test_they_agree_with_an_inactive_root_key_too(inactive_root: DataSet) -> None:
    assert finding_count_disagreements(inactive_root, inactive_root.cli_summary) == []
    account = next(k["AccountId"] for k in inactive_root.keys if k["AccountName"] == "Sandbox")
    assert cli_table(inactive_root.cli_summary, ("Account", "Name"))[account][ROOT_KEY.cli_column] == "1"


def _rechecking_status(open_findings: Callable[[Any], list[Finding]]) -> Callable[[Any], list[Finding]]:
    """The drift: a reader that counts a finding only for an active key (the catalogue says none re-checks Status)."""
    return lambda row: open_findings(row) if is_active(row) else []


def test_a_cli_that_rechecks_status_disagrees(inactive_root: DataSet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary_module, "open_findings_of", _rechecking_status(summary_module.open_findings_of))
    found = finding_count_disagreements(inactive_root, cli_summary_of(inactive_root))
    assert any(line.startswith("total RootKeys") for line in found), found
    assert any(line.endswith(" RootKeys: {'cli': '0', 'report': 1, 'kql': 1}") for line in found), found


def test_a_report_that_rechecks_status_disagrees(inactive_root: DataSet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "open_findings_of", _rechecking_status(report.open_findings_of))
    found = finding_count_disagreements(inactive_root, inactive_root.cli_summary)
    assert any(" RootKeys: {'cli': '1', 'report': 0, 'kql': 1}" in line for line in found), found


def test_a_kql_count_that_rechecks_status_disagrees(inactive_root: DataSet, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (QUERIES / "findings-by-account.kql").read_text(encoding="utf-8")
    old, new = "RootKeys = countif(IsRootKey and Open)", "RootKeys = countif(IsRootKey and Active and Open)"
    assert old in text
    real_query = run_query

    def mutant(data: DataSet, query: str) -> list[Row]:
        return real_query(data, query.replace(old, new))

    monkeypatch.setattr(sys.modules[__name__], "run_query", mutant)
    found = finding_count_disagreements(inactive_root, inactive_root.cli_summary)
    assert any(" RootKeys: {'cli': '1', 'report': 1, 'kql': 0}" in line for line in found), found
