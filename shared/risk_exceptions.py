"""Accepted risk as reviewed data: the exceptions file, its validation, and matching a key to its exception.

An exception says "this finding on these keys is accepted, for this reason, approved by this person, until this
date". The file lives in the repository next to the app (``EXCEPTIONS_FILE``), so that every exception goes through
the same review as code. The format (documented in docs/exceptions.md)::

    {
      "version": 1,
      "exceptions": [
        {"fingerprint": "0123456789abcdef", "finding": "rotation_due",
         "reason": "vendor appliance, key rotation scheduled with the vendor",
         "approvedBy": "alice@example.com", "expires": "2027-03-01"}
      ]
    }

Each entry has exactly one selector: ``fingerprint`` (a key's ``AccessKeyFingerprint``), ``userArn`` (an
fnmatch-style glob over ``UserArn``: ``*``, ``?``, ``[...]``; case-sensitive) or ``accountId`` (every key of one
account). ``finding`` names one finding, or ``*`` for every finding of the selected keys except a root account key,
which is never accepted by a wildcard: it must be named (``root_key``). ``expires`` is a date (``YYYY-MM-DD``: the
exception stops applying at 00:00 UTC that day) or an ISO 8601 time with a zone, at most ``EXCEPTIONS_MAX_DAYS``
ahead of today. An exception past its date is not an error (the app must not stop the day one lapses): it stops
applying and is reported as expired.

Pure: parsing takes the text and the current time; nothing here reads the clock or the environment, except
``load_exceptions`` which reads the one file it is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from shared.findings import FINDINGS, ROOT_KEY, findings_of
from shared.records import KeyRecord

FORMAT_VERSION = 1
DEFAULT_MAX_DAYS = 365
MAX_DAYS_RANGE = (1, 730)
WILDCARD = "*"
ROOT_KEY_FINDING = ROOT_KEY.name
# The findings a key record can carry, by the names an exception uses: the findings catalogue's ids.
KNOWN_FINDINGS: tuple[str, ...] = tuple(f.name for f in FINDINGS)

SELECTORS = ("fingerprint", "userArn", "accountId")
_FIELDS = frozenset((*SELECTORS, "finding", "reason", "approvedBy", "expires"))
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_USER_ARN_PATTERN = re.compile(r"^arn:[\x21-\x7e]{1,2040}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_REASON = 500
_MAX_APPROVER = 200


class ExceptionsFileError(ValueError):
    """The exceptions file cannot be used. ``problems`` lists every one, each naming the file, the entry and the
    field."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(
            f"Invalid exceptions file {source} (fix it and have the change reviewed):\n"
            + "\n".join(f"  - {p}" for p in self.problems)
        )


@dataclass(frozen=True, slots=True)
class RiskException:
    """One accepted finding. ``entry`` is its 1-based position in the file (how errors and reports name it)."""

    entry: int
    selector: str  # one of SELECTORS
    pattern: str  # the selector's value
    finding: str  # a finding id, or WILDCARD
    reason: str
    approved_by: str
    expires: datetime  # UTC; the exception applies strictly before this instant

    @property
    def label(self) -> str:
        """``entry 3 (userArn arn:aws:iam::*:user/ci-*)``: how a person finds it in the file."""
        return f"entry {self.entry} ({self.selector} {self.pattern})"

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires

    def selects(self, *, account_id: str, user_arn: str, fingerprint: str) -> bool:
        if self.selector == "fingerprint":
            return fingerprint == self.pattern
        if self.selector == "accountId":
            return account_id == self.pattern
        return fnmatchcase(user_arn, self.pattern)

    def covers(self, finding: str) -> bool:
        return self.finding == finding or (self.finding == WILDCARD and finding != ROOT_KEY_FINDING)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the exceptions say about one key with the findings it has.

    ``excepted``: the key has at least one finding and every one is covered by an exception in force, so the key is
    left out of the finding counts. A key with one finding covered and another not stays counted (an exception never
    hides a finding it does not name); ``partial`` lists what is covered then. ``reason`` joins the reasons of the
    exceptions used; ``expires`` is the earliest of their expiries (when the key comes back). ``expired`` are
    exceptions that would have covered one of the key's findings but are past their date.
    """

    excepted: bool
    reason: str | None = None
    expires: datetime | None = None
    applied: tuple[RiskException, ...] = ()
    partial: tuple[str, ...] = ()
    expired: tuple[RiskException, ...] = ()


NOT_EXCEPTED = Decision(excepted=False)


@dataclass(frozen=True)
class ExceptionSet:
    """A validated exceptions file, indexed for matching (fingerprint and account exact, ARN globs in order)."""

    source: str
    exceptions: tuple[RiskException, ...] = ()
    _by_fingerprint: dict[str, list[RiskException]] = field(default_factory=dict, repr=False, compare=False)
    _by_account: dict[str, list[RiskException]] = field(default_factory=dict, repr=False, compare=False)
    _by_arn: list[RiskException] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        for exc in self.exceptions:
            if exc.selector == "fingerprint":
                self._by_fingerprint.setdefault(exc.pattern, []).append(exc)
            elif exc.selector == "accountId":
                self._by_account.setdefault(exc.pattern, []).append(exc)
            else:
                self._by_arn.append(exc)

    def __len__(self) -> int:
        return len(self.exceptions)

    def in_force(self, now: datetime) -> list[RiskException]:
        return [e for e in self.exceptions if not e.is_expired(now)]

    def expired(self, now: datetime) -> list[RiskException]:
        return [e for e in self.exceptions if e.is_expired(now)]

    def candidates(self, *, account_id: str, user_arn: str, fingerprint: str) -> list[RiskException]:
        """Every exception (in force or not) selecting this key, in file order."""
        found = [*self._by_fingerprint.get(fingerprint, ()), *self._by_account.get(account_id, ())]
        found += [e for e in self._by_arn if fnmatchcase(user_arn, e.pattern)]
        return sorted(found, key=lambda e: e.entry)

    def decide(
        self, *, account_id: str, user_arn: str, fingerprint: str, findings: Collection[str], now: datetime
    ) -> Decision:
        """Whether this key's findings are all accepted at ``now``; see ``Decision``."""
        if not findings or not self.exceptions:
            return NOT_EXCEPTED
        candidates = self.candidates(account_id=account_id, user_arn=user_arn, fingerprint=fingerprint)
        if not candidates:
            return NOT_EXCEPTED
        live = [e for e in candidates if not e.is_expired(now)]
        expired = tuple(e for e in candidates if e.is_expired(now) and any(e.covers(f) for f in findings))
        applied: list[RiskException] = []
        covered: list[str] = []
        for finding in sorted(findings):
            exc = next((e for e in live if e.covers(finding)), None)
            if exc is not None:
                covered.append(finding)
                if exc not in applied:
                    applied.append(exc)
        if len(covered) < len(findings):
            return Decision(excepted=False, partial=tuple(covered), expired=expired)
        applied.sort(key=lambda e: e.entry)
        return Decision(
            excepted=True,
            reason="; ".join(dict.fromkeys(e.reason for e in applied)),
            expires=min(e.expires for e in applied),
            applied=tuple(applied),
            expired=expired,
        )


EMPTY = ExceptionSet(source="(none)")


def check_max_days(value: int) -> int:
    low, high = MAX_DAYS_RANGE
    if not low <= value <= high:
        raise ValueError(f"EXCEPTIONS_MAX_DAYS: expected a whole number from {low} to {high}, got {value}")
    return value


def load_exceptions(
    path: str | Path,
    *,
    now: datetime,
    max_days: int = DEFAULT_MAX_DAYS,
    known_findings: Iterable[str] = KNOWN_FINDINGS,
    shown_as: str | None = None,
) -> ExceptionSet:
    """Read and validate one exceptions file. Raises ``ExceptionsFileError`` naming every problem."""
    source = shown_as or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExceptionsFileError(source, ["the file does not exist (EXCEPTIONS_FILE names a path relative to "
                                           "the app; leave it empty for no exceptions)"]) from None
    except UnicodeDecodeError as exc:
        raise ExceptionsFileError(source, [f"not UTF-8 text (byte {exc.start})"]) from None
    except OSError as exc:
        raise ExceptionsFileError(source, [f"cannot be read: {exc.strerror or exc}"]) from None
    return parse_exceptions(text, source=source, now=now, max_days=max_days, known_findings=known_findings)


def parse_exceptions(
    text: str,
    *,
    source: str,
    now: datetime,
    max_days: int = DEFAULT_MAX_DAYS,
    known_findings: Iterable[str] = KNOWN_FINDINGS,
) -> ExceptionSet:
    """Validate an exceptions file's text; collects every problem before raising ``ExceptionsFileError``."""
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    check_max_days(max_days)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExceptionsFileError(source, [f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) \
            from None
    if not isinstance(document, dict):
        raise ExceptionsFileError(source, ['expected a JSON object {"version": 1, "exceptions": [...]}'])
    problems: list[str] = []
    unknown = sorted(set(document) - {"version", "exceptions"})
    if unknown:
        problems.append(f"unknown top-level field(s) {', '.join(unknown)}; expected version and exceptions")
    version = document.get("version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        problems.append(f"version: expected {FORMAT_VERSION}, got {_show(version)}")
    entries = document.get("exceptions")
    if not isinstance(entries, list):
        problems.append(f"exceptions: expected a list of entries, got {_show(entries)}")
        entries = []

    findings = frozenset(known_findings)
    latest = now + timedelta(days=max_days)
    parsed: list[RiskException] = []
    seen: dict[tuple[str, str, str], int] = {}
    for number, entry in enumerate(entries, start=1):
        result = _parse_entry(number, entry, findings, latest, max_days, problems)
        if result is None:
            continue
        key = (result.selector, result.pattern, result.finding)
        if key in seen:
            problems.append(f"{result.label}: finding {result.finding} is already excepted for the same keys by "
                            f"entry {seen[key]}; keep one")
            continue
        seen[key] = number
        parsed.append(result)
    if problems:
        raise ExceptionsFileError(source, problems)
    return ExceptionSet(source=source, exceptions=tuple(parsed))


def _parse_entry(
    number: int,
    entry: Any,
    findings: frozenset[str],
    latest: datetime,
    max_days: int,
    problems: list[str],
) -> RiskException | None:
    if not isinstance(entry, dict):
        problems.append(f"entry {number}: expected an object with a selector, finding, reason, approvedBy and "
                        f"expires, got {_show(entry)}")
        return None
    present = [s for s in SELECTORS if s in entry]
    label = f"entry {number}" + (f" ({present[0]} {_plain(entry[present[0]])})" if len(present) == 1 else "")
    count = len(problems)

    def problem(name: str, message: str) -> None:
        problems.append(f"{label}: {name}: {message}")

    for name in sorted(set(entry) - _FIELDS):
        problem(name, f"unknown field; expected one of {', '.join(sorted(_FIELDS))}")

    selector = pattern = ""
    if len(present) != 1:
        problem("selector", f"expected exactly one of {', '.join(SELECTORS)}, found "
                            f"{', '.join(present) if present else 'none'}")
    else:
        selector = present[0]
        value = entry[selector]
        if selector == "fingerprint":
            if isinstance(value, str) and _FINGERPRINT.fullmatch(value):
                pattern = value
            else:
                problem(selector, f"expected 16 lower-case hex digits (a key's AccessKeyFingerprint), got "
                                  f"{_show(value)}")
        elif selector == "accountId":
            if isinstance(value, str) and _ACCOUNT_ID.fullmatch(value):
                pattern = value
            else:
                problem(selector, f"expected a 12-digit account id as a string, got {_show(value)}")
        elif isinstance(value, str) and _USER_ARN_PATTERN.fullmatch(value):
            pattern = value
        else:
            problem(selector, "expected an IAM user ARN or a glob over one (* ? [...]), starting with arn:, "
                              f"got {_show(value)}")

    finding = entry.get("finding")
    if not isinstance(finding, str) or (finding != WILDCARD and finding not in findings):
        problem("finding", f"expected one of {', '.join(sorted(findings))} or {WILDCARD} (every finding but "
                           f"{ROOT_KEY_FINDING}), got {_show(finding)}")

    reason = _text(entry.get("reason"), _MAX_REASON, "reason", problem,
                   "why the risk is accepted and what limits it")
    approved_by = _text(entry.get("approvedBy"), _MAX_APPROVER, "approvedBy", problem,
                        "who approved it (a name or e-mail address)")

    expires = _expiry(entry.get("expires"), problem)
    if expires is not None and expires > latest:
        problem("expires", f"{_plain(entry['expires'])} is more than {max_days} days ahead "
                           f"(EXCEPTIONS_MAX_DAYS); expected {latest.date().isoformat()} or earlier")

    if len(problems) > count:
        return None
    return RiskException(entry=number, selector=selector, pattern=pattern, finding=str(finding),
                         reason=str(reason), approved_by=str(approved_by), expires=_present(expires))


def _text(value: Any, limit: int, name: str, problem: Callable[[str, str], None], what: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        problem(name, f"required: {what}, as text; got {_show(value)}")
        return None
    if len(value) > limit or _CONTROL.search(value):
        problem(name, f"expected at most {limit} characters on one line, without control characters")
        return None
    return value.strip()


def _expiry(value: Any, problem: Callable[[str, str], None]) -> datetime | None:
    expected = "a date YYYY-MM-DD (stops applying at 00:00 UTC that day) or an ISO 8601 time with a zone"
    if not isinstance(value, str) or not value:
        problem("expires", f"required: {expected}; got {_show(value)}")
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        problem("expires", f"expected {expected}, got {_show(value)}")
        return None
    if parsed.tzinfo is None:
        problem("expires", f"{_plain(value)} has no time zone; add Z or an offset, or give a date")
        return None
    return parsed.astimezone(UTC)


def _present(value: datetime | None) -> datetime:
    if value is None:  # unreachable: a missing expiry is recorded as a problem first
        raise RuntimeError("exceptions validation let a missing expiry through")
    return value


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    shown = json.dumps(value, ensure_ascii=True) if not isinstance(value, str) else repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _plain(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=True)
    text = _CONTROL.sub("?", text)
    return text if len(text) <= 80 else text[:77] + "..."


def key_findings(record: KeyRecord) -> set[str]:
    """The findings one key record has, by the names exceptions use (the catalogue's rules)."""
    return {finding.name for finding in findings_of(record.to_row())}


def annotate(record: KeyRecord, *, exceptions: ExceptionSet, now: datetime) -> tuple[KeyRecord, Decision]:
    """The record (its ``Owner`` already set) with ``Excepted``/``ExceptionReason``/``ExceptionExpires`` from the
    findings it has. ``now`` is the run's start, so every key of a run is judged at the same instant."""
    if not exceptions.exceptions:
        return record, NOT_EXCEPTED
    decision = exceptions.decide(account_id=record.AccountId, user_arn=record.UserArn,
                                 fingerprint=record.AccessKeyFingerprint, findings=key_findings(record), now=now)
    if not decision.excepted:
        return record, decision
    return replace(record, Excepted=True, ExceptionReason=decision.reason, ExceptionExpires=decision.expires), decision


def describe(exceptions: ExceptionSet, now: datetime) -> list[str]:
    """Readable lines: one per exception, in force or expired, for the CLI and logs."""
    lines = []
    for exc in exceptions.exceptions:
        state = "EXPIRED" if exc.is_expired(now) else "in force"
        lines.append(f"{exc.label}: {exc.finding} - {state} until {_when(exc.expires)}; approved by "
                     f"{exc.approved_by}: {exc.reason}")
    return lines


def describe_expired(expired: Iterable[RiskException]) -> list[str]:
    """One line per expired exception: which entry, what it accepted, since when, and who approved it."""
    return [f"{e.label}: {e.finding} - expired {_when(e.expires)}; approved by {e.approved_by}: {e.reason}"
            for e in expired]


def _when(value: datetime) -> str:
    return value.date().isoformat() if value.time() == datetime.min.time() else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def mapping_of(exc: RiskException) -> Mapping[str, str]:
    """The entry as written in the file (for reports listing the exceptions)."""
    return {exc.selector: exc.pattern, "finding": exc.finding, "reason": exc.reason, "approvedBy": exc.approved_by,
            "expires": _when(exc.expires)}
