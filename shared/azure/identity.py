"""Azure sign-in and Key Vault: one credential per run (the Function's managed identity in Azure, the developer's
sign-in locally), the secrets the chosen modes need, and the managed identity's token for AWS web identity.

Endpoints come only from the SDKs' own conventions: azure-identity reads the managed-identity environment
(``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` on App Service and Functions), Key Vault is ``KEY_VAULT_URL``.
``ClientOptions`` (test-only, shared/config/transport.py) may add a CA bundle and relax Key Vault's challenge-resource
check
for a vault on localhost; production passes the defaults.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
)
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.config.transport import ClientOptions, retry_options, transport_options
from shared.errors import CollectorError, first_line
from shared.redaction import register_secret

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

# Set by the platform wherever a managed identity endpoint exists: App Service / Functions (IDENTITY_*),
# Azure ML and Cloud Shell (MSI_*), Azure Arc (IDENTITY_ENDPOINT + IMDS_ENDPOINT).
_MANAGED_IDENTITY_ENV = ("IDENTITY_ENDPOINT", "MSI_ENDPOINT")
_MANAGED_IDENTITY_SECRET_ENV = ("IDENTITY_HEADER", "MSI_SECRET")


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
        for name in _MANAGED_IDENTITY_SECRET_ENV:  # the identity endpoint's own credential: never in a log line
            register_secret(os.environ.get(name))
        log.info(
            "Azure sign-in: managed identity (%s)",
            f"user-assigned, client id {client_id}" if client_id else "system-assigned",
        )
        return ManagedIdentityCredential(client_id=client_id, **transport_options(options), **retry_options(options))
    log.info("Azure sign-in: no managed identity endpoint here; using the developer sign-in (DefaultAzureCredential)")
    # Only the CA bundle: DefaultAzureCredential probes IMDS with its own short timeout, which ours must not replace.
    return DefaultAzureCredential(managed_identity_client_id=client_id, **transport_options(options, timeouts=False))


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
