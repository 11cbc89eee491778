"""The timer function with the blob outbox, through the production path: the platform's
``AzureWebJobsStorage__blobServiceUri`` -> settings -> ``compose`` builds the blob outbox -> Azurite (HTTPS, OAuth),
signed in with the managed identity's storage token. A typo in the setting's name, or a ``compose`` that never
builds the blob outbox, fails here: the records would land in ``FILE_SINK_DIR/outbox`` instead."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

import function_app
from shared.delivery.outbox import DEAD_LETTER, item_name, parse_item_name
from shared.errors import DeliveryDeferredError
from shared.records import KEYS_TABLE
from shared.tools.demo import SeededOrganization, seed_organization
from tests.support.aws_proxy import AwsProxy
from tests.support.azure_fakes import (  # noqa: F401 - fixtures
    STORAGE_RESOURCE,
    AzureFakes,
    Response,
    azure_fixture,
    azurite_url_fixture,
    fake_tls_fixture,
)
from tests.support.azurite import StorageTokenCredential
from tests.support.function_host import CONTRACT_SETTINGS, RULE_ID, run_function

KEYS_STREAM, RUNS_STREAM = "Custom-AwsIamAccessKeys", "Custom-AwsIamKeyCollectorRuns"


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed_organization(moto_url)


def container(azurite_url: str, azure: AzureFakes, name: str) -> ContainerClient:
    """The test's own view of the outbox container (not the product's client)."""
    return ContainerClient(azurite_url, name, credential=StorageTokenCredential(),
                           connection_verify=azure.tls.ca_bundle)


def configure(env: pytest.MonkeyPatch, azure: AzureFakes, org: SeededOrganization, out: Path, blob_uri: str,
              outbox: str) -> None:
    for name in CONTRACT_SETTINGS:
        env.delenv(name, raising=False)
    env.setattr(function_app, "CLIENT_OPTIONS", azure.options())
    azure.vault.secrets = org.secrets()
    for name, value in {
        "COLLECTOR_SCHEDULE": "0 0 */6 * * *", "KEY_VAULT_URL": f"{azure.vault.url}/",
        "AWS_ROLE_ARN": org.home_role_arn, "AWS_EXTERNAL_ID": org.external_id, "AWS_ACCOUNTS": "organization",
        "LOGS_INGESTION_ENDPOINT": azure.ingestion.url, "LOGS_INGESTION_RULE_ID": RULE_ID,
        "FILE_SINK_DIR": str(out),  # must stay unused: the outbox is the blob container
        "AzureWebJobsStorage__blobServiceUri": blob_uri, "OUTBOX_CONTAINER": outbox,
    }.items():
        env.setenv(name, value)


def test_the_function_keeps_undelivered_records_in_its_own_storage_and_delivers_them_next_run(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, azurite_url: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    outbox = f"outbox-{uuid.uuid4().hex[:12]}"
    configure(monkeypatch, azure, org, tmp_path / "out", azurite_url, outbox)
    azure.ingestion.reject = lambda stream, rows: Response.json(503, {"error": {"code": "ServiceUnavailable",
                                                                                "message": "down"}})
    with pytest.raises(DeliveryDeferredError) as info:
        run_function()
    assert f"kept in the outbox at {azurite_url}/{outbox}" in str(info.value)
    items = [parse_item_name(b.name) for b in container(azurite_url, azure, outbox).list_blobs()]
    records = org.expected_keys + org.expected_credentials  # the keys and the other long-lived credentials
    assert sum(i.rows for i in items if i) == records + 1 and None not in items  # every record, the run record
    assert not (tmp_path / "out" / "outbox").exists()  # not the local folder: the blob outbox was composed
    # the managed identity gave the storage token (identity-based: no key, no connection string)
    assert STORAGE_RESOURCE in {r.query.get("resource") for r in azure.identity.requests}

    azure.ingestion.reject = lambda stream, rows: None  # the sink is back
    run_function()
    assert list(container(azurite_url, azure, outbox).list_blobs()) == []
    runs = azure.ingestion.rows(RUNS_STREAM)
    keys = azure.ingestion.rows(KEYS_STREAM)
    assert len(runs) == 2
    first, second = runs  # replayed first, then this run's
    assert (first["RecordsDeferred"], second["RecordsReplayed"]) == (records, records + 1)
    for run in runs:
        mine = [k for k in keys if k["RunId"] == run["RunId"]]
        assert len({k["AccessKeyFingerprint"] for k in mine}) == len(mine) == org.expected_keys


def test_an_unreadable_item_in_the_functions_outbox_does_not_stop_the_run(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, azurite_url: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    outbox = f"outbox-{uuid.uuid4().hex[:12]}"
    configure(monkeypatch, azure, org, tmp_path / "out", azurite_url, outbox)
    raw = container(azurite_url, azure, outbox)
    raw.create_container()
    from datetime import UTC, datetime

    poison = item_name(KEYS_TABLE, 1, datetime.now(UTC))
    raw.upload_blob(poison, b'{"RunId": "r0", "UserName": "\xff\n')
    run_function()
    (run,) = azure.ingestion.rows(RUNS_STREAM)
    assert run["Status"] == "Succeeded" and json.loads(run["FailedAccounts"]) == []
    assert len(azure.ingestion.rows(KEYS_STREAM)) == org.expected_keys
    assert [b.name for b in raw.list_blobs()] == [f"{DEAD_LETTER}/{poison}"]  # moved aside, kept
