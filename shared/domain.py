"""The collector's domain types: what a run works on (accounts, the run's context, the credential report) and what it
ends with (a typed run result). The record columns stay in ``shared.records``; the run record is made from the result
here, so the one JSON encoding of ``FailedAccounts`` is written once and nobody needs to parse it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

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


RUN_SUCCEEDED = "Succeeded"
RUN_PARTIALLY_SUCCEEDED = "PartiallySucceeded"
RUN_FAILED = "Failed"


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
            CredentialsCollected=self.credentials_collected,
            CredentialsUnknownAccounts=json.dumps([
                {"AccountId": u.account_id, "CredentialType": u.credential_type, "Error": u.error}
                for u in self.credentials_unknown
            ]),
        )
