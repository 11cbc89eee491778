"""botocore clients: one session per run, retries and timeouts (botocore's own adaptive retry), timestamps."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import botocore.session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.credentials import (
    Credentials,
)
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from botocore.utils import parse_timestamp

from shared import __version__
from shared.deadline import Deadline
from shared.errors import RunStoppedError

# What a botocore call raises: an error answer, a transport error, or an answer that does not parse (botocore's
# ResponseParserError is not a BotoCoreError).
AWS_ERRORS = (ClientError, BotoCoreError, ResponseParserError)


MAX_ATTEMPTS = 10
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60


def retry_config(
    max_pool_connections: int = 10, max_attempts: int | None = None, read_timeout: float | None = None
) -> Config:
    """Botocore's adaptive retry, chosen on purpose: it retries throttling and transient errors with backoff and
    rate-limits the client when IAM says Throttling, so parallel calls slow down instead of losing an account.
    ``max_attempts`` and ``read_timeout`` are lowered only by the fault-injection tests (``ClientOptions``)."""
    return Config(
        # total_max_attempts counts the first call too; botocore's "max_attempts" would count retries only (11 calls)
        retries={"mode": "adaptive", "total_max_attempts": max_attempts or MAX_ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=read_timeout or READ_TIMEOUT,
        max_pool_connections=max_pool_connections,
        user_agent_appid=f"aws-iam-key-collector-{__version__}".replace(".", "-"),
    )


def parse_aws_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, without dateutil for the ISO 8601 form in which IAM, STS and Organizations send
    every date (dateutil's generic parser took about 15% of the CPU of an IAM call). Anything else (epoch seconds,
    RFC 822) goes to botocore's own parser, so every answer parses exactly as before."""
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return parse_timestamp(value)  # type: ignore[no-any-return]


class _RunSession(botocore.session.Session):  # type: ignore[misc]
    """The run's one botocore session: every client is made from it, so service models, endpoint rules and the
    session's event handlers are loaded once per run, not once per account (a new session per client cost about
    18 ms more CPU for each; one session about 7 ms for an IAM client, 3 ms for an STS client).

    ``create_client`` takes the new client's credentials from ``get_credentials()``: this session answers with the
    credentials of the client being made (set by the factory under its lock), never the environment's, a
    profile's or instance metadata."""

    def __init__(self) -> None:
        super().__init__()
        self.credentials_of_next_client: Credentials | None = None
        self.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_aws_timestamp)

    def get_credentials(self) -> Credentials | None:
        return self.credentials_of_next_client


class AwsClientFactory:
    """Makes botocore clients on given credentials, all from one botocore session.

    STS clients are also reused: every member role is assumed through one STS client signed with the home role's
    current keys (botocore's credential fetchers ask for a client per call; making one per account was a third of
    an account's CPU). ``sts_connections`` is that client's connection pool: one per account collected at once."""

    def __init__(
        self,
        region: str,
        *,
        max_attempts: int | None = None,
        read_timeout: float | None = None,
        deadline: Deadline | None = None,
        sts_connections: int = 10,
    ) -> None:
        self.region = region
        self._deadline = deadline or Deadline.never()
        self._max_attempts, self._read_timeout = max_attempts, read_timeout
        # botocore's default pool (10) for Organizations, whose calls are serial; IAM clients get their own size from
        # AwsSource (COLLECTOR_IAM_CONCURRENCY), the shared STS client one connection per parallel account.
        self._config = retry_config(max_attempts=max_attempts, read_timeout=read_timeout)
        self._sts_config = Config(max_pool_connections=max(10, sts_connections))
        self._session = _RunSession()
        self._lock = threading.Lock()  # botocore sessions are not thread-safe while creating clients
        self._sts_clients: dict[tuple[str, str, str | None], BaseClient] = {}

    def client(self, service: str, credentials: Credentials | None = None, config: Config | None = None) -> BaseClient:
        merged = self._config.merge(config) if config else self._config
        if self._deadline.bounded:  # a client made late in the run waits no longer than the run has left
            merged = merged.merge(self._bounded_config())
        with self._lock:
            self._session.credentials_of_next_client = credentials
            try:
                client = self._session.create_client(service, region_name=self.region, config=merged)
            finally:
                self._session.credentials_of_next_client = None
        # Before every attempt of every call (retries and credential refreshes included): once the run has stopped,
        # no AWS call starts, whichever thread asks, so nothing the run leaves behind calls AWS after it returned.
        client.meta.events.register_first("before-send", self._refuse_once_stopped)
        return client

    def _refuse_once_stopped(self, **_: Any) -> None:
        if self._deadline.stopped:
            raise RunStoppedError("not sent: the run stopped at its deadline, and starts no AWS call after it")

    def _bounded_config(self) -> Config:
        """Every attempt's connect and read waits cut so that all of a call's attempts fit in what the run has left
        before its reserve (at least 1 s each)."""
        attempts = self._max_attempts or MAX_ATTEMPTS
        left = max(1.0, self._deadline.delivery_left())
        read = self._read_timeout or READ_TIMEOUT
        per_attempt = max(1.0, min(float(read), left / attempts))
        return Config(read_timeout=per_attempt, connect_timeout=min(float(CONNECT_TIMEOUT), per_attempt))

    def client_creator(self, service: str, **kwargs: Any) -> BaseClient:
        """The ``client_creator`` botocore's credential fetchers expect (static keys or an unsigned config). An STS
        client on given keys is made once and reused while those keys are current (they change when the home role's
        session is refreshed; the few kept are dropped then)."""
        if "aws_access_key_id" not in kwargs:
            return self.client(service, None, kwargs.pop("config", None))
        keys = (kwargs.pop("aws_access_key_id"), kwargs.pop("aws_secret_access_key"), kwargs.pop("aws_session_token"))
        if service != "sts":
            return self.client(service, Credentials(*keys), kwargs.pop("config", None))
        with self._lock:
            reused = self._sts_clients.get(keys)
        if reused is not None:
            return reused
        made = self.client("sts", Credentials(*keys), self._sts_config)
        with self._lock:
            if len(self._sts_clients) >= 4:  # keys of an expired session are never asked for again
                self._sts_clients.clear()
            return self._sts_clients.setdefault(keys, made)
