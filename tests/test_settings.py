"""Settings: contract names and defaults, and one clear error per bad value, before any network call."""

from __future__ import annotations

import pytest

from shared.errors import SettingsError
from shared.settings import AccountsScope, AuthMode, SinkKind, load_settings
from tests.support.settings_env import DCE, DCR, ROLE, VAULT, WORKSPACE, minimal


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    return info.value.problems


def test_defaults_are_the_contracts() -> None:
    s = load_settings(minimal())
    assert s.aws_auth_mode is AuthMode.ACCESS_KEY
    assert s.aws_access_key_id_secret == "aws-access-key-id"
    assert s.aws_secret_access_key_secret == "aws-secret-access-key"
    assert s.aws_accounts is AccountsScope.HOME and s.aws_account_ids == ()
    assert s.aws_member_role_name == "AwsIamKeyCollector"
    assert s.aws_region == "us-east-1"
    assert s.log_sink is SinkKind.LOGS_INGESTION
    assert s.logs_ingestion_keys_stream == "Custom-AwsIamAccessKeys"
    assert s.logs_ingestion_runs_stream == "Custom-AwsIamKeyCollectorRuns"
    assert s.log_analytics_workspace_key_secret == "log-analytics-workspace-key"
    assert s.log_analytics_domain == "ods.opinsights.azure.com"
    assert s.file_sink_dir == "out"
    assert (s.key_rotation_days, s.key_unused_days) == (90, 45)
    assert s.aws_external_id is None and s.azure_client_id is None
    assert s.home_account_id == "111122223333" and s.aws_partition == "aws"


def test_settings_are_frozen() -> None:
    s = load_settings(minimal())
    with pytest.raises(AttributeError):
        s.aws_region = "eu-west-1"  # type: ignore[misc]


def test_blank_values_take_the_default() -> None:
    assert load_settings(minimal(AWS_REGION="  ", KEY_ROTATION_DAYS="")).aws_region == "us-east-1"


def test_web_identity_with_logs_ingestion_needs_no_vault_and_no_secret() -> None:
    env = {"AWS_AUTH_MODE": "web_identity", "AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_AUDIENCE": "api://AzureADTokenExchange",
           "LOGS_INGESTION_ENDPOINT": DCE, "LOGS_INGESTION_RULE_ID": DCR}
    s = load_settings(env)
    assert s.key_vault_url is None
    assert s.secret_names_needed() == ()


def test_secrets_needed_follow_the_modes() -> None:
    assert load_settings(minimal()).secret_names_needed() == ("aws-access-key-id", "aws-secret-access-key")
    s = load_settings({"AWS_AUTH_MODE": "web_identity", "AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_AUDIENCE": "api://x",
                       "LOG_SINK": "data_collector", "LOG_ANALYTICS_WORKSPACE_ID": WORKSPACE, "KEY_VAULT_URL": VAULT})
    assert s.secret_names_needed() == ("log-analytics-workspace-key",)


def test_account_list_is_parsed_and_deduplicated_in_order() -> None:
    s = load_settings(minimal(AWS_ACCOUNTS=" 222233334444, 111122223333,222233334444 "))
    assert s.aws_accounts is AccountsScope.LIST
    assert s.aws_account_ids == ("222233334444", "111122223333")


def test_organization_scope() -> None:
    assert load_settings(minimal(AWS_ACCOUNTS="organization")).aws_accounts is AccountsScope.ORGANIZATION


def test_partition_follows_the_role_arn() -> None:
    s = load_settings(minimal(AWS_ROLE_ARN="arn:aws-us-gov:iam::111122223333:role/path/Collector"))
    assert s.aws_partition == "aws-us-gov"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AWS_ROLE_ARN", "arn:aws:iam::12345:role/X", "IAM role ARN"),
        ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:user/bob", "IAM role ARN"),
        ("AWS_AUTH_MODE", "password", "access_key, web_identity"),
        ("LOG_SINK", "splunk", "logs_ingestion, data_collector, file"),
        ("AWS_ACCOUNTS", "1234,111122223333", "12-digit"),
        ("AWS_ACCOUNTS", "everything", "12-digit"),
        ("AWS_EXTERNAL_ID", "x", "2 to 1224"),
        ("AWS_EXTERNAL_ID", "has space", "2 to 1224"),
        ("AWS_ACCESS_KEY_ID_SECRET", "bad_name!", "Key Vault secret name"),
        ("AWS_SECRET_ACCESS_KEY_SECRET", "x" * 128, "Key Vault secret name"),
        ("LOG_ANALYTICS_WORKSPACE_KEY_SECRET", "a.b", "Key Vault secret name"),
        ("AWS_MEMBER_ROLE_NAME", "role/with/slash", "IAM role name"),
        ("AWS_REGION", "Europe", "AWS region"),
        ("AZURE_CLIENT_ID", "not-a-guid", "GUID"),
        ("KEY_VAULT_URL", "http://kv.vault.azure.net/", "Key Vault URL"),
        ("KEY_VAULT_URL", "https://kv.vault.azure.net/secrets/x", "Key Vault URL"),
        ("LOGS_INGESTION_ENDPOINT", "ftp://dce.example.com", "https URL"),
        ("LOGS_INGESTION_ENDPOINT", "https://user:pw@dce.example.com", "https URL"),
        ("LOGS_INGESTION_RULE_ID", "dcr-xyz", "dcr- followed by 32 hex"),
        ("LOGS_INGESTION_KEYS_STREAM", "AwsIamAccessKeys", "Custom-"),
        ("LOGS_INGESTION_RUNS_STREAM", "Custom-bad stream", "Custom-"),
        ("LOG_ANALYTICS_WORKSPACE_ID", "workspace", "GUID"),
        ("LOG_ANALYTICS_DOMAIN", "not a domain", "DNS domain"),
        ("KEY_ROTATION_DAYS", "0", "from 1 to 3650"),
        ("KEY_ROTATION_DAYS", "ninety", "from 1 to 3650"),
        ("KEY_UNUSED_DAYS", "-5", "from 1 to 3650"),
        ("KEY_UNUSED_DAYS", "99999", "from 1 to 3650"),
        ("COLLECTOR_ACCOUNT_CONCURRENCY", "0", "from 1 to 64"),
        ("COLLECTOR_IAM_CONCURRENCY", "100", "from 1 to 32"),
        ("COLLECTOR_IAM_MAX_CALLS_PER_SECOND", "-1", "from 0 to 1000"),
        ("COLLECTOR_IAM_MAX_CALLS_PER_SECOND", "2.5", "from 0 to 1000"),
        ("AWS_WEB_IDENTITY_AUDIENCE", "api://x/.default", "application ID URI"),
    ],
)
def test_every_bad_setting_is_named_with_what_is_expected(name: str, value: str, expected: str) -> None:
    found = problems(minimal(**{name: value}))
    assert len(found) == 1, found
    assert found[0].startswith(f"{name}: ")
    assert expected in found[0]


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, ["AWS_ROLE_ARN", "KEY_VAULT_URL", "LOGS_INGESTION_ENDPOINT", "LOGS_INGESTION_RULE_ID"]),
        ({"AWS_ROLE_ARN": ROLE, "AWS_AUTH_MODE": "web_identity", "LOG_SINK": "file"}, ["AWS_WEB_IDENTITY_AUDIENCE"]),
        ({"AWS_ROLE_ARN": ROLE, "AWS_AUTH_MODE": "web_identity", "AWS_WEB_IDENTITY_AUDIENCE": "api://a",
          "LOG_SINK": "data_collector"}, ["KEY_VAULT_URL", "LOG_ANALYTICS_WORKSPACE_ID"]),
    ],
)
def test_missing_required_settings_are_all_reported_at_once(env: dict[str, str], missing: list[str]) -> None:
    found = problems(env)
    assert [p.split(":")[0] for p in found] == missing
    assert all("required" in p for p in found)


def test_error_message_is_one_readable_block() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(minimal(AWS_REGION="Mars", KEY_UNUSED_DAYS="x"))
    text = str(info.value)
    assert text.startswith("Invalid collector settings")
    assert "AWS_REGION: expected an AWS region name such as us-east-1, got 'Mars'" in text
    assert "KEY_UNUSED_DAYS" in text


def test_long_bad_values_are_shortened_in_the_message() -> None:
    found = problems(minimal(AWS_REGION="x" * 500))
    assert len(found[0]) < 200
