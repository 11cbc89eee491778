"""Key Vault: the secrets the modes name, read with the run's Azure credential (the SDK's challenge-based auth)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretClient

from shared.config.transport import ClientOptions, retry_options, transport_options
from shared.errors import SecretError, first_line
from shared.redaction import register_secret

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


KEY_VAULT_ROLE = "Key Vault Secrets User"
SECRET_SETTINGS = "AWS_ACCESS_KEY_ID_SECRET, AWS_SECRET_ACCESS_KEY_SECRET or LOG_ANALYTICS_WORKSPACE_KEY_SECRET"  # noqa: S105 - setting names


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
