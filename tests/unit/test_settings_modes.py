"""The modes as types: each declares the settings it reads and the secrets it fetches; what is required, which
secrets are fetched and whether Key Vault is needed all follow from that one declaration. The composition root
matches on the types and signs in to Azure only when an adapter it builds needs the credential."""

from __future__ import annotations

from typing import Any

import pytest

import shared.azure.identity
from shared.composition import compose
from shared.config.modes import (
    AccessKeyAuth,
    DataCollectorSettings,
    FileSinkSettings,
    KeyVaultSettings,
    LogsIngestionSettings,
    WebIdentityAuth,
)
from shared.config.settings import load_settings

ROLE = "arn:aws:iam::111122223333:role/AwsIamKeyCollectorHome"
DCE = "https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com"
DCR = "dcr-0123456789abcdef0123456789abcdef"
VAULT = "https://kv-collector.vault.azure.net/"
WORKSPACE = "0b9d0f6e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


def minimal() -> dict[str, str]:
    """The defaults' modes (access_key + logs_ingestion) with what they require."""
    return {"AWS_ROLE_ARN": ROLE, "KEY_VAULT_URL": VAULT, "LOGS_INGESTION_ENDPOINT": DCE, "LOGS_INGESTION_RULE_ID": DCR}


def test_each_mode_declares_its_settings_and_secrets() -> None:
    assert LogsIngestionSettings.required_settings() == ("LOGS_INGESTION_ENDPOINT", "LOGS_INGESTION_RULE_ID")
    assert DataCollectorSettings.required_settings() == ("LOG_ANALYTICS_WORKSPACE_ID",)
    assert DataCollectorSettings.secret_settings() == ("LOG_ANALYTICS_WORKSPACE_KEY_SECRET",)
    assert FileSinkSettings.required_settings() == FileSinkSettings.secret_settings() == ()
    assert AccessKeyAuth.secret_settings() == ("AWS_ACCESS_KEY_ID_SECRET", "AWS_SECRET_ACCESS_KEY_SECRET")
    assert WebIdentityAuth.required_settings() == ("AWS_WEB_IDENTITY_AUDIENCE",)
    assert [t.needs_azure_credential for t in (LogsIngestionSettings, DataCollectorSettings, FileSinkSettings,
                                               AccessKeyAuth, WebIdentityAuth)] == [True, False, False, False, True]


def test_the_settings_carry_the_typed_modes() -> None:
    s = load_settings(minimal())
    assert s.aws_auth == AccessKeyAuth("aws-access-key-id", "aws-secret-access-key")
    assert s.sink == LogsIngestionSettings(DCE, DCR, "Custom-AwsIamAccessKeys", "Custom-AwsIamKeyCollectorRuns")
    assert s.key_vault == KeyVaultSettings(VAULT, ("aws-access-key-id", "aws-secret-access-key"))
    s = load_settings({"AWS_ROLE_ARN": ROLE, "AWS_AUTH_MODE": "web_identity", "AWS_WEB_IDENTITY_AUDIENCE": "api://a",
                       "LOG_SINK": "data_collector", "LOG_ANALYTICS_WORKSPACE_ID": WORKSPACE, "KEY_VAULT_URL": VAULT,
                       "LOG_ANALYTICS_WORKSPACE_KEY_SECRET": "ws-key"})
    assert s.aws_auth == WebIdentityAuth("api://a")
    assert s.sink == DataCollectorSettings(WORKSPACE, "ws-key", "ods.opinsights.azure.com")
    assert s.key_vault == KeyVaultSettings(VAULT, ("ws-key",))
    s = load_settings({"AWS_ROLE_ARN": ROLE, "AWS_AUTH_MODE": "web_identity", "AWS_WEB_IDENTITY_AUDIENCE": "api://a",
                       "LOG_SINK": "file", "FILE_SINK_DIR": "here"})
    assert s.sink == FileSinkSettings("here") and s.key_vault is None


class Tokens:
    def get_token(self) -> str:
        return "token"


class Secrets:
    def get_secret(self, name: str) -> str:
        return "secret"


@pytest.mark.parametrize(
    ("env", "given", "signs_in"),
    [
        ({"AWS_AUTH_MODE": "web_identity", "AWS_WEB_IDENTITY_AUDIENCE": "api://a", "LOG_SINK": "file"},
         {"tokens": Tokens()}, False),
        ({"LOG_SINK": "file", "KEY_VAULT_URL": VAULT}, {"secrets": Secrets()}, False),
        ({"LOG_SINK": "file", "KEY_VAULT_URL": VAULT}, {}, True),  # the vault needs it
        ({"AWS_AUTH_MODE": "web_identity", "AWS_WEB_IDENTITY_AUDIENCE": "api://a", "LOG_SINK": "file"}, {}, True),
        ({"LOGS_INGESTION_ENDPOINT": DCE, "LOGS_INGESTION_RULE_ID": DCR, "KEY_VAULT_URL": VAULT},
         {"secrets": Secrets()}, True),  # the logs_ingestion sink needs it
    ],
)
def test_compose_signs_in_to_azure_only_when_an_adapter_needs_it(
    env: dict[str, str], given: dict[str, Any], signs_in: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    built: list[str | None] = []
    real = shared.azure.identity.build_credential

    def counting(client_id: str | None, options: Any) -> Any:
        built.append(client_id)
        return real(client_id, options)

    monkeypatch.setattr(shared.azure.identity, "build_credential", counting)
    settings = load_settings({"AWS_ROLE_ARN": ROLE, "FILE_SINK_DIR": str(tmp_path), **env})
    with compose(settings, use_outbox=False, **given):
        pass
    assert len(built) == (1 if signs_in else 0)
    declared = (
        (settings.key_vault is not None and "secrets" not in given)
        or (settings.aws_auth.needs_azure_credential and "tokens" not in given)
        or settings.sink.needs_azure_credential
    )
    assert declared == signs_in, "the modes' needs_azure_credential declarations match what compose builds"
