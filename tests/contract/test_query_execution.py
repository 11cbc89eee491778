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
compare with
is listed in NOT_COMPARED with the reason. Any other new query fails test_every_query_is_compared_or_listed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

duckdb_kql = pytest.importorskip("duckdb_kql", reason="duckdb-kql is a test dependency (requirements-dev.txt)")

from shared.insight import credentials as other_credentials  # noqa: E402
from shared.insight import report  # noqa: E402
from shared.insight import snapshot as snapshot_data  # noqa: E402
from shared.insight.changes import credential_changes  # noqa: E402
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
    credentials: list[Row]  # AwsIamCredentials_CL: the long-lived credentials other than access keys

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
                   completed.stdout, report.read_jsonl(out / CREDENTIALS_TABLE.file_name))


@pytest.fixture(scope="module")
def two_runs(demo: DataSet) -> DataSet:
    """The demo's runs moved two hours back, then a further run now: the Sandbox account failed, one Management key
    became due for rotation; its row, the failed account's root key row and the new run record arrived twice. Of the
    other credentials: Management's service-specific ones could not be read (unknown, not none: the snapshot keeps
    the earlier run's, stale), Production has a new never-expiring API key (delivered twice), and the others are as
    before, but for the expiring API key, which an exception now accepts."""
    first_run = snapshot_data.newest(demo.runs)
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
    return DataSet("two-runs", keys, runs, demo.cli_summary, credentials)


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


BY_ACCOUNT = ("Account", "AccountId", "AccountName", "Keys", "ActiveKeys", "RootKeys", "RotationDueKeys", "UnusedKeys",
              "NeverUsedKeys", "TwoActiveKeys", "UnownedKeys", "Findings", "ExceptedKeys", "Stale")
BY_OWNER = ("Owner", "Accounts", "ActiveKeys", "RotationDueKeys", "UnusedKeys", "NeverUsedKeys", "TwoActiveKeys",
            "UnownedKeys", "Findings", "ExceptedKeys")


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
    earlier = [k for k in snapshot_data.once(data.keys, "RunId", "AccessKeyFingerprint")
               if (k["AccountId"], k["RunId"]) not in newest]
    due_before = set()
    for account in {k["AccountId"] for k in earlier}:
        previous = snapshot_data.newest(k for k in earlier if k["AccountId"] == account)
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
    newest = snapshot_data.newest(r for r in data.runs if r["RunId"] in good)
    assert newest is not None
    rows_of_day = snapshot_data.once((c for c in data.credentials if c["RunId"] in good), "RunId",
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
    columns = {"Keys": "Keys", "Active": "ActiveKeys", "Root keys": "RootKeys", "Rotation due": "RotationDueKeys",
               "Unused": "UnusedKeys", "Never used": "NeverUsedKeys", "2 active/user": "TwoActiveKeys",
               "No owner": "UnownedKeys", "Excepted": "ExceptedKeys"}
    assert printed and set(printed) == set(rows)
    for account, figures in printed.items():
        assert figures == {label: rows[account][column] for label, column in columns.items()}, account


def demo_first_run(demo: DataSet) -> DataSet:
    first = min(demo.runs, key=lambda r: r["TimeGenerated"])
    return DataSet("first-run", [k for k in demo.keys if k["RunId"] == first["RunId"]], [first], demo.cli_summary,
                   [c for c in demo.credentials if c["RunId"] == first["RunId"]])


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
    page = report.render_report(demo.keys, demo.runs, credential_rows=demo.credentials)
    from_report = [[cells[0], cells[1].replace("—", "-"), *cells[2:]] for cells in report_table(page,
                                                                                                 "long-lived-by-type")]
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
