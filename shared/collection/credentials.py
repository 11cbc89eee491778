"""One account's long-lived credentials other than access keys, as records of AwsIamCredentials_CL: service-specific
credentials (long-term API keys for Amazon Bedrock and CloudWatch Logs, CodeCommit Git and Amazon Keyspaces
credentials) and X.509 signing certificates.

Cost: one ``ListServiceSpecificCredentials`` (AllUsers) per service of ``CREDENTIAL_SERVICES``, plus its pages,
started with the account and read alongside its inventory; certificates come from the credential report the account
reads anyway (``cert_N_active``, ``cert_N_last_rotated``: no call of their own). The listing names users, not their
ARNs: the ARN comes from the inventory's ListUsers (noted on the way by ``ObservedIam``, only for the users that
hold credentials), the owner from its ListUserTags; a credential holder without access keys, whose tags the
inventory does not read, costs one ListUserTags more.

Each kind is all or nothing per account: when the listing or the report fails, that kind's credentials of the account
are unknown this run (named in the run record's ``CredentialsUnknownAccounts``, with what failed), never "none"; the
account's keys are not affected.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from shared.collection.transform import fingerprint, whole_days
from shared.domain import (
    CREDENTIAL_SERVICES,
    Account,
    CredentialReport,
    CredentialService,
    CredentialsUnknown,
    RunContext,
)
from shared.errors import MalformedResponseError, NoSuchEntityError, describe_error
from shared.findings.catalogue import CredentialFacts, Thresholds, credential_flags
from shared.findings.exceptions import annotate
from shared.findings.owners import owner_from_tags
from shared.ports import IamReader
from shared.records import ROOT_USER_NAME, SERVICE_SPECIFIC_CREDENTIAL, SIGNING_CERTIFICATE, CredentialRecord
from shared.redaction import mask_access_key_id

log = logging.getLogger(__name__)

_CREDENTIAL_ID = re.compile(r"[A-Za-z0-9_]{20,128}", re.ASCII)  # ServiceSpecificCredentialId: [\w]+, 20 to 128
_STATUSES = ("Active", "Inactive", "Expired")
_SECONDS_PER_DAY = 86400


class Privilege(NamedTuple):
    privileged: bool
    reasons: str
    quarantined: bool


# The hook for the privilege assessment (the blast-radius issue): a user's Privileged / PrivilegeReasons /
# Quarantined, or None when not assessed (the fields are then null). Until it exists nothing is passed.
PrivilegeLookup = Callable[[str], Privilege | None]


@dataclass(frozen=True)
class AccountCredentials:
    """What one account's credentials step produced: records, and the kinds that are unknown (with why)."""

    records: tuple[CredentialRecord, ...] = ()
    unknown: tuple[CredentialsUnknown, ...] = ()


class UserDirectory:
    """The ARNs (ListUsers) and owners (ListUserTags) the inventory reads, kept for the users that hold credentials.

    Until the holders are known (the listing and the report are still being read), everyone seen is kept; once
    ``want`` names them, the rest is dropped and no more is kept, so memory does not grow with the account."""

    def __init__(self, owner_tag_keys: tuple[str, ...]) -> None:
        self._owner_tag_keys = owner_tag_keys
        self._lock = threading.Lock()
        self._arns: dict[str, str] = {}
        self._owners: dict[str, str] = {}
        self._wanted: frozenset[str] | None = None

    def want(self, names: frozenset[str]) -> None:
        with self._lock:
            self._wanted = names
            self._arns = {n: a for n, a in self._arns.items() if n in names}
            self._owners = {n: o for n, o in self._owners.items() if n in names}

    def _keeps(self, name: str) -> bool:
        return self._wanted is None or name in self._wanted

    def listed(self, user: Mapping[str, Any]) -> None:
        name, arn = user.get("UserName"), user.get("Arn")
        if isinstance(name, str) and isinstance(arn, str):  # anything else fails the inventory itself
            with self._lock:
                if self._keeps(name):
                    self._arns[name] = arn

    def tagged(self, name: str, tags: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            if self._keeps(name):
                self._owners[name] = owner_from_tags(tags, self._owner_tag_keys, user_name=name)

    def arn(self, name: str) -> str | None:
        with self._lock:
            return self._arns.get(name)

    def owner(self, name: str) -> str | None:
        with self._lock:
            return self._owners.get(name)


class ObservedIam:
    """The ``IamReader`` the inventory uses: the account's own, noting in ``directory`` every user it lists and the
    owner of every user whose tags it reads. Every call goes through unchanged."""

    def __init__(self, inner: IamReader, directory: UserDirectory) -> None:
        self._inner = inner
        self._directory = directory
        self.concurrency = inner.concurrency

    def users(self) -> Iterator[Mapping[str, Any]]:
        for user in self._inner.users():
            self._directory.listed(user)
            yield user

    def access_keys(self, user_name: str) -> Sequence[Mapping[str, Any]]:
        return self._inner.access_keys(user_name)

    def key_last_used(self, key_id: str) -> Mapping[str, Any]:
        return self._inner.key_last_used(key_id)

    def user_tags(self, user_name: str) -> Sequence[Mapping[str, Any]]:
        tags = self._inner.user_tags(user_name)
        self._directory.tagged(user_name, tags)
        return tags

    def service_specific_credentials(self, service_name: str) -> Sequence[Mapping[str, Any]]:
        return self._inner.service_specific_credentials(service_name)

    def close(self) -> None:
        self._inner.close()

    def credential_report(self, now: datetime, stop: threading.Event) -> CredentialReport:
        return self._inner.credential_report(now, stop)


@dataclass(frozen=True)
class _ServiceCredential:
    service: CredentialService
    user_name: str
    credential_id: str
    status: str
    created: datetime
    expires: datetime | None


def list_service_credentials(
    iam: IamReader, services: Sequence[CredentialService] = CREDENTIAL_SERVICES
) -> list[_ServiceCredential]:
    """Every service-specific credential of the account, service by service (one paged call each), checked. The first
    failure ends the listing (an access denial would repeat for every service) and is raised."""
    found = []
    for service in services:
        for item in iam.service_specific_credentials(service.name):
            found.append(_parse_service_credential(item, service))
    return found


def _parse_service_credential(item: Mapping[str, Any], service: CredentialService) -> _ServiceCredential:
    where = f"IAM ListServiceSpecificCredentials ({service.name})"
    if not isinstance(item, Mapping):
        raise MalformedResponseError(f"{where}: an item is not an object")
    user, credential_id, status = item.get("UserName"), item.get("ServiceSpecificCredentialId"), item.get("Status")
    created, expires = item.get("CreateDate"), item.get("ExpirationDate")
    if not isinstance(user, str) or not user:
        raise MalformedResponseError(f"{where}: field UserName is missing")
    if not isinstance(credential_id, str) or not _CREDENTIAL_ID.fullmatch(credential_id):
        raise MalformedResponseError(f"{where} (user {user}): field ServiceSpecificCredentialId is not a credential id")
    if status not in _STATUSES:
        raise MalformedResponseError(f"{where} (user {user}): field Status is {status!r}, expected one of "
                                     f"{', '.join(_STATUSES)}")
    if not isinstance(created, datetime) or created.tzinfo is None:
        raise MalformedResponseError(f"{where} (user {user}): field CreateDate is not a date")
    if expires is not None and (not isinstance(expires, datetime) or expires.tzinfo is None):
        raise MalformedResponseError(f"{where} (user {user}): field ExpirationDate is not a date")
    return _ServiceCredential(service, user, credential_id, str(status), created, expires)


class CredentialsStep:
    """One account's credentials: ``start`` submits the listing (beside the credential report), ``reader`` is what the
    inventory reads through, ``finish`` (after the inventory) makes the records."""

    def __init__(
        self,
        iam: IamReader,
        account: Account,
        run: RunContext,
        report: Future[CredentialReport],
        privileges: PrivilegeLookup | None = None,
    ) -> None:
        self._iam = iam
        self._account = account
        self._run = run
        self._report = report
        self._privileges = privileges
        self.directory = UserDirectory(run.owner_tag_keys)
        self.reader = ObservedIam(iam, self.directory)
        self._listing: Future[list[_ServiceCredential]] | None = None
        self._owners: dict[str, str | None] = {}  # owners read here, for holders whose tags the inventory did not read

    def start(self, side: Executor) -> None:
        self._listing = side.submit(list_service_credentials, self._iam)
        self._listing.add_done_callback(lambda _: self._prune())
        self._report.add_done_callback(lambda _: self._prune())

    def _prune(self) -> None:
        """Once both sources are in, keep only the holders' ARNs and owners."""
        if self._listing is None or not (self._listing.done() and self._report.done()):
            return
        holders: set[str] = set()
        if self._listing.exception() is None:
            holders |= {c.user_name for c in self._listing.result()}
        if self._report.exception() is None:
            holders |= {str(row.get("user")) for row in self._report.result().rows if _has_certificate(row)}
        self.directory.want(frozenset(holders))

    def finish(self) -> AccountCredentials:
        """The account's credential records; a kind that could not be read is named as unknown instead."""
        records: list[CredentialRecord] = []
        unknown: list[CredentialsUnknown] = []
        report = _result_or_none(self._report)
        for kind, make in ((SERVICE_SPECIFIC_CREDENTIAL, self._service_records),
                           (SIGNING_CERTIFICATE, self._certificate_records)):
            try:
                records += make(report)
            except Exception as exc:  # that kind is unknown this run; the account and its keys go on
                error = f"{_KIND_LABEL[kind]} unknown: {describe_error(exc)}"
                log.warning("Account %s: %s", self._account.id, error)
                unknown.append(CredentialsUnknown(self._account.id, kind, error))
        return AccountCredentials(tuple(records), tuple(unknown))

    def _service_records(self, report: CredentialReport | None) -> list[CredentialRecord]:
        if self._listing is None:
            raise RuntimeError("the credentials step was not started (collector error)")
        listed = self._listing.result()  # raises what the listing raised
        report_arns = {} if report is None else {str(r.get("user")): str(r.get("arn") or "") for r in report.rows}
        records = []
        for c in listed:
            arn = self.directory.arn(c.user_name) or report_arns.get(c.user_name)
            if not arn:  # created after ListUsers and after the report: the next run sees it
                log.info("Account %s: a %s credential of user %s, not listed by ListUsers, is left for the next run",
                         self._account.id, c.service.name, c.user_name)
                continue
            owner = self._owner(c.user_name)
            if owner is None:
                continue  # the user was deleted while the account was read: its credentials went with it
            days_left = None if c.expires is None else (c.expires - self._run.started_at).total_seconds()
            records.append(self._record(
                user_name=c.user_name, user_arn=arn, owner=owner, kind=SERVICE_SPECIFIC_CREDENTIAL,
                service=c.service.name, masked_id=mask_access_key_id(c.credential_id),
                credential_fingerprint=fingerprint(c.credential_id), status=c.status, created=c.created,
                expires=c.expires, facts_api_key=c.service.api_key,
                days_to_expiry=None if days_left is None else days_left / _SECONDS_PER_DAY,
            ))
        return records

    def _certificate_records(self, report: CredentialReport | None) -> list[CredentialRecord]:
        if report is None:
            raise _report_error(self._report)
        records = []
        for row in report.rows:
            slots = certificate_slots(row)
            if not slots:
                continue
            user_name, arn = str(row.get("user") or ""), str(row.get("arn") or "")
            if not user_name or not arn:
                raise MalformedResponseError("IAM GetCredentialReport: a row with a certificate has no user or arn")
            owner = "" if user_name == ROOT_USER_NAME else self._owner(user_name)
            if owner is None:
                continue
            seen: set[str] = set()
            for status, created in slots:
                # The report shows no certificate id: the fingerprint is the user's and the upload time's, stable
                # while the certificate is (a replaced one has a new time); two uploaded in one second get a suffix.
                basis = f"{self._account.id}:{user_name}:signing-certificate:{created.isoformat()}"
                basis += ":2" if basis in seen else ""
                seen.add(basis)
                records.append(self._record(
                    user_name=user_name, user_arn=arn, owner=owner, kind=SIGNING_CERTIFICATE, service="",
                    masked_id=None, credential_fingerprint=hashlib.sha256(basis.encode()).hexdigest()[:16],
                    status=status, created=created, expires=None, facts_api_key=False, days_to_expiry=None,
                ))
        return records

    def _owner(self, user_name: str) -> str | None:
        """The user's owner: from the inventory's ListUserTags, else one call of its own; None: the user is gone."""
        owner = self.directory.owner(user_name)
        if owner is not None:
            return owner
        if user_name not in self._owners:
            try:
                tags = self._iam.user_tags(user_name)
            except NoSuchEntityError:
                tags = None
            self._owners[user_name] = None if tags is None else owner_from_tags(
                tags, self._run.owner_tag_keys, user_name=user_name)
        return self._owners[user_name]

    def _record(
        self, *, user_name: str, user_arn: str, owner: str, kind: str, service: str, masked_id: str | None,
        credential_fingerprint: str, status: str, created: datetime, expires: datetime | None, facts_api_key: bool,
        days_to_expiry: float | None,
    ) -> CredentialRecord:
        run = self._run
        age = whole_days(created, run.started_at)
        flags: dict[str, Any] = credential_flags(
            CredentialFacts(active=status == "Active", age_days=age, api_key=facts_api_key,
                            days_to_expiry=days_to_expiry),
            Thresholds(rotation_days=run.rotation_days, unused_days=run.unused_days),
        )
        privilege = None if self._privileges is None or user_name == ROOT_USER_NAME else self._privileges(user_name)
        record = CredentialRecord(
            TimeGenerated=run.started_at, RunId=run.run_id, AccountId=self._account.id,
            AccountName=self._account.name, UserName=user_name, UserArn=user_arn, Owner=owner,
            Privileged=None if privilege is None else privilege.privileged,
            PrivilegeReasons=None if privilege is None else privilege.reasons,
            Quarantined=None if privilege is None else privilege.quarantined,
            CredentialType=kind, Service=service, CredentialId=masked_id, CredentialFingerprint=credential_fingerprint,
            Status=status, CreatedAt=created.astimezone(UTC),
            ExpiresAt=None if expires is None else expires.astimezone(UTC), AgeDays=age, **flags,
        )
        return annotate(record, exceptions=run.exceptions, now=run.started_at)[0]


_KIND_LABEL = {SERVICE_SPECIFIC_CREDENTIAL: "service-specific credentials (API keys, Git and Keyspaces credentials)",
               SIGNING_CERTIFICATE: "signing certificates"}


def certificate_slots(row: Mapping[str, str]) -> list[tuple[str, datetime]]:
    """(status, upload time) of each signing certificate a credential report row shows. An active certificate
    without its date is a report that cannot be trusted for certificates: raised, not skipped."""
    slots = []
    for slot in (1, 2):
        active, rotated = row.get(f"cert_{slot}_active"), row.get(f"cert_{slot}_last_rotated")
        if rotated in (None, "", "N/A", "no_information"):
            if active == "true":
                raise MalformedResponseError(f"IAM GetCredentialReport: cert_{slot}_last_rotated of an active "
                                             "signing certificate is missing")
            continue
        if active not in ("true", "false"):
            raise MalformedResponseError(f"IAM GetCredentialReport: cert_{slot}_active is {active!r}")
        try:
            created = datetime.fromisoformat(str(rotated).replace("Z", "+00:00"))
        except ValueError:
            raise MalformedResponseError(f"IAM GetCredentialReport: cert_{slot}_last_rotated is not a date") from None
        slots.append(("Active" if active == "true" else "Inactive",
                      created if created.tzinfo else created.replace(tzinfo=UTC)))
    return slots


def _has_certificate(row: Mapping[str, str]) -> bool:
    try:
        return bool(certificate_slots(row))
    except MalformedResponseError:
        return True  # finish() reports it; keep the user meanwhile


def _result_or_none(future: Future[CredentialReport]) -> CredentialReport | None:
    try:
        return future.result()
    except Exception:
        return None


def _report_error(future: Future[CredentialReport]) -> BaseException:
    exc = future.exception()
    return exc if exc is not None else MalformedResponseError("IAM GetCredentialReport: no report")
