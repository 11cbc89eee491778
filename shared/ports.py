"""The small interfaces (ports) the collector is built from. Real adapters are chosen in the composition root
(``shared.composition``); tests pass fakes. Nothing here reads the environment.

Errors the ports raise are the types of ``shared.errors``; adapters translate their SDK's exceptions into them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from shared.domain import Account, CredentialReport, RunResult
from shared.records import Table


class SecretProvider(Protocol):
    """Returns secret values by name (Key Vault in production)."""

    def get_secret(self, name: str) -> str: ...


class WebIdentityTokenProvider(Protocol):
    """Returns an OIDC token for AWS AssumeRoleWithWebIdentity (the managed identity's token in production)."""

    def get_token(self) -> str: ...


class Sink(Protocol):
    """Delivers rows (JSON-ready dicts, as ``Record.to_row()`` makes them) to one table.

    ``send`` either delivers every row or raises ``SinkError``; it never drops rows silently.
    """

    name: str

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class Clock(Protocol):
    """Time as the collector sees it: the wall clock for what records say, the monotonic clock for how long things
    take (the time budget, the run's duration). Tests pass a fake so that no test sleeps to make time pass."""

    def now(self) -> datetime: ...  # aware, UTC

    def monotonic(self) -> float: ...  # seconds, only differences mean anything


class IamReader(Protocol):
    """One AWS account's IAM, read-only: ``shared.aws.BotocoreIamReader`` in production.

    Answers are IAM's items as the API shapes them (``UserName``, ``AccessKeyId``, ``LastUsedDate``, ...); an answer
    without its list or object raises ``MalformedResponseError``. A user or key deleted since it was listed raises
    ``NoSuchEntityError``; any other failed call, after the SDK's own retries, raises ``IamCallError`` with a complete
    message. ``concurrency`` is how many calls the reader serves in parallel (the credential report aside): the
    inventory runs exactly that many."""

    concurrency: int

    def authorization_details(self) -> Iterator[Mapping[str, Any]]:
        """GetAccountAuthorizationDetails pages (Filter User, Group, LocalManagedPolicy), streamed: users with their
        tags, groups and policies, groups, customer-managed policies."""
        ...

    def access_keys(self, user_name: str) -> Sequence[Mapping[str, Any]]: ...  # ListAccessKeys AccessKeyMetadata

    def key_last_used(self, key_id: str) -> Mapping[str, Any]: ...  # GetAccessKeyLastUsed AccessKeyLastUsed

    def service_specific_credentials(self, service_name: str) -> Sequence[Mapping[str, Any]]:
        """Every user's service-specific credentials for one service: ListServiceSpecificCredentials
        (AllUsers, ServiceName), every page. A service IAM does not offer them for (NotSupportedService) has none."""
        ...

    def close(self) -> None:
        """The account is done with the reader (and the report's read has ended): its resources may serve another
        account."""
        ...

    def credential_report(self, now: datetime, stop: threading.Event) -> CredentialReport:
        """The account's credential report, no older than AWS allows at ``now`` (generated when missing or stale).
        Waiting for AWS to generate it ends early, with an error, once ``stop`` is set.
        Raises ``CredentialReportUnavailableError`` when AWS does not produce it in time."""
        ...


class AwsAccounts(Protocol):
    """The AWS source port: signs in, lists the accounts in scope, hands out an ``IamReader`` per account
    (``shared.aws.AwsSource`` in production). Errors are ``shared.errors`` types (``AwsSignInError``, ...)."""

    def sign_in(self, run_id: str) -> None: ...

    def planned_account_ids(self) -> list[str]: ...  # known before any AWS call, to name them if sign-in fails

    def accounts(self) -> list[Account]: ...  # in the organization's order

    def iam_reader(self, account: Account) -> IamReader: ...


class Progress(Protocol):
    """Where a run reports what it is doing: a progress line on a terminal, one log line per account under the
    Function."""

    def started(self, total: int) -> None: ...

    def account_done(self, account: Account, keys: int, error: str | None) -> None: ...

    def finished(self, result: RunResult) -> None: ...
