"""The catalogue of findings: each finding defined once, read by every place that shows or computes findings.

A finding has a name, labels, a severity and a colour, a rule over one key row (``matches``), the KQL text of the same
rule (``kql``; tests/contract/test_queries.py checks that the queries select what the rule selects), and, when the
finding is a record field the transform sets, that field and how it is computed from the key's facts (``sets``).

Readers (the CLI summary, the HTML report, the workbook builder, the KQL tests) iterate over ``FINDINGS``; none of
them re-checks ``Status`` or re-derives a rule (an inactive root key is a root key everywhere:
tests/contract/test_query_execution.py checks that the CLI, the report and the KQL agree on every count). The
contract's ``NeverUsed`` field is true for inactive keys too, so the finding "never used" is Active-and-NeverUsed,
here and only here; "two active keys on one user" is never stored and is defined here once (root keys are their own
finding).

The long-lived credentials other than access keys (AwsIamCredentials_CL) have findings of their own,
``CREDENTIAL_FINDINGS``, over their rows; ``table`` says which table a finding's rule reads.

Adding a finding: an entry here, its record field in shared/records.py when it sets one (and the Bicep column), the
queries that show it (findings-summary, findings-by-account, its drill-down), and tests.

Pure: imports nothing from the project.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

Row = Mapping[str, Any]  # a key record as a row: KeyRecord.to_row(), a JSON line of the file sink, a query result

KEYS_TABLE = "AwsIamAccessKeys_CL"
CREDENTIALS_TABLE = "AwsIamCredentials_CL"
EXPIRING_SOON_DAYS = 7  # a credential expiring within this many days of the run is ExpiringSoon


class Severity(enum.IntEnum):
    """Higher is worse."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


@dataclass(frozen=True)
class KeyFacts:
    """What the transform knows of one key when it sets the findings' record fields."""

    active: bool
    age_days: int
    days_since_last_use: int | None  # None: never used

    @property
    def never_used(self) -> bool:
        return self.days_since_last_use is None


@dataclass(frozen=True)
class CredentialFacts:
    """What the transform knows of one service-specific credential or signing certificate."""

    active: bool
    age_days: int
    api_key: bool  # a long-term API key (Amazon Bedrock, CloudWatch Logs): one that may have an expiry
    days_to_expiry: float | None  # None: no expiry (or, for a certificate, none known); negative: expired


@dataclass(frozen=True)
class Thresholds:
    """KEY_ROTATION_DAYS and KEY_UNUSED_DAYS."""

    rotation_days: int
    unused_days: int


@dataclass(frozen=True)
class Finding:
    name: str  # stable id, e.g. "rotation_due"
    column: str  # the count's column in the queries and the report (findings-by-account.kql), e.g. "RotationDueKeys"
    label: str  # the tile's label and the Finding value in the queries, e.g. "Due for rotation"
    chart_label: str  # the bar chart's legend (the bar chart counts keys; a tile may count users)
    cli_column: str  # the CLI summary's column header
    cli_tag: str  # the CLI summary's tag on one key
    severity: Severity
    colour: str  # CSS colour of the tile and the bar chart's series
    query: str  # the drill-down query (queries/<query>.kql) that lists the rows of this finding
    kql: str  # the rule as a KQL predicate over AwsIamAccessKeys_CL
    matches: Callable[[Row], bool]  # the rule as a Python predicate over one key row
    record_field: str | None = None  # the KeyRecord field the transform sets from ``sets``, if any
    # How the transform computes record_field, from the facts of a row of ``table``: KeyFacts for keys,
    # CredentialFacts for the other credentials.
    sets: Callable[[Any, Thresholds], bool] | None = None
    distinct_by: str | None = None  # the tile counts distinct values of this column (users) instead of keys
    benchmark: str = ""  # the benchmark recommendation the finding is, named with the benchmark's version ("": none)
    table: str = KEYS_TABLE  # the table whose rows ``kql`` and ``matches`` read


# Benchmark references (``Finding.benchmark``), each named with the benchmark's version: the benchmark renumbers
# between versions (v7.0.0 moved IAM into section 2, where "no 'root' user account access key exists" is 2.4; it was
# 1.4 up to v3.0.0). Every text that cites one (queries, workbook, alert and Sentinel rules, report, docs) writes it
# exactly as here; tests/contract/test_benchmark_labels.py fails on any other mention of the benchmark's short name.
# Only numbers checked against the benchmark's published audit items are cited: a finding whose v7.0.0 number could
# not be checked (two active keys per user) cites none. A risk factor that is not a finding cites its own, below.
KEY_AT_SETUP_BENCHMARK = "CIS AWS Foundations Benchmark v3.0.0 1.11"  # "Do not setup access keys during initial user
# setup for all IAM users that have a console password" (1.11 from v1.4.0 to v3.0.0; its v7.0.0 number unchecked)


def is_active(row: Row) -> bool:
    return row.get("Status") == "Active"


def _rotation_due(facts: KeyFacts, limits: Thresholds) -> bool:
    return facts.active and facts.age_days > limits.rotation_days


def _unused(facts: KeyFacts, limits: Thresholds) -> bool:
    # Unused too long, or never used and older than the unused limit (a young unused key is only "never used").
    idle = facts.days_since_last_use
    return facts.active and (
        (idle is not None and idle > limits.unused_days) or (idle is None and facts.age_days > limits.unused_days)
    )


ROOT_KEY = Finding(
    name="root_key",
    column="RootKeys",
    label="Root account keys",
    chart_label="Root account keys",
    cli_column="Root keys",
    cli_tag="ROOT ACCOUNT KEY",
    severity=Severity.HIGH,
    colour="#b42318",
    query="root-keys",
    kql="IsRootKey",
    matches=lambda row: bool(row.get("IsRootKey")),
    benchmark="CIS AWS Foundations Benchmark v7.0.0 2.4",
)
ROTATION_DUE = Finding(
    name="rotation_due",
    column="RotationDueKeys",
    label="Due for rotation",
    chart_label="Due for rotation",
    cli_column="Rotation due",
    cli_tag="rotation due",
    severity=Severity.MEDIUM,
    colour="#dc6803",
    query="rotation-due",
    kql="RotationDue",
    matches=lambda row: bool(row.get("RotationDue")),
    record_field="RotationDue",
    sets=_rotation_due,
)
UNUSED = Finding(
    name="unused",
    column="UnusedKeys",
    label="Unused",
    chart_label="Unused",
    cli_column="Unused",
    cli_tag="unused",
    severity=Severity.MEDIUM,
    colour="#ca8a04",
    query="unused-keys",
    kql="Unused",
    matches=lambda row: bool(row.get("Unused")),
    record_field="Unused",
    sets=_unused,
)
NEVER_USED = Finding(
    name="never_used",
    column="NeverUsedKeys",
    label="Never used",
    chart_label="Never used",
    cli_column="Never used",
    cli_tag="never used",
    severity=Severity.LOW,
    colour="#7a5af8",
    query="unused-keys",
    kql='Status == "Active" and NeverUsed',
    matches=lambda row: is_active(row) and bool(row.get("NeverUsed")),
)
TWO_ACTIVE_KEYS = Finding(
    name="two_active_keys",
    column="TwoActiveKeys",
    label="Users with two active keys",
    chart_label="Keys of users with two active keys",
    cli_column="2 active/user",
    cli_tag="2 active keys",
    severity=Severity.LOW,
    colour="#1570ef",
    query="two-active-keys",
    kql='Status == "Active" and UserActiveKeyCount > 1 and not(IsRootKey)',
    matches=lambda row: is_active(row) and int(row.get("UserActiveKeyCount") or 0) > 1 and not row.get("IsRootKey"),
    distinct_by="UserArn",
)

UNOWNED_ACTIVE_KEY = Finding(
    name="unowned_active_key",
    column="UnownedKeys",
    label="Active keys without an owner",
    chart_label="Unowned active keys",
    cli_column="No owner",
    cli_tag="no owner",
    severity=Severity.LOW,
    colour="#667085",
    query="unowned-keys",
    # Owner is empty when no OWNER_TAG_KEYS tag names anyone; root keys have no IAM user (their own finding).
    kql='Status == "Active" and not(IsRootKey) and Owner == ""',
    matches=lambda row: is_active(row) and not row.get("IsRootKey") and not row.get("Owner"),
)

QUARANTINED = Finding(
    name="quarantined",
    column="QuarantinedKeys",
    label="Keys of quarantined users",
    chart_label="Quarantined (exposed)",
    cli_column="Quarantined",
    cli_tag="QUARANTINED BY AWS",
    severity=Severity.HIGH,
    colour="#7a271a",
    query="quarantined-keys",
    # AWS attached an AWSCompromisedKeyQuarantine policy to the user: it found one of its keys in public. An inactive
    # key no longer signs anything (deactivating is AWS's first remediation step), so only active keys count.
    kql='Status == "Active" and Quarantined',
    matches=lambda row: is_active(row) and row.get("Quarantined") is True,
)

# In the order of the tiles, the bar chart's series and queries/findings-summary.kql.
FINDINGS: tuple[Finding, ...] = (
    ROOT_KEY, QUARANTINED, ROTATION_DUE, UNUSED, NEVER_USED, TWO_ACTIVE_KEYS, UNOWNED_ACTIVE_KEY,
)


def _no_expiry(facts: CredentialFacts, limits: Thresholds) -> bool:
    return facts.active and facts.api_key and facts.days_to_expiry is None


def _credential_rotation_due(facts: CredentialFacts, limits: Thresholds) -> bool:
    return facts.active and facts.age_days > limits.rotation_days


def _expiring_soon(facts: CredentialFacts, limits: Thresholds) -> bool:
    left = facts.days_to_expiry
    return facts.active and left is not None and 0 <= left <= EXPIRING_SOON_DAYS


API_KEY_NO_EXPIRY = Finding(
    name="api_key_no_expiry",
    column="ApiKeysWithoutExpiry",
    label="Long-term API keys without expiry",
    chart_label="Long-term API keys without expiry",
    cli_column="No expiry",
    cli_tag="API KEY WITHOUT EXPIRY",
    severity=Severity.HIGH,
    colour="#c11574",
    query="credential-findings",
    # An Active long-term API key (Amazon Bedrock, CloudWatch Logs) created without CredentialAgeDays: a bearer
    # secret that works until someone deletes it (Prowler: bedrock_api_key_no_long_term_credentials, High).
    kql="NoExpiry",
    matches=lambda row: bool(row.get("NoExpiry")),
    record_field="NoExpiry",
    sets=_no_expiry,
    table=CREDENTIALS_TABLE,
)
CREDENTIAL_ROTATION_DUE = Finding(
    name="credential_rotation_due",
    column="RotationDueCredentials",
    label="Credentials due for rotation",
    chart_label="Credentials due for rotation",
    cli_column="Rotation due",
    cli_tag="rotation due",
    severity=Severity.MEDIUM,
    colour="#dc6803",
    query="credential-findings",
    kql="RotationDue",  # Active and older than KEY_ROTATION_DAYS, as for keys
    matches=lambda row: bool(row.get("RotationDue")),
    record_field="RotationDue",
    sets=_credential_rotation_due,
    table=CREDENTIALS_TABLE,
)
CREDENTIAL_EXPIRING_SOON = Finding(
    name="credential_expiring_soon",
    column="ExpiringSoonCredentials",
    label="Credentials expiring within 7 days",
    chart_label="Expiring within 7 days",
    cli_column="Expiring soon",
    cli_tag="expiring soon",
    severity=Severity.LOW,
    colour="#1570ef",
    query="credential-findings",
    kql="ExpiringSoon",  # what uses it stops working within EXPIRING_SOON_DAYS: renew it in time
    matches=lambda row: bool(row.get("ExpiringSoon")),
    record_field="ExpiringSoon",
    sets=_expiring_soon,
    table=CREDENTIALS_TABLE,
)
PRIVILEGED_USER_CREDENTIAL = Finding(
    name="privileged_user_credential",
    column="PrivilegedUserCredentials",
    label="Credentials of privileged or quarantined users",
    chart_label="Privileged or quarantined user",
    cli_column="Privileged user",
    cli_tag="privileged or quarantined user",
    severity=Severity.HIGH,
    colour="#b42318",
    query="credential-findings",
    # The user's privilege and quarantine, as its keys have them (the same directory and heuristic). "== true", not
    # the bare column: rows written before the fields were filled have them null, and select nothing.
    kql='Status == "Active" and (Privileged == true or Quarantined == true)',
    matches=lambda row: is_active(row) and (row.get("Privileged") is True or row.get("Quarantined") is True),
    table=CREDENTIALS_TABLE,
)

# The findings of AwsIamCredentials_CL rows, in the order of their tiles and queries/credential-findings.kql.
CREDENTIAL_FINDINGS: tuple[Finding, ...] = (
    API_KEY_NO_EXPIRY, PRIVILEGED_USER_CREDENTIAL, CREDENTIAL_ROTATION_DUE, CREDENTIAL_EXPIRING_SOON,
)

# A key whose every finding an exception in force accepts (docs/exceptions.md) is left out of every count and listed
# in a table of its own. In KQL ``Excepted != true``, not ``not(Excepted)``: rows written before the column existed
# have it null, and ``null != true`` is true, so they still count.
NOT_EXCEPTED_KQL = "Excepted != true"


def is_excepted(row: Row) -> bool:
    return row.get("Excepted") is True


def findings_of(row: Row) -> list[Finding]:
    """The findings one key row has, in catalogue order (excepted or not)."""
    return [finding for finding in FINDINGS if finding.matches(row)]


def open_findings_of(row: Row) -> list[Finding]:
    """The findings one key row has that count: none when the key is excepted."""
    return [] if is_excepted(row) else findings_of(row)


def counts(finding: Finding, row: Row) -> bool:
    """The row counts under this finding: it has it and is not excepted."""
    return finding.matches(row) and not is_excepted(row)


def record_flags(facts: KeyFacts, limits: Thresholds) -> dict[str, bool]:
    """The record fields the findings set, by field name: what the transform puts in each KeyRecord."""
    return _flags(FINDINGS, facts, limits)


def credential_flags(facts: CredentialFacts, limits: Thresholds) -> dict[str, bool]:
    """The record fields the credential findings set: what the transform puts in each CredentialRecord."""
    return _flags(CREDENTIAL_FINDINGS, facts, limits)


def _flags(findings: tuple[Finding, ...], facts: Any, limits: Thresholds) -> dict[str, bool]:
    return {
        f.record_field: f.sets(facts, limits) for f in findings if f.record_field is not None and f.sets is not None
    }


# --------------------------------------------------------------------------------------------------------------------
# The kill-first ranking: RiskScore (0-100) and RiskReasons of each key, from one formula over the key record's own
# fields. Only an active key scores (an inactive one signs nothing until someone reactivates it; the root-key alert
# covers inactive root keys). The points add up, capped at 100; the reasons name each part with its points, in the
# order below. An exception lowers nothing: an excepted key keeps its score, and every list shows it as excepted.
# The same formula in words: README (kill-first) and docs/insight.md.


@dataclass(frozen=True)
class RiskFactor:
    name: str
    points: int
    reason: str  # as RiskReasons shows it, before " +<points>"
    matches: Callable[[Row], bool]  # over an active key's row


RISK_FACTORS: tuple[RiskFactor, ...] = (
    RiskFactor("quarantined", 40, "quarantined by AWS (key exposed in public)", lambda r: r.get("Quarantined") is True),
    RiskFactor("root_key", 40, "root account key", lambda r: r.get("IsRootKey") is True),
    RiskFactor("privileged", 25, "admin-equivalent user", lambda r: r.get("Privileged") is True),
    RiskFactor("console_without_mfa", 10, "console password without MFA", lambda r: r.get("ConsoleWithoutMfa") is True),
    RiskFactor("unused", 10, "unused", lambda r: r.get("Unused") is True),
    RiskFactor("rotation_due", 10, "due for rotation", lambda r: r.get("RotationDue") is True),
    RiskFactor("never_used", 5, "never used", lambda r: r.get("NeverUsed") is True),
    RiskFactor("two_active_keys", 5, "second active key of the user",
               lambda r: int(r.get("UserActiveKeyCount") or 0) > 1 and r.get("IsRootKey") is not True),
    RiskFactor("key_at_user_setup", 5, "made at user setup",  # KEY_AT_SETUP_BENCHMARK
               lambda r: r.get("KeyAtUserSetup") is True),
)
MAX_RISK = 100
KILL_FIRST_ROWS = 50  # how many keys the kill-first lists show (queries/kill-first.kql: top 50)


def risk_of(row: Row) -> tuple[int, str]:
    """(RiskScore, RiskReasons) of one key row: the formula above."""
    if not is_active(row):
        return 0, ""
    parts = [factor for factor in RISK_FACTORS if factor.matches(row)]
    score = min(MAX_RISK, sum(factor.points for factor in parts))
    return score, "; ".join(f"{factor.reason} +{factor.points}" for factor in parts)


def kill_first_order(row: Row) -> tuple[Any, ...]:
    """The kill-first sort key: highest score first, then the oldest key, then account, user and fingerprint (so
    that the order is total and the same in Python and KQL: ``order by RiskScore desc, AgeDays desc, AccountId asc,
    UserName asc, AccessKeyFingerprint asc``)."""
    return (-int(row.get("RiskScore") or 0), -int(row.get("AgeDays") or 0), str(row.get("AccountId") or ""),
            str(row.get("UserName") or ""), str(row.get("AccessKeyFingerprint") or ""))


AnyRow = TypeVar("AnyRow", bound=Row)


def kill_first(rows: Iterable[AnyRow], limit: int = KILL_FIRST_ROWS) -> list[AnyRow]:
    """The keys to kill first: those that score, in the kill-first order, at most ``limit`` of them."""
    return sorted((r for r in rows if int(r.get("RiskScore") or 0) > 0), key=kill_first_order)[:limit]


def credential_findings_of(row: Row) -> list[Finding]:
    """The findings one AwsIamCredentials_CL row has, in catalogue order (excepted or not)."""
    return [finding for finding in CREDENTIAL_FINDINGS if finding.matches(row)]


def open_credential_findings_of(row: Row) -> list[Finding]:
    """The findings of one credential row that count: none when it is excepted."""
    return [] if is_excepted(row) else credential_findings_of(row)
