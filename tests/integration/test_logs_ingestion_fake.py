"""The Logs Ingestion fake is as strict as the service about the data collection rule declared in infra/: driven by
the product's own sink (and, for an oversized body, the SDK's client directly), it refuses an unknown rule id or
stream, an undeclared column, a value of the wrong type, and a body over 1 MiB, in the service's error shape — so
no test can pass by sending what Azure would refuse. The rule it knows is parsed from the Bicep (tests/support/dcr.py),
so a column added to shared/records.py but not to the rule fails every end-to-end test.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.monitor.ingestion import LogsIngestionClient

from shared.azure.identity import build_credential
from shared.delivery.logs_ingestion_sink import LogsIngestionSink
from shared.errors import SinkError
from shared.records import (
    CREDENTIALS_TABLE,
    DIGEST_RUNS_STREAM,
    DIGEST_RUNS_TABLE,
    KEYS_TABLE,
    RUNS_TABLE,
    CredentialRecord,
    DigestRunRecord,
    KeyRecord,
    RunRecord,
    columns,
)
from tests.support.azure_fakes import (  # noqa: F401 - fixtures
    MAX_BODY_BYTES,
    RULE_ID,
    AzureFakes,
    azure_fixture,
    fake_tls_fixture,
)
from tests.support.dcr import declared_rule

KEYS_STREAM = "Custom-AwsIamAccessKeys"
RUNS_STREAM = "Custom-AwsIamKeyCollectorRuns"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def key_record() -> KeyRecord:
    return KeyRecord(
        TimeGenerated=NOW, RunId="run-1", AccountId="123456789012", AccountName="Prod", UserName="alice",
        UserArn="arn:aws:iam::123456789012:user/alice", AccessKeyId="AKIA...WXYZ", AccessKeyFingerprint="f" * 16,
        Status="Active", CreatedAt=NOW, LastUsedAt=None, LastUsedRegion=None, LastUsedService=None,
        LastUsedAsOf=NOW, AgeDays=3,
        DaysSinceLastUse=None, NeverUsed=True, RotationDue=False, Unused=False, UserActiveKeyCount=1, IsRootKey=False,
    )


def run_record() -> RunRecord:
    return RunRecord(
        TimeGenerated=NOW, RunId="run-1", Status="Succeeded", AuthMode="access_key", Sink="logs_ingestion",
        AccountsTotal=1, AccountsSucceeded=1, AccountsFailed=0, FailedAccounts="[]", KeysCollected=1,
        DurationSeconds=0.5, CollectorVersion="test",
    )


def sink(azure: AzureFakes, rule_id: str = RULE_ID, keys_stream: str = KEYS_STREAM) -> LogsIngestionSink:
    return LogsIngestionSink(azure.ingestion.url, rule_id, keys_stream, RUNS_STREAM,
                             build_credential(None, azure.options()), azure.options())


def refused(azure: AzureFakes, rows: list[dict[str, Any]], **kwargs: str) -> str:
    ingestion = sink(azure, **kwargs)
    try:
        with pytest.raises(SinkError) as caught:
            ingestion.send(KEYS_TABLE, rows)
    finally:
        ingestion.close()
    assert azure.ingestion.uploads == [], "nothing refused may be kept"
    return str(caught.value)


def test_the_fake_knows_the_rule_declared_in_infra() -> None:
    rule = declared_rule()
    assert set(rule.streams) == {KEYS_STREAM, RUNS_STREAM, DIGEST_RUNS_STREAM, CREDENTIALS_TABLE.stream}
    assert rule.streams[CREDENTIALS_TABLE.stream].columns == dict(columns(CredentialRecord))
    assert rule.streams[CREDENTIALS_TABLE.stream].output_table == f"Custom-{CREDENTIALS_TABLE.table}"
    assert rule.streams[KEYS_STREAM].columns == dict(columns(KeyRecord))
    assert rule.streams[RUNS_STREAM].columns == dict(columns(RunRecord))
    assert rule.streams[DIGEST_RUNS_STREAM].columns == dict(columns(DigestRunRecord))
    assert rule.streams[DIGEST_RUNS_STREAM].output_table == f"Custom-{DIGEST_RUNS_TABLE.table}"
    assert rule.streams[KEYS_STREAM].output_table == f"Custom-{KEYS_TABLE.table}"


def test_the_records_the_collector_sends_are_accepted(azure: AzureFakes) -> None:
    ingestion = sink(azure)
    ingestion.send(KEYS_TABLE, [key_record().to_row()])
    ingestion.send(RUNS_TABLE, [run_record().to_row()])
    ingestion.close()
    assert azure.ingestion.rows(KEYS_STREAM) == [key_record().to_row()]
    assert azure.ingestion.rows(RUNS_STREAM) == [run_record().to_row()]


def test_unknown_rule_id_is_refused(azure: AzureFakes) -> None:
    message = refused(azure, [key_record().to_row()], rule_id="dcr-ffffffffffffffffffffffffffffffff")
    assert "HTTP 400 InvalidDataCollectionRuleId" in message and "dcr-ffffffffffffffffffffffffffffffff" in message


def test_unknown_stream_is_refused(azure: AzureFakes) -> None:
    message = refused(azure, [key_record().to_row()], keys_stream="Custom-AwsIamAccessKey")
    assert "HTTP 400 InvalidStream" in message and "Custom-AwsIamAccessKey" in message


def test_undeclared_column_is_refused(azure: AzureFakes) -> None:
    message = refused(azure, [{**key_record().to_row(), "CostCenter": "team-a"}])  # not a column of the table
    assert "HTTP 400 InvalidPayload" in message and "'CostCenter' is not declared" in message


@pytest.mark.parametrize(
    ("column", "value"),
    [("AgeDays", "3"), ("AgeDays", 3.5), ("AgeDays", True), ("NeverUsed", "true"), ("CreatedAt", "yesterday"),
     ("UserName", 7), ("AgeDays", 2**31)],
)
def test_value_of_the_wrong_type_is_refused(azure: AzureFakes, column: str, value: Any) -> None:
    message = refused(azure, [{**key_record().to_row(), column: value}])
    assert "HTTP 400 InvalidPayload" in message and f"column '{column}'" in message


def test_null_is_accepted_in_any_column(azure: AzureFakes) -> None:
    ingestion = sink(azure)
    row = key_record().to_row() | {"AgeDays": None, "CreatedAt": None, "NeverUsed": None}
    ingestion.send(KEYS_TABLE, [row])
    ingestion.close()
    assert azure.ingestion.rows(KEYS_STREAM) == [row]


def test_body_over_one_mebibyte_is_refused(azure: AzureFakes) -> None:
    """The SDK splits rows into chunks that stay under the limit; a body over it (sent as-is) gets the service's 413."""
    credential = build_credential(None, azure.options())
    client = LogsIngestionClient(azure.ingestion.url, credential, connection_verify=azure.tls.ca_bundle,
                                 credential_scopes=["https://monitor.azure.com/.default"], retry_total=0)
    body = gzip.compress(json.dumps([{"UserName": os.urandom(MAX_BODY_BYTES).hex()}]).encode())
    assert len(body) > MAX_BODY_BYTES
    with client, pytest.raises(HttpResponseError) as caught:
        client.upload(RULE_ID, KEYS_STREAM, io.BytesIO(body))
    assert caught.value.status_code == 413
    assert caught.value.error is not None and caught.value.error.code == "ContentLengthLimitExceeded"
    assert azure.ingestion.uploads == []


def test_a_rule_without_a_column_refuses_records_that_have_it(azure: AzureFakes) -> None:
    """A field added to the records but not to the rule in infra/ is caught by every test that delivers records."""
    rule = declared_rule()
    stream = rule.streams[KEYS_STREAM]
    narrower = {k: v for k, v in stream.columns.items() if k != "IsRootKey"}
    azure.ingestion.rule = replace(rule, streams={**rule.streams, KEYS_STREAM: replace(stream, columns=narrower)})
    message = refused(azure, [key_record().to_row()])
    assert "'IsRootKey' is not declared" in message
