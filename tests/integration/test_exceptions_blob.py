"""Exceptions without a release (EXCEPTIONS_SOURCE=blob): the timer function reads the exceptions blob of its own
storage at each run (Azurite over HTTPS, OAuth, the managed identity's storage token from the fake identity
endpoint), validated exactly as the file is. A broken or missing blob never stops collection: the run applies no
exception, and its record names the blob, the entry and the field (ExceptionsProblem), which the "run failed" alert
reports. ``python -m shared exceptions check`` checks the blob the settings name."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

import function_app
from shared.tools import cli
from shared.tools.demo import SeededOrganization, demo_exceptions, seed_organization
from tests.support.aws_proxy import AwsProxy
from tests.support.azure_fakes import (  # noqa: F401 - fixtures
    STORAGE_RESOURCE,
    AzureFakes,
    azure_fixture,
    azurite_url_fixture,
    fake_tls_fixture,
)
from tests.support.azurite import StorageTokenCredential
from tests.support.function_host import CONTRACT_SETTINGS, RULE_ID, run_function

RUNS_STREAM, KEYS_STREAM = "Custom-AwsIamKeyCollectorRuns", "Custom-AwsIamAccessKeys"


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed_organization(moto_url)


def configure(env: pytest.MonkeyPatch, azure: AzureFakes, org: SeededOrganization, out: Path, blob_uri: str,
              container: str) -> None:
    for name in CONTRACT_SETTINGS:
        env.delenv(name, raising=False)
    env.setattr(function_app, "CLIENT_OPTIONS", azure.options())
    env.setattr(cli, "CLIENT_OPTIONS", azure.options())
    azure.vault.secrets = org.secrets()
    for name, value in {
        "COLLECTOR_SCHEDULE": "0 0 */6 * * *", "KEY_VAULT_URL": f"{azure.vault.url}/",
        "AWS_ROLE_ARN": org.home_role_arn, "AWS_EXTERNAL_ID": org.external_id, "AWS_ACCOUNTS": "organization",
        "LOGS_INGESTION_ENDPOINT": azure.ingestion.url, "LOGS_INGESTION_RULE_ID": RULE_ID,
        "FILE_SINK_DIR": str(out), "AzureWebJobsStorage__blobServiceUri": blob_uri,
        "OUTBOX_CONTAINER": f"outbox-{uuid.uuid4().hex[:8]}",
        "EXCEPTIONS_SOURCE": "blob", "EXCEPTIONS_CONTAINER": container, "EXCEPTIONS_BLOB": "exceptions.json",
        "EXCEPTIONS_FILE": "does-not-exist.json",  # with the blob source the file is not read
    }.items():
        env.setenv(name, value)


def upload(azurite_url: str, azure: AzureFakes, container: str, document: object) -> None:
    """The reviewer's upload (not the product's client)."""
    client = ContainerClient(azurite_url, container, credential=StorageTokenCredential(),
                             connection_verify=azure.tls.ca_bundle)
    if not client.exists():
        client.create_container()
    client.upload_blob("exceptions.json", json.dumps(document) if not isinstance(document, bytes) else document,
                       overwrite=True)


def only_run(azure: AzureFakes) -> dict[str, object]:
    (run,) = azure.ingestion.rows(RUNS_STREAM)
    return run


def test_a_valid_blob_applies_its_exceptions_without_a_release(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, azurite_url: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    container = f"config-{uuid.uuid4().hex[:8]}"
    configure(monkeypatch, azure, org, tmp_path / "out", azurite_url, container)
    upload(azurite_url, azure, container, demo_exceptions(org, datetime.now(UTC)))
    run_function()
    run = only_run(azure)
    assert (run["Status"], run["ExceptionsProblem"]) == ("Succeeded", "")
    excepted = [k for k in azure.ingestion.rows(KEYS_STREAM) if k["Excepted"]]
    assert [k["UserName"] for k in excepted] == ["deploy-bot"]  # the demo's one exception in force
    assert STORAGE_RESOURCE in {r.query.get("resource") for r in azure.identity.requests}  # identity-based


@pytest.mark.parametrize(("document", "named"), [
    # the second entry's finding is unknown: the whole blob is refused, not just that entry
    (lambda org: {**demo_exceptions(org, datetime.now(UTC)),
                  "exceptions": [*demo_exceptions(org, datetime.now(UTC))["exceptions"][:1],
                                 {**demo_exceptions(org, datetime.now(UTC))["exceptions"][0], "finding": "Bogus"}]},
     ["entry 2", "finding: expected one of"]),
    (lambda org: b'{"version": 1, "exceptions": [', ["not valid JSON"]),
    (None, ["the blob does not exist"]),
])
def test_a_broken_blob_never_stops_collection_and_the_run_record_names_the_entry(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, azurite_url: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path, document: object, named: list[str],
) -> None:
    container = f"config-{uuid.uuid4().hex[:8]}"
    configure(monkeypatch, azure, org, tmp_path / "out", azurite_url, container)
    if document is not None:
        upload(azurite_url, azure, container, document(org))  # type: ignore[operator]
    run_function()
    run = only_run(azure)
    assert run["Status"] == "Succeeded"  # collection completed
    keys = azure.ingestion.rows(KEYS_STREAM)
    assert len(keys) == org.expected_keys
    assert not any(k["Excepted"] for k in keys)  # no exception applied: every finding stays visible
    problem = str(run["ExceptionsProblem"])
    assert problem.startswith(f"blob {container}/exceptions.json: no exception applied: ")
    for text in named:
        assert text in problem, problem


def test_exceptions_check_reads_the_blob_the_settings_name(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, azurite_url: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    container = f"config-{uuid.uuid4().hex[:8]}"
    configure(monkeypatch, azure, org, tmp_path / "out", azurite_url, container)
    document = demo_exceptions(org, datetime.now(UTC))
    upload(azurite_url, azure, container, document)
    assert cli.main(["exceptions", "check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"blob {container}/exceptions.json: valid - 2 exception(s), 1 in force, 1 expired")
    document["exceptions"][1]["expires"] = "not a date"
    upload(azurite_url, azure, container, document)
    assert cli.main(["exceptions", "check"]) == 2
    err = capsys.readouterr().err
    assert f"Invalid exceptions file blob {container}/exceptions.json" in err and "entry 2" in err
    assert "expires: expected" in err
