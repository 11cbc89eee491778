"""Get: the rows today's digests list, from what Log Analytics holds (queries/owner-digest.kql over the latest good
snapshot), through azure-monitor-query's LogsQueryClient signed in with the run's Azure credential (the managed
identity in Azure: Log Analytics Reader on the workspace; no key, no connection string).

Bounded like the sinks: azure-core's retries (shared/config/transport.py), the request timeouts, the service's own
timeout (``SERVER_TIMEOUT``), and the run's deadline. A partial answer is refused: a digest built from it could leave
out keys and still look complete.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult

from shared.config.transport import CONNECTION_TIMEOUT, READ_TIMEOUT, ClientOptions, retry_options, transport_options
from shared.deadline import Deadline
from shared.errors import CollectorError, first_line
from shared.findings.catalogue import Thresholds
from shared.notify.digest import owner_digest_query

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

READER_ROLE = "Log Analytics Reader"
SERVER_TIMEOUT = 180  # seconds the service may take (its default; at most 600)
# The query looks 7 days back (the latest snapshot's lookback); the request's own window only bounds the cost.
QUERY_WINDOW = timedelta(days=8)


class DigestQueryError(CollectorError):
    """The digest rows could not be had from Log Analytics: nothing is sent this run."""


class LogAnalyticsDigestRows:
    def __init__(
        self,
        workspace_id: str,
        credential: TokenCredential,
        options: ClientOptions,
        limits: Thresholds,
        deadline: Deadline | None = None,
    ) -> None:
        self.workspace_id = workspace_id
        self._limits = limits
        self._deadline = deadline or Deadline.never()
        self._read_timeout = READ_TIMEOUT if options.azure_read_timeout is None else options.azure_read_timeout
        self._client = LogsQueryClient(credential, **retry_options(options), **transport_options(options))

    def rows(self) -> list[dict[str, Any]]:
        """The query's answer, one dict per row (datetimes as aware datetimes). Raises DigestQueryError."""
        text = owner_digest_query(self._limits)
        bounds: dict[str, Any] = {"read_timeout": max(self._read_timeout, SERVER_TIMEOUT + 10)}
        if self._deadline.bounded:
            bounds = {"timeout": max(1.0, self._deadline.remaining() - self._deadline.reserve),
                      "read_timeout": self._deadline.bound(bounds["read_timeout"], self._deadline.reserve),
                      "connection_timeout": self._deadline.bound(CONNECTION_TIMEOUT, self._deadline.reserve)}
        try:
            result = self._client.query_workspace(self.workspace_id, text, timespan=QUERY_WINDOW,
                                                  server_timeout=SERVER_TIMEOUT, **bounds)
        except Exception as exc:  # every failure of the call: named, with what to check
            raise DigestQueryError(self._describe(exc)) from None
        if isinstance(result, LogsQueryPartialResult):
            raise DigestQueryError(f"Log Analytics workspace {self.workspace_id}: a partial answer "
                                   f"({first_line(str(result.partial_error))}); no digest is sent from it")
        if not result.tables:
            return []
        table = result.tables[0]
        return [dict(zip(table.columns, list(row), strict=True)) for row in table.rows]

    def _describe(self, error: Exception) -> str:
        where = f"Log Analytics workspace {self.workspace_id} (NOTIFY_WORKSPACE_ID)"
        if isinstance(error, ClientAuthenticationError) and error.status_code is None:
            return (f"{where}: no token from the Azure credential ({first_line(str(error))}); check the Function's "
                    "managed identity (AZURE_CLIENT_ID) or, locally, `az login`")
        if isinstance(error, HttpResponseError) and error.status_code is not None:
            head = f"{where}: HTTP {error.status_code}: {first_line(error.message)}"
            if error.status_code in (401, 403):
                return f"{head}; grant the Function's managed identity '{READER_ROLE}' on the workspace"
            if error.status_code in (400, 404):
                return f"{head}; check NOTIFY_WORKSPACE_ID (the workspace's customer id, a GUID)"
            return f"{head} (after retries)"
        if isinstance(error, ServiceRequestError):
            return f"{where}: cannot reach the service ({type(error).__name__}: {first_line(str(error))})"
        return f"{where}: {type(error).__name__}: {first_line(str(error))}"

    def close(self) -> None:
        self._client.close()
