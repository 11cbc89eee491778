"""Load: one digest e-mailed through Azure Communication Services (azure-communication-email's EmailClient), signed
in with the run's Azure credential (the managed identity in Azure: a role on the Communication Services resource that
permits sending; no connection string, no access key: the resource has local auth disabled).

Bounded like the sinks: azure-core's retries and timeouts (shared/config/transport.py), the send's own polling bounded
by ``STATUS_WAIT`` and by the run's deadline. A POST is retried after an ambiguous failure too, with the same
Operation-Id, so that the service can tell a retry from a second e-mail; a 409 for that id means the first try was
accepted.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from azure.communication.email import EmailClient
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError

from shared.config.transport import CONNECTION_TIMEOUT, ClientOptions, retry_options, transport_options
from shared.deadline import Deadline
from shared.errors import CollectorError, first_line
from shared.notify import render
from shared.notify.digest import Digest

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

SENDER_ROLE = "Communication and Email Service Owner"
POLL_INTERVAL = 2.0  # seconds between status checks of one send (the SDK's default is 30)
STATUS_WAIT = 120.0  # seconds one send may take to reach its final status
_OPERATIONS = uuid.UUID("5b0a2f0e-7f36-4a59-9a0c-3d4e6f7a8b9c")  # namespace of the digests' Operation-Ids


class DigestNotSentError(CollectorError):
    """One digest was not sent (after the retries); the message names why, never a token."""


class CommunicationServicesMailer:
    name = "send"

    def __init__(
        self,
        endpoint: str,
        sender: str,
        credential: TokenCredential,
        options: ClientOptions,
        deadline: Deadline | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.sender = sender
        self._deadline = deadline or Deadline.never()
        self._poll = POLL_INTERVAL if options.azure_retry_backoff_factor is None else options.azure_retry_backoff_factor
        self._client = EmailClient(endpoint, credential, **retry_options(options), **transport_options(options))

    def send(self, digest: Digest, run_id: str) -> None:
        """Sends one digest and waits for its final status. Raises DigestNotSentError."""
        if self._deadline.delivery_over():
            raise DigestNotSentError("no time left in the run")
        message: dict[str, Any] = {
            "senderAddress": self.sender,
            "recipients": {"to": [{"address": digest.recipient}]},
            "content": {"subject": render.subject(digest), "plainText": render.plain_text(digest),
                        "html": render.html_text(digest)},
            "userEngagementTrackingDisabled": True,
        }
        wait = self._deadline.bound(STATUS_WAIT, self._deadline.reserve) if self._deadline.bounded else STATUS_WAIT
        try:
            poller = self._client.begin_send(
                message,
                operation_id=str(uuid.uuid5(_OPERATIONS, f"{run_id}/{digest.recipient}")),
                polling_interval=self._poll,
                retry_on_methods=frozenset(["POST"]),  # safe: the same Operation-Id on every try
                connection_timeout=CONNECTION_TIMEOUT,
            )
            result = poller.result(timeout=wait)
        except ResourceExistsError:  # 409 for our own Operation-Id: an earlier try of this send was accepted
            return
        except Exception as exc:
            raise DigestNotSentError(self._describe(exc)) from None
        if not poller.done():
            raise DigestNotSentError(f"no final status within {wait:.0f} s (the e-mail may still be delivered)")
        status = (result or {}).get("status")
        if status != "Succeeded":
            error = (result or {}).get("error") or {}
            raise DigestNotSentError(f"Communication Services status {status}: "
                                     f"{first_line(str(error.get('message') or error.get('code') or 'no detail'))}")

    def _describe(self, error: Exception) -> str:
        where = f"Communication Services {self.endpoint} (NOTIFY_EMAIL_ENDPOINT)"
        if isinstance(error, ClientAuthenticationError) and error.status_code is None:
            return (f"{where}: no token from the Azure credential ({first_line(str(error))}); check the Function's "
                    "managed identity (AZURE_CLIENT_ID) or, locally, `az login`")
        if isinstance(error, HttpResponseError) and error.status_code == 200:  # the operation's final status
            return f"{where}: the send ended Failed: {first_line(error.message)}"
        if isinstance(error, HttpResponseError) and error.status_code is not None:
            head = f"{where}: HTTP {error.status_code}: {first_line(error.message)}"
            if error.status_code in (401, 403):
                return f"{head}; grant the Function's managed identity '{SENDER_ROLE}' on the resource"
            if error.status_code == 400:
                return f"{head}; check NOTIFY_SENDER (an address of a domain linked to the resource)"
            return f"{head} (after retries)"
        return f"{where}: {type(error).__name__}: {first_line(str(error))}"

    def close(self) -> None:
        self._client.close()
