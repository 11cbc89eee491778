"""Pure transformations: AWS API responses (as boto3 returns them) -> records. No I/O, no clock, no environment.

Responses are checked strictly: a missing or malformed field raises ``MalformedResponseError`` naming the API and
field, so that an account with a bad answer fails clearly rather than producing an invented or partial record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.collection.console import ConsoleAccess, console_access, key_at_user_setup
from shared.collection.directory import UserEntry
from shared.collection.last_use import LastUse
from shared.domain import Account, CredentialReport, RunContext, report_date
from shared.errors import MalformedResponseError
from shared.findings.catalogue import KeyFacts, Thresholds, record_flags, risk_of
from shared.findings.exceptions import annotate
from shared.findings.privilege import NOT_PRIVILEGED, ROOT_PRIVILEGE, Privilege
from shared.identifiers import is_access_key_id
from shared.records import ROOT_USER_NAME, KeyRecord
from shared.redaction import mask_access_key_id

_STATUSES = ("Active", "Inactive")
_SECONDS_PER_DAY = 86400


def fingerprint(key_id: str) -> str:
    """First 16 hex characters of SHA-256 of the full key id: a stable join key (with AWSCloudTrail too). Not a
    secrecy measure: with the account id and the masked id's last 4 characters the full id can be recovered."""
    return hashlib.sha256(key_id.encode("ascii")).hexdigest()[:16]


def whole_days(start: datetime, end: datetime) -> int:
    """Whole days from start to end; 0, never negative, when start is after end (clock skew, use after run start)."""
    return max(0, int((end - start).total_seconds() // _SECONDS_PER_DAY))


def _field(obj: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = obj.get(name) if isinstance(obj, Mapping) else None
    if not isinstance(value, kind) or (kind is str and not value):
        shown = "missing" if value is None else f"not a {'date' if kind is datetime else kind.__name__}"
        raise MalformedResponseError(f"{where}: field {name} is {shown}")
    if isinstance(value, datetime) and value.tzinfo is None:
        raise MalformedResponseError(f"{where}: field {name} has no time zone")
    return value


def _optional_text(value: Any, name: str, where: str) -> str | None:
    """AWS says ``N/A`` for a key never used; the contract says null."""
    if value is None or value == "N/A":
        return None
    if not isinstance(value, str) or not value:
        raise MalformedResponseError(f"{where}: field {name} is not a string")
    return value


def parse_key_metadata(user_name: str, key: Mapping[str, Any]) -> tuple[str, str, datetime]:
    """(key id, status, creation date) of one ListAccessKeys item, checked."""
    where = f"IAM ListAccessKeys (user {user_name})"
    key_id = _field(key, "AccessKeyId", str, where)
    if not is_access_key_id(key_id):  # whole and ASCII: no trailing newline
        raise MalformedResponseError(f"{where}: field AccessKeyId is not an access key id")
    status = _field(key, "Status", str, where)
    if status not in _STATUSES:
        raise MalformedResponseError(f"{where}: field Status is {status!r}, expected Active or Inactive")
    return key_id, status, _field(key, "CreateDate", datetime, where)


def last_use_from_api(answer: Mapping[str, Any], answered_at: datetime, user_name: str, key_id: str) -> LastUse:
    """A key's last use from GetAccessKeyLastUsed's ``AccessKeyLastUsed`` object, true as of ``answered_at``."""
    where = f"IAM GetAccessKeyLastUsed (user {user_name}, key {mask_access_key_id(key_id)})"
    if not isinstance(answer, Mapping):
        raise MalformedResponseError(f"{where}: AccessKeyLastUsed is missing")
    used_at = answer.get("LastUsedDate")
    if used_at is not None and (not isinstance(used_at, datetime) or used_at.tzinfo is None):
        raise MalformedResponseError(f"{where}: field LastUsedDate is not a date")
    return LastUse(
        used_at=used_at,
        region=_optional_text(answer.get("Region"), "Region", where),
        service=_optional_text(answer.get("ServiceName"), "ServiceName", where),
        as_of=answered_at,
    )


def key_records_for_user(
    user: UserEntry,
    keys: Sequence[Mapping[str, Any]],
    last_used: Mapping[str, LastUse],
    account: Account,
    run: RunContext,
    console: ConsoleAccess | None = None,
) -> list[KeyRecord]:
    """One record per access key of one IAM user.

    ``user`` is the user as the account's directory holds it (GetAccountAuthorizationDetails: its owner, its keys'
    descriptions, its privilege), ``keys`` its ListAccessKeys metadata, ``last_used`` maps each key id to its last
    use (from the credential report or GetAccessKeyLastUsed), ``console`` its credential report row's console facts
    (None: the report could not be had). Keys missing from ``last_used`` are an error.
    """
    parsed = [parse_key_metadata(user.name, key) for key in keys]

    active_count = sum(1 for _, status, _ in parsed if status == "Active")
    records = []
    for key_id, status, created in parsed:
        used = last_used.get(key_id)
        if not isinstance(used, LastUse):
            raise MalformedResponseError(
                f"IAM GetAccessKeyLastUsed (user {user.name}, key {mask_access_key_id(key_id)}): "
                "AccessKeyLastUsed is missing"
            )
        records.append(
            _key_record(
                run=run,
                account=account,
                user_name=user.name,
                user_arn=user.arn,
                masked_id=mask_access_key_id(key_id),
                key_fingerprint=fingerprint(key_id),
                status=status,
                created=created,
                used=used,
                active_count=active_count,
                is_root=False,
                owner=user.owner,
                privilege=user.privilege,
                console_without_mfa=console is not None and console.without_mfa,
                key_at_setup=key_at_user_setup(created, user.created, console),
                description=user.description(key_id),
            )
        )
    return records


def _key_record(
    *,
    run: RunContext,
    account: Account,
    user_name: str,
    user_arn: str,
    masked_id: str | None,
    key_fingerprint: str,
    status: str,
    created: datetime,
    used: LastUse,
    active_count: int,
    is_root: bool,
    owner: str = "",
    privilege: Privilege = NOT_PRIVILEGED,
    console_without_mfa: bool = False,
    key_at_setup: bool = False,
    description: str = "",
) -> KeyRecord:
    """Derives the contract's computed fields, the same way for IAM users' keys and root keys; the kill-first score
    from them (the findings catalogue's formula); then whether the reviewed exceptions accept every finding the key
    has (an exception lowers no score)."""
    used_at = used.used_at
    age = whole_days(created, run.started_at)
    since_use = None if used_at is None else whole_days(used_at, run.started_at)
    # The findings' flags (RotationDue, Unused) come from their rules in the findings catalogue.
    flags: dict[str, Any] = record_flags(
        KeyFacts(active=status == "Active", age_days=age, days_since_last_use=since_use),
        Thresholds(rotation_days=run.rotation_days, unused_days=run.unused_days),
    )
    facts: dict[str, Any] = {
        "Status": status, "IsRootKey": is_root, "NeverUsed": used_at is None, "UserActiveKeyCount": active_count,
        "Privileged": privilege.privileged, "Quarantined": privilege.quarantined,
        "ConsoleWithoutMfa": console_without_mfa, "KeyAtUserSetup": key_at_setup, **flags,
    }
    score, reasons = risk_of(facts)
    record = KeyRecord(
        TimeGenerated=run.started_at,
        RunId=run.run_id,
        AccountId=account.id,
        AccountName=account.name,
        UserName=user_name,
        UserArn=user_arn,
        AccessKeyId=masked_id,
        AccessKeyFingerprint=key_fingerprint,
        Status=status,
        CreatedAt=created.astimezone(UTC),
        LastUsedAt=None if used_at is None else used_at.astimezone(UTC),
        LastUsedRegion=used.region,
        LastUsedService=used.service,
        LastUsedAsOf=used.as_of.astimezone(UTC),
        AgeDays=age,
        DaysSinceLastUse=since_use,
        NeverUsed=used_at is None,  # the contract's fact, inactive keys included; the finding is in the catalogue
        UserActiveKeyCount=active_count,
        IsRootKey=is_root,
        Owner="" if is_root else owner,
        Privileged=privilege.privileged,
        PrivilegeReasons=privilege.reasons,
        Quarantined=privilege.quarantined,
        ConsoleWithoutMfa=console_without_mfa,
        KeyAtUserSetup=key_at_setup,
        Description=description,
        RiskScore=score,
        RiskReasons=reasons,
        **flags,
    )
    return annotate(record, exceptions=run.exceptions, now=run.started_at)[0]


ROOT_ARN_SUFFIX = ":root"


def root_key_records(report: CredentialReport, account: Account, run: RunContext) -> list[KeyRecord]:
    """One record per root access-key slot that exists, from the IAM credential report's ``<root_account>`` row.

    The report never shows key ids: ``AccessKeyId`` is null and the fingerprint is derived from the account and the
    slot, which is stable across runs while the slot holds the same key (``last_rotated`` changes when it does not).
    """
    where = "IAM GetCredentialReport"
    root = next((r for r in report.rows if r.get("user") == ROOT_USER_NAME), None)
    if root is None:
        return []  # the report of this account does not list its root user (seen only in emulators)
    arn = root.get("arn") or f"arn:aws:iam::{account.id}{ROOT_ARN_SUFFIX}"
    slots = []
    for slot in (1, 2):
        rotated = root.get(f"access_key_{slot}_last_rotated")
        active = root.get(f"access_key_{slot}_active")
        if rotated in (None, "", "N/A") or active not in ("true", "false"):
            continue  # no key in this slot
        created = _report_date(rotated, f"{where}: access_key_{slot}_last_rotated")
        if created is None:
            continue
        used_at = _report_date(root.get(f"access_key_{slot}_last_used_date"), f"{where}: last used date")
        slots.append((slot, "Active" if active == "true" else "Inactive", created, used_at))
    active_count = sum(1 for _, status, _, _ in slots if status == "Active")
    console = console_access([root]).get(ROOT_USER_NAME)
    return [
        _key_record(
            run=run,
            account=account,
            user_name=ROOT_USER_NAME,
            user_arn=arn,
            masked_id=None,
            key_fingerprint=hashlib.sha256(f"{account.id}:root:{slot}:{created.isoformat()}".encode()).hexdigest()[
                :16
            ],
            status=status,
            created=created,
            used=LastUse(
                used_at=used_at,
                region=_optional_text(root.get(f"access_key_{slot}_last_used_region"), "region", where),
                service=_optional_text(root.get(f"access_key_{slot}_last_used_service"), "service", where),
                as_of=report.generated_at,
            ),
            active_count=active_count,
            is_root=True,
            privilege=ROOT_PRIVILEGE,  # the root user: no IAM policy restricts it
            console_without_mfa=console is not None and console.without_mfa,
        )
        for slot, status, created, used_at in slots
    ]


def _report_date(value: str | None, where: str) -> datetime | None:
    """The cell's date (``report_date``, the one reading of the report's dates); a root key has no other source, so
    a cell that is not a date is an error (the account's root keys are unknown this run)."""
    try:
        return report_date(value)
    except ValueError:
        raise MalformedResponseError(f"{where} is not a date") from None
