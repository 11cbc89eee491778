"""How the collector talks HTTP to Azure: production timeouts and retry bounds, and the test-only client options.

Imports nothing from the project (tests/test_architecture.py checks), so that the low-level adapters (shared/azure/,
shared/delivery/blob_outbox.py, the Azure sinks) and the composition root can all read it without an import circle.

``ClientOptions`` carries the only test-only knobs (a CA bundle for local HTTPS fakes, Key Vault's challenge-resource
check for a vault on localhost, shorter waits for the fault-injection tests). They are never read from a setting:
production passes the defaults, which keep TLS verification and the challenge check on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Retries of the Azure SDK pipelines: bounded so that a run always ends well inside the Function's timeout.
# azure-core waits for Retry-After when a response carries it, else backs off exponentially up to the maximum.
RETRY_TOTAL = 4
RETRY_BACKOFF_FACTOR = 0.8
RETRY_BACKOFF_MAX = 30
# Timeouts of every Azure request (azure-core's own default is 300 s each, so four attempts at a hung endpoint could
# outlast the Function's timeout and lose the run before the outbox keeps its records).
CONNECTION_TIMEOUT = 10
READ_TIMEOUT = 60
# One sink call (an upload of one batch: every chunk, every attempt and every wait between them) ends within this share
# of what the run has left for delivery, and within SINK_CALL_SECONDS: a sink that accepts and never answers opens
# the breaker after it (the rest of the run goes straight to the outbox), long before the run's deadline. With a
# 2-minute functionTimeout (a 72 s delivery window) that is 18 s; with 30 minutes, 3 minutes, which still absorb a
# throttled upload's Retry-After waits. shared/deadline.py's ``Deadline.call`` computes it; the Logs Ingestion sink
# holds azure-core to it (its CallTimePolicy and AttemptTimePolicy), the data_collector sink its own loop.
SINK_CALL_SHARE = 0.25
SINK_CALL_SECONDS = 180.0

# The data_collector sink posts with requests and retries itself (429, 500 and 503, honouring Retry-After).
DATA_COLLECTOR_RETRY_STATUSES = frozenset({429, 500, 503})
DATA_COLLECTOR_MAX_ATTEMPTS = 5
DATA_COLLECTOR_MAX_RETRY_SLEEP = 60.0  # seconds; also caps a longer Retry-After so a run ends inside the timeout
DATA_COLLECTOR_TIMEOUT = (10, 120)  # connect, read (seconds)
DATA_COLLECTOR_FIRST_WAIT = 1.0  # seconds before the first retry without Retry-After; doubles each time


@dataclass(frozen=True)
class EndpointPolicy:
    """Hosts a token may go to beyond the clouds' own domains (shared/config/endpoints.py has the allow-lists). Empty in
    production; tests add their fakes' hosts (``127.0.0.1``, ``localhost``, a fake Data Collector domain) through
    ``ClientOptions.endpoints``, never through a setting."""

    extra_azure_hosts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ClientOptions:
    """Test-only client options, passed in by tests through the composition root. Defaults are production's."""

    ca_bundle: str | None = None  # trust this CA file (the local fakes' trustme CA) in the Azure clients
    verify_challenge_resource: bool = True  # Key Vault: the challenge's resource must match the vault's domain
    # Fault-injection tests only: shorter waits so a timeout or a retried fault costs a fraction of a second.
    # None keeps production's values (shared/aws/ retry_config, the constants above).
    aws_max_attempts: int | None = None  # botocore attempts per call (None: 10)
    aws_read_timeout: float | None = None  # seconds (None: 60)
    azure_read_timeout: float | None = None  # seconds, every Azure client and the data_collector sink
    azure_retry_backoff_factor: float | None = None  # azure-core backoff factor; data_collector's first wait
    # Hosts a token may go to beyond the clouds' own domains: the local fakes' hosts in tests. Passed to load_settings
    # by the caller that owns these options (function_app.py).
    endpoints: EndpointPolicy = EndpointPolicy()


def transport_options(options: ClientOptions, *, timeouts: bool = True) -> dict[str, Any]:
    """Keyword arguments for an azure-core transport: the timeouts (a test may shorten the read timeout) and the
    test-only CA bundle, when given. TLS verification itself is never switched off."""
    found: dict[str, Any] = {"connection_verify": options.ca_bundle} if options.ca_bundle else {}
    if timeouts:
        found["connection_timeout"] = CONNECTION_TIMEOUT
        found["read_timeout"] = READ_TIMEOUT if options.azure_read_timeout is None else options.azure_read_timeout
    return found


def retry_options(options: ClientOptions) -> dict[str, Any]:
    """azure-core's retry policy as every Azure client of the collector uses it (the managed identity credential
    included): at most RETRY_TOTAL retries, of which azure-core allows 3 per kind (connection, read, status)."""
    factor = options.azure_retry_backoff_factor
    return {
        "retry_total": RETRY_TOTAL,
        "retry_backoff_factor": RETRY_BACKOFF_FACTOR if factor is None else factor,
        "retry_backoff_max": RETRY_BACKOFF_MAX,
    }


def data_collector_timeout(options: ClientOptions) -> tuple[float, float]:
    """(connect, read) seconds of each data_collector POST."""
    connect, read = DATA_COLLECTOR_TIMEOUT
    return (connect, read if options.azure_read_timeout is None else options.azure_read_timeout)


def data_collector_first_wait(options: ClientOptions) -> float:
    """Seconds before data_collector's first retry without Retry-After (production: 1, 2, 4, 8 s)."""
    factor = options.azure_retry_backoff_factor
    return DATA_COLLECTOR_FIRST_WAIT if factor is None else factor

