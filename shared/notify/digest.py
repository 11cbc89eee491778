"""Owner digests, pure: key rows of the latest snapshot -> the rows each owner must act on -> one digest per recipient.

The rule, defined once here and nowhere else: a finding has a due date; a notice goes out ``NOTICE_DAYS`` (15, 7 and 1)
days before it, then every day from the due date on while the finding stays (``is_notice_day``). The findings, each
with its due date and what to do, are ``DIGEST_FINDINGS``; each carries its rule twice, as KQL (the text
queries/owner-digest.kql holds: tests/contract/test_owner_digest_query.py checks it is there and that the executed
query selects exactly what ``notice_rows`` selects) and as Python (for the file sink's rows: the demo and
``python -m shared notify --in``).

- Rotation due: due ``KEY_ROTATION_DAYS`` after creation (the record's ``RotationDue`` is the same rule: overdue).
- Unused / Never used (Active keys the record marks ``Unused`` or ``NeverUsed``): due ``KEY_UNUSED_DAYS`` after the
  last use (or the creation, never used), as the record's ``Unused`` is computed; a never-used key is announced 15, 7
  and 1 days before it becomes unused, a key in use is not.
- Privileged / Quarantined: when the records have those fields (another issue adds them; absent: no row): due at once.

Keys an exception in force accepts (``Excepted``) and inactive keys are left out. Days are whole days, as the
collector's ``AgeDays``: ``days_to_due = limit - whole days since the start date`` (KQL: ``toint((now() - X) / 1d)``).

Imports nothing that talks to a network (tests/test_architecture.py checks).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.findings.catalogue import Thresholds, is_active, is_excepted
from shared.identifiers import is_email_address
from shared.redaction import redact

Row = Mapping[str, Any]

NOTICE_DAYS = (15, 7, 1)  # days before the due date that a notice goes out; from the due date on, every day
NOTICE_KQL = f"DaysToDue in ({', '.join(str(d) for d in NOTICE_DAYS)}) or DaysToDue <= 0"


def is_notice_day(days_to_due: int) -> bool:
    """The cadence: 15, 7 and 1 days before the due date, then every day from the due date on."""
    return days_to_due in NOTICE_DAYS or days_to_due <= 0


def parse_time(value: Any) -> datetime | None:
    """A datetime from a query (already a datetime) or from the file sink (an ISO 8601 string); None when null."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def whole_days(since: datetime, now: datetime) -> int:
    """Whole days from ``since`` to ``now`` (KQL ``toint((now() - since) / 1d)``: truncated towards zero)."""
    return int((now - since) / timedelta(days=1))


@dataclass(frozen=True)
class DueDate:
    start: str  # the row field the due date counts from
    limit: Callable[[Thresholds], int]  # days after the start
    kql_limit: str  # the same limit in the query: a let of queries/owner-digest.kql, set from the setting


@dataclass(frozen=True)
class DigestFinding:
    label: str  # the Finding value the query selects
    action: str  # what to do, as the digest says it
    kql: str  # the rows this finding is, as a KQL predicate over the latest snapshot (after column_ifexists)
    matches: Callable[[Row], bool]  # the same rule in Python
    due: DueDate | None  # None: due at once (the snapshot's time)


def _flag(name: str) -> Callable[[Row], bool]:
    return lambda row: row.get(name) is True


ROTATION_DUE = DigestFinding(
    "Rotation due", "Rotate the key: create a new one, move its users to it, then deactivate and delete this one.",
    "true", lambda row: True, DueDate("CreatedAt", lambda t: t.rotation_days, "rotationDays"))
UNUSED = DigestFinding(
    "Unused", "Deactivate the key, then delete it if nothing breaks; if it is still needed, say so to security.",
    "Unused and not(NeverUsed)", lambda row: row.get("Unused") is True and row.get("NeverUsed") is False,
    DueDate("LastUsedAt", lambda t: t.unused_days, "unusedDays"))
NEVER_USED = DigestFinding(
    "Never used", "Delete the key if nobody needs it; a key never used is a key nobody misses.",
    "NeverUsed", _flag("NeverUsed"), DueDate("CreatedAt", lambda t: t.unused_days, "unusedDays"))
PRIVILEGED = DigestFinding(
    "Privileged", "Replace the long-lived key of this admin-equivalent user with a role, or remove the privileges.",
    "Privileged == true", _flag("Privileged"), None)
QUARANTINED = DigestFinding(
    "Quarantined", "AWS quarantined this user (a leaked key): delete the key and review the user's activity now.",
    "Quarantined == true", _flag("Quarantined"), None)

DIGEST_FINDINGS: tuple[DigestFinding, ...] = (QUARANTINED, PRIVILEGED, ROTATION_DUE, UNUSED, NEVER_USED)
ACTIONS = {f.label: f.action for f in DIGEST_FINDINGS}
# The key rows a digest reads, as KQL and as Python: Active keys no exception in force accepts.
OPEN_KEYS_KQL = 'Status == "Active" and Excepted != true'


# queries/owner-digest.kql, shipped with the app (.funcignore keeps queries/): the digest function runs this file.
QUERY_PATH = Path(__file__).resolve().parents[2] / "queries" / "owner-digest.kql"
_LIMIT_LET = re.compile(r"^let (rotationDays|unusedDays) = [0-9]+;(?=\n|\Z)", re.M | re.ASCII)


def owner_digest_query(limits: Thresholds, text: str | None = None) -> str:
    """The query with its two lets set from KEY_ROTATION_DAYS and KEY_UNUSED_DAYS (whole numbers, validated)."""
    text = QUERY_PATH.read_text(encoding="utf-8") if text is None else text
    values = {"rotationDays": int(limits.rotation_days), "unusedDays": int(limits.unused_days)}
    found = _LIMIT_LET.findall(text)
    if sorted(found) != sorted(values):
        raise ValueError(f"{QUERY_PATH.name}: expected one 'let rotationDays = <n>;' and one 'let unusedDays = <n>;' "
                         f"line, found {found}")
    return _LIMIT_LET.sub(lambda m: f"let {m[1]} = {values[m[1]]};", text)


def is_open_key(row: Row) -> bool:
    return is_active(row) and not is_excepted(row)


def findings_kql() -> str:
    """The union of the findings with their due dates, as queries/owner-digest.kql holds it (generated from
    DIGEST_FINDINGS: the file must contain exactly this text, tests/contract/test_owner_digest_query.py checks)."""
    parts = []
    for f in DIGEST_FINDINGS:
        where = "" if f.kql == "true" else f" | where {f.kql}"
        if f.due is None:
            due = "DueDate = TimeGenerated, DaysToDue = 0"
        else:
            start, limit = f.due.start, f.due.kql_limit
            due = f"DueDate = {start} + {limit} * 1d,\n            DaysToDue = {limit} - toint((now() - {start}) / 1d)"
        parts.append(f'    (OpenKeys{where}\n        | extend Finding = "{f.label}", {due})')
    return "union\n" + ",\n".join(parts) + f"\n| where {NOTICE_KQL}"


@dataclass(frozen=True)
class DigestRow:
    """One thing an owner must do: the key (masked), the finding, its due date and the days left (negative: late)."""

    owner: str  # the key's Owner as recorded (hostile text from AWS tags); empty: no owner
    account_id: str
    account_name: str
    user_name: str
    access_key_id: str  # masked (AKIA...WXYZ); "(root key)" for a root key
    finding: str
    due_date: datetime
    days_to_due: int

    @property
    def action(self) -> str:
        return ACTIONS.get(self.finding, "Review the key.")

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What identifies the row across the query and the Python rule (the masked id is unique within a user)."""
        return (self.account_id, self.user_name, self.access_key_id, self.finding)


def masked_key(value: Any) -> str:
    """The record's masked key id, never a full one: a full id that got into a row is masked here too."""
    return "(root key)" if not value else redact(str(value))


def due_rows(row: Row, now: datetime, limits: Thresholds) -> list[DigestRow]:
    """Every finding of one key row with its due date and days left, whether or not today is a notice day."""
    if not is_open_key(row):
        return []
    found = []
    for finding in DIGEST_FINDINGS:
        if not finding.matches(row):
            continue
        if finding.due is None:
            due_date, days = parse_time(row.get("TimeGenerated")) or now, 0
        else:
            start = parse_time(row.get(finding.due.start)) or parse_time(row.get("CreatedAt")) or now
            limit = finding.due.limit(limits)
            due_date, days = start + timedelta(days=limit), limit - whole_days(start, now)
        found.append(DigestRow(str(row.get("Owner") or ""), str(row.get("AccountId") or ""),
                               str(row.get("AccountName") or ""), str(row.get("UserName") or ""),
                               masked_key(row.get("AccessKeyId")), finding.label, due_date, days))
    return found


def notice_rows(rows: Iterable[Row], now: datetime, limits: Thresholds) -> list[DigestRow]:
    """The rows today's digests list: the findings on a notice day (what queries/owner-digest.kql selects)."""
    return [item for row in rows for item in due_rows(row, now, limits) if is_notice_day(item.days_to_due)]


def rows_from_query(rows: Iterable[Row]) -> list[DigestRow]:
    """The query's answer (queries/owner-digest.kql) as digest rows."""
    found = []
    for row in rows:
        due = parse_time(row.get("DueDate"))
        found.append(DigestRow(str(row.get("Owner") or ""), str(row.get("AccountId") or ""),
                               str(row.get("AccountName") or ""), str(row.get("UserName") or ""),
                               masked_key(row.get("AccessKeyId")), str(row.get("Finding") or ""),
                               due or datetime.min.replace(tzinfo=UTC), int(row.get("DaysToDue") or 0)))
    return found


# --------------------------------------------------------------------------------------------------------------------
# Recipients and digests

@dataclass(frozen=True)
class Digest:
    recipient: str  # an e-mail address
    rows: tuple[DigestRow, ...]  # most urgent first
    fallback: bool = False  # keys without a usable owner, sent to NOTIFY_FALLBACK_RECIPIENT

    @property
    def overdue(self) -> int:
        return sum(1 for r in self.rows if r.days_to_due < 0)


@dataclass(frozen=True)
class Digests:
    digests: tuple[Digest, ...]
    unaddressed: tuple[DigestRow, ...] = field(default=())  # no usable owner and no fallback recipient: not sent


def recipient_of(owner: str) -> str | None:
    owner = owner.strip()
    return owner.lower() if is_email_address(owner) else None


def build_digests(rows: Sequence[DigestRow], fallback: str | None) -> Digests:
    """One digest per owner (a usable e-mail address, case-insensitive), and one for the fallback recipient holding
    the rows whose key has no owner or an owner that is not an e-mail address (their Owner is shown there)."""
    by_recipient: dict[str, list[DigestRow]] = {}
    orphans: list[DigestRow] = []
    for row in rows:
        recipient = recipient_of(row.owner)
        if recipient is None:
            orphans.append(row)
        else:
            by_recipient.setdefault(recipient, []).append(row)
    digests = [Digest(r, tuple(sorted(items, key=_urgency))) for r, items in sorted(by_recipient.items())]
    if orphans and fallback:
        digests.append(Digest(fallback, tuple(sorted(orphans, key=_urgency)), fallback=True))
        orphans = []
    return Digests(tuple(digests), tuple(orphans))


def _urgency(row: DigestRow) -> tuple[Any, ...]:
    return (row.days_to_due, row.account_id, row.user_name, row.access_key_id, row.finding)
