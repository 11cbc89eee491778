"""IAM reads, raw and paged (dumb I/O that raises), and the IAM reader port's botocore adapter."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from botocore.client import BaseClient
from botocore.credentials import (
    Credentials,
)

from shared.aws.clients import AWS_ERRORS
from shared.aws.credential_report import REPORT_WAITS, read_report_content, sleep_unless
from shared.aws.errors import (
    SERVICE_CREDENTIALS_ACTION,
    describe_aws_error,
    describe_iam_error,
    error_code,
    is_no_such_entity,
)
from shared.aws.rate_limit import CallRateLimiter
from shared.domain import CredentialReport, parse_credential_report
from shared.errors import (
    AwsSignInError,
    IamCallError,
    MalformedResponseError,
    NoSuchEntityError,
)
from shared.redaction import mask_access_key_id

AUTHORIZATION_FILTER = ("User", "Group", "LocalManagedPolicy")  # users, groups, customer-managed policies: no roles


def account_authorization_details(iam: BaseClient, page_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Every user with its tags, groups and policies, every group and every customer-managed policy of the account,
    streamed page by page (``GetAccountAuthorizationDetails``, 1,000 entities per page by default: the API's maximum,
    so fewest calls). Each page's lists are checked where they are read (``shared.collection.directory``)."""
    pages = iam.get_paginator("get_account_authorization_details").paginate(
        Filter=list(AUTHORIZATION_FILTER), PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        if not isinstance(page, dict):
            raise MalformedResponseError("IAM GetAccountAuthorizationDetails: the answer is not an object")
        yield page


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


SERVICE_CREDENTIALS_PAGE = 1000  # ListServiceSpecificCredentials' MaxItems maximum: fewest pages


def list_service_specific_credentials(
    iam: BaseClient, service_name: str, page_size: int = SERVICE_CREDENTIALS_PAGE
) -> list[dict[str, Any]]:
    """Every IAM user's service-specific credentials for one service, one call per page (AllUsers: not one call per
    user). botocore has no paginator for this operation: Marker and IsTruncated are followed here, and an answer that
    says "truncated" without a new marker is malformed rather than a loop."""
    where = f"IAM ListServiceSpecificCredentials ({service_name})"
    found: list[dict[str, Any]] = []
    marker: str | None = None
    seen: set[str] = set()
    while True:
        params: dict[str, Any] = {"AllUsers": True, "ServiceName": service_name, "MaxItems": page_size}
        if marker is not None:
            params["Marker"] = marker
        page = iam.list_service_specific_credentials(**params)
        items = page.get("ServiceSpecificCredentials")
        if not isinstance(items, list):  # absent must not read as "none"
            raise MalformedResponseError(f"{where}: field ServiceSpecificCredentials is missing")
        found.extend(items)
        if not page.get("IsTruncated"):
            return found
        marker = page.get("Marker")
        if not isinstance(marker, str) or not marker or marker in seen:
            raise MalformedResponseError(f"{where}: truncated without a new Marker")
        seen.add(marker)


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

    def authorization_details(self) -> Iterator[dict[str, Any]]:
        with self._translated():
            yield from account_authorization_details(self._iam)

    def access_keys(self, user_name: str) -> list[dict[str, Any]]:
        with self._translated():
            return list_access_keys(self._iam, user_name)

    def key_last_used(self, key_id: str) -> dict[str, Any]:
        with self._translated():
            return get_access_key_last_used(self._iam, key_id)

    def service_specific_credentials(self, service_name: str) -> list[dict[str, Any]]:
        try:
            return list_service_specific_credentials(self._iam, service_name)
        except AWS_ERRORS as exc:
            if error_code(exc) == "NotSupportedService":  # not offered here (a partition): it has none
                return []
            raise IamCallError(describe_iam_error(exc, self._account_id, needs=SERVICE_CREDENTIALS_ACTION)) from None

    def credential_report(self, now: datetime, stop: threading.Event) -> CredentialReport:
        try:
            content, generated = read_report_content(self._iam, now, sleep_unless(stop), REPORT_WAITS)
        except AWS_ERRORS as exc:  # said as before: the report's own call, AWS's code (the account goes on)
            raise IamCallError(describe_aws_error(exc)) from None
        return parse_credential_report(content, generated)
