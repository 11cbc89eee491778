"""Settings: contract names and defaults, and one clear error per bad value, before any network call."""

from __future__ import annotations

import pytest

from shared.config.endpoints import EndpointPolicy
from shared.config.modes import (
    AccessKeyAuth,
    AccountsScope,
    AuthMode,
    DataCollectorSettings,
    LogsIngestionSettings,
    SinkKind,
)
from shared.config.settings import load_settings
from shared.errors import SettingsError
from tests.support.settings_env import DCE, DCR, ROLE, VAULT, WORKSPACE, minimal


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    return info.value.problems


def test_defaults_are_the_contracts() -> None:
    s = load_settings(minimal())
    assert isinstance(s.aws_auth, AccessKeyAuth) and isinstance(s.sink, LogsIngestionSettings)  # the typed modes
    assert s.aws_auth.mode is AuthMode.ACCESS_KEY
    assert s.aws_auth.access_key_id_secret == "aws-access-key-id"
    assert s.aws_auth.secret_access_key_secret == "aws-secret-access-key"
    assert s.aws_accounts is AccountsScope.HOME and s.aws_account_ids == ()
    assert s.aws_member_role_name == "AwsIamKeyCollector"
    assert s.aws_region == "us-east-1"
    assert s.sink.kind is SinkKind.LOGS_INGESTION
    assert s.sink.keys_stream == "Custom-AwsIamAccessKeys"
    assert s.sink.runs_stream == "Custom-AwsIamKeyCollectorRuns"
    collector = load_settings(minimal(LOG_SINK="data_collector", LOG_ANALYTICS_WORKSPACE_ID=WORKSPACE)).sink
    assert isinstance(collector, DataCollectorSettings)
    assert collector.workspace_key_secret == "log-analytics-workspace-key"
    assert collector.domain == "ods.opinsights.azure.com"
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
    assert s.key_vault is None
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
    s = load_settings(minimal(AWS_ROLE_ARN="arn:aws-us-gov:iam::111122223333:role/path/Collector",
                              AWS_REGION="us-gov-west-1"))
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
        ("KEY_VAULT_URL", "http://kv.vault.azure.net/", "must be https"),
        ("KEY_VAULT_URL", "https://kv.vault.azure.net/secrets/x", "the vault's URL only"),
        ("KEY_VAULT_URL", "https://kv.vault.azure.net.evil.example/", "not on the cloud's own domain"),
        ("LOGS_INGESTION_ENDPOINT", "ftp://dce.example.com", "must be https"),
        ("LOGS_INGESTION_ENDPOINT", "https://user:pw@dce.westeurope-1.ingest.monitor.azure.com", "no user name"),
        ("LOGS_INGESTION_ENDPOINT", "https://dce.example.com", "not on the cloud's own domain"),
        ("LOGS_INGESTION_ENDPOINT", "https://127.0.0.1:8443", "not on the cloud's own domain"),
        ("LOGS_INGESTION_ENDPOINT", "https://localhost", "not on the cloud's own domain"),
        ("AzureWebJobsStorage__blobServiceUri", "https://acct.blob.core.windows.net.attacker.io",
         "not on the cloud's own domain"),
        ("AzureWebJobsStorage__blobServiceUri", "http://acct.blob.core.windows.net", "must be https"),
        ("LOGS_INGESTION_RULE_ID", "dcr-xyz", "dcr- followed by 32 hex"),
        ("LOGS_INGESTION_KEYS_STREAM", "AwsIamAccessKeys", "Custom-"),
        ("LOGS_INGESTION_RUNS_STREAM", "Custom-bad stream", "Custom-"),
        ("LOG_ANALYTICS_WORKSPACE_ID", "workspace", "GUID"),
        ("LOG_ANALYTICS_DOMAIN", "not a domain", "Data Collector API domain"),
        ("LOG_ANALYTICS_DOMAIN", "collector.example.com", "Data Collector API domain"),
        # Arabic-Indic digits and a non-ASCII letter: \d and \w without re.ASCII took them
        ("AWS_ACCOUNTS", "\u0661" * 12, "12-digit"),
        ("AWS_ROLE_ARN", "arn:aws:iam::" + "\u0661" * 12 + ":role/X", "IAM role ARN"),
        ("AWS_MEMBER_ROLE_NAME", "R\u00f4le", "IAM role name"),
        ("AWS_REGION", "us-east-\u0661", "AWS region"),
        ("KEY_ROTATION_DAYS", "\u0669\u0660", "from 1 to 3650"),
        ("COLLECTOR_SCHEDULE", "0 */5 * * *", "NCRONTAB"),  # 5 fields: a Unix cron, not NCRONTAB
        ("COLLECTOR_SCHEDULE", "0 0 25 * * *", "NCRONTAB"),  # hour 25
        ("COLLECTOR_SCHEDULE", "0 0 2 * * MONDAY", "NCRONTAB"),
        ("COLLECTOR_SCHEDULE", "0 0 2 31-1 * *", "NCRONTAB"),
        ("COLLECTOR_SCHEDULE", "00:05:00", "NCRONTAB"),
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


@pytest.mark.parametrize(
    ("role", "region"),
    [("arn:aws-cn:iam::111122223333:role/C", "us-east-1"), ("arn:aws:iam::111122223333:role/C", "cn-north-1"),
     ("arn:aws-us-gov:iam::111122223333:role/C", "eu-west-1"), ("arn:aws:iam::111122223333:role/C", "us-gov-east-1")],
)
def test_the_role_partition_must_match_the_region_partition(role: str, region: str) -> None:
    (found,) = problems(minimal(AWS_ROLE_ARN=role, AWS_REGION=region))
    assert found.startswith("AWS_ROLE_ARN / AWS_REGION: ") and region in found


@pytest.mark.parametrize("role,region", [("arn:aws-cn:iam::111122223333:role/C", "cn-northwest-1"),
                                         ("arn:aws-us-gov:iam::111122223333:role/C", "us-gov-east-1")])
def test_sovereign_partitions_with_their_own_regions_pass(role: str, region: str) -> None:
    assert load_settings(minimal(AWS_ROLE_ARN=role, AWS_REGION=region)).aws_region == region


@pytest.mark.parametrize(
    "schedule", ["0 0 2 * * *", "0 */30 * * * *", "0 15 2,14 * * MON-FRI", "30 0 0 1 JAN-MAR/1 *", "0 0 0 * * 0"]
)
def test_ncrontab_schedules_pass(schedule: str) -> None:
    assert load_settings(minimal(COLLECTOR_SCHEDULE=schedule)).collector_schedule == schedule


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOGS_INGESTION_ENDPOINT", "https://dce-1.eastus-1.ingest.monitor.azure.com"),
        ("LOGS_INGESTION_ENDPOINT", "https://dce-1.usgovvirginia-1.ingest.monitor.azure.us"),
        ("LOGS_INGESTION_ENDPOINT", "https://dce-1.chinanorth3-1.ingest.monitor.azure.cn"),
        ("KEY_VAULT_URL", "https://kv.vault.usgovcloudapi.net/"),
        ("KEY_VAULT_URL", "https://kv.vault.azure.cn"),
        ("AzureWebJobsStorage__blobServiceUri", "https://acct.blob.core.windows.net"),
        ("AzureWebJobsStorage__blobServiceUri", "https://acct.blob.core.usgovcloudapi.net/"),
        ("AzureWebJobsStorage__blobServiceUri", "https://acct.blob.core.chinacloudapi.cn"),
        ("LOG_ANALYTICS_DOMAIN", "ods.opinsights.azure.us"),
        ("LOG_ANALYTICS_DOMAIN", "ods.opinsights.azure.cn"),
    ],
)
def test_the_clouds_own_endpoints_pass(name: str, value: str) -> None:
    load_settings(minimal(**{name: value}))


def test_a_test_opts_its_fake_hosts_in_through_the_endpoint_policy_not_a_setting() -> None:
    env = minimal(LOGS_INGESTION_ENDPOINT="https://127.0.0.1:8443", KEY_VAULT_URL="https://localhost:9443/")
    assert len(problems(env)) == 2  # production's policy: refused, each named
    policy = EndpointPolicy(frozenset({"127.0.0.1", "localhost"}))
    sink = load_settings(env, policy).sink
    assert isinstance(sink, LogsIngestionSettings) and sink.endpoint == "https://127.0.0.1:8443"


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000", True),
        ("AWS_ENDPOINT_URL", "http://127.8.9.10:5000", True),
        ("AWS_ENDPOINT_URL_STS", "http://[::1]:5000", True),
        ("AWS_ENDPOINT_URL_IAM", "http://localhost:5000", True),
        ("AWS_ENDPOINT_URL_STS", "https://sts.us-east-1.amazonaws.com", True),
        ("AWS_ENDPOINT_URL", "http://aws-proxy.corp.example:8080", False),
        ("AWS_ENDPOINT_URL_STS", "http://sts.amazonaws.com", False),
        ("AWS_ENDPOINT_URL_ORGANIZATIONS", "http://10.0.0.5", False),
        ("AWS_ENDPOINT_URL_IAM", "ftp://localhost", False),
        ("AWS_ENDPOINT_URL", "https://user:pw@proxy.example", False),
    ],
)
def test_aws_endpoints_must_be_https_except_on_loopback(name: str, value: str, ok: bool) -> None:
    env = minimal(**{name: value})
    if ok:
        load_settings(env)
    else:
        (found,) = problems(env)
        assert found.startswith(f"{name}: ")
        assert "pw" not in found


def test_a_bad_url_is_shown_without_its_user_info_or_query() -> None:
    found = problems(minimal(
        LOGS_INGESTION_ENDPOINT="https://admin:hunter2hunter2@dce.example.com/path?sig=abcdefSECRETxyz&sv=1",
        KEY_VAULT_URL="http://kv.vault.azure.net/?token=Tok3nTok3nTok3n",
    ))
    text = "\n".join(found)
    assert "LOGS_INGESTION_ENDPOINT" in text and "KEY_VAULT_URL" in text
    for secret in ("admin", "hunter2", "sig=", "SECRET", "Tok3n", "token="):
        assert secret not in text
    assert "user-info removed" in text and "query removed" in text
