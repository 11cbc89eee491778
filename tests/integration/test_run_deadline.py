"""One deadline for the whole run, from host.json's functionTimeout: the timer function against a Logs Ingestion
endpoint that accepts and never answers ends before the host would kill it, with every record of the run (the run
record too) kept in the outbox, no account blamed and no thread left behind; the next run delivers both runs'
complete inventories."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import function_app
from shared.delivery.outbox import FileOutbox
from shared.errors import DeliveryDeferredError
from shared.tools.demo import SeededOrganization, seed_organization
from tests.support.aws_proxy import AwsProxy
from tests.support.azure_fakes import AzureFakes, Response, azure_fixture, fake_tls_fixture  # noqa: F401 - fixtures
from tests.support.function_host import CONTRACT_SETTINGS, RULE_ID, run_function

KEYS_STREAM, RUNS_STREAM = "Custom-AwsIamAccessKeys", "Custom-AwsIamKeyCollectorRuns"
SHORT_TIMEOUT = timedelta(seconds=24)  # the run's deadline: 12 s (half of a short functionTimeout), 2.4 s reserve
# The production case, scaled down: functionTimeout 2 minutes is a 90 s run (18 s reserve) with azure-core's 60 s read
# timeout; here a 24 s functionTimeout is a 12 s run (2.4 s reserve), so the read timeout is scaled the same way.
SCALE = 12 / 90
PRODUCTION_READ_TIMEOUT = 60


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed_organization(moto_url)


def invoke_within(limit: float) -> tuple[float, BaseException | None, float]:
    """Run the timer function in a thread, as the host would, and give up on it after ``limit`` seconds. Returns how
    long it took, what it raised, and the monotonic time at which it returned."""
    outcome: list[BaseException | None] = []
    returned: list[float] = []

    def invocation() -> None:
        try:
            run_function()
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)
        returned.append(time.monotonic())

    started = time.monotonic()
    thread = threading.Thread(target=invocation, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the invocation was still running after {limit:.0f} s: the host would kill it"
    return returned[0] - started, outcome[0], returned[0]


def test_a_key_vault_failure_for_the_workspace_key_still_yields_the_run_record(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """data_collector reads its workspace key from Key Vault; when that fails, the run still collects, and its
    records and its run record wait in the outbox with the reason (before: the invocation failed before the run)."""
    from tests.support.azure_fakes import DATA_COLLECTOR_DOMAIN, WORKSPACE_ID

    for name in CONTRACT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    azure.vault.secrets = org.secrets()  # the AWS key pair, but no workspace key: SecretNotFound
    for name, value in {"COLLECTOR_SCHEDULE": "0 0 */6 * * *", "KEY_VAULT_URL": f"{azure.vault.url}/",
                        "AWS_ROLE_ARN": org.home_role_arn, "AWS_EXTERNAL_ID": org.external_id,
                        "LOG_SINK": "data_collector", "LOG_ANALYTICS_WORKSPACE_ID": WORKSPACE_ID,
                        "LOG_ANALYTICS_DOMAIN": DATA_COLLECTOR_DOMAIN, "FILE_SINK_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(function_app, "CLIENT_OPTIONS", azure.options())
    with pytest.raises(DeliveryDeferredError) as info:
        run_function()
    assert "log-analytics-workspace-key" in str(info.value) and "Key Vault" in str(info.value)
    outbox = FileOutbox(tmp_path / "outbox")
    kept = {item.table.table: item for item in outbox.items()}
    runs = [json.loads(line) for line in (outbox.directory / kept["AwsIamKeyCollectorRuns_CL"].name).read_text()
            .splitlines()]
    (run,) = runs
    # every record: the keys and the other credentials (the home account holds a Git credential)
    assert run["Status"] == "Succeeded" and run["KeysCollected"] > 0
    assert run["RecordsDeferred"] == run["KeysCollected"] + run["CredentialsCollected"]
    assert azure.collector.posts == []


def test_a_sink_that_never_answers_cannot_make_the_host_kill_the_run(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """Issue 24's done-when: an endpoint that accepts and never answers. The hung upload trips the breaker long before
    the deadline, every account is read and kept (none is reported failed, the run record names the sink and counts
    what it deferred), the invocation returns inside its time with every thread of the run ended, no AWS call comes
    after it returned, and the next run delivers both runs' complete inventories."""
    import dataclasses

    for name in CONTRACT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    azure.vault.secrets = org.secrets()
    for name, value in {"COLLECTOR_SCHEDULE": "0 0 */6 * * *", "KEY_VAULT_URL": f"{azure.vault.url}/",
                        "AWS_ROLE_ARN": org.home_role_arn, "AWS_EXTERNAL_ID": org.external_id,
                        "AWS_ACCOUNTS": "organization", "LOGS_INGESTION_ENDPOINT": azure.ingestion.url,
                        "LOGS_INGESTION_RULE_ID": RULE_ID, "FILE_SINK_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    options = dataclasses.replace(azure.options(), azure_read_timeout=PRODUCTION_READ_TIMEOUT * SCALE)
    monkeypatch.setattr(function_app, "CLIENT_OPTIONS", options)
    monkeypatch.setattr(function_app, "FUNCTION_TIMEOUT", SHORT_TIMEOUT)
    azure.ingestion.reject = lambda stream, rows: Response(204, delay=300)  # accepts the request, never answers
    before = set(threading.enumerate())

    elapsed, error, returned_at = invoke_within(SHORT_TIMEOUT.total_seconds())
    outlived = [t.name for t in set(threading.enumerate()) - before
                if t.is_alive() and t.name.startswith(("account", "report-", "iam-"))]
    time.sleep(1.0)  # anything the run left behind would call AWS now
    assert outlived == [], f"threads of the run outlived the invocation: {outlived}"
    late = [c.action for c in aws.calls if c.at > returned_at]
    assert late == [], f"AWS calls after the invocation returned: {late}"
    assert elapsed < SHORT_TIMEOUT.total_seconds() / 2, f"the run took {elapsed:.1f} s, past its deadline"
    assert isinstance(error, DeliveryDeferredError), repr(error)
    assert "logs_ingestion sink unavailable" in str(error) and "kept in the outbox" in str(error)

    kept = outbox_rows(FileOutbox(tmp_path / "outbox"))
    (first_run,) = kept["AwsIamKeyCollectorRuns_CL"]
    kept_keys, kept_others = kept["AwsIamAccessKeys_CL"], kept["AwsIamCredentials_CL"]
    assert json.loads(first_run["FailedAccounts"]) == [], "accounts were blamed for the sink"
    assert (first_run["Status"], first_run["Sink"], first_run["AccountsTotal"]) == ("Succeeded", "logs_ingestion", 3)
    assert first_run["KeysCollected"] == len(kept_keys) == org.expected_keys  # complete: every key and credential
    assert first_run["CredentialsCollected"] == len(kept_others) == org.expected_credentials
    assert first_run["RecordsDeferred"] == org.expected_keys + org.expected_credentials

    azure.ingestion.reject = lambda stream, rows: None  # the sink is back: the next run delivers both runs
    monkeypatch.setattr(function_app, "FUNCTION_TIMEOUT", timedelta(minutes=30))
    run_function()
    runs = azure.ingestion.rows(RUNS_STREAM)
    keys = azure.ingestion.rows(KEYS_STREAM)
    assert len(runs) == 2 and runs[0]["RunId"] == first_run["RunId"]  # replayed first
    assert runs[1]["RecordsReplayed"] == org.expected_keys + org.expected_credentials + 1
    assert json.loads(runs[1]["FailedAccounts"]) == []
    for run in runs:
        mine = [k for k in keys if k["RunId"] == run["RunId"]]
        assert len(mine) == len({k["AccessKeyFingerprint"] for k in mine}) == org.expected_keys


def outbox_rows(outbox: FileOutbox) -> dict[str, list[dict[str, Any]]]:
    """The rows waiting in a file outbox by table (every collector table, empty when none), read as the outbox reads
    them."""
    from shared.delivery.outbox import decode_rows
    from shared.records import TABLES

    found: dict[str, list[dict[str, Any]]] = {table.table: [] for table in TABLES}
    for item in outbox.items():
        found[item.table.table].extend(decode_rows((outbox.directory / item.name).read_bytes()))
    return found


def test_at_the_deadline_accounts_still_reading_stop_calling_aws(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """IAM answers slowly (0.8 s a call, one call at a time per account): no account finishes reading before the
    run's deadline. Each is failed for its own deadline (an AWS-side reason), nothing of it is sent, and no AWS call
    arrives after the invocation returned: the run's stop signal refuses every call (retries too) from the deadline."""
    from tests.support.aws_proxy import Call

    for name in CONTRACT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    azure.vault.secrets = org.secrets()
    for name, value in {"COLLECTOR_SCHEDULE": "0 0 */6 * * *", "KEY_VAULT_URL": f"{azure.vault.url}/",
                        "AWS_ROLE_ARN": org.home_role_arn, "AWS_EXTERNAL_ID": org.external_id,
                        "AWS_ACCOUNTS": "organization", "LOGS_INGESTION_ENDPOINT": azure.ingestion.url,
                        "LOGS_INGESTION_RULE_ID": RULE_ID, "FILE_SINK_DIR": str(tmp_path),
                        "COLLECTOR_IAM_CONCURRENCY": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(function_app, "CLIENT_OPTIONS", azure.options())
    monkeypatch.setattr(function_app, "FUNCTION_TIMEOUT", timedelta(seconds=10))  # a 5 s run, 1 s reserve

    def slow_iam(call: Call) -> None:
        if call.host.startswith("iam.") or call.action.startswith(("List", "Get", "Generate")):
            time.sleep(0.8)  # then answered normally

    aws.rules.append(slow_iam)
    elapsed, error, returned_at = invoke_within(10)
    calls_at_return = len(aws.calls)
    time.sleep(2.0)  # a thread the run left behind would call AWS now (its retries too)
    late = [c.action for c in aws.calls[calls_at_return:] if c.at > returned_at]
    assert late == [], f"AWS calls after the invocation returned: {late}"
    assert elapsed < 6, f"the run took {elapsed:.1f} s past its 5 s deadline"
    # the run record comes in the reserve, when no delivery starts any more: kept, for the next run to deliver first
    assert isinstance(error, DeliveryDeferredError), repr(error)
    kept = outbox_rows(FileOutbox(tmp_path / "outbox"))
    (run,) = kept["AwsIamKeyCollectorRuns_CL"]
    assert run["Status"] == "Failed" and kept["AwsIamAccessKeys_CL"] == kept["AwsIamCredentials_CL"] == []
    failures = json.loads(run["FailedAccounts"])
    assert sorted(f["AccountId"] for f in failures) == sorted(org.accounts)
    assert all("not finished reading by the run's deadline" in f["Error"] for f in failures)
    assert azure.ingestion.rows(KEYS_STREAM) == []  # no partial account
