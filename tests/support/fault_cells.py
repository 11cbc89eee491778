"""The fault matrix's cells: every dependency x every fault, and what each asserts (the run's status, the accounts
named in FailedAccounts, the messages, where the records went, the retry bound).
``tests/integration/test_fault_matrix.py`` runs
them; ``tests/contract/test_readme.py`` checks that the failure table of docs/failure-behaviour.md says the same."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import CollectionFailedError, DeliveryDeferredError


@dataclass(frozen=True)
class Expect:
    status: str  # the run record's Status
    failed: tuple[str, ...] = ()  # accounts in FailedAccounts, by name
    message: tuple[str, ...] = ()  # in every FailedAccounts error (or, for the sinks, the invocation's error)
    delivered: str = "all"  # "all" | "others" (all but the failed accounts') | "none" | "outbox" (every record)
    raises: type[Exception] | None = None
    attempts: int | None = None  # requests the faulted dependency saw (None: not counted)


@dataclass(frozen=True)
class Cell:
    dependency: str
    fault: str
    mode: str  # "<auth>+<sink>"
    expect: Expect
    scope: str = ""  # AWS_ACCOUNTS; default: the home account for the Azure dependencies, else the organization

    @property
    def id(self) -> str:
        return f"{self.dependency}-{self.fault}"

    @property
    def accounts(self) -> str:
        return self.scope or ("home" if self.dependency in AZURE_DEPENDENCIES else "organization")


RECOVERED = Expect("Succeeded")
AZURE_DEPENDENCIES = ("managed_identity", "key_vault", "logs_ingestion", "data_collector")


def failed_run(*message: str, attempts: int | None = None) -> Expect:
    """Sign-in failed: nothing collected, the run record says why, the invocation fails."""
    return Expect("Failed", ("Management",), message, "none", CollectionFailedError, attempts)


def sandbox_failed(*message: str, attempts: int | None = None) -> Expect:
    return Expect("PartiallySucceeded", ("Sandbox",), message, "others", None, attempts)


def deferred(*message: str, status: str = "Succeeded", attempts: int | None = None) -> Expect:
    """The sink took nothing: every record is in the outbox and the invocation fails so the platform shows it.
    ``status="Failed"``: sign-in failed too (the managed identity serves both), so only the run record is kept."""
    failed = ("Management",) if status == "Failed" else ()
    return Expect(status, failed, message, "outbox", DeliveryDeferredError, attempts)


HOME = "STS AssumeRole into arn:aws:iam::123456789012:role/AwsIamKeyCollectorHome with the IAM user's key"
MEMBER = "STS AssumeRole into arn:aws:iam::{sandbox}:role/AwsIamKeyCollector from the home role"
WEB = "STS AssumeRoleWithWebIdentity into arn:aws:iam::123456789012:role/AwsIamKeyCollectorHome"
ORGS = "Organizations ListAccounts through arn:aws:iam::123456789012:role/AwsIamKeyCollectorHome"
IAM = "IAM in account {sandbox}: "
VAULT = "Key Vault https://localhost:"
MI = "Azure managed identity"
INGESTION = "logs_ingestion sink unavailable: 3 record(s) of this run kept in the outbox at "
COLLECTOR = "data_collector sink unavailable: 3 record(s) of this run kept in the outbox at "

AK_LI, WI_LI, AK_DC = "access_key+logs_ingestion", "web_identity+logs_ingestion", "access_key+data_collector"
CELLS = [
    # managed identity, in web_identity + logs_ingestion: the token for AWS comes first, then the sink's; when the
    # endpoint is down both fail, so the run fails and even its run record waits in the outbox
    Cell("managed_identity", "timeout", WI_LI,
         deferred(MI, "ServiceResponseTimeoutError", status="Failed", attempts=8)),
    Cell("managed_identity", "refused", WI_LI, deferred(MI, "ServiceRequestError", status="Failed", attempts=8)),
    Cell("managed_identity", "429", WI_LI, Expect("Succeeded", attempts=3)),
    Cell("managed_identity", "500", WI_LI, Expect("Succeeded", attempts=3)),
    Cell("managed_identity", "503", WI_LI, deferred(MI, status="Failed", attempts=8)),
    Cell("managed_identity", "403", WI_LI, deferred(MI, status="Failed", attempts=2)),
    Cell("managed_identity", "malformed", WI_LI, deferred(MI, "DecodeError", status="Failed", attempts=2)),
    Cell("managed_identity", "truncated", WI_LI, deferred(MI, "IncompleteReadError", status="Failed", attempts=8)),
    # Key Vault, in access_key + logs_ingestion: the IAM user's key pair
    Cell("key_vault", "timeout", AK_LI,
         failed_run(VAULT, "cannot reach the vault", "ServiceResponseTimeoutError", attempts=4)),
    Cell("key_vault", "refused", AK_LI,
         failed_run(VAULT, "cannot reach the vault", "ServiceRequestError", attempts=4)),
    Cell("key_vault", "429", AK_LI, Expect("Succeeded", attempts=3)),
    Cell("key_vault", "500", AK_LI, Expect("Succeeded", attempts=3)),
    Cell("key_vault", "503", AK_LI, failed_run(VAULT, "HTTP 503", attempts=4)),
    Cell("key_vault", "403", AK_LI, failed_run(VAULT, "HTTP 403", "Key Vault Secrets User", attempts=1)),
    Cell("key_vault", "malformed", AK_LI, failed_run(VAULT, "could not be read", "DecodeError", attempts=1)),
    Cell("key_vault", "truncated", AK_LI, failed_run(VAULT, "could not be read", "IncompleteReadError", attempts=4)),
    # STS AssumeRole into the home role with the IAM user's key
    Cell("sts_home", "timeout", AK_LI, failed_run(HOME, "ReadTimeoutError", attempts=3)),
    Cell("sts_home", "refused", AK_LI, failed_run(HOME, "EndpointConnectionError", attempts=3)),
    Cell("sts_home", "429", AK_LI, Expect("Succeeded", attempts=2)),
    Cell("sts_home", "500", AK_LI, Expect("Succeeded", attempts=2)),
    Cell("sts_home", "503", AK_LI, failed_run(HOME, "ServiceUnavailable", attempts=3)),
    Cell("sts_home", "403", AK_LI, failed_run(HOME, "AccessDenied", attempts=1)),
    Cell("sts_home", "malformed", AK_LI, failed_run(HOME, "ResponseParserError", attempts=1)),
    Cell("sts_home", "truncated", AK_LI, failed_run(HOME, "ResponseParserError", attempts=1)),
    # STS AssumeRole into a member account's role, chained from the home session (the Sandbox account's)
    Cell("sts_member", "timeout", AK_LI, sandbox_failed(MEMBER, "ReadTimeoutError", attempts=3)),
    Cell("sts_member", "refused", AK_LI,
         Expect("PartiallySucceeded", ("Production", "Sandbox"), ("from the home role", "EndpointConnectionError"),
                "others", attempts=6)),  # 3 attempts for each of the two member accounts
    Cell("sts_member", "429", AK_LI, Expect("Succeeded", attempts=2)),
    Cell("sts_member", "500", AK_LI, Expect("Succeeded", attempts=2)),
    Cell("sts_member", "503", AK_LI, sandbox_failed(MEMBER, "ServiceUnavailable", attempts=3)),
    Cell("sts_member", "403", AK_LI, sandbox_failed(MEMBER, "AccessDenied", attempts=1)),
    Cell("sts_member", "malformed", AK_LI, sandbox_failed(MEMBER, "ResponseParserError", attempts=1)),
    Cell("sts_member", "truncated", AK_LI, sandbox_failed(MEMBER, "ResponseParserError", attempts=1)),
    # STS AssumeRoleWithWebIdentity into the home role with the managed identity's token
    Cell("sts_web_identity", "timeout", WI_LI, failed_run(WEB, "ReadTimeoutError", attempts=3)),
    Cell("sts_web_identity", "refused", WI_LI, failed_run(WEB, "EndpointConnectionError", attempts=3)),
    Cell("sts_web_identity", "429", WI_LI, Expect("Succeeded", attempts=2)),
    Cell("sts_web_identity", "500", WI_LI, Expect("Succeeded", attempts=2)),
    Cell("sts_web_identity", "503", WI_LI, failed_run(WEB, "ServiceUnavailable", attempts=3)),
    Cell("sts_web_identity", "403", WI_LI, failed_run(WEB, "AccessDenied", attempts=1)),
    Cell("sts_web_identity", "malformed", WI_LI, failed_run(WEB, "ResponseParserError", attempts=1)),
    Cell("sts_web_identity", "truncated", WI_LI, failed_run(WEB, "ResponseParserError", attempts=1)),
    # IAM: one user's ListAccessKeys in the Sandbox account ("refused" takes IAM away from every account)
    Cell("iam", "timeout", AK_LI, sandbox_failed(IAM, "ReadTimeoutError", "after botocore's retries", attempts=3)),
    Cell("iam", "refused", AK_LI,
         Expect("Failed", ("Management", "Production", "Sandbox"), ("IAM in account", "EndpointConnectionError"),
                "none", CollectionFailedError, attempts=27)),
    # 3 accounts x 3 first calls (ListUsers, the credential report, the first ListServiceSpecificCredentials) x 3
    Cell("iam", "429", AK_LI, Expect("Succeeded", attempts=2)),
    Cell("iam", "500", AK_LI, Expect("Succeeded", attempts=2)),
    Cell("iam", "503", AK_LI, sandbox_failed(IAM, "ServiceUnavailable", "after botocore's retries", attempts=3)),
    Cell("iam", "403", AK_LI, sandbox_failed(IAM, "AccessDenied", "iam:ListAccessKeys", attempts=1)),
    Cell("iam", "malformed", AK_LI, sandbox_failed(IAM, "ResponseParserError", attempts=1)),
    Cell("iam", "truncated", AK_LI, sandbox_failed(IAM, "ResponseParserError", attempts=1)),
    # Organizations ListAccounts (AWS_ACCOUNTS=organization)
    Cell("organizations", "timeout", AK_LI, failed_run(ORGS, "ReadTimeoutError", attempts=3)),
    Cell("organizations", "refused", AK_LI, failed_run(ORGS, "EndpointConnectionError", attempts=3)),
    Cell("organizations", "429", AK_LI, Expect("Succeeded", attempts=2)),
    Cell("organizations", "500", AK_LI, Expect("Succeeded", attempts=2)),
    Cell("organizations", "503", AK_LI, failed_run(ORGS, "ServiceException", attempts=3)),
    Cell("organizations", "403", AK_LI, failed_run(ORGS, "AccessDeniedException", attempts=1)),
    Cell("organizations", "malformed", AK_LI, failed_run(ORGS, "field Accounts is missing", attempts=1)),
    Cell("organizations", "truncated", AK_LI, failed_run(ORGS, "field Accounts is missing", attempts=1)),
    # logs_ingestion sink (the home account: two key records, then the run record). The breaker: once the key
    # records failed, the run record goes straight to the outbox, so a sink fault costs one retry cycle per run
    Cell("logs_ingestion", "timeout", AK_LI, deferred(INGESTION, "ServiceResponseTimeoutError", attempts=4)),
    Cell("logs_ingestion", "refused", AK_LI, deferred(INGESTION, "cannot reach the endpoint", attempts=4)),
    Cell("logs_ingestion", "429", AK_LI, Expect("Succeeded", attempts=3)),
    Cell("logs_ingestion", "500", AK_LI, Expect("Succeeded", attempts=3)),
    Cell("logs_ingestion", "503", AK_LI, deferred(INGESTION, "HTTP 503", attempts=4)),
    Cell("logs_ingestion", "403", AK_LI, deferred(INGESTION, "HTTP 403", "Monitoring Metrics Publisher", attempts=1)),
    Cell("logs_ingestion", "malformed", AK_LI, deferred(INGESTION, "HTTP 400", attempts=1)),
    Cell("logs_ingestion", "truncated", AK_LI, deferred(INGESTION, "IncompleteReadError", attempts=4)),
    # data_collector sink (legacy; the home account)
    Cell("data_collector", "timeout", AK_DC, deferred(COLLECTOR, "ReadTimeout", attempts=5)),
    Cell("data_collector", "refused", AK_DC, deferred(COLLECTOR, "cannot reach", "ConnectionError", attempts=5)),
    Cell("data_collector", "429", AK_DC, Expect("Succeeded", attempts=3)),
    Cell("data_collector", "500", AK_DC, Expect("Succeeded", attempts=3)),
    Cell("data_collector", "503", AK_DC, deferred(COLLECTOR, "HTTP 503", attempts=5)),
    Cell("data_collector", "403", AK_DC,
         deferred(COLLECTOR, "HTTP 403", "LOG_ANALYTICS_WORKSPACE_KEY_SECRET", attempts=1)),
    Cell("data_collector", "malformed", AK_DC, deferred(COLLECTOR, "HTTP 400", attempts=1)),
    Cell("data_collector", "truncated", AK_DC, deferred(COLLECTOR, "ChunkedEncodingError", attempts=5)),
]


# --- the outbox itself: the blob outbox (the production path: AzureWebJobsStorage__blobServiceUri) on Azurite ---


@dataclass(frozen=True)
class OutboxCell:
    fault: str
    outcome: str  # the failure table's word for it (docs/failure-behaviour.md)
    attempts: int  # requests to the storage account that the fault met

    @property
    def id(self) -> str:
        return f"outbox-{self.fault}"


OUTBOX_CELLS = [
    # an earlier run's item is leased by another run that is replaying it: this run leaves it to that run
    OutboxCell("lease_conflict", "ok, item left to its holder", attempts=1),
    # the storage account answers 503 to everything: the replay is skipped after azure-core's retries, the run goes on
    OutboxCell("503", "ok, replay skipped", attempts=4),
    # an item that is not UTF-8 JSON lines: moved to dead-letter/, kept, counted; the run goes on
    OutboxCell("unreadable", "ok, item moved aside", attempts=1),
]


# --- delivery: what no fault of the sink or the outbox may cost (issue 24), each through the timer function ---


@dataclass(frozen=True)
class DeliveryCell:
    id: str
    outcome: str  # docs/failure-behaviour.md's words for what the test asserts


SINK_HANGS = "outbox within one bounded call, then the breaker; no account failed"
DELIVERY_CELLS = [
    # the sink accepts the request and never answers: one call, cut to its bound (not the 60 s read timeouts), opens
    # the breaker; every record kept, none dropped, no account blamed
    DeliveryCell("logs_ingestion-hangs", SINK_HANGS),
    DeliveryCell("data_collector-hangs", SINK_HANGS),
    # an Owner tag with U+2028 / U+2029 in one account through a sink outage and the replay after it
    DeliveryCell("hostile_tags-outage_then_replay",
                 "ok, every row of both runs delivered; none dead-lettered; no key created or deleted"),
    # an item planted in the blob outbox, named as 999,999,999 rows, while the sink is down
    DeliveryCell("outbox-planted_item", "ok, no real row dropped; the planted item moved aside"),
]
