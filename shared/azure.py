"""Azure sign-in and Key Vault: one credential per run (the Function's managed identity in Azure, the developer's
sign-in locally), the secrets the chosen modes need, and the managed identity's token for AWS web identity.

Endpoints come only from the SDKs' own conventions: azure-identity reads the managed-identity environment
(``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` on App Service and Functions), Key Vault is ``KEY_VAULT_URL``.
``ClientOptions`` (test-only, shared/transport.py) may add a CA bundle and relax Key Vault's challenge-resource check
for a vault on localhost; production passes the defaults.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from shared.errors import CollectorError, SecretError, first_line
from shared.redaction import register_secret
from shared.transport import ClientOptions, retry_options, transport_options

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

# Set by the platform wherever a managed identity endpoint exists: App Service / Functions (IDENTITY_*),
# Azure ML and Cloud Shell (MSI_*), Azure Arc (IDENTITY_ENDPOINT + IMDS_ENDPOINT).
_MANAGED_IDENTITY_ENV = ("IDENTITY_ENDPOINT", "MSI_ENDPOINT")

KEY_VAULT_ROLE = "Key Vault Secrets User"
SECRET_SETTINGS = "AWS_ACCESS_KEY_ID_SECRET, AWS_SECRET_ACCESS_KEY_SECRET or LOG_ANALYTICS_WORKSPACE_KEY_SECRET"  # noqa: S105 - setting names


def in_azure(environ: Mapping[str, str] | None = None) -> bool:
    """True where the platform provides a managed identity endpoint (the Function in Azure)."""
    env = os.environ if environ is None else environ
    return any(env.get(name) for name in _MANAGED_IDENTITY_ENV)


def build_credential(client_id: str | None, options: ClientOptions) -> TokenCredential:
    """The run's one Azure credential, shared by every Azure client.

    In Azure: ``ManagedIdentityCredential`` only, so that a missing identity fails clearly instead of falling
    through to other sign-in methods; ``client_id`` selects a user-assigned identity (``AZURE_CLIENT_ID``).
    Elsewhere (``func start``, the command line): ``DefaultAzureCredential`` for the developer's sign-in
    (``az login``, ``azd auth login``, VS Code, a service principal in the environment, or IMDS on an Azure VM).
    """
    if in_azure():
        log.info(
            "Azure sign-in: managed identity (%s)",
            f"user-assigned, client id {client_id}" if client_id else "system-assigned",
        )
        return ManagedIdentityCredential(client_id=client_id, **transport_options(options), **retry_options(options))
    log.info("Azure sign-in: no managed identity endpoint here; using the developer sign-in (DefaultAzureCredential)")
    # Only the CA bundle: DefaultAzureCredential probes IMDS with its own short timeout, which ours must not replace.
    return DefaultAzureCredential(managed_identity_client_id=client_id, **transport_options(options, timeouts=False))


def _error_code(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    return f" {code}" if code else ""


class KeyVaultSecretProvider:
    """Secrets from Key Vault, each fetched at most once per run (one provider per run), never logged."""

    def __init__(self, vault_url: str, credential: TokenCredential, options: ClientOptions) -> None:
        self.vault_url = vault_url
        self._client = SecretClient(
            vault_url,
            credential,
            verify_challenge_resource=options.verify_challenge_resource,
            **retry_options(options),
            **transport_options(options),
        )
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def get_secret(self, name: str) -> str:
        with self._lock:  # one fetch per name even when accounts ask in parallel
            if name not in self._cache:
                self._cache[name] = self._fetch(name)
            return self._cache[name]

    def _fetch(self, name: str) -> str:
        where = f"Key Vault {self.vault_url}: secret '{name}'"
        try:
            secret = self._client.get_secret(name)
        except ResourceNotFoundError as exc:
            raise SecretError(
                f"{where} not found (HTTP 404{_error_code(exc)}). Create it in that vault "
                f"(az keyvault secret set --vault-name <vault> --name {name} --file <file>), or set the app setting "
                f"that names it ({SECRET_SETTINGS}) to the right secret name"
            ) from None
        except ClientAuthenticationError as exc:
            # No response: the credential itself failed (no managed identity, not signed in). 401: token refused.
            status = exc.status_code
            raise SecretError(
                f"{where}: could not sign in to Azure"
                + (f" (HTTP {status}{_error_code(exc)})" if status else "")
                + ": "
                + first_line(exc.message)
                + ". In Azure, check the Function's managed identity (and AZURE_CLIENT_ID for a user-assigned one); "
                "locally, sign in with `az login`"
            ) from None
        except HttpResponseError as exc:
            if exc.status_code == 403:
                raise SecretError(
                    f"{where}: access denied (HTTP 403{_error_code(exc)}). Grant the Function's managed identity "
                    f"(or, locally, your signed-in account) the '{KEY_VAULT_ROLE}' role on the vault (role "
                    "assignments can take a few minutes to apply), and check the vault's firewall allows this caller"
                ) from None
            if exc.status_code is None or exc.status_code < 400:  # an answer cut off, or not JSON
                raise SecretError(
                    f"{where}: the vault's answer could not be read ({type(exc).__name__}: {first_line(exc.message)})"
                    " after azure-core's retries. Check KEY_VAULT_URL and the network path (a proxy or firewall "
                    "answering for the vault)"
                ) from None
            raise SecretError(
                f"{where}: Key Vault answered HTTP {exc.status_code}{_error_code(exc)}: {first_line(exc.message)}"
            ) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise SecretError(
                f"{where}: cannot reach the vault ({type(exc).__name__}: {first_line(str(exc))}). Check KEY_VAULT_URL "
                "and the network path (private endpoint, DNS, firewall)"
            ) from None
        except ValueError as exc:  # Key Vault's challenge named a resource that is not this vault's domain
            if "challenge" not in str(exc):
                raise
            raise SecretError(
                f"{where}: the server's authentication challenge names a resource outside this vault's domain, so no "
                "token was sent. Check that KEY_VAULT_URL is the vault's own URL (https://<vault>.vault.azure.net/)"
            ) from None
        value = secret.value
        if not value:
            raise SecretError(f"{where} is empty: store the value in the vault")
        register_secret(value)
        return value

    def close(self) -> None:
        self._client.close()


class ManagedIdentityTokenProvider:
    """The Azure credential's token for ``<audience>/.default``: the web identity token for AWS STS."""

    def __init__(self, credential: TokenCredential, audience: str) -> None:
        self._credential = credential
        self._audience = audience

    def get_token(self) -> str:
        scope = f"{self._audience}/.default"
        try:
            token = self._credential.get_token(scope).token
        except ClientAuthenticationError as exc:
            raise CollectorError(
                f"Azure managed identity: no token for AWS_WEB_IDENTITY_AUDIENCE {self._audience!r} (scope {scope}): "
                f"{first_line(exc.message)}. Check that the audience is an application ID URI or app id Entra ID "
                "knows, and that the Function has its managed identity (AZURE_CLIENT_ID for a user-assigned one)"
            ) from None
        except AzureError as exc:  # no answer, a cut or unreadable one, or a 5xx that outlasted the retries
            raise CollectorError(
                f"Azure managed identity: no token for AWS_WEB_IDENTITY_AUDIENCE {self._audience!r} (scope {scope}): "
                f"the managed identity endpoint failed ({type(exc).__name__}: {first_line(exc.message)}) after "
                "azure-core's retries. The endpoint is the platform's (IDENTITY_ENDPOINT): check that the Function "
                "has its managed identity (AZURE_CLIENT_ID for a user-assigned one); the next run tries again"
            ) from None
        register_secret(token)
        return token

