"""The record types the collector (and its owner-digest run) sends, exactly as the contract defines them.

These dataclasses are the single source of truth for the tables' columns: the infrastructure tests check that
the Log Analytics tables and the data collection rule declare exactly these fields, with these types. Field names
are the contract's JSON names (PascalCase) so that what is sent is what is declared, with no mapping to drift.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ROOT_USER_NAME = "<root_account>"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    TimeGenerated: datetime
    RunId: str
    AccountId: str
    AccountName: str
    UserName: str
    UserArn: str
    AccessKeyId: str | None  # masked; None only for root keys (the credential report does not show them)
    AccessKeyFingerprint: str
    Status: str
    CreatedAt: datetime
    LastUsedAt: datetime | None
    LastUsedRegion: str | None
    LastUsedService: str | None
    # When the LastUsed* fields were true: the credential report's GeneratedTime, or GetAccessKeyLastUsed's answer
    LastUsedAsOf: datetime
    AgeDays: int
    DaysSinceLastUse: int | None
    NeverUsed: bool
    RotationDue: bool
    Unused: bool
    UserActiveKeyCount: int
    IsRootKey: bool
    # Added by the owners-and-exceptions issue (shared/findings/owners.py, shared/findings/exceptions.py,
    # docs/exceptions.md).
    Owner: str = ""  # the first of OWNER_TAG_KEYS on the user's tags; empty when none (root keys: empty)
    Excepted: bool = False  # every finding of the key is covered by an exception in force
    ExceptionReason: str | None = None  # the reasons of the exceptions used (null when not excepted)
    ExceptionExpires: datetime | None = None  # the earliest of their expiries (null when not excepted)
    # Added by the blast-radius issue (shared/findings/privilege.py, shared/findings/catalogue.py's risk formula).
    Privileged: bool = False  # the user holds admin-equivalent permissions by the documented heuristic (root: true)
    PrivilegeReasons: str = ""  # "; "-separated; empty when not privileged
    Quarantined: bool = False  # an AWSCompromisedKeyQuarantine* policy is attached to the user
    ConsoleWithoutMfa: bool = False  # the user has a console password and no MFA device (credential report)
    KeyAtUserSetup: bool = False  # the key was created when the user was, and the user has a console password
    Description: str = ""  # the key's console description (the user tag whose key is the access key id)
    RiskScore: int = 0  # 0-100, the kill-first order (shared/findings/catalogue.py)
    RiskReasons: str = ""  # the parts of the score, "; "-separated

    def to_row(self) -> dict[str, Any]:
        return _to_row(self)


@dataclass(frozen=True, slots=True)
class RunRecord:
    TimeGenerated: datetime
    RunId: str
    Status: str
    AuthMode: str
    Sink: str
    AccountsTotal: int
    AccountsSucceeded: int
    AccountsFailed: int
    FailedAccounts: str  # a JSON array of {"AccountId": ..., "Error": ...}
    KeysCollected: int
    DurationSeconds: float
    CollectorVersion: str
    # Added by the reliability issue: rows kept in the outbox this run, delivered from it, dropped past its bounds.
    RecordsDeferred: int = 0
    RecordsReplayed: int = 0
    RecordsDropped: int = 0
    # Added by the insight issue: JSON array of account ids whose credential report could not be had, so whether
    # their root user has access keys is unknown this run.
    RootKeysUnknownAccounts: str = "[]"
    # Added by the second reliability issue: outbox items that could not be read, moved aside (kept) this run.
    OutboxItemsDeadLettered: int = 0
    # Added by the owners-act issue: EXCEPTIONS_SOURCE=blob and the blob could not be read or is invalid, so this run
    # applied no exception; the blob, the entries and the fields at fault. Empty when the exceptions applied.
    ExceptionsProblem: str = ""
    # Added by the long-lived credentials issue: rows of AwsIamCredentials_CL this run, and a JSON array of
    # {"AccountId", "CredentialType", "Error"}: credentials of that type in that account unknown this run (not zero),
    # e.g. a member role without iam:ListServiceSpecificCredentials; the error names what is missing.
    CredentialsCollected: int = 0
    CredentialsUnknownAccounts: str = "[]"

    def to_row(self) -> dict[str, Any]:
        return _to_row(self)


@dataclass(frozen=True, slots=True)
class DigestRunRecord:
    """One owner-digest run (shared/notify/run.py): its own small table, so that the collector's run queries and
    alerts (the latest snapshot's newest good run, the silent-collector alert) never mistake it for a collection."""

    TimeGenerated: datetime
    RunId: str
    Status: str  # Succeeded, PartiallySucceeded (some digests not sent) or Failed (nothing sent, or no query answer)
    Mode: str  # NOTIFY_MODE: dry_run or send
    DigestsBuilt: int  # one per recipient
    DigestsSent: int  # accepted by Communication Services (send) or written (dry_run)
    DigestsNotSent: int  # send failed after the retries; each recipient and error in Errors
    RowsListed: int  # findings listed, over every digest
    RowsWithoutRecipient: int  # keys with no usable owner while NOTIFY_FALLBACK_RECIPIENT is empty: nobody told
    Errors: str  # JSON array of {"Recipient": ..., "Error": ...}; secret-free
    DurationSeconds: float
    CollectorVersion: str

    def to_row(self) -> dict[str, Any]:
        return _to_row(self)


SERVICE_SPECIFIC_CREDENTIAL = "ServiceSpecificCredential"
SIGNING_CERTIFICATE = "SigningCertificate"


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """One long-lived credential of an IAM user other than an access key (AwsIamCredentials_CL): a service-specific
    credential (long-term API keys for Amazon Bedrock and CloudWatch Logs, CodeCommit Git and Amazon Keyspaces
    credentials) or an X.509 signing certificate (from the credential report)."""

    TimeGenerated: datetime
    RunId: str
    AccountId: str
    AccountName: str
    UserName: str
    UserArn: str
    Owner: str  # as for keys: the first of OWNER_TAG_KEYS on the user's tags; empty when none
    # The privilege fields of the key record (the blast-radius issue), from the same directory and evaluation as the
    # user's keys (shared/collection/directory.py; root: privileged).
    Privileged: bool
    PrivilegeReasons: str  # "; "-separated; empty when not privileged
    Quarantined: bool
    CredentialType: str  # SERVICE_SPECIFIC_CREDENTIAL or SIGNING_CERTIFICATE
    Service: str  # ServiceName, e.g. bedrock.amazonaws.com; empty for certificates
    CredentialId: str | None  # masked as key ids are; null for certificates (the credential report has no id)
    CredentialFingerprint: str  # as AccessKeyFingerprint: a stable join key across runs
    Status: str  # Active, Inactive, or (service-specific credentials past their expiry) Expired
    CreatedAt: datetime
    ExpiresAt: datetime | None  # null: never expires (or, for certificates, not known to the credential report)
    AgeDays: int
    NoExpiry: bool  # an Active long-term API key without an expiry
    RotationDue: bool  # Active and AgeDays > KEY_ROTATION_DAYS
    ExpiringSoon: bool  # Active and expiring within 7 days of TimeGenerated
    Excepted: bool = False
    ExceptionReason: str | None = None
    ExceptionExpires: datetime | None = None

    def to_row(self) -> dict[str, Any]:
        return _to_row(self)


class Table(typing.NamedTuple):
    """One destination table and its name in each sink."""

    table: str  # Log Analytics table
    log_type: str  # Data Collector API Log-Type (the service appends _CL)
    file_name: str  # file sink
    record_type: type
    # Logs Ingestion stream, for a table without a setting of its own (the contract names no stream setting for it)
    stream: str = ""


KEYS_TABLE = Table("AwsIamAccessKeys_CL", "AwsIamAccessKeys", "AwsIamAccessKeys.jsonl", KeyRecord)
RUNS_TABLE = Table("AwsIamKeyCollectorRuns_CL", "AwsIamKeyCollectorRuns", "AwsIamKeyCollectorRuns.jsonl", RunRecord)
DIGEST_RUNS_TABLE = Table("AwsIamOwnerDigestRuns_CL", "AwsIamOwnerDigestRuns", "AwsIamOwnerDigestRuns.jsonl",
                          DigestRunRecord)
DIGEST_RUNS_STREAM = "Custom-AwsIamOwnerDigestRuns"  # its Logs Ingestion stream (no setting: one fixed name)
CREDENTIALS_TABLE = Table("AwsIamCredentials_CL", "AwsIamCredentials", "AwsIamCredentials.jsonl", CredentialRecord,
                          "Custom-AwsIamCredentials")
TABLES = (KEYS_TABLE, RUNS_TABLE, CREDENTIALS_TABLE)  # the collector's: what its outbox may hold

# Log Analytics column types, by Python type.
_COLUMN_TYPES: dict[type, str] = {str: "string", int: "int", bool: "boolean", float: "real", datetime: "datetime"}


def columns(record_type: type) -> list[tuple[str, str]]:
    """(name, Log Analytics type) for every field of a record type, in order."""
    hints = typing.get_type_hints(record_type)
    result = []
    for field in dataclasses.fields(record_type):
        hint = hints[field.name]
        if isinstance(hint, types.UnionType):  # X | None
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        result.append((field.name, _COLUMN_TYPES[hint]))
    return result


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a Z, to the second, as Log Analytics parses it."""
    # isoformat is C and several times faster than strftime; its first 19 characters are "YYYY-MM-DDTHH:MM:SS"
    return value.astimezone(UTC).isoformat()[:19] + "Z"


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _to_row(record: Any) -> dict[str, Any]:
    """The record as a JSON-ready dict, in field order (one per key: its cost counts, 100,000 times in a large run)."""
    names = _FIELD_NAMES.get(type(record))
    if names is None:
        names = _FIELD_NAMES[type(record)] = tuple(field.name for field in dataclasses.fields(record))
    row: dict[str, Any] = {}
    for name in names:
        value = getattr(record, name)
        row[name] = iso_utc(value) if isinstance(value, datetime) else value
    return row
