"""The ``data_collector`` sink (legacy): the Azure Monitor HTTP Data Collector API with the workspace shared key.

Microsoft retired this API on 2026-09-14; ``logs_ingestion`` replaces it. Kept because the original design named it.

Protocol (learn.microsoft.com/rest/api/loganalytics/create-request):
``POST https://<workspace-id>.<domain>/api/logs?api-version=2016-04-01`` with a JSON array body, headers
``Log-Type`` (the table name without ``_CL``), ``x-ms-date`` (RFC 1123), ``time-generated-field`` and
``Authorization: SharedKey <workspace-id>:<signature>``, where the signature is the base64 HMAC-SHA256, keyed with
the base64-decoded workspace key, of ``POST\\n<content-length>\\napplication/json\\nx-ms-date:<date>\\n/api/logs``
and content-length is the body's length in bytes (UTF-8), not in characters.

Documented limits: 30 MB per post (bodies are split below that), 32 KB per field value (longer values are
truncated by the service; no field of these records comes close). 429, 500 and 503 are retried, honouring
Retry-After, a bounded number of times.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import requests

from shared.config.transport import DATA_COLLECTOR_MAX_ATTEMPTS as MAX_ATTEMPTS  # bounds live in the transport module
from shared.config.transport import DATA_COLLECTOR_MAX_RETRY_SLEEP as MAX_RETRY_SLEEP
from shared.config.transport import DATA_COLLECTOR_RETRY_STATUSES as RETRY_STATUSES
from shared.config.transport import DATA_COLLECTOR_TIMEOUT as TIMEOUT  # noqa: F401 - the documented bound, by its old name
from shared.config.transport import (
    SINK_CALL_SECONDS,
    SINK_CALL_SHARE,
    ClientOptions,
    data_collector_first_wait,
    data_collector_timeout,
)
from shared.deadline import Deadline
from shared.errors import SinkError, shorten
from shared.records import Table
from shared.redaction import redact, register_secret

log = logging.getLogger(__name__)

API_VERSION = "2016-04-01"
RESOURCE = "/api/logs"
CONTENT_TYPE = "application/json"
# "30 MB per post": read as decimal megabytes, the smaller reading, so a body is under the limit either way.
MAX_POST_BYTES = 30 * 1000 * 1000

RETIREMENT_WARNING = (
    "LOG_SINK=data_collector uses the HTTP Data Collector API, which Microsoft retired on 2026-09-14; "
    "move to LOG_SINK=logs_ingestion (a data collection rule and the managed identity, no workspace key)"
)


# The service saying the API is gone: 410 Gone, or an error status whose message says retired, deprecated or no
# longer supported (how the endpoint answers after 2026-09-14 is not documented; these are the words Microsoft's
# retirement notices use). The run then says so in one line instead of a signature or workspace hint.
RETIRED_STATUSES = frozenset({400, 403, 404, 410})
_RETIRED_WORDS = re.compile(
    r"\b(retired|retirement|deprecated|decommissioned|no longer (supported|available|accepted))\b",
    re.IGNORECASE | re.ASCII,
)
RETIRED = (
    "the HTTP Data Collector API is retired (Microsoft retired it on 2026-09-14) and this workspace no longer accepts "
    "it: set LOG_SINK=logs_ingestion"
)


def signature(shared_key: bytes, date: str, content_length: int) -> str:
    """The SharedKey signature of one POST to /api/logs."""
    to_sign = f"POST\n{content_length}\n{CONTENT_TYPE}\nx-ms-date:{date}\n{RESOURCE}"
    digest = hmac.new(shared_key, to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def split_bodies(rows: Sequence[dict[str, Any]], max_bytes: int) -> Iterator[tuple[bytes, int]]:
    """JSON array bodies of at most ``max_bytes`` bytes (UTF-8) each, with the number of rows in each."""
    parts: list[bytes] = []
    size = 2  # the brackets
    for index, row in enumerate(rows):
        # UTF-8, as the service expects; a lone surrogate (which UTF-8 cannot carry) is written as its JSON escape
        part = json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")
        if len(part) + 2 > max_bytes:
            raise SinkError(f"row {index} is {len(part)} bytes, more than one post may carry ({max_bytes})", 1)
        added = len(part) + (1 if parts else 0)
        if size + added > max_bytes:
            yield b"[" + b",".join(parts) + b"]", len(parts)
            parts, size = [], 2
            added = len(part)
        parts.append(part)
        size += added
    if parts:
        yield b"[" + b",".join(parts) + b"]", len(parts)


class DataCollectorSink:
    name = "data_collector"

    def __init__(
        self,
        workspace_id: str,
        shared_key: str,
        domain: str,
        options: ClientOptions,
        session: requests.Session | None = None,
        *,
        max_post_bytes: int = MAX_POST_BYTES,
        max_attempts: int = MAX_ATTEMPTS,
        max_retry_sleep: float = MAX_RETRY_SLEEP,
        sleep: Callable[[float], None] = time.sleep,
        deadline: Deadline | None = None,
    ) -> None:
        # The run's deadline: each batch (every post's connect and read, and the waits between attempts) ends within
        # its own bound, a share of what the run has left for delivery (Deadline.call): a hung endpoint opens the
        # breaker long before the run's deadline.
        self._deadline = deadline or Deadline.never()
        log.warning(RETIREMENT_WARNING)
        register_secret(shared_key)
        try:
            self._key = base64.b64decode(shared_key.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SinkError(
                "data_collector: the workspace key read from Key Vault (LOG_ANALYTICS_WORKSPACE_KEY_SECRET) is not "
                "base64; store the workspace's primary or secondary key there",
                undelivered=0,
            ) from None
        if not self._key:
            raise SinkError("data_collector: the workspace key read from Key Vault is empty", undelivered=0)
        self.workspace_id = workspace_id
        self.url = f"https://{workspace_id}.{domain}{RESOURCE}?api-version={API_VERSION}"
        self._own_session = session is None
        self._session = session or requests.Session()
        if options.ca_bundle:
            self._session.verify = options.ca_bundle  # test-only: trust the local fakes' CA
        self._max_post_bytes = max_post_bytes
        self._max_attempts = max(1, max_attempts)
        self._max_retry_sleep = max_retry_sleep
        self._sleep = sleep
        self._first_wait = data_collector_first_wait(options)  # a test may shorten the waits, production never
        self._timeout = data_collector_timeout(options)

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        delivered = 0
        call = self._deadline.call(SINK_CALL_SECONDS, SINK_CALL_SHARE)  # this batch's own bound
        try:
            for body, count in split_bodies(rows, self._max_post_bytes):
                self._post(table, body, call)
                delivered += count
        except SinkError as exc:  # the first body that fails stops the batch: it and every later row are reported
            raise SinkError(
                f"data_collector: {len(rows) - delivered} of {len(rows)} row(s) of {table.log_type} not delivered "
                f"to workspace {self.workspace_id}: {exc}",
                undelivered=len(rows) - delivered,
                rows=list(rows[delivered:]),  # bodies go in order: the rows before these were delivered
            ) from None

    def _post(self, table: Table, body: bytes, call: Deadline) -> None:
        if self._deadline.delivery_over() or call.expired():
            raise SinkError("no time left in the run: not sent", undelivered=0)
        last = "no attempt"
        attempts = 0
        for attempt in range(1, self._max_attempts + 1):
            attempts = attempt
            date = email.utils.formatdate(usegmt=True)  # signed afresh per attempt: the service checks the clock
            headers = {
                "Content-Type": CONTENT_TYPE,
                "Log-Type": table.log_type,
                "x-ms-date": date,
                "time-generated-field": "TimeGenerated",
                "Authorization": f"SharedKey {self.workspace_id}:{signature(self._key, date, len(body))}",
            }
            retry_after: float | None = None
            try:
                response = self._session.post(self.url, data=body, headers=headers, timeout=self._bounded_timeout(call))
            except requests.RequestException as exc:  # refused, timed out, or the answer was cut off (retried)
                last = f"cannot reach {self.url.split('?')[0]} ({type(exc).__name__})"
            else:
                if 200 <= response.status_code < 300:
                    return
                detail = _detail(response)
                last = f"HTTP {response.status_code}: {detail}"
                if _says_retired(response.status_code, detail):  # one line: the service's words, then what to do
                    said = " ".join(detail.split())
                    raise SinkError(f"HTTP {response.status_code}: {said}; {RETIRED}", undelivered=0)
                if response.status_code not in RETRY_STATUSES:
                    raise SinkError(last + _hint(response.status_code), undelivered=0)
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt == self._max_attempts or call.expired():
                break
            delay = retry_after if retry_after is not None else self._first_wait * 2 ** (attempt - 1)
            delay = min(max(delay, 0.0), self._max_retry_sleep, call.left())
            log.warning(
                "data_collector: %s for %s, attempt %d of %d; retrying in %.1f s",
                last, table.log_type, attempt, self._max_attempts, delay,
            )
            self._sleep(delay)
        out_of_time = " (the batch's time bound passed)" if attempts < self._max_attempts else ""
        raise SinkError(f"{last} after {attempts} attempt(s){out_of_time}", undelivered=0)

    def _bounded_timeout(self, call: Deadline) -> tuple[float, float]:
        """(connect, read) of one post: no longer than what is left of the batch's bound (at least SHORTEST_WAIT)."""
        connect, read = self._timeout
        return call.bound(connect), call.bound(read)

    def close(self) -> None:
        if self._own_session:
            self._session.close()


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail(response: requests.Response) -> str:
    """The service's error code and message, secret-free and bounded."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and ("Error" in payload or "Message" in payload):
        text = f"{payload.get('Error', '')} {payload.get('Message', '')}".strip()
    else:
        text = response.text.strip().splitlines()[0] if response.text.strip() else response.reason or ""
    return shorten(redact(text))


def _says_retired(status: int, detail: str) -> bool:
    return status == 410 or (status in RETIRED_STATUSES and _RETIRED_WORDS.search(detail) is not None)


def _hint(status: int) -> str:
    if status == 403:
        return (
            "; the signature was refused: check that the Key Vault secret named by LOG_ANALYTICS_WORKSPACE_KEY_SECRET "
            "holds the current primary or secondary key of workspace LOG_ANALYTICS_WORKSPACE_ID, and the clock"
        )
    if status == 404:
        return "; check LOG_ANALYTICS_WORKSPACE_ID and LOG_ANALYTICS_DOMAIN"
    if status == 400:
        return "; the service rejected the request (Log-Type or body)"
    return ""
