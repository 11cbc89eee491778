"""The ``logs_ingestion`` sink (default): the Azure Monitor Logs Ingestion API through a data collection rule,
signed in with the run's Azure credential (no workspace key anywhere).

azure-monitor-ingestion splits the rows into chunks of at most 1 MiB of JSON, gzips and POSTs each one; azure-core's
retry policy retries each chunk (waiting for Retry-After when the service sends it). Chunks that still fail are
collected through ``on_error`` and reported as one ``SinkError`` carrying exactly the rows not delivered, so that
only those are kept in the outbox (the delivered chunks are not sent again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.rest import HttpRequest, HttpResponse
from azure.monitor.ingestion import LogsIngestionClient, LogsUploadError

from shared.config.transport import (
    CONNECTION_TIMEOUT,
    READ_TIMEOUT,
    SINK_CALL_SECONDS,
    SINK_CALL_SHARE,
    ClientOptions,
    retry_options,
    transport_options,
)
from shared.deadline import Deadline
from shared.errors import SinkError, first_line
from shared.records import DIGEST_RUNS_STREAM, DIGEST_RUNS_TABLE, KEYS_TABLE, RUNS_TABLE, Table

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

PUBLISHER_ROLE = "Monitoring Metrics Publisher"
MONITOR_SCOPE = "https://monitor.azure.com/.default"  # azure-monitor-ingestion's own default, made explicit


class LogsIngestionSink:
    name = "logs_ingestion"

    def __init__(
        self,
        endpoint: str,
        rule_id: str,
        keys_stream: str,
        runs_stream: str,
        credential: TokenCredential,
        options: ClientOptions,
        deadline: Deadline | None = None,
    ) -> None:
        self.endpoint = endpoint
        # The run's deadline: each upload (every chunk, attempt and wait) ends within its own bound, a share of what
        # the run has left for delivery (Deadline.call), so that a hung endpoint opens the breaker long before it.
        self._deadline = deadline or Deadline.never()
        read_timeout = READ_TIMEOUT if options.azure_read_timeout is None else options.azure_read_timeout
        self.rule_id = rule_id
        self._streams = {KEYS_TABLE.table: keys_stream, RUNS_TABLE.table: runs_stream,
                         DIGEST_RUNS_TABLE.table: DIGEST_RUNS_STREAM}
        self._credential = credential
        self._token_fresh_until = 0.0
        self._client = LogsIngestionClient(
            endpoint,
            credential,
            credential_scopes=[MONITOR_SCOPE],
            **retry_options(options),
            **transport_options(options),
            **call_time_policies(read_timeout),
        )

    def stream(self, table: Table) -> str:
        # A table without a stream setting of its own (AwsIamCredentials_CL) goes to the stream the records name.
        stream = self._streams.get(table.table) or table.stream
        if not stream:
            raise ValueError(f"logs_ingestion: no stream configured for table {table.table}")
        return stream

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        stream = self.stream(table)
        if self._deadline.delivery_over():
            raise SinkError(self._message(stream, len(rows), len(rows), "no time left in the run"), len(rows))
        self._check_token(stream, len(rows))
        call = self._deadline.call(SINK_CALL_SECONDS, SINK_CALL_SHARE)  # this upload's own bound
        failures: list[LogsUploadError] = []

        def on_error(failure: LogsUploadError) -> None:
            failures.append(failure)
            if call.expired():  # the remaining chunks would each fail at once: stop the upload here
                raise _OutOfTimeError

        # The policies below cut each chunk's retries and each attempt's waits to the call's end.
        bound = call.remaining()
        bounds = {CALL_ENDS_AT: time.monotonic() + bound}
        try:
            self._client.upload(
                rule_id=self.rule_id,
                stream_name=stream,
                logs=list(rows),
                on_error=on_error,
                # A POST is retried on 429 and 408/502 too, not only on 500/503/504: duplicates are possible after
                # an ambiguous failure (at least once), losses are not. RunId + AccessKeyFingerprint identify a row.
                retry_on_methods=frozenset(["POST"]),
                **bounds,
            )
        except _OutOfTimeError:  # which later chunks were sent is not known: all of the batch is kept (at least once)
            raise SinkError(
                self._message(stream, len(rows), len(rows), f"no answer within the upload's time bound "
                              f"({bound:.1f} s; " + describe_ingestion_error(failures[-1].error) + ")"),
                undelivered=len(rows),
            ) from None
        except Exception as exc:  # not a chunk failure (those go to on_error): nothing is known to be delivered
            raise SinkError(
                self._message(stream, len(rows), len(rows), describe_ingestion_error(exc)), undelivered=len(rows)
            ) from None
        if failures:
            failed_rows = [dict(row) for f in failures for row in f.failed_logs]  # the failed chunks' rows only
            raise SinkError(
                self._message(stream, len(failed_rows), len(rows), describe_ingestion_error(failures[0].error)),
                undelivered=len(failed_rows),
                rows=failed_rows,
            )

    def _check_token(self, stream: str, rows: int) -> None:
        """Ask the credential for the sink's token before uploading, so that a failing identity endpoint is named
        as such (inside an upload it reads as the ingestion endpoint's failure) and is not retried once more by
        every chunk's own retries. Once per token lifetime: the credential and the client's policy cache it."""
        if time.time() < self._token_fresh_until:
            return
        try:
            token = self._credential.get_token(MONITOR_SCOPE)
        except Exception as exc:  # the credential's own retries are spent; nothing was sent
            raise SinkError(self._message(stream, rows, rows, describe_token_failure(exc)), undelivered=rows) from None
        self._token_fresh_until = token.expires_on - 300

    def _message(self, stream: str, undelivered: int, total: int, reason: str) -> str:
        return (
            f"logs_ingestion: {undelivered} of {total} row(s) not delivered to stream {stream} of data collection rule "
            f"{self.rule_id} at {self.endpoint}: {reason}"
        )

    def close(self) -> None:
        self._client.close()


# A per-call option of the sink's requests: the time.monotonic() by which the whole call (all chunks, all attempts)
# must end. Read and removed by CallTimePolicy; the transport never sees it.
CALL_ENDS_AT = "collector_call_ends_at"


class CallTimePolicy(SansIOHTTPPolicy[HttpRequest, HttpResponse]):
    """Before azure-core's retry policy, once per request (an upload's chunk): the retry policy's total ``timeout`` is
    what is left of the call, and a chunk that starts after the call's end fails at once, without an attempt."""

    def on_request(self, request: PipelineRequest[HttpRequest]) -> None:
        ends_at = request.context.options.pop(CALL_ENDS_AT, None)
        if ends_at is None:
            return
        request.context[CALL_ENDS_AT] = ends_at
        left = ends_at - time.monotonic()
        if left <= 0:
            raise ServiceResponseTimeoutError("the sink call's time bound passed before this request (not sent)")
        request.context.options["timeout"] = min(float(request.context.options.get("timeout", left)), left)


class AttemptTimePolicy(SansIOHTTPPolicy[HttpRequest, HttpResponse]):
    """After azure-core's retry policy, once per attempt: the attempt's connect and read timeouts end with the call.
    (azure-core's ``timeout`` alone ends the retries but cuts only the connect timeout: an endpoint that accepts and
    never answers would hold each attempt for the whole read timeout.)"""

    def __init__(self, read_timeout: float, connection_timeout: float = CONNECTION_TIMEOUT) -> None:
        self._read = read_timeout
        self._connection = connection_timeout

    def on_request(self, request: PipelineRequest[HttpRequest]) -> None:
        ends_at = request.context.get(CALL_ENDS_AT)
        if ends_at is None:
            return
        left = max(0.01, ends_at - time.monotonic())
        options = request.context.options
        options["read_timeout"] = min(float(options.get("read_timeout", self._read)), left)
        options["connection_timeout"] = min(float(options.get("connection_timeout", self._connection)), left)


def call_time_policies(read_timeout: float) -> dict[str, Any]:
    """Keyword arguments for an azure-core client whose calls carry CALL_ENDS_AT: both policies, in their places."""
    return {"per_call_policies": [CallTimePolicy()], "per_retry_policies": [AttemptTimePolicy(read_timeout)]}


class _OutOfTimeError(Exception):
    """Raised from ``on_error`` to end an upload once its own time bound has passed."""


def describe_token_failure(error: Exception) -> str:
    """The sink's token could not be had: before an upload (checked first) or, once it expired, inside one."""
    return (
        f"no token for {MONITOR_SCOPE} from the Azure credential ({type(error).__name__}: {first_line(str(error))}); "
        "check the Function's managed identity (AZURE_CLIENT_ID for a user-assigned one; the endpoint is the "
        "platform's IDENTITY_ENDPOINT) or, locally, `az login`"
    )


def describe_ingestion_error(error: Exception) -> str:
    """One secret-free line: what failed and what to check."""
    if isinstance(error, ClientAuthenticationError) and error.status_code is None:  # a token failed mid-upload
        return describe_token_failure(error)
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        status = error.status_code
        code = getattr(getattr(error, "error", None), "code", None)
        head = f"HTTP {status}{' ' + code if code else ''}: {first_line(error.message)}"
        if status in (401, 403):
            return (
                f"{head}; grant the Function's managed identity the '{PUBLISHER_ROLE}' role on the data collection "
                "rule (role assignments can take up to 30 minutes to apply)"
            )
        if status == 404:
            return f"{head}; check LOGS_INGESTION_RULE_ID, the stream names and LOGS_INGESTION_ENDPOINT"
        if status == 400:
            return f"{head}; the rows do not match the stream declared in the data collection rule"
        if status == 413:
            return f"{head}; a request was too large"
        return f"{head} (after retries)"
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return (
            f"cannot reach the endpoint ({type(error).__name__}: {first_line(str(error))}); check "
            "LOGS_INGESTION_ENDPOINT and the network path"
        )
    return f"{type(error).__name__}: {first_line(str(error))}"

