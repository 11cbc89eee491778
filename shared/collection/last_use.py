"""Access keys' last use from the IAM credential report: pure functions, no I/O, no clock.

The credential report (``GetCredentialReport``, CSV) has a row per IAM user with two access-key slots. For each slot:
``access_key_N_active``, ``access_key_N_last_rotated`` (when the key in the slot was created), and
``access_key_N_last_used_date`` / ``_region`` / ``_service``. The report shows no key ids, so a key (user name,
``CreateDate`` from ListAccessKeys) is matched to its slot by its creation time, to the second.

The report *vouches* for a key only when the match is certain and its values mean exactly what
``GetAccessKeyLastUsed`` would answer; otherwise the caller asks that API for the key. Value conventions, as AWS
documents them for the credential report:

- ``N/A``: not applicable. In ``_last_used_date``/``_region``/``_service`` it means the key has never been used (or
  not since IAM began tracking, 22 April 2015), which ``GetAccessKeyLastUsed`` also answers as no date and ``N/A``. In
  ``_last_rotated`` it means there is no key in the slot.
- ``no_information``: IAM has no data (for example a use before tracking began): cannot vouch.
- ``not_supported``: the report does not give this field (moto's report says so for region and service): cannot
  vouch, the API answers instead.

A key the report cannot vouch for: created after the report was generated (or in the same second), a user missing
from the report, no slot or both slots with the key's creation time, or last-use cells that are ``not_supported``,
``no_information``, empty, not a date, or ``N/A`` for some of the three fields but not all.

The report's values were true at its ``GeneratedTime`` (at most four hours old when the collector reads it), which
each record carries as ``LastUsedAsOf``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.domain import NO_INFORMATION, NOT_APPLICABLE, NOT_SUPPORTED, parse_credential_report, report_date
from shared.errors import CollectorError

SLOTS = (1, 2)
_SLOT_FIELDS = ("active", "last_rotated", "last_used_date", "last_used_region", "last_used_service")
_REQUIRED_COLUMNS = ("user", *(f"access_key_{slot}_{field}" for slot in SLOTS for field in _SLOT_FIELDS))


class CredentialReportFormatError(CollectorError):
    """The credential report is not the CSV IAM documents (a column is missing)."""


@dataclass(frozen=True, slots=True)
class ReportSlot:
    """One access-key slot of a user's row, its last-use cells as written in the report."""

    slot: int
    created: datetime | None  # access_key_N_last_rotated; None: no key in the slot (N/A) or not a date
    used_date: str
    used_region: str
    used_service: str


@dataclass(frozen=True)
class ReportKeySlots:
    """The key slots of every user of one credential report, by user name."""

    generated_at: datetime  # GetCredentialReport's GeneratedTime
    slots_by_user: Mapping[str, tuple[ReportSlot, ...] | None]  # None: the user appears in more than one row


@dataclass(frozen=True, slots=True)
class LastUse:
    """A key's last use and when that was true: what a record's LastUsed* fields and LastUsedAsOf say."""

    used_at: datetime | None  # None: never used
    region: str | None
    service: str | None
    as_of: datetime

    def as_api_answer(self) -> dict[str, Any]:
        """The same facts in the shape of GetAccessKeyLastUsed's ``AccessKeyLastUsed`` (``N/A`` when never used)."""
        answer: dict[str, Any] = {
            "Region": self.region or NOT_APPLICABLE,
            "ServiceName": self.service or NOT_APPLICABLE,
        }
        if self.used_at is not None:
            answer["LastUsedDate"] = self.used_at
        return answer


@dataclass(frozen=True, slots=True)
class CannotVouch:
    """The report cannot vouch for this key's last use; ``reason`` says why (for logs and tests)."""

    reason: str


def key_slots_from_csv(content: str, generated_at: datetime) -> ReportKeySlots:
    """``key_slots`` of a credential report's CSV text, read as the AWS adapter reads it."""
    return key_slots(parse_credential_report(content, generated_at).rows, generated_at)


def key_slots(rows: Iterable[Mapping[str, str | None]], generated_at: datetime) -> ReportKeySlots:
    """Per-user key slots of a credential report's rows (the CSV's column names to values), generated at
    ``generated_at`` (time-zone aware)."""
    if generated_at.tzinfo is None:
        raise ValueError("generated_at must be time-zone aware")
    slots_by_user: dict[str, tuple[ReportSlot, ...] | None] = {}
    checked = False
    for row in rows:
        if not checked:
            _check_columns(row.keys())
            checked = True
        user = row.get("user") or ""
        if not user:
            continue
        slots = tuple(
            ReportSlot(
                slot=slot,
                created=_date_or_none(row.get(f"access_key_{slot}_last_rotated")),
                used_date=(row.get(f"access_key_{slot}_last_used_date") or "").strip(),
                used_region=(row.get(f"access_key_{slot}_last_used_region") or "").strip(),
                used_service=(row.get(f"access_key_{slot}_last_used_service") or "").strip(),
            )
            for slot in SLOTS
        )
        slots_by_user[user] = None if user in slots_by_user else slots
    return ReportKeySlots(generated_at.astimezone(UTC), slots_by_user)


def _check_columns(columns: Iterable[str]) -> None:
    present = set(columns)
    missing = [column for column in _REQUIRED_COLUMNS if column not in present]
    if missing:
        raise CredentialReportFormatError(f"IAM GetCredentialReport: column {missing[0]} is missing")


def last_use_from_report(report: ReportKeySlots, user_name: str, created: datetime) -> LastUse | CannotVouch:
    """The last use of the key of ``user_name`` created at ``created`` (ListAccessKeys' CreateDate), when the report
    vouches for it; else why it cannot."""
    created_second = _to_second(created)
    if created_second >= _to_second(report.generated_at):
        # Created after the report (or in its very second): the report cannot know the key or its use.
        return CannotVouch("created after the report")
    if user_name not in report.slots_by_user:
        return CannotVouch("user not in the report")
    slots = report.slots_by_user[user_name]
    if slots is None:
        return CannotVouch("user in more than one row")
    matching = [s for s in slots if s.created is not None and _to_second(s.created) == created_second]
    if not matching:
        return CannotVouch("no slot with the key's creation time")
    if len(matching) > 1:
        return CannotVouch("both slots have the key's creation time")
    return _slot_last_use(matching[0], report.generated_at)


def _slot_last_use(slot: ReportSlot, as_of: datetime) -> LastUse | CannotVouch:
    cells = (slot.used_date, slot.used_region, slot.used_service)
    for marker in (NOT_SUPPORTED, NO_INFORMATION):
        if marker in cells:
            return CannotVouch(f"last use {marker}")
    if all(cell == NOT_APPLICABLE for cell in cells):
        return LastUse(None, None, None, as_of)  # never used, as GetAccessKeyLastUsed would say
    if NOT_APPLICABLE in cells or "" in cells:
        return CannotVouch("last use partly N/A or empty")
    used_at = _date_or_none(slot.used_date)
    if used_at is None:
        return CannotVouch("last used date is not a date")
    if used_at > as_of:
        return CannotVouch("last used after the report was generated")
    return LastUse(used_at, slot.used_region, slot.used_service, as_of)


def _to_second(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("dates compared with the credential report must be time-zone aware")
    return moment.astimezone(UTC).replace(microsecond=0)


def _date_or_none(cell: str | None) -> datetime | None:
    """The cell's date (``report_date``, the one reading of the report's dates); a cell that is not a date reads as
    none here: the key then matches no slot, or its last use cannot be vouched for, and the API answers for it."""
    try:
        return report_date(cell)
    except ValueError:
        return None
