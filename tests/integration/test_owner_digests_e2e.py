"""The owner-digest function end to end, as the host runs it: its rows from the Log Analytics query API (the query
executed over the demo's records), its e-mail through Azure Communication Services, its run record through the Logs
Ingestion API, every one a local HTTPS fake reached by the real SDK clients with a managed-identity token
(tests/support/azure_fakes.py), under the production host names (api.loganalytics.io, <name>.<geo>.communication.
azure.com, the rule's own ingestion endpoint), TLS verified."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import function_app
from shared.config.transport import ClientOptions
from shared.findings.catalogue import Thresholds
from shared.insight.snapshot import read_jsonl
from shared.notify.digest import build_digests, owner_digest_query, rows_from_query
from shared.notify.run import DigestRunFailedError
from shared.records import KEYS_TABLE, RUNS_TABLE
from tests.support.azure_fakes import (  # noqa: F401 - fixtures
    DCR_INGESTION_HOST,
    FAKE_HOSTS,
    WORKSPACE_ID,
    AzureFakes,
    Response,
    azure_fixture,
    fake_tls_fixture,
)
from tests.support.function_host import CONTRACT_SETTINGS, RULE_ID, run_notify_function
from tests.support.kql_engine import Workspace
from tests.support.notify_fakes import (  # noqa: F401 - fixtures
    COMMUNICATION_RESOURCE,
    LOG_ANALYTICS_RESOURCE,
    NotifyFakes,
    notify_fakes_fixture,
)

ROOT = Path(__file__).resolve().parents[2]
FALLBACK = "security-team@example.com"
SENDER = "DoNotReply@0a1b2c3d-4e5f.azurecomm.net"
DIGEST_RUNS_STREAM = "Custom-AwsIamOwnerDigestRuns"


@pytest.fixture(scope="module")
def demo_records(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], list[dict]]:
    out = tmp_path_factory.mktemp("demo") / "out"
    completed = subprocess.run([sys.executable, "-m", "shared", "demo", "--out", str(out)], cwd=ROOT,
                               capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return read_jsonl(out / KEYS_TABLE.file_name), read_jsonl(out / RUNS_TABLE.file_name)


@pytest.fixture
def env(azure: AzureFakes, notify_fakes: NotifyFakes, demo_records: tuple[list[dict], list[dict]],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """The app settings the Bicep sets (send mode), the workspace holding the demo's records, and the test-only
    options: the fakes' CA, and short waits (retry backoff, status polling) so that a failing endpoint costs little."""
    for name in (*CONTRACT_SETTINGS, "NOTIFY_MODE"):
        monkeypatch.delenv(name, raising=False)
    settings = {"NOTIFY_SCHEDULE": "0 0 7 * * *", "NOTIFY_MODE": "send", "NOTIFY_WORKSPACE_ID": WORKSPACE_ID,
                "NOTIFY_EMAIL_ENDPOINT": notify_fakes.email.url, "NOTIFY_SENDER": SENDER,
                "NOTIFY_FALLBACK_RECIPIENT": FALLBACK, "LOGS_INGESTION_ENDPOINT": azure.ingestion.url,
                "LOGS_INGESTION_RULE_ID": RULE_ID, "FILE_SINK_DIR": str(tmp_path / "out")}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    notify_fakes.query.keys, notify_fakes.query.runs = demo_records
    monkeypatch.setattr(function_app, "CLIENT_OPTIONS", ClientOptions(
        ca_bundle=azure.tls.ca_bundle, endpoints=FAKE_HOSTS, azure_retry_backoff_factor=0.05))
    yield monkeypatch


def expected_digests(demo_records: tuple[list[dict], list[dict]]) -> dict[str, list[tuple[str, ...]]]:
    """What the query selects over the demo's records, per recipient (the fallback for keys without an owner)."""
    workspace = Workspace(*demo_records)
    try:
        rows = workspace.query(owner_digest_query(Thresholds(90, 45)))
    finally:
        workspace.close()
    digests = build_digests(rows_from_query(rows), FALLBACK)
    return {d.recipient: sorted(r.key for r in d.rows) for d in digests.digests}


def test_send_mails_one_digest_per_owner_with_a_managed_identity_token(
    env: pytest.MonkeyPatch, azure: AzureFakes, notify_fakes: NotifyFakes,
    demo_records: tuple[list[dict], list[dict]], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    run_notify_function()

    expected = expected_digests(demo_records)
    mails = notify_fakes.email.sent
    assert sorted(to for m in mails for to in m.to) == sorted(expected)  # one e-mail per owner, and the fallback
    assert all(len(m.to) == 1 and m.sender == SENDER for m in mails)
    assert all(azure.identity.is_valid(m.token, COMMUNICATION_RESOURCE + "/") or
               azure.identity.is_valid(m.token, COMMUNICATION_RESOURCE) for m in mails)
    assert {r.headers["host"] for r in notify_fakes.email.requests} == {notify_fakes.email.url.split("//")[1]}
    for mail in mails:  # each lists exactly its keys: account, user, masked key, finding
        (to,) = mail.to
        for account, user, key, finding in expected[to]:
            assert all(f"{part}" in mail.plain_text for part in (account, user, key, finding)), (to, user)
        assert mail.plain_text.count("Finding: ") == len(expected[to])
    # the rows came from the workspace through the query API, with a token for it
    (query,) = notify_fakes.query.queries
    assert "let rotationDays = 90;" in query and "LatestKeys" in query
    assert any(r.query.get("resource") == LOG_ANALYTICS_RESOURCE for r in azure.identity.requests)
    # the run record, through the rule's own Logs Ingestion endpoint
    (record,) = azure.ingestion.rows(DIGEST_RUNS_STREAM)
    assert (record["Status"], record["Mode"], record["DigestsBuilt"], record["DigestsSent"],
            record["DigestsNotSent"]) == ("Succeeded", "send", len(expected), len(expected), 0)
    assert {r.headers["host"] for r in azure.ingestion.requests} == {DCR_INGESTION_HOST}
    # never a full key id, a token or the identity header, in a mail or the log
    full_ids = [k["AccessKeyId"] for k in demo_records[0] if k["AccessKeyId"] and "..." not in k["AccessKeyId"]]
    texts = [m.plain_text + m.html for m in mails] + [caplog.text, json.dumps(record)]
    for secret in (*full_ids, *azure.identity.tokens(), azure.identity.identity_header):
        assert not any(secret in text for text in texts)


def test_a_failing_email_endpoint_leaves_a_record_of_the_digests_not_sent(
    env: pytest.MonkeyPatch, azure: AzureFakes, notify_fakes: NotifyFakes,
    demo_records: tuple[list[dict], list[dict]],
) -> None:
    notify_fakes.email.faults.add(*[Response.json(500, {"error": {"code": "InternalError", "message": "down"}})] * 200)
    with pytest.raises(DigestRunFailedError, match="not sent"):
        run_notify_function()
    expected = expected_digests(demo_records)
    (record,) = azure.ingestion.rows(DIGEST_RUNS_STREAM)
    assert (record["Status"], record["DigestsBuilt"], record["DigestsSent"], record["DigestsNotSent"]) == (
        "Failed", len(expected), 0, len(expected))
    errors = json.loads(record["Errors"])
    assert sorted(e["Recipient"] for e in errors) == sorted(expected)
    assert all("HTTP 500" in e["Error"] and "NOTIFY_EMAIL_ENDPOINT" in e["Error"] for e in errors)
    # retried, bounded: the SDK's retries per digest (RETRY_TOTAL), not more
    posts = [r for r in notify_fakes.email.requests if r.method == "POST"]
    assert len(posts) == len(expected) * 4


def test_one_recipient_failing_is_a_partial_run(
    env: pytest.MonkeyPatch, azure: AzureFakes, notify_fakes: NotifyFakes,
    demo_records: tuple[list[dict], list[dict]],
) -> None:
    notify_fakes.email.fail_for = {FALLBACK}
    run_notify_function()
    (record,) = azure.ingestion.rows(DIGEST_RUNS_STREAM)
    assert (record["Status"], record["DigestsNotSent"]) == ("PartiallySucceeded", 1)
    (error,) = json.loads(record["Errors"])
    assert error["Recipient"] == FALLBACK and "Failed" in error["Error"]


def test_a_workspace_that_refuses_the_identity_is_named_in_the_record(
    env: pytest.MonkeyPatch, azure: AzureFakes, notify_fakes: NotifyFakes,
) -> None:
    notify_fakes.query.faults.add(Response.json(403, {"error": {"code": "InsufficientAccessError",
                                                                "message": "The provided credentials have "
                                                                           "insufficient access"}}))
    with pytest.raises(DigestRunFailedError):
        run_notify_function()
    (record,) = azure.ingestion.rows(DIGEST_RUNS_STREAM)
    assert record["Status"] == "Failed" and record["DigestsBuilt"] == 0 and notify_fakes.email.sent == []
    (error,) = json.loads(record["Errors"])
    assert "HTTP 403" in error["Error"] and "Log Analytics Reader" in error["Error"]


def test_dry_run_in_azure_logs_the_digests_and_sends_nothing(
    env: pytest.MonkeyPatch, azure: AzureFakes, notify_fakes: NotifyFakes, tmp_path: Path,
    demo_records: tuple[list[dict], list[dict]], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    env.setenv("NOTIFY_MODE", "dry_run")
    run_notify_function()
    expected = expected_digests(demo_records)
    assert notify_fakes.email.sent == [] and not (tmp_path / "out" / "digests").exists()  # in Azure: the log only
    logged = [r.getMessage() for r in caplog.records if "Owner digest (dry_run, not sent) to" in r.getMessage()]
    assert sorted(m.split(" to ", 1)[1].split(":", 1)[0] for m in logged) == sorted(expected)
    (record,) = azure.ingestion.rows(DIGEST_RUNS_STREAM)
    assert (record["Mode"], record["DigestsSent"]) == ("dry_run", len(expected))


def test_off_runs_nothing(env: pytest.MonkeyPatch, azure: AzureFakes, notify_fakes: NotifyFakes) -> None:
    env.setenv("NOTIFY_MODE", "off")
    run_notify_function()
    assert notify_fakes.query.requests == [] and notify_fakes.email.requests == []
    assert azure.ingestion.rows(DIGEST_RUNS_STREAM) == []
