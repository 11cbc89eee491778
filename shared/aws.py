"""AWS: sign-in (home role, member roles) and the raw API calls. Dumb I/O that raises; no transformation here.

Credentials: the IAM user's key (``access_key`` mode) or the managed identity's OIDC token (``web_identity`` mode)
is used for exactly one thing, the STS call into the home role. Every IAM and Organizations call runs on the home
role's session or on a member role chained from it. Sessions are short (15 minutes, the STS minimum) and botocore
refreshes them a few minutes before they expire, so a long inventory never runs on expired credentials.

Endpoints come from boto3's own conventions (``AWS_ENDPOINT_URL`` and friends), which is how the demo and the
tests point the real clients at a local emulated AWS.
"""

from __future__ import annotations

import csv
import io
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import botocore.session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    AssumeRoleWithWebIdentityCredentialFetcher,
    Credentials,
    RefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from botocore.utils import parse_timestamp

from shared import __version__
from shared.deadline import Deadline
from shared.domain import Account, CredentialReport
from shared.errors import (
    AwsSignInError,
    CredentialReportUnavailableError,
    IamCallError,
    MalformedResponseError,
    NoSuchEntityError,
    shorten,
)
from shared.ports import SecretProvider, WebIdentityTokenProvider
from shared.rate_limit import CallRateLimiter
from shared.redaction import mask_access_key_id, redact, register_secret
from shared.settings import AccessKeyAuth, AccountsScope, Settings, WebIdentityAuth

SESSION_SECONDS = 900  # the STS minimum: a leaked session is worth as little as possible
_REFRESH_BEFORE_SECONDS = 180  # refresh this long before expiry (botocore's default of 15 min would refresh always)
_ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")

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
                return self._session.create_client(service, region_name=self.region, config=merged)
            finally:
                self._session.credentials_of_next_client = None

    def _bounded_config(self) -> Config:
        """Every attempt's connect and read waits cut so that all of a call's attempts fit in what the run has left
        before its reserve (at least 1 s each)."""
        attempts = self._max_attempts or MAX_ATTEMPTS
        left = max(1.0, self._deadline.remaining() - self._deadline.reserve)
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


def _refreshing(fetch: Callable[[], dict[str, Any]], method: str, what: str) -> RefreshableCredentials:
    """Fetch now (so a sign-in error surfaces here, named) and let botocore refresh before expiry."""

    def fetch_and_protect() -> dict[str, Any]:
        try:
            metadata = fetch()
        except AWS_ERRORS as exc:
            raise AwsSignInError(f"{what} failed: {describe_aws_error(exc)}") from None
        register_secret(metadata.get("secret_key"))
        register_secret(metadata.get("token"))
        return metadata

    return RefreshableCredentials.create_from_metadata(
        metadata=fetch_and_protect(),
        refresh_using=fetch_and_protect,
        method=method,
        advisory_timeout=_REFRESH_BEFORE_SECONDS,
        mandatory_timeout=_REFRESH_BEFORE_SECONDS // 3,
    )


def session_name(run_id: str) -> str:
    """RoleSessionName: recognisable in CloudTrail, unique per run."""
    return f"aws-iam-key-collector-{run_id[:8]}"


def iam_user_credentials(secrets: SecretProvider, key_id_secret: str, secret_key_secret: str) -> Credentials:
    """The IAM user's long-lived key pair, from the secret provider; used for nothing but AssumeRole."""
    key_id = secrets.get_secret(key_id_secret).strip()
    secret_key = secrets.get_secret(secret_key_secret).strip()
    register_secret(secret_key)
    register_secret(key_id)
    if not _ACCESS_KEY_ID.match(key_id):
        raise AwsSignInError(
            f"secret {key_id_secret!r} does not hold an AWS access key id (expected 16+ upper-case letters and "
            "digits, like AKIA...): check the value stored in Key Vault"
        )
    if len(secret_key) < 16:
        raise AwsSignInError(f"secret {secret_key_secret!r} does not hold an AWS secret access key")
    return Credentials(key_id, secret_key)


def assume_home_role_with_key(
    factory: AwsClientFactory, user_credentials: Credentials, role_arn: str, external_id: str | None, run_id: str
) -> RefreshableCredentials:
    extra: dict[str, Any] = {"RoleSessionName": session_name(run_id), "DurationSeconds": SESSION_SECONDS}
    if external_id:
        extra["ExternalId"] = external_id
    fetcher = AssumeRoleCredentialFetcher(
        factory.client_creator, user_credentials, role_arn, extra_args=extra, expiry_window_seconds=60
    )
    return _refreshing(
        fetcher.fetch_credentials,
        "assume-role",
        f"STS AssumeRole into {role_arn} with the IAM user's key (check the key in Key Vault, the role's trust "
        "policy and the ExternalId)",
    )


def assume_home_role_with_web_identity(
    factory: AwsClientFactory, tokens: WebIdentityTokenProvider, role_arn: str, run_id: str
) -> RefreshableCredentials:
    def token() -> str:
        value = tokens.get_token()
        register_secret(value)
        return value

    fetcher = AssumeRoleWithWebIdentityCredentialFetcher(
        factory.client_creator,
        token,
        role_arn,
        extra_args={"RoleSessionName": session_name(run_id), "DurationSeconds": SESSION_SECONDS},
        expiry_window_seconds=60,
    )
    return _refreshing(
        fetcher.fetch_credentials,
        "assume-role-with-web-identity",
        f"STS AssumeRoleWithWebIdentity into {role_arn} (check the role's OIDC trust: issuer, audience and the "
        "managed identity's object id as subject)",
    )


def assume_member_role(
    factory: AwsClientFactory, home: Credentials, role_arn: str, run_id: str
) -> RefreshableCredentials:
    fetcher = AssumeRoleCredentialFetcher(
        factory.client_creator,
        home,
        role_arn,
        extra_args={"RoleSessionName": session_name(run_id), "DurationSeconds": SESSION_SECONDS},
        expiry_window_seconds=60,
    )
    return _refreshing(
        fetcher.fetch_credentials,
        "assume-role",
        f"STS AssumeRole into {role_arn} from the home role (check that the role exists in that account and trusts "
        "the home role)",
    )


def member_role_arn(partition: str, account_id: str, role_name: str) -> str:
    return f"arn:{partition}:iam::{account_id}:role/{role_name}"


# --- get: raw, paginated reads (the SDK's paginators; errors propagate) ---


def list_organization_accounts(org: BaseClient) -> Iterator[dict[str, Any]]:
    """ListAccounts pages."""
    yield from org.get_paginator("list_accounts").paginate()


def active_accounts(pages: Sequence[Mapping[str, Any]] | Any) -> list[Account]:
    """ACTIVE accounts from Organizations ListAccounts pages, with their names, sorted by id (checked strictly: a
    missing or malformed field raises ``MalformedResponseError`` rather than losing an account)."""
    where = "Organizations ListAccounts"
    accounts: dict[str, Account] = {}
    for page in pages:
        items = page.get("Accounts") if isinstance(page, Mapping) else None
        if not isinstance(items, list):  # botocore parses a cut or garbled JSON answer as an empty one
            raise MalformedResponseError(f"{where}: field Accounts is missing")
        for item in items:
            account_id = item.get("Id") if isinstance(item, Mapping) else None
            if not isinstance(account_id, str) or not account_id:
                raise MalformedResponseError(f"{where}: field Id is {'missing' if account_id is None else 'not a str'}")
            if not _ACCOUNT_ID.match(account_id):
                raise MalformedResponseError(f"{where}: field Id is not a 12-digit account id")
            # Newer responses carry State (ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED); older ones only Status.
            state = item.get("State") or item.get("Status")
            if state == "ACTIVE":
                name = item.get("Name")
                accounts[account_id] = Account(account_id, name if isinstance(name, str) else "")
    return [accounts[i] for i in sorted(accounts)]


def list_users(iam: BaseClient, page_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Every IAM user, streamed page by page (1,000 per page by default: the API's maximum, so fewest calls)."""
    for page in iam.get_paginator("list_users").paginate(PaginationConfig={"PageSize": page_size}):
        users = page.get("Users")
        if not isinstance(users, list):
            raise MalformedResponseError("IAM ListUsers: field Users is missing")
        yield from users


def list_access_keys(iam: BaseClient, user_name: str) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = []
    for page in iam.get_paginator("list_access_keys").paginate(UserName=user_name):
        found = page.get("AccessKeyMetadata")
        if not isinstance(found, list):  # IAM sends an empty list for a user without keys: absent is not "none"
            raise MalformedResponseError(f"IAM ListAccessKeys (user {user_name}): field AccessKeyMetadata is missing")
        keys.extend(found)
    return keys


def get_access_key_last_used(iam: BaseClient, key_id: str) -> dict[str, Any]:
    response = iam.get_access_key_last_used(AccessKeyId=key_id)
    used = response.get("AccessKeyLastUsed")
    if not isinstance(used, dict):  # absent must not read as "never used"
        raise MalformedResponseError(
            f"IAM GetAccessKeyLastUsed (key {mask_access_key_id(key_id)}): field AccessKeyLastUsed is missing"
        )
    return used


def list_user_tags(iam: BaseClient, user_name: str) -> list[dict[str, Any]]:
    """The user's tags (IAM allows 50 a user: one page)."""
    tags: list[dict[str, Any]] = []
    for page in iam.get_paginator("list_user_tags").paginate(UserName=user_name):
        found = page.get("Tags")
        if not isinstance(found, list):  # absent must not read as "no owner"
            raise MalformedResponseError(f"IAM ListUserTags (user {user_name}): field Tags is missing")
        tags.extend(found)
    return tags


def is_no_such_entity(exc: Exception) -> bool:
    """The user or key was deleted between listing and reading: it no longer exists, so it has no record."""
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "NoSuchEntity"


def describe_aws_error(exc: BaseException) -> str:
    """A short, secret-free description of an AWS error, with the API's code when there is one."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "") or "request"
        text = f"{operation}: {error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")
    else:  # the first line only: a ResponseParserError appends the raw (possibly cut, secret-bearing) body
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return shorten(redact(text))


IAM_READ_ACTIONS = "iam:ListUsers, iam:ListAccessKeys, iam:GetAccessKeyLastUsed, iam:ListUserTags"


def describe_iam_error(exc: BaseException, account_id: str) -> str:
    """An IAM call of an account failed: which dependency (IAM), which account, what failed and what to check."""
    text = f"IAM in account {account_id}: {describe_aws_error(exc)}"
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        return f"{text} (the account's collector role needs {IAM_READ_ACTIONS})"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) if isinstance(exc, ClientError) else 0
    if isinstance(exc, ResponseParserError):  # botocore does not retry an answer it cannot parse
        return f"{text} (IAM's answer was cut off or garbled; the next run retries the account)"
    if isinstance(exc, BotoCoreError) or status >= 500 or status == 429 or "Throttl" in code:
        return f"{text} (still failing after botocore's retries: check the network path to IAM; the next run retries)"
    return text


class _ServingCredentials(Credentials):  # type: ignore[misc]
    """An IAM client's credentials: those of the account the client serves now. botocore's signer asks for the
    frozen credentials on every request, so a client can serve one account after another without being remade."""

    def __init__(self) -> None:
        super().__init__("unset", "unset")
        self.serving: Credentials | None = None

    def get_frozen_credentials(self) -> Any:
        serving = self.serving
        if serving is None:  # a reader used after close(): a bug, never a request signed with nothing
            raise AwsSignInError("an IAM client was used after its account was done (collector error)")
        return serving.get_frozen_credentials()


class _IamClientSlot:
    """One reusable IAM client, its serving credentials and the call-rate cap of the account it serves now."""

    def __init__(self, client: BaseClient, credentials: _ServingCredentials) -> None:
        self.client = client
        self.credentials = credentials
        self.limiter: CallRateLimiter | None = None

    def take_turn(self, **_: Any) -> None:
        """botocore's ``before-send`` handler (every attempt, retries included); returns None so the request goes."""
        limiter = self.limiter
        if limiter is not None:
            limiter.acquire()


class BotocoreIamReader:
    """The ``IamReader`` port over one account's botocore IAM client: the SDK's paginators and adaptive retry, and
    botocore's exceptions turned into ``NoSuchEntityError`` / ``IamCallError`` with a complete message."""

    def __init__(
        self, iam: BaseClient, account_id: str, concurrency: int, on_close: Callable[[], None] | None = None
    ) -> None:
        self._iam = iam
        self._account_id = account_id
        self.concurrency = concurrency
        self._on_close = on_close

    def close(self) -> None:
        """The account is done: its client goes back to the source for the next account."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except AWS_ERRORS as exc:
            message = describe_iam_error(exc, self._account_id)
            raise (NoSuchEntityError if is_no_such_entity(exc) else IamCallError)(message) from None

    def users(self) -> Iterator[dict[str, Any]]:
        with self._translated():
            yield from list_users(self._iam)

    def access_keys(self, user_name: str) -> list[dict[str, Any]]:
        with self._translated():
            return list_access_keys(self._iam, user_name)

    def key_last_used(self, key_id: str) -> dict[str, Any]:
        with self._translated():
            return get_access_key_last_used(self._iam, key_id)

    def user_tags(self, user_name: str) -> list[dict[str, Any]]:
        with self._translated():
            return list_user_tags(self._iam, user_name)

    def credential_report(self, now: datetime, stop: threading.Event) -> CredentialReport:
        try:
            content, generated = _read_report(self._iam, now, _sleep_unless(stop), REPORT_WAITS)
        except AWS_ERRORS as exc:  # said as before: the report's own call, AWS's code (the account goes on)
            raise IamCallError(describe_aws_error(exc)) from None
        return parse_credential_report(content, generated)


def _sleep_unless(stop: threading.Event) -> Callable[[float], None]:
    """The credential report's wait between polls, cut short (with an error) once ``stop`` is set."""

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise CredentialReportUnavailableError("the account failed; its credential report is no longer read")

    return sleep


class AwsSource:
    """The ``AwsAccounts`` port: signs in to the home role, lists the accounts in scope, and hands out an IAM reader
    on the right role for each account. Secret and token providers are passed in, never looked up here.

    ``COLLECTOR_IAM_CONCURRENCY`` takes effect here and only here: each account's IAM client gets that many
    connections plus one for the credential report, and its reader says that many calls run in parallel."""

    def __init__(
        self,
        settings: Settings,
        factory: AwsClientFactory,
        *,
        secrets: SecretProvider | None = None,
        tokens: WebIdentityTokenProvider | None = None,
    ) -> None:
        self._settings = settings
        self._factory = factory
        self._secrets = secrets
        self._tokens = tokens
        self._home: Credentials | None = None
        self._run_id = ""
        # IAM clients of accounts that are done, reused for the next accounts (creating a client is about a third of
        # a small account's CPU); at most COLLECTOR_ACCOUNT_CONCURRENCY exist at once.
        self._idle_iam: list[_IamClientSlot] = []
        self._idle_lock = threading.Lock()

    def sign_in(self, run_id: str) -> None:
        s = self._settings
        self._run_id = run_id
        # The first IAM client loads IAM's service model and endpoint rules (tens of ms of CPU): made while sign-in
        # waits for STS, it is ready, in the idle pool, when the first account starts.
        threading.Thread(target=self._prepare_iam_client, name="iam-client-warmup", daemon=True).start()
        match s.aws_auth:
            case WebIdentityAuth():
                if self._tokens is None:
                    raise AwsSignInError("web_identity mode needs a token provider (composition error)")
                self._home = assume_home_role_with_web_identity(self._factory, self._tokens, s.aws_role_arn, run_id)
            case AccessKeyAuth():
                if self._secrets is None:
                    raise AwsSignInError("access_key mode needs a secret provider (composition error)")
                auth = s.aws_auth
                user = iam_user_credentials(self._secrets, auth.access_key_id_secret, auth.secret_access_key_secret)
                self._home = assume_home_role_with_key(self._factory, user, s.aws_role_arn, s.aws_external_id, run_id)

    def planned_account_ids(self) -> list[str]:
        """The accounts known before any AWS call (for naming them if sign-in fails)."""
        s = self._settings
        return list(s.aws_account_ids) if s.aws_accounts is AccountsScope.LIST else [s.home_account_id]

    def accounts(self) -> list[Account]:
        s = self._settings
        if s.aws_accounts is AccountsScope.HOME:
            return [Account(s.home_account_id)]
        if s.aws_accounts is AccountsScope.LIST:
            return [Account(i) for i in s.aws_account_ids]
        org = self._factory.client("organizations", self._home_credentials())
        try:
            return active_accounts(list_organization_accounts(org))
        except (*AWS_ERRORS, MalformedResponseError) as exc:
            raise AwsSignInError(
                f"Organizations ListAccounts through {s.aws_role_arn} failed: {describe_aws_error(exc)} (the home "
                "role must be in the management account or a delegated administrator, with organizations:ListAccounts)"
            ) from None

    def iam_reader(self, account: Account) -> BotocoreIamReader:
        s = self._settings
        home = self._home_credentials()
        if account.id == s.home_account_id:
            credentials: Credentials = home
        else:
            arn = member_role_arn(s.aws_partition, account.id, s.aws_member_role_name)
            credentials = assume_member_role(self._factory, home, arn, self._run_id)
        slot = self._iam_slot()
        slot.credentials.serving = credentials
        slot.limiter = CallRateLimiter(s.iam_max_calls_per_second) if s.iam_max_calls_per_second > 0 else None

        def release() -> None:
            slot.credentials.serving = None
            slot.limiter = None
            with self._idle_lock:
                self._idle_iam.append(slot)

        return BotocoreIamReader(slot.client, account.id, s.iam_concurrency, release)

    def _prepare_iam_client(self) -> None:
        try:
            slot = self._iam_slot()
        except Exception:  # only a head start: the first account makes its own client, and says what failed
            return
        with self._idle_lock:
            self._idle_iam.append(slot)

    def _iam_slot(self) -> _IamClientSlot:
        with self._idle_lock:
            if self._idle_iam:
                return self._idle_iam.pop()
        serving = _ServingCredentials()
        # one connection per parallel IAM call of the account, plus one for its credential report read alongside
        config = Config(max_pool_connections=self._settings.iam_concurrency + 1)
        slot = _IamClientSlot(self._factory.client("iam", serving, config), serving)
        # each request, retries included, first takes its turn under the account's cap (COLLECTOR_IAM_MAX_CALLS_...)
        slot.client.meta.events.register("before-send.iam", slot.take_turn)
        return slot

    def _home_credentials(self) -> Credentials:
        if self._home is None:
            raise AwsSignInError("not signed in to the home role")
        return self._home


# --- the IAM credential report: the only place AWS shows whether the root user has access keys ---

REPORT_MAX_AGE = timedelta(hours=4)  # AWS generates a new report at most every 4 hours; a fresher one cannot exist
_REPORT_NOT_READY = frozenset({"ReportNotPresent", "ReportExpired", "ReportInProgress"})
REPORT_WAITS = (1.0, 2.0, 4.0, 8.0, 8.0)  # seconds between polls while AWS generates the report


def _current_report(iam: BaseClient) -> tuple[str, datetime] | None:
    try:
        response = iam.get_credential_report()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _REPORT_NOT_READY:
            return None
        raise
    content, generated = response.get("Content"), response.get("GeneratedTime")
    if not isinstance(content, bytes | str) or not isinstance(generated, datetime):
        raise MalformedResponseError("IAM GetCredentialReport: field Content or GeneratedTime is missing")
    return (content.decode("utf-8") if isinstance(content, bytes) else content), generated


def read_credential_report(
    iam: BaseClient, now: datetime, sleep: Callable[[float], None] = time.sleep, waits: tuple[float, ...] = REPORT_WAITS
) -> str:
    """The account's credential report (CSV): the current one when it is under four hours old, else a new one.

    GenerateCredentialReport is called only when the report is missing or stale, so the collector never asks for
    more than AWS's rate limit allows, whatever the schedule."""
    return _read_report(iam, now, sleep, waits)[0]


def _read_report(
    iam: BaseClient, now: datetime, sleep: Callable[[float], None], waits: tuple[float, ...]
) -> tuple[str, datetime]:
    current = _current_report(iam)
    if current is not None and now - current[1] <= REPORT_MAX_AGE:
        return current
    iam.generate_credential_report()
    for wait in (0.0, *waits):
        sleep(wait)
        report = _current_report(iam)
        if report is not None:
            return report  # the newest AWS has: fresh, or (inside the rate limit) the last one it generated
    raise CredentialReportUnavailableError(
        f"IAM credential report still being generated after {sum(waits):.0f} s; root keys are read next run"
    )


class _ReportRow(Mapping[str, str]):
    """One report row as a read-only mapping of column -> value, sharing the header's column index with every other
    row (a dict per row cost about 2 KB: 11 MB for an account of 5,000 users, held while the account runs)."""

    __slots__ = ("_columns", "_values")

    def __init__(self, columns: dict[str, int], values: list[str]) -> None:
        self._columns = columns
        self._values = values

    def __getitem__(self, column: str) -> str:
        index = self._columns[column]
        return self._values[index] if index < len(self._values) else ""

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def parse_credential_report(content: str, generated_at: datetime) -> CredentialReport:
    """The report's CSV as rows of column -> value. Repeated cells (``N/A``, ``true``, regions, services, dates
    shared by many keys) are kept once."""
    reader = csv.reader(io.StringIO(content))
    header = next(reader, None)
    if header is None:
        return CredentialReport((), generated_at)
    if "user" not in header:
        raise MalformedResponseError("IAM GetCredentialReport: the report has no user column")
    columns = {name: index for index, name in enumerate(header)}
    seen: dict[str, str] = {}
    rows = tuple(_ReportRow(columns, [seen.setdefault(cell, cell) for cell in line]) for line in reader if line)
    return CredentialReport(rows, generated_at)
