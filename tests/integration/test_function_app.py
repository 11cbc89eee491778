"""The timer function end to end: indexed as the Functions host indexes it, called with a timer request, with only
the contract's settings and the SDKs' own endpoint conventions (IDENTITY_ENDPOINT/IDENTITY_HEADER for the managed
identity, AWS_ENDPOINT_URL for boto3), against the Azure fakes over HTTPS and an emulated AWS organization."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import function_app
from shared.errors import CollectionFailedError, SettingsError
from shared.tools.demo import SeededOrganization, seed_organization
from tests.support.aws_proxy import AwsProxy, aws_error
from tests.support.azure_fakes import (  # noqa: F401 - fixtures
    DATA_COLLECTOR_DOMAIN,
    DCR_INGESTION_HOST,
    MONITOR_RESOURCE,
    VAULT_RESOURCE,
    WORKSPACE_ID,
    AzureFakes,
    azure_fixture,
    fake_tls_fixture,
)
from tests.support.function_host import AUDIENCE, CONTRACT_SETTINGS, FUNCTIONS, RULE_ID, run_function


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed_organization(moto_url)


@pytest.fixture
def env(azure: AzureFakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """A clean slate of app settings, and the test-only client options that trust the fakes' CA. FILE_SINK_DIR (and
    so the local outbox) is the test's own folder: no test replays another's kept records."""
    for name in CONTRACT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLLECTOR_SCHEDULE", "0 0 */6 * * *")
    monkeypatch.setenv("FILE_SINK_DIR", str(tmp_path / "out"))
    monkeypatch.setattr(function_app, "CLIENT_OPTIONS", azure.options())
    yield monkeypatch


def session_credentials(org: SeededOrganization) -> list[str]:
    """Every STS session the run obtained (moto runs in this process): key ids, secret keys, session tokens."""
    from moto.sts.models import sts_backends

    values: list[str] = []
    for account_id in org.accounts:
        for role in sts_backends[account_id]["aws"].assumed_roles:
            values += [role.access_key_id, role.secret_access_key, role.session_token]
    return values


def assert_no_secret_anywhere(secret_values: list[str], *texts: str) -> None:
    assert all(len(v) >= 16 for v in secret_values)
    for text in texts:
        for value in secret_values:
            assert value not in text, f"a secret value ({value[:4]}...) leaked"


def test_the_app_indexes_two_timer_functions_with_the_contract_bindings() -> None:
    functions = {f.get_function_name(): f for f in FUNCTIONS}
    assert list(functions) == ["collect_iam_keys", "notify_owners"]
    for name, schedule in (("collect_iam_keys", "%COLLECTOR_SCHEDULE%"), ("notify_owners", "%NOTIFY_SCHEDULE%")):
        (binding,) = json.loads(functions[name].get_function_json())["bindings"]
        assert binding == {"direction": "IN", "type": "timerTrigger", "name": "timer", "schedule": schedule,
                           "runOnStartup": False, "useMonitor": True}


def test_production_client_options_keep_every_check_on() -> None:
    assert function_app.CLIENT_OPTIONS.ca_bundle is None
    assert function_app.CLIENT_OPTIONS.verify_challenge_resource is True


def test_access_key_with_logs_ingestion(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], raw_log: list[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    azure.vault.secrets = org.secrets()
    env.setenv("KEY_VAULT_URL", f"{azure.vault.url}/")
    env.setenv("AWS_ROLE_ARN", org.home_role_arn)
    env.setenv("AWS_EXTERNAL_ID", org.external_id)
    env.setenv("AWS_ACCOUNTS", "organization")
    env.setenv("LOGS_INGESTION_ENDPOINT", azure.ingestion.url)
    env.setenv("LOGS_INGESTION_RULE_ID", RULE_ID)

    run_function()

    keys = azure.ingestion.rows("Custom-AwsIamAccessKeys")
    (run,) = azure.ingestion.rows("Custom-AwsIamKeyCollectorRuns")
    assert run["Status"] == "Succeeded" and run["AuthMode"] == "access_key" and run["Sink"] == "logs_ingestion"
    assert run["AccountsTotal"] == 3 and len(keys) == org.expected_keys == run["KeysCollected"]
    assert {r["AccountId"] for r in keys} == set(org.accounts) and {r["RunId"] for r in keys} == {run["RunId"]}
    assert {u.rule_id for u in azure.ingestion.uploads} == {RULE_ID}
    # through the data collection rule's own Logs Ingestion endpoint, as deployed (no data collection endpoint)
    assert {r.headers["host"] for r in azure.ingestion.requests} == {DCR_INGESTION_HOST}
    # Key Vault: exactly the two AWS secrets, once each; the token requests were for Key Vault and Azure Monitor only
    assert sorted(azure.vault.reads) == ["aws-access-key-id", "aws-secret-access-key"]
    assert sorted({r.query["resource"] for r in azure.identity.requests}) == [MONITOR_RESOURCE, VAULT_RESOURCE]
    assert next(c.access_key_id for c in aws.calls if c.action == "AssumeRole") == org.collector_key_id
    # one log line per account and one for the run
    messages = [r.getMessage() for r in caplog.records if r.name == "shared.collection.collector"]
    assert sum("access key(s) collected" in m for m in messages) == 3
    assert sum(m.startswith(f"Run {run['RunId']} Succeeded") for m in messages) == 1

    out = capsys.readouterr()
    assert sum("access key(s) collected" in line for line in raw_log) == 3  # the raw capture sees our lines
    sessions = session_credentials(org)
    assert len(sessions) >= 9  # home + two member sessions at least
    assert_no_secret_anywhere(
        [org.collector_secret_key, org.collector_key_id, azure.identity.identity_header, *azure.identity.tokens(),
         *sessions],
        caplog.text, out.out, out.err, "\n".join(raw_log), json.dumps(keys), json.dumps(run),
    )


def test_web_identity_with_data_collector(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], raw_log: list[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    azure.vault.secrets = {"log-analytics-workspace-key": azure.collector.shared_key}
    env.setenv("KEY_VAULT_URL", f"{azure.vault.url}/")
    env.setenv("AWS_AUTH_MODE", "web_identity")
    env.setenv("AWS_WEB_IDENTITY_AUDIENCE", AUDIENCE)
    env.setenv("AWS_ROLE_ARN", org.home_role_arn)
    env.setenv("AWS_ACCOUNTS", "organization")
    env.setenv("LOG_SINK", "data_collector")
    env.setenv("LOG_ANALYTICS_WORKSPACE_ID", WORKSPACE_ID)
    env.setenv("LOG_ANALYTICS_DOMAIN", DATA_COLLECTOR_DOMAIN)

    run_function()

    keys = azure.collector.rows("AwsIamAccessKeys")
    (run,) = azure.collector.rows("AwsIamKeyCollectorRuns")
    assert run["Status"] == "Succeeded" and run["AuthMode"] == "web_identity" and run["Sink"] == "data_collector"
    assert len(keys) == org.expected_keys == run["KeysCollected"] and azure.collector.bad_signatures == 0
    assert azure.vault.reads == ["log-analytics-workspace-key"]  # no AWS secret in this mode
    (web,) = [c for c in aws.calls if c.action == "AssumeRoleWithWebIdentity"]
    assert web.params["WebIdentityToken"] in azure.identity.issued[AUDIENCE]  # the managed identity's token
    assert web.access_key_id == "" and all(c.access_key_id != org.collector_key_id for c in aws.calls)
    assert any("retired on 2026-09-14" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)

    out = capsys.readouterr()
    assert any("retired on 2026-09-14" in line for line in raw_log)
    sessions = session_credentials(org)
    assert len(sessions) >= 9
    assert_no_secret_anywhere(
        [azure.collector.shared_key, azure.identity.identity_header, *azure.identity.tokens(), *sessions],
        caplog.text, out.out, out.err, "\n".join(raw_log), json.dumps(keys), json.dumps(run),
    )


def test_web_identity_with_logs_ingestion_needs_no_vault(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, env: pytest.MonkeyPatch
) -> None:
    env.setenv("AWS_AUTH_MODE", "web_identity")
    env.setenv("AWS_WEB_IDENTITY_AUDIENCE", AUDIENCE)
    env.setenv("AWS_ROLE_ARN", org.home_role_arn)
    env.setenv("LOGS_INGESTION_ENDPOINT", azure.ingestion.url)
    env.setenv("LOGS_INGESTION_RULE_ID", RULE_ID)
    env.setenv("AZURE_CLIENT_ID", "6f1d2c3b-4a59-4e68-9d7c-8b9a0f1e2d3c")

    run_function()

    (run,) = azure.ingestion.rows("Custom-AwsIamKeyCollectorRuns")
    assert run["Status"] == "Succeeded" and run["AccountsTotal"] == 1
    assert azure.vault.requests == []
    # one credential for the run, the user-assigned identity for every token
    assert {r.query.get("client_id") for r in azure.identity.requests} == {"6f1d2c3b-4a59-4e68-9d7c-8b9a0f1e2d3c"}
    assert sorted({r.query["resource"] for r in azure.identity.requests}) == [AUDIENCE, MONITOR_RESOURCE]


def test_a_failed_run_raises_so_the_platform_records_a_failure(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, env: pytest.MonkeyPatch
) -> None:
    aws.rules.append(lambda c: aws_error("AccessDenied", "no ExternalId match") if c.action == "AssumeRole" else None)
    azure.vault.secrets = org.secrets()
    env.setenv("KEY_VAULT_URL", f"{azure.vault.url}/")
    env.setenv("AWS_ROLE_ARN", org.home_role_arn)
    env.setenv("LOGS_INGESTION_ENDPOINT", azure.ingestion.url)
    env.setenv("LOGS_INGESTION_RULE_ID", RULE_ID)

    with pytest.raises(CollectionFailedError) as caught:
        run_function()

    (run,) = azure.ingestion.rows("Custom-AwsIamKeyCollectorRuns")  # the failure is still reported
    assert run["Status"] == "Failed" and azure.ingestion.rows("Custom-AwsIamAccessKeys") == []
    assert run["RunId"] in str(caught.value) and "AccessDenied" in str(caught.value)
    assert org.collector_secret_key not in str(caught.value) and org.collector_key_id not in str(caught.value)


def test_missing_secret_fails_the_invocation_with_a_clear_error(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, env: pytest.MonkeyPatch
) -> None:
    azure.vault.secrets = {"aws-access-key-id": org.collector_key_id}  # the secret key is missing
    env.setenv("KEY_VAULT_URL", f"{azure.vault.url}/")
    env.setenv("AWS_ROLE_ARN", org.home_role_arn)
    env.setenv("LOGS_INGESTION_ENDPOINT", azure.ingestion.url)
    env.setenv("LOGS_INGESTION_RULE_ID", RULE_ID)

    with pytest.raises(CollectionFailedError) as caught:
        run_function()

    (run,) = azure.ingestion.rows("Custom-AwsIamKeyCollectorRuns")
    (failure,) = json.loads(run["FailedAccounts"])
    assert "'aws-secret-access-key' not found" in failure["Error"] and azure.vault.url in failure["Error"]
    assert "'aws-secret-access-key' not found" in str(caught.value)
    assert org.collector_key_id not in str(caught.value) + run["FailedAccounts"]


def test_workspace_key_denied_keeps_the_run_record_with_the_reason(
    aws: AwsProxy, azure: AzureFakes, env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """data_collector's workspace key is read inside the run: a Key Vault refusal fails the delivery, not the run,
    so the run record is kept in the outbox and the invocation names the vault's role."""
    azure.vault.forbidden = True
    env.setenv("KEY_VAULT_URL", f"{azure.vault.url}/")
    env.setenv("AWS_AUTH_MODE", "web_identity")
    env.setenv("AWS_WEB_IDENTITY_AUDIENCE", AUDIENCE)
    env.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/AwsIamKeyCollectorHome")
    env.setenv("LOG_SINK", "data_collector")
    env.setenv("LOG_ANALYTICS_WORKSPACE_ID", WORKSPACE_ID)
    env.setenv("LOG_ANALYTICS_DOMAIN", DATA_COLLECTOR_DOMAIN)

    from shared.delivery.outbox import FileOutbox
    from shared.errors import DeliveryDeferredError

    with pytest.raises(DeliveryDeferredError, match="Key Vault Secrets User"):
        run_function()
    assert azure.collector.requests == []  # nothing was sent without the key
    kept = FileOutbox(tmp_path / "out" / "outbox").items()
    assert [i.table.table for i in kept] == ["AwsIamKeyCollectorRuns_CL"]


def test_invalid_settings_fail_the_invocation_naming_each_setting(azure: AzureFakes, env: pytest.MonkeyPatch) -> None:
    env.setenv("LOG_SINK", "data_collector")
    with pytest.raises(SettingsError) as caught:
        run_function()
    message = str(caught.value)
    for name in ("AWS_ROLE_ARN", "KEY_VAULT_URL", "LOG_ANALYTICS_WORKSPACE_ID"):
        assert name in message
    assert azure.identity.requests == []


def test_settings_example_names_only_contract_settings_with_placeholders() -> None:
    root = Path(__file__).resolve().parents[2]
    values: dict[str, str] = json.loads((root / "local.settings.json.example").read_text())["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"  # Azurite
    assert set(values) - {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"} <= set(CONTRACT_SETTINGS)
    for name in ("COLLECTOR_SCHEDULE", "NOTIFY_SCHEDULE", "KEY_VAULT_URL", "AWS_ROLE_ARN", "LOG_SINK"):
        assert values[name], name  # the host refuses to start with a timer's schedule setting unset
    assert values["NOTIFY_MODE"] == "dry_run"
    assert not any(name.endswith(("_KEY", "_SECRET_VALUE", "_TOKEN")) for name in values)  # secrets live in Key Vault


def test_funcignore_deploys_the_app_and_nothing_else() -> None:
    """The deployment package is the app (function_app.py, host.json, shared/, requirements.txt, exceptions.json,
    queries/): every other top-level entry of the repository is excluded, local settings and environments above
    all."""
    import fnmatch
    import subprocess

    root = Path(__file__).resolve().parents[2]
    patterns = [line.strip().rstrip("/") for line in (root / ".funcignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)

    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    top_level = {path.split("/")[0] for path in tracked.splitlines()} | {".venv", "local.settings.json", "out"}
    # exceptions.json: the reviewed exceptions file (EXCEPTIONS_FILE), read by the app at run time; queries/: the owner
    # digests run queries/owner-digest.kql.
    app = {"function_app.py", "host.json", "shared", "requirements.txt", "exceptions.json", "queries"}
    assert not {name for name in app if ignored(name)}
    assert {name for name in top_level - app if not ignored(name)} <= {"README.md"}


def test_the_time_budget_is_three_quarters_of_the_host_timeout() -> None:
    from datetime import timedelta

    from shared.collection.collector import time_budget_of

    host = json.loads((Path(function_app.__file__).parent / "host.json").read_text())
    assert host["functionTimeout"] == "00:30:00"  # Flex Consumption's default; the infra deploys Flex Consumption
    assert timedelta(minutes=22, seconds=30) == function_app.TIME_BUDGET
    assert time_budget_of("01:00:00") == timedelta(minutes=45)
    with pytest.raises(ValueError, match="functionTimeout: expected hh:mm:ss"):
        time_budget_of("30m")


def test_the_function_gives_the_collector_its_time_budget(
    aws: AwsProxy, org: SeededOrganization, azure: AzureFakes, env: pytest.MonkeyPatch
) -> None:
    """The Function passes TIME_BUDGET to the run: with a budget already spent at sign-in, no account is started, each
    is named, and the run still delivers its run record. (What a budget does is tested in tests/unit/test_collector.py,
    on a fake clock.)"""
    from datetime import timedelta

    env.setattr(function_app, "TIME_BUDGET", timedelta(0))  # spent by the time sign-in is done
    azure.vault.secrets = org.secrets()
    for name, value in {"KEY_VAULT_URL": f"{azure.vault.url}/", "AWS_ROLE_ARN": org.home_role_arn,
                        "AWS_EXTERNAL_ID": org.external_id, "AWS_ACCOUNTS": "organization",
                        "LOGS_INGESTION_ENDPOINT": azure.ingestion.url, "LOGS_INGESTION_RULE_ID": RULE_ID}.items():
        env.setenv(name, value)

    with pytest.raises(CollectionFailedError, match="not collected: the run used its time budget"):
        run_function()

    (run,) = azure.ingestion.rows("Custom-AwsIamKeyCollectorRuns")
    failures = json.loads(run["FailedAccounts"])  # as delivered: the contract's JSON string
    assert run["Status"] == "Failed" and sorted(f["AccountId"] for f in failures) == sorted(org.accounts)
    assert azure.ingestion.rows("Custom-AwsIamAccessKeys") == []
    assert "GetAccountAuthorizationDetails" not in [c.action for c in aws.calls]  # no account was started
