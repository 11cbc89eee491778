"""The collector's domain types: what a run works on (accounts, the run's context, the credential report) and what it
ends with (a typed run result). The record columns stay in ``shared.records``; the run record is made from the result
here, so the one JSON encoding of ``FailedAccounts`` is written once and nobody needs to parse it back.

The credential report's format is read here once (pure, below the adapters and the run): its CSV
(``parse_credential_report``, for the AWS adapter and the tests) and its date cells (``report_date``, for the users'
key slots in shared/collection/last_use.py and the root keys in shared/collection/transform.py).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.errors import MalformedResponseError
from shared.findings.exceptions import EMPTY, ExceptionSet
from shared.findings.owners import DEFAULT_OWNER_TAG_KEYS
from shared.records import RunRecord


@dataclass(frozen=True)
class Account:
    id: str
    name: str = ""


@dataclass(frozen=True)
class RunContext:
    """What every record of one run shares."""

    run_id: str
    started_at: datetime  # TimeGenerated of every record of the run
    rotation_days: int
    unused_days: int
    owner_tag_keys: tuple[str, ...] = DEFAULT_OWNER_TAG_KEYS  # OWNER_TAG_KEYS, in order
    exceptions: ExceptionSet = EMPTY  # the reviewed exceptions, judged at started_at


@dataclass(frozen=True)
class CredentialReport:
    """One account's IAM credential report, parsed: a mapping of the CSV's column names to values per row (the root
    user's row is ``<root_account>``). ``generated_at`` is when AWS generated it (the report is up to 4 hours old)."""

    rows: tuple[Mapping[str, str], ...]
    generated_at: datetime


# Cells of the credential report that hold no date, as AWS documents them: not applicable (no key in the slot, or a
# key never used), no data (e.g. a use before IAM tracked it), a field the report does not give (moto's region).
NOT_APPLICABLE = "N/A"
NO_INFORMATION = "no_information"
NOT_SUPPORTED = "not_supported"


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


def report_date(cell: str | None) -> datetime | None:
    """A date cell of the credential report as an aware UTC datetime (ISO 8601; without a zone, UTC), or None where
    the report gives no date (empty, ``N/A``, ``no_information``, ``not_supported``). Anything else raises
    ValueError: what a bad cell costs is the reader's decision (a user's key falls back to GetAccessKeyLastUsed;
    the account's root keys are unknown this run)."""
    text = (cell or "").strip()
    if not text or text in (NOT_APPLICABLE, NO_INFORMATION, NOT_SUPPORTED):
        return None
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))  # ValueError: not a date
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class CredentialService:
    """A service IAM issues service-specific credentials for, by its ``ServiceName``."""

    name: str
    api_key: bool  # its credentials are long-term API keys: they may have an expiry, and without one never expire


# Every service IAM issues service-specific credentials for, the one list the collector reads
# (ListServiceSpecificCredentials, one paged call per service per account). From the IAM User Guide: "Service-specific
# credentials for IAM users" (id_credentials_service-specific-creds.html: CodeCommit, Amazon Keyspaces) and "API keys
# for AWS services" (id_credentials_api_keys_for_aws_services.html: long-term API keys for Amazon Bedrock and Amazon
# CloudWatch Logs), and CreateServiceSpecificCredential's CredentialAgeDays (API reference). A service AWS adds goes
# here; one a partition does not offer answers NotSupportedService, read as "none there".
CREDENTIAL_SERVICES: tuple[CredentialService, ...] = (
    CredentialService("bedrock.amazonaws.com", api_key=True),
    CredentialService("logs.amazonaws.com", api_key=True),
    CredentialService("codecommit.amazonaws.com", api_key=False),
    CredentialService("cassandra.amazonaws.com", api_key=False),
)


@dataclass(frozen=True)
class CredentialsUnknown:
    """Credentials of one type in one account that could not be read this run: unknown, not zero."""

    account_id: str
    credential_type: str  # records.SERVICE_SPECIFIC_CREDENTIAL or records.SIGNING_CERTIFICATE
    error: str  # names what failed and what is missing (e.g. iam:ListServiceSpecificCredentials)


@dataclass(frozen=True)
class AccountFailure:
    """An account that was not collected this run, and why (secret-free, one line)."""

    account_id: str
    error: str


# A run's Status (RunResult.status), and the runs whose records make a snapshot: the readers' "good" runs (the
# queries' ``Status in ("Succeeded", "PartiallySucceeded")``: tests/contract/test_queries.py checks they agree).
RUN_SUCCEEDED = "Succeeded"
RUN_PARTIALLY_SUCCEEDED = "PartiallySucceeded"
RUN_FAILED = "Failed"
GOOD_RUN_STATUSES = (RUN_SUCCEEDED, RUN_PARTIALLY_SUCCEEDED)


@dataclass(frozen=True)
class RunResult:
    """What one run did, typed. ``failures`` and ``root_keys_unknown`` are in the accounts' order."""

    run: RunContext
    auth_mode: str
    sink: str
    accounts_total: int
    failures: tuple[AccountFailure, ...]
    keys_collected: int
    duration_seconds: float
    version: str
    signed_in: bool = True
    deferred: int = 0  # rows kept in the outbox this run
    replayed: int = 0  # rows of earlier runs delivered this run
    dropped: int = 0  # rows dropped from the outbox past its bounds
    root_keys_unknown: tuple[str, ...] = ()  # accounts whose credential report could not be had
    dead_lettered: int = 0  # outbox items that could not be read, moved aside (kept) this run
    exceptions_problem: str = ""  # the exceptions blob was unusable: no exception applied (ExceptionsProblem)
    credentials_collected: int = 0  # rows of AwsIamCredentials_CL
    credentials_unknown: tuple[CredentialsUnknown, ...] = ()  # in the accounts' order

    @property
    def status(self) -> str:
        if not self.signed_in or (self.accounts_total > 0 and len(self.failures) == self.accounts_total):
            return RUN_FAILED
        return RUN_PARTIALLY_SUCCEEDED if self.failures else RUN_SUCCEEDED

    @property
    def accounts_succeeded(self) -> int:
        return max(0, self.accounts_total - len(self.failures))

    def to_record(self) -> RunRecord:
        """The run record, as the contract defines it."""
        return RunRecord(
            TimeGenerated=self.run.started_at,
            RunId=self.run.run_id,
            Status=self.status,
            AuthMode=self.auth_mode,
            Sink=self.sink,
            AccountsTotal=self.accounts_total,
            AccountsSucceeded=self.accounts_succeeded,
            AccountsFailed=len(self.failures),
            FailedAccounts=json.dumps([{"AccountId": f.account_id, "Error": f.error} for f in self.failures]),
            KeysCollected=self.keys_collected,
            DurationSeconds=round(self.duration_seconds, 3),
            CollectorVersion=self.version,
            RecordsDeferred=self.deferred,
            RecordsReplayed=self.replayed,
            RecordsDropped=self.dropped,
            RootKeysUnknownAccounts=json.dumps(list(self.root_keys_unknown)),
            OutboxItemsDeadLettered=self.dead_lettered,
            ExceptionsProblem=self.exceptions_problem,
            CredentialsCollected=self.credentials_collected,
            CredentialsUnknownAccounts=json.dumps([
                {"AccountId": u.account_id, "CredentialType": u.credential_type, "Error": u.error}
                for u in self.credentials_unknown
            ]),
        )
