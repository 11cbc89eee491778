"""An in-memory AWS organization behind the collector's ports (``AwsAccounts``, ``IamReader``) and a fake clock, for
unit tests of the collector's own logic (time budget, partial failure, ordering, spooling) in milliseconds.

It answers as IAM's API shapes its items, and fails as the port says an adapter fails (``NoSuchEntityError``,
``IamCallError``, ``MalformedResponseError``). The end-to-end tests and the demo keep real boto3 on moto.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain import Account, CredentialReport
from shared.errors import AwsSignInError, CredentialReportUnavailableError, NoSuchEntityError

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class FakeClock:
    """The ``Clock`` port, moved only by ``advance``: wall and monotonic time move together."""

    def __init__(self, start: datetime = START) -> None:
        self._lock = threading.Lock()
        self._start = start
        self._elapsed = 0.0

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        with self._lock:
            return 1000.0 + self._elapsed

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._elapsed += seconds


@dataclass
class FakeKey:
    key_id: str
    status: str = "Active"
    age_days: int = 10
    used_days_ago: int | None = 1  # None: never used


@dataclass
class FakeServiceCredential:
    """A service-specific credential (ListServiceSpecificCredentials): an API key, a Git or Keyspaces credential."""

    credential_id: str
    service: str = "bedrock.amazonaws.com"
    status: str = "Active"
    age_days: int = 10
    expires_in_days: float | None = None  # None: no ExpirationDate (never expires)


@dataclass
class FakeCertificate:
    """An X.509 signing certificate, as the credential report shows it (cert_N_active, cert_N_last_rotated)."""

    status: str = "Active"
    age_days: int = 10


@dataclass
class FakeUser:
    name: str
    keys: list[FakeKey] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # IAM user tags (the owner among them)
    groups: list[str] = field(default_factory=list)  # names of FakeAccount.groups it is a member of
    attached: list[str] = field(default_factory=list)  # managed policy ARNs attached to the user
    inline: dict[str, Any] = field(default_factory=dict)  # inline policy name -> document
    boundary: str | None = None  # permissions boundary policy ARN
    console: bool = False  # a console password (the credential report's password_enabled)
    mfa: bool = False  # an MFA device (mfa_active)
    service_credentials: list[FakeServiceCredential] = field(default_factory=list)
    certificates: list[FakeCertificate] = field(default_factory=list)  # at most two


@dataclass
class FakeGroup:
    attached: list[str] = field(default_factory=list)
    inline: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeAccount:
    """One account's IAM. The knobs make it misbehave the ways the collector has to handle."""

    id: str
    name: str = ""
    users: list[FakeUser] = field(default_factory=list)
    groups: dict[str, FakeGroup] = field(default_factory=dict)
    policies: dict[str, Any] = field(default_factory=dict)  # customer-managed policy ARN -> its default document
    page_size: int = 1000  # entities per GetAccountAuthorizationDetails page (users, then groups, then policies)
    takes_seconds: float = 0.0  # fake time its GetAccountAuthorizationDetails takes (the clock advances by it)
    # raised by GetAccountAuthorizationDetails after this many users are listed: ``fail_after``
    fail_with: Exception | None = None
    fail_after: int = 0
    deleted_after_listing: set[str] = field(default_factory=set)  # users and key ids gone by the time they are read
    # users made after GetAccountAuthorizationDetails was read: every other answer (the report, the credentials'
    # listing) shows them, the directory does not
    created_after_directory: set[str] = field(default_factory=set)
    root_key_age_days: int | None = None  # a root access key in the credential report
    root_certificate_age_days: int | None = None  # a root signing certificate in the credential report
    report_unavailable: bool = False  # AWS did not produce the report within the reader's polls
    report_pending: bool = False  # AWS is still generating it: the reader waits until the collector says stop
    report_lists_users: bool = False  # the report has a row per user, consistent with the other answers, as IAM's
    report_after_listing: bool = False  # the report answers only once every user is listed (a slow report)
    report_slot_values: str | None = None  # every user slot's last-use cells say this (e.g. moto's not_supported)
    while_listing_keys: Any = None  # called inside each ListAccessKeys (to observe the calls in flight)
    while_reading_last_use: Any = None  # called inside each GetAccessKeyLastUsed (likewise)
    # GetAccountAuthorizationDetails waits for this first (to make accounts finish out of order)
    wait_for: threading.Event | None = None
    service_credentials_error: Exception | None = None  # raised by ListServiceSpecificCredentials (e.g. AccessDenied)
    service_credentials_unsupported: frozenset[str] = frozenset()  # services IAM does not offer here: none listed
    finished: threading.Event = field(default_factory=threading.Event)  # set once its last user is listed


def key_id(n: int) -> str:
    """A well-formed access key id (AKIA + 16 characters)."""
    return f"AKIA{n:016d}"


def account_with_keys(account_id: str, users: int, keys_per_user: int = 1, **knobs: Any) -> FakeAccount:
    """An account of ``users`` users with ``keys_per_user`` keys each (distinct ids across accounts)."""
    base = int(account_id) % 10_000 * 100_000
    return FakeAccount(account_id, users=[
        FakeUser(f"user{u}", [FakeKey(key_id(base + u * 10 + k)) for k in range(keys_per_user)]) for u in range(users)
    ], **knobs)


class FakeIamReader:
    """The ``IamReader`` port over one ``FakeAccount``."""

    def __init__(self, fake: IamFake, account: FakeAccount) -> None:
        self._fake = fake
        self._account = account
        self.concurrency = fake.iam_concurrency
        self.report_stopped = False  # the collector told the report's wait to stop
        self.closed = False  # the collector said the account is done with the reader

    def authorization_details(self) -> Iterator[Mapping[str, Any]]:
        """GetAccountAuthorizationDetails pages as boto3 returns them: users first, then groups, then policies,
        ``page_size`` entities a page (one recorded call per page)."""
        acct = self._account
        if acct.wait_for is not None and not acct.wait_for.wait(timeout=5):
            raise AssertionError(f"account {acct.id} waited in vain")
        self._fake.clock.advance(acct.takes_seconds)
        entities: list[tuple[str, dict[str, Any]]] = []
        for n, user in enumerate(u for u in acct.users if u.name not in acct.created_after_directory):
            if acct.fail_with is not None and n == acct.fail_after:
                yield from self._pages(entities)
                raise acct.fail_with
            entities.append(("UserDetailList", self._user_detail(user)))
        if acct.fail_with is not None and acct.fail_after >= len(acct.users):
            yield from self._pages(entities)
            raise acct.fail_with
        entities += [("GroupDetailList", self._group_detail(name, group)) for name, group in acct.groups.items()]
        entities += [("Policies", _policy_detail(arn, document)) for arn, document in acct.policies.items()]
        yield from self._pages(entities)
        acct.finished.set()

    def _pages(self, entities: list[tuple[str, dict[str, Any]]]) -> Iterator[Mapping[str, Any]]:
        size = max(1, self._account.page_size)
        for start in range(0, max(1, len(entities)), size):
            self._fake.record(self._account.id, "GetAccountAuthorizationDetails", str(start))
            page: dict[str, Any] = {"UserDetailList": [], "GroupDetailList": [], "RoleDetailList": [], "Policies": []}
            for list_name, item in entities[start:start + size]:
                page[list_name].append(item)
            page["IsTruncated"] = start + size < len(entities)
            yield page
        entities.clear()

    def _user_detail(self, user: FakeUser) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "UserName": user.name, "Arn": f"arn:aws:iam::{self._account.id}:user/{user.name}",
            "CreateDate": START - timedelta(days=1000), "GroupList": list(user.groups),
            "AttachedManagedPolicies": [{"PolicyName": arn.rsplit("/", 1)[-1], "PolicyArn": arn}
                                        for arn in user.attached],
            "UserPolicyList": [{"PolicyName": name, "PolicyDocument": doc} for name, doc in user.inline.items()],
        }
        if user.tags:  # IAM leaves Tags out for a user without tags
            detail["Tags"] = [{"Key": k, "Value": v} for k, v in user.tags.items()]
        if user.boundary:
            detail["PermissionsBoundary"] = {"PermissionsBoundaryType": "PermissionsBoundaryPolicy",
                                             "PermissionsBoundaryArn": user.boundary}
        return detail

    def _group_detail(self, name: str, group: FakeGroup) -> dict[str, Any]:
        return {"GroupName": name, "Arn": f"arn:aws:iam::{self._account.id}:group/{name}",
                "AttachedManagedPolicies": [{"PolicyName": arn.rsplit("/", 1)[-1], "PolicyArn": arn}
                                            for arn in group.attached],
                "GroupPolicyList": [{"PolicyName": n, "PolicyDocument": d} for n, d in group.inline.items()]}

    def access_keys(self, user_name: str) -> Sequence[Mapping[str, Any]]:
        self._fake.record(self._account.id, "ListAccessKeys", user_name)
        if user_name in self._account.deleted_after_listing:
            raise NoSuchEntityError(f"IAM in account {self._account.id}: ListAccessKeys: NoSuchEntity: gone")
        if self._account.while_listing_keys is not None:
            self._account.while_listing_keys()
        user = next(u for u in self._account.users if u.name == user_name)
        return [{"UserName": user_name, "AccessKeyId": k.key_id, "Status": k.status,
                 "CreateDate": self._fake.clock.now() - timedelta(days=k.age_days)} for k in user.keys]

    def key_last_used(self, key_id: str) -> Mapping[str, Any]:
        self._fake.record(self._account.id, "GetAccessKeyLastUsed", key_id)
        if key_id in self._account.deleted_after_listing:
            raise NoSuchEntityError(f"IAM in account {self._account.id}: GetAccessKeyLastUsed: NoSuchEntity: gone")
        if self._account.while_reading_last_use is not None:
            self._account.while_reading_last_use()
        key = next(k for u in self._account.users for k in u.keys if k.key_id == key_id)
        if key.used_days_ago is None:
            return {"ServiceName": "N/A", "Region": "N/A"}
        return {"LastUsedDate": self._fake.clock.now() - timedelta(days=key.used_days_ago),
                "ServiceName": "s3", "Region": "eu-west-1"}

    def service_specific_credentials(self, service_name: str) -> Sequence[Mapping[str, Any]]:
        self._fake.record(self._account.id, "ListServiceSpecificCredentials", service_name)
        if self._account.service_credentials_error is not None:
            raise self._account.service_credentials_error
        if service_name in self._account.service_credentials_unsupported:
            return []
        now = self._fake.clock.now()
        found = []
        for user in self._account.users:
            for c in user.service_credentials:
                if c.service != service_name:
                    continue
                item = {"UserName": user.name, "ServiceSpecificCredentialId": c.credential_id, "Status": c.status,
                        "ServiceName": c.service, "CreateDate": now - timedelta(days=c.age_days),
                        "ServiceUserName": f"{user.name}-at-{self._account.id}"}
                if c.expires_in_days is not None:
                    item["ExpirationDate"] = now + timedelta(days=c.expires_in_days)
                found.append(item)
        return found

    def close(self) -> None:
        self.closed = True

    def credential_report(self, now: datetime, stop: threading.Event) -> CredentialReport:
        self._fake.record(self._account.id, "GetCredentialReport", "")
        if self._account.report_pending and stop.wait(timeout=5):
            self.report_stopped = True
            raise CredentialReportUnavailableError("the account failed; its credential report is no longer read")
        if self._account.report_unavailable or self._account.report_pending:
            raise CredentialReportUnavailableError("IAM credential report still being generated")
        if self._account.report_after_listing and not self._account.finished.wait(timeout=5):
            raise AssertionError(f"account {self._account.id}: its users were never all listed")
        rows: list[dict[str, str]] = []
        rows.extend(self._user_row(user, now) for user in self._account.users
                    if self._account.report_lists_users or user.certificates)
        age, cert_age = self._account.root_key_age_days, self._account.root_certificate_age_days
        if age is not None or cert_age is not None:
            rotated = "N/A" if age is None else (now - timedelta(days=age)).isoformat()
            second = now.replace(microsecond=0)
            uploaded = "N/A" if cert_age is None else (second - timedelta(days=cert_age)).isoformat()
            rows.append({"user": "<root_account>", "arn": f"arn:aws:iam::{self._account.id}:root",
                         "access_key_1_active": str(age is not None).lower(), "access_key_1_last_rotated": rotated,
                         "access_key_1_last_used_date": "N/A", "access_key_1_last_used_region": "N/A",
                         "access_key_1_last_used_service": "N/A", "access_key_2_active": "false",
                         "access_key_2_last_rotated": "N/A", "cert_1_active": str(cert_age is not None).lower(),
                         "cert_1_last_rotated": uploaded, "cert_2_active": "false", "cert_2_last_rotated": "N/A"})
        return CredentialReport(tuple(rows), now)

    def _user_row(self, user: FakeUser, now: datetime) -> dict[str, str]:
        """The user's report row, as ListAccessKeys and GetAccessKeyLastUsed answer (slot N: the N-th key)."""
        row = {"user": user.name, "arn": f"arn:aws:iam::{self._account.id}:user/{user.name}",
               "password_enabled": str(user.console).lower(), "mfa_active": str(user.mfa).lower()}
        for slot in (1, 2):
            key = user.keys[slot - 1] if len(user.keys) >= slot else None
            prefix = f"access_key_{slot}_"
            if key is None:
                row.update({prefix + "active": "false", prefix + "last_rotated": "N/A"})
                row.update({prefix + f"last_used_{cell}": "N/A" for cell in ("date", "region", "service")})
                continue
            used = "N/A" if key.used_days_ago is None else (now - timedelta(days=key.used_days_ago)).isoformat()
            region, service = ("N/A", "N/A") if key.used_days_ago is None else ("eu-west-1", "s3")
            if self._account.report_slot_values is not None:
                region = service = self._account.report_slot_values
            row.update({prefix + "active": "true" if key.status == "Active" else "false",
                        prefix + "last_rotated": (now - timedelta(days=key.age_days)).isoformat(),
                        prefix + "last_used_date": used, prefix + "last_used_region": region,
                        prefix + "last_used_service": service})
        for slot in (1, 2):
            cert = user.certificates[slot - 1] if len(user.certificates) >= slot else None
            row[f"cert_{slot}_active"] = "true" if cert is not None and cert.status == "Active" else "false"
            row[f"cert_{slot}_last_rotated"] = "N/A" if cert is None else (
                now.replace(microsecond=0) - timedelta(days=cert.age_days)).isoformat()
        return row


def _policy_detail(arn: str, document: Any) -> dict[str, Any]:
    """A customer-managed policy as GetAccountAuthorizationDetails lists it: an older version, then the default."""
    return {"PolicyName": arn.rsplit("/", 1)[-1], "Arn": arn, "DefaultVersionId": "v2",
            "PolicyVersionList": [
                {"Document": {"Version": "2012-10-17", "Statement": []}, "VersionId": "v1", "IsDefaultVersion": False},
                {"Document": document, "VersionId": "v2", "IsDefaultVersion": True}]}


class IamFake:
    """The ``AwsAccounts`` port over ``FakeAccount``s, in the organization's order. ``calls`` records every IAM call
    as (account id, action, argument)."""

    def __init__(
        self, accounts: list[FakeAccount], clock: FakeClock | None = None, *, iam_concurrency: int = 4
    ) -> None:
        self.organization = accounts
        self.clock = clock or FakeClock()
        self.iam_concurrency = iam_concurrency
        self.sign_in_error: Exception | None = None
        self.readers: dict[str, FakeIamReader] = {}
        self.calls: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def record(self, account_id: str, action: str, argument: str) -> None:
        with self._lock:
            self.calls.append((account_id, action, argument))

    def actions(self, account_id: str) -> list[str]:
        return [action for acct, action, _ in self.calls if acct == account_id]

    def sign_in(self, run_id: str) -> None:
        if self.sign_in_error is not None:
            raise self.sign_in_error

    def planned_account_ids(self) -> list[str]:
        return [a.id for a in self.organization]

    def accounts(self) -> list[Account]:
        return [Account(a.id, a.name) for a in self.organization]

    def iam_reader(self, account: Account) -> FakeIamReader:
        fake = next(a for a in self.organization if a.id == account.id)
        reader = self.readers[account.id] = FakeIamReader(self, fake)
        return reader


def sign_in_fails(fake: IamFake) -> None:
    fake.sign_in_error = AwsSignInError("STS AssumeRole into arn:aws:iam::123456789012:role/Home failed: AccessDenied")
