"""The Azure credential, Key Vault and the web identity token: real azure-identity and SecretClient over HTTPS to the
local fakes (managed identity endpoint by the SDK's IDENTITY_ENDPOINT/IDENTITY_HEADER convention)."""

from __future__ import annotations

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.azure.identity import ManagedIdentityTokenProvider, build_credential, in_azure
from shared.azure.keyvault import KeyVaultSecretProvider
from shared.composition import ClientOptions
from shared.errors import CollectorError, SecretError
from shared.redaction import redact
from tests.support.azure_fakes import VAULT_RESOURCE, AzureFakes, azure_fixture, fake_tls_fixture  # noqa: F401 - fixtures

USER_ASSIGNED = "6f1d2c3b-4a59-4e68-9d7c-8b9a0f1e2d3c"


def provider(azure: AzureFakes, client_id: str | None = None, **options: bool) -> KeyVaultSecretProvider:
    return KeyVaultSecretProvider(f"{azure.vault.url}/", build_credential(client_id, azure.options(**options)),
                                  azure.options(**options))


def test_in_azure_the_managed_identity_credential_is_used(azure: AzureFakes) -> None:
    assert in_azure()
    credential = build_credential(None, azure.options())
    assert isinstance(credential, ManagedIdentityCredential)
    credential.close()  # type: ignore[attr-defined]


def test_outside_azure_the_developer_sign_in_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not in_azure()
    credential = build_credential(USER_ASSIGNED, ClientOptions())
    assert isinstance(credential, DefaultAzureCredential)
    credential.close()


def test_secret_read_through_the_key_vault_challenge_once_per_run(azure: AzureFakes) -> None:
    azure.vault.secrets = {"aws-secret-access-key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzEXAMPLEKEY"}
    vault = provider(azure)
    try:
        assert vault.get_secret("aws-secret-access-key") == azure.vault.secrets["aws-secret-access-key"]
        assert vault.get_secret("aws-secret-access-key") == azure.vault.secrets["aws-secret-access-key"]
    finally:
        vault.close()
    assert azure.vault.reads == ["aws-secret-access-key"]  # cached: one read per run
    assert azure.vault.challenges == 1  # the SDK's first, unauthenticated request got the 401 challenge
    (token_request,) = azure.identity.requests
    assert token_request.query["resource"] == VAULT_RESOURCE  # scope from the challenge
    assert token_request.headers["x-identity-header"] == azure.identity.identity_header
    assert "client_id" not in token_request.query  # system-assigned
    assert redact("value=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzEXAMPLEKEY") == "value=[REDACTED]"  # registered


def test_user_assigned_identity_from_azure_client_id(azure: AzureFakes) -> None:
    azure.vault.secrets = {"aws-access-key-id": "AKIAIOSFODNN7EXAMPLE"}
    vault = provider(azure, USER_ASSIGNED)
    try:
        vault.get_secret("aws-access-key-id")
    finally:
        vault.close()
    assert [r.query.get("client_id") for r in azure.identity.requests] == [USER_ASSIGNED]


def test_missing_secret_names_the_vault_and_secret_and_what_to_do(azure: AzureFakes) -> None:
    azure.vault.secrets = {"other": "some-value-that-must-not-show"}
    vault = provider(azure)
    with pytest.raises(SecretError) as caught:
        vault.get_secret("aws-access-key-id")
    vault.close()
    message = str(caught.value)
    assert azure.vault.url in message and "'aws-access-key-id' not found" in message and "SecretNotFound" in message
    assert "az keyvault secret set" in message and "AWS_ACCESS_KEY_ID_SECRET" in message
    assert "some-value-that-must-not-show" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_denied_vault_names_the_role_the_identity_needs(azure: AzureFakes) -> None:
    azure.vault.secrets = {"aws-access-key-id": "AKIAIOSFODNN7EXAMPLE"}
    azure.vault.forbidden = True
    vault = provider(azure)
    with pytest.raises(SecretError) as caught:
        vault.get_secret("aws-access-key-id")
    vault.close()
    message = str(caught.value)
    assert "HTTP 403" in message and azure.vault.url in message and "'aws-access-key-id'" in message
    assert "'Key Vault Secrets User'" in message and "AKIAIOSFODNN7EXAMPLE" not in message


def test_identity_endpoint_refusing_the_identity_header_is_a_sign_in_error(
    azure: AzureFakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-platform-header")
    azure.vault.secrets = {"aws-access-key-id": "AKIAIOSFODNN7EXAMPLE"}
    vault = provider(azure)
    with pytest.raises(SecretError) as caught:
        vault.get_secret("aws-access-key-id")
    vault.close()
    assert "could not sign in to Azure" in str(caught.value) and "managed identity" in str(caught.value)
    assert "not-the-platform-header" not in str(caught.value)
    assert azure.vault.reads == []


def test_challenge_resource_check_stays_on_by_default(azure: AzureFakes) -> None:
    """Production's default: a vault whose challenge names another domain is refused before any token is sent."""
    azure.vault.secrets = {"aws-access-key-id": "AKIAIOSFODNN7EXAMPLE"}
    vault = provider(azure, verify_challenge_resource=True)
    with pytest.raises(SecretError) as caught:
        vault.get_secret("aws-access-key-id")
    vault.close()
    assert "KEY_VAULT_URL" in str(caught.value) and "challenge" in str(caught.value)
    assert azure.identity.requests == [] and azure.vault.reads == []


def test_unreachable_vault_is_a_secret_error(azure: AzureFakes) -> None:
    credential = build_credential(None, azure.options())
    vault = KeyVaultSecretProvider("https://localhost:9/", credential, azure.options())  # nothing listens on 9
    vault._client._client._config.retry_policy.total_retries = 0  # keep the test fast; production retries
    with pytest.raises(SecretError) as caught:
        vault.get_secret("aws-access-key-id")
    vault.close()
    assert "cannot reach the vault" in str(caught.value) and "KEY_VAULT_URL" in str(caught.value)


def test_web_identity_token_for_the_audience(azure: AzureFakes) -> None:
    credential = build_credential(None, azure.options())
    token = ManagedIdentityTokenProvider(credential, "api://AzureADTokenExchange").get_token()
    credential.close()  # type: ignore[attr-defined]
    (request,) = azure.identity.requests
    assert request.query["resource"] == "api://AzureADTokenExchange"  # scope <audience>/.default
    assert azure.identity.issued["api://AzureADTokenExchange"] == [token]
    assert token not in redact(f"token {token}")


def test_web_identity_token_failure_names_the_audience(azure: AzureFakes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    credential = build_credential(None, azure.options())
    with pytest.raises(CollectorError) as caught:
        ManagedIdentityTokenProvider(credential, "api://AzureADTokenExchange").get_token()
    assert "AWS_WEB_IDENTITY_AUDIENCE 'api://AzureADTokenExchange'" in str(caught.value)
