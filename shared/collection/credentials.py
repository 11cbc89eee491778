"""One account's long-lived credentials other than access keys, as records of AwsIamCredentials_CL: service-specific
credentials (long-term API keys for Amazon Bedrock and CloudWatch Logs, CodeCommit Git and Amazon Keyspaces
credentials) and X.509 signing certificates.

Cost: one ``ListServiceSpecificCredentials`` (AllUsers) per service of ``CREDENTIAL_SERVICES``, plus its pages,
started with the account and read alongside its inventory; certificates come from the credential report the account
reads anyway (``cert_N_active``, ``cert_N_last_rotated``: no call of their own). The listing names users, not their
ARNs: each holder's ARN, owner, privilege and quarantine come from the account's directory the inventory has read
(``GetAccountAuthorizationDetails``, shared/collection/directory.py): the same ``UserEntry`` its access keys are made
from, so a credential and a key of one user never disagree, and no call is made per holder. A holder the directory
does not show (created after it was read) is left for the next run; the root user's certificates take the root
user's privilege, as its keys do.

Each kind is all or nothing per account: when the listing or the report fails, that kind's credentials of the account
are unknown this run (named in the run record's ``CredentialsUnknownAccounts``, with what failed), never "none"; the
account's keys are not affected.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.collection.directory import AccountDirectory, UserEntry
from shared.collection.transform import fingerprint, whole_days
from shared.domain import (
    CREDENTIAL_SERVICES,
    Account,
    CredentialReport,
    CredentialService,
    CredentialsUnknown,
    RunContext,
)
from shared.errors import MalformedResponseError, describe_error
from shared.findings.catalogue import CredentialFacts, Thresholds, credential_flags
from shared.findings.exceptions import annotate
from shared.findings.privilege import ROOT_PRIVILEGE, Privilege, safe_name
from shared.ports import IamReader
from shared.records import ROOT_USER_NAME, SERVICE_SPECIFIC_CREDENTIAL, SIGNING_CERTIFICATE, CredentialRecord
from shared.redaction import mask_access_key_id

log = logging.getLogger(__name__)

_CREDENTIAL_ID = re.compile(r"[A-Za-z0-9_]{20,128}", re.ASCII)  # ServiceSpecificCredentialId: [\w]+, 20 to 128
_STATUSES = ("Active", "Inactive", "Expired")
_SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class AccountCredentials:
    """What one account's credentials step produced: records, and the kinds that are unknown (with why)."""

    records: tuple[CredentialRecord, ...] = ()
    unknown: tuple[CredentialsUnknown, ...] = ()


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
    where = f"{where} (user {safe_name(user)})"  # hostile text: one printable line, no key id
    if not isinstance(credential_id, str) or not _CREDENTIAL_ID.fullmatch(credential_id):
        raise MalformedResponseError(f"{where}: field ServiceSpecificCredentialId is not a credential id")
    if status not in _STATUSES:
        raise MalformedResponseError(f"{where}: field Status is {status!r}, expected one of "
                                     f"{', '.join(_STATUSES)}")
    if not isinstance(created, datetime) or created.tzinfo is None:
        raise MalformedResponseError(f"{where}: field CreateDate is not a date")
    if expires is not None and (not isinstance(expires, datetime) or expires.tzinfo is None):
        raise MalformedResponseError(f"{where}: field ExpirationDate is not a date")
    return _ServiceCredential(service, user, credential_id, str(status), created, expires)


class CredentialsStep:
    """One account's credentials: ``start`` submits the listing (beside the credential report), ``finish`` (after the
    inventory, with the directory it read) makes the records."""

    def __init__(self, iam: IamReader, account: Account, run: RunContext, report: Future[CredentialReport]) -> None:
        self._iam = iam
        self._account = account
        self._run = run
        self._report = report
        self._listing: Future[list[_ServiceCredential]] | None = None

    def start(self, side: Executor) -> None:
        self._listing = side.submit(list_service_credentials, self._iam)

    def finish(self, directory: AccountDirectory) -> AccountCredentials:
        """The account's credential records, their holders as ``directory`` shows them; a kind that could not be read
        is named as unknown instead."""
        records: list[CredentialRecord] = []
        unknown: list[CredentialsUnknown] = []
        report = _result_or_none(self._report)
        holders = _Holders(directory)
        for kind, make in ((SERVICE_SPECIFIC_CREDENTIAL, self._service_records),
                           (SIGNING_CERTIFICATE, self._certificate_records)):
            try:
                records += make(report, holders)
            except Exception as exc:  # that kind is unknown this run; the account and its keys go on
                error = f"{_KIND_LABEL[kind]} unknown: {describe_error(exc)}"
                log.warning("Account %s: %s", self._account.id, error)
                unknown.append(CredentialsUnknown(self._account.id, kind, error))
        return AccountCredentials(tuple(records), tuple(unknown))

    def _service_records(self, report: CredentialReport | None, holders: _Holders) -> list[CredentialRecord]:
        if self._listing is None:
            raise RuntimeError("the credentials step was not started (collector error)")
        records = []
        for c in self._listing.result():  # raises what the listing raised
            user = holders.get(c.user_name)
            if user is None:  # created after the directory was read: the next run sees it
                log.info("Account %s: a %s credential of a user the directory did not show yet is left for the next "
                         "run", self._account.id, c.service.name)
                continue
            days_left = None if c.expires is None else (c.expires - self._run.started_at).total_seconds()
            records.append(self._record(
                user_name=user.name, user_arn=user.arn, owner=user.owner, privilege=user.privilege,
                kind=SERVICE_SPECIFIC_CREDENTIAL, service=c.service.name, masked_id=mask_access_key_id(c.credential_id),
                credential_fingerprint=fingerprint(c.credential_id), status=c.status, created=c.created,
                expires=c.expires, facts_api_key=c.service.api_key,
                days_to_expiry=None if days_left is None else days_left / _SECONDS_PER_DAY,
            ))
        return records

    def _certificate_records(self, report: CredentialReport | None, holders: _Holders) -> list[CredentialRecord]:
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
            if user_name == ROOT_USER_NAME:  # the root user: no owner, and no IAM policy restricts it
                owner, privilege = "", ROOT_PRIVILEGE
            else:
                user = holders.get(user_name)
                if user is None:  # deleted since the report, or made after the directory was read
                    log.info("Account %s: a signing certificate of a user the directory does not show is left for "
                             "the next run", self._account.id)
                    continue
                arn, owner, privilege = user.arn, user.owner, user.privilege
            seen: set[str] = set()
            for status, created in slots:
                # The report shows no certificate id: the fingerprint is the user's and the upload time's, stable
                # while the certificate is (a replaced one has a new time); two uploaded in one second get a suffix.
                basis = f"{self._account.id}:{user_name}:signing-certificate:{created.isoformat()}"
                basis += ":2" if basis in seen else ""
                seen.add(basis)
                records.append(self._record(
                    user_name=user_name, user_arn=arn, owner=owner, privilege=privilege, kind=SIGNING_CERTIFICATE,
                    service="", masked_id=None, credential_fingerprint=hashlib.sha256(basis.encode()).hexdigest()[:16],
                    status=status, created=created, expires=None, facts_api_key=False, days_to_expiry=None,
                ))
        return records

    def _record(
        self, *, user_name: str, user_arn: str, owner: str, privilege: Privilege, kind: str, service: str,
        masked_id: str | None, credential_fingerprint: str, status: str, created: datetime, expires: datetime | None,
        facts_api_key: bool, days_to_expiry: float | None,
    ) -> CredentialRecord:
        run = self._run
        age = whole_days(created, run.started_at)
        flags: dict[str, Any] = credential_flags(
            CredentialFacts(active=status == "Active", age_days=age, api_key=facts_api_key,
                            days_to_expiry=days_to_expiry),
            Thresholds(rotation_days=run.rotation_days, unused_days=run.unused_days),
        )
        record = CredentialRecord(
            TimeGenerated=run.started_at, RunId=run.run_id, AccountId=self._account.id,
            AccountName=self._account.name, UserName=user_name, UserArn=user_arn, Owner=owner,
            Privileged=privilege.privileged, PrivilegeReasons=privilege.reasons, Quarantined=privilege.quarantined,
            CredentialType=kind, Service=service, CredentialId=masked_id, CredentialFingerprint=credential_fingerprint,
            Status=status, CreatedAt=created.astimezone(UTC),
            ExpiresAt=None if expires is None else expires.astimezone(UTC), AgeDays=age, **flags,
        )
        return annotate(record, exceptions=run.exceptions, now=run.started_at)[0]


class _Holders:
    """The directory's users by name, looked up only for the users that hold a credential: built on the first
    lookup (most accounts have no such credential, and their directory is never indexed)."""

    def __init__(self, directory: AccountDirectory) -> None:
        self._directory = directory
        self._by_name: dict[str, UserEntry] | None = None

    def get(self, user_name: str) -> UserEntry | None:
        if self._by_name is None:
            self._by_name = {user.name: user for user in self._directory.users}
        return self._by_name.get(user_name)


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


def _result_or_none(future: Future[CredentialReport]) -> CredentialReport | None:
    try:
        return future.result()
    except Exception:
        return None


def _report_error(future: Future[CredentialReport]) -> BaseException:
    exc = future.exception()
    return exc if exc is not None else MalformedResponseError("IAM GetCredentialReport: no report")
