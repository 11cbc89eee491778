"""One deadline for the whole run, from host.json's functionTimeout: the timer function against a Logs Ingestion
endpoint that accepts and never answers ends before the host would kill it, with every record of the run (the run
record too) kept in the outbox; the next run delivers both runs' complete inventories."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

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


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed_organization(moto_url)


def invoke_within(limit: float) -> tuple[float, BaseException | None]:
    """Run the timer function in a thread, as the host would, and give up on it after ``limit`` seconds."""
    outcome: list[BaseException | None] = []

    def invocation() -> None:
        try:
            run_function()
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=invocation, daemon=True)
    thread.start()
    thread.join(limit)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"the invocation was still running after {limit:.0f} s: the host would kill it"
    return elapsed, outcome[0]


def test_a_sink_that_never_answers_cannot_make_the_host_kill_the_run(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    for name in CONTRACT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    azure.vault.secrets = org.secrets()
    for name, value in {"COLLECTOR_SCHEDULE": "0 0 */6 * * *", "KEY_VAULT_URL": f"{azure.vault.url}/",
                        "AWS_ROLE_ARN": org.home_role_arn, "AWS_EXTERNAL_ID": org.external_id,
                        "AWS_ACCOUNTS": "organization", "LOGS_INGESTION_ENDPOINT": azure.ingestion.url,
                        "LOGS_INGESTION_RULE_ID": RULE_ID, "FILE_SINK_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    # production's client options but for the fakes' CA and hosts: read timeouts of 60 s, 4 attempts per chunk
    monkeypatch.setattr(function_app, "CLIENT_OPTIONS", azure.options())
    monkeypatch.setattr(function_app, "FUNCTION_TIMEOUT", SHORT_TIMEOUT)
    azure.ingestion.reject = lambda stream, rows: Response(204, delay=300)  # accepts the request, never answers

    elapsed, error = invoke_within(SHORT_TIMEOUT.total_seconds())
    assert elapsed < SHORT_TIMEOUT.total_seconds() / 2 + 2, f"the run took {elapsed:.1f} s, past its deadline"
    assert isinstance(error, DeliveryDeferredError), repr(error)
    assert "kept in the outbox" in str(error) and "next run delivers them first" in str(error)
    assert azure.ingestion.uploads == []  # the sink took nothing
    outbox = FileOutbox(tmp_path / "outbox")
    kept: dict[str, list[dict[str, object]]] = {}
    for item in outbox.items():
        rows = [json.loads(line) for line in (outbox.directory / item.name).read_text().splitlines()]
        kept.setdefault(item.table.table, []).extend(rows)
    (first_run,) = kept["AwsIamKeyCollectorRuns_CL"]  # the run record was kept too, with the counts
    kept_keys, kept_others = kept["AwsIamAccessKeys_CL"], kept["AwsIamCredentials_CL"]
    assert first_run["Status"] == "Succeeded" and first_run["KeysCollected"] == org.expected_keys
    assert len(kept_keys) == org.expected_keys and len(kept_others) == org.expected_credentials  # complete
    assert first_run["RecordsDeferred"] == org.expected_keys + org.expected_credentials

    # the next run, with the sink back and the production timeout: both runs' complete inventories
    azure.ingestion.reject = lambda stream, rows: None
    monkeypatch.setattr(function_app, "FUNCTION_TIMEOUT", timedelta(minutes=30))
    run_function()
    runs = azure.ingestion.rows(RUNS_STREAM)
    keys = azure.ingestion.rows(KEYS_STREAM)
    assert len(runs) == 2 and runs[0]["RunId"] == first_run["RunId"]  # replayed first
    second_run = runs[1]
    assert second_run["RecordsReplayed"] == org.expected_keys + org.expected_credentials + 1
    for run in runs:
        mine = [k for k in keys if k["RunId"] == run["RunId"]]
        assert len(mine) == len({k["AccessKeyFingerprint"] for k in mine}) == org.expected_keys
    assert outbox.items() == []


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
