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

Each entry has exactly one selector: ``fingerprint`` (a key's ``AccessKeyFingerprint``, or another credential's
``CredentialFingerprint``), ``userArn`` (a glob over the ``UserArn`` of IAM users in one account: ``*``, ``?``,
``[...]``, case-sensitive, none of which crosses ``/`` or ``:``, so ``user/ci-*`` never reaches ``user/ci-x/admin``;
the account is written out, never a wildcard) or ``accountId`` (every key of one account). ``finding`` names one
finding, or ``*`` for every finding of the selected keys except a root account key and a quarantined user's key,
which are never accepted by a wildcard: each must be named (``root_key``, ``quarantined``), a root key only with a
``fingerprint`` or ``accountId`` selector. ``expires`` is a date (``YYYY-MM-DD``: the exception stops applying at
00:00 UTC that day) or an ISO 8601 time with a zone, at most ``EXCEPTIONS_MAX_DAYS`` ahead of today. An exception
past its date is not an error (the app must not stop the day one lapses): it stops applying and is reported as
expired.

Pure: parsing takes the text and the current time; nothing here reads the clock or the environment, except
``load_exceptions`` which reads the one file it is given.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import TypeVar

from shared.findings.catalogue import (
    CREDENTIAL_FINDINGS,
    FINDINGS,
    QUARANTINED,
    ROOT_KEY,
    credential_findings_of,
    findings_of,
    is_active,
)
from shared.records import CredentialRecord, KeyRecord

WILDCARD = "*"
ROOT_KEY_FINDING = ROOT_KEY.name
# Findings a wildcard never accepts: a root account key, and a key of a user AWS quarantined (it saw a key leak).
NAMED_ONLY: tuple[str, ...] = (ROOT_KEY.name, QUARANTINED.name)
# The findings a key or credential record can carry, by the names an exception uses: the findings catalogue's ids.
KNOWN_FINDINGS: tuple[str, ...] = tuple(f.name for f in (*FINDINGS, *CREDENTIAL_FINDINGS))

SELECTORS = ("fingerprint", "userArn", "accountId")


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """A userArn glob as a regular expression in which no wildcard crosses an ARN's ``/`` or ``:``: ``*`` is any run
    of other characters, ``?`` one, ``[...]`` (``[!...]`` negated) one of a set; anything else is literal."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        i += 1
        if c == "*":
            out.append("[^/:]*")
        elif c == "?":
            out.append("[^/:]")
        elif c == "[" and (end := pattern.find("]", i + (pattern[i:i + 1] in ("!", "]")))) != -1:
            body = pattern[i:end]
            i = end + 1
            negated = body.startswith("!")
            members = re.escape(body[1:] if negated else body).replace("\\-", "-")
            out.append(f"[^/:{members}]" if negated else f"(?![/:])[{members}]")
        else:
            out.append(re.escape(c))
    return re.compile("".join(out), re.ASCII)


def arn_matches(pattern: str, user_arn: str) -> bool:
    """Whether a userArn glob selects this ARN (segment-aware: no wildcard crosses ``/`` or ``:``)."""
    return _glob(pattern).fullmatch(user_arn) is not None


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
        return arn_matches(self.pattern, user_arn)

    def covers(self, finding: str) -> bool:
        return self.finding == finding or (self.finding == WILDCARD and finding not in NAMED_ONLY)


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
        found += [e for e in self._by_arn if arn_matches(e.pattern, user_arn)]
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


def key_findings(record: KeyRecord | CredentialRecord) -> set[str]:
    """The findings one key (or other credential) record has, by the names exceptions use (the catalogue's rules)."""
    row = record.to_row()
    if not isinstance(record, CredentialRecord):
        return {finding.name for finding in findings_of(row)}
    found = {finding.name for finding in credential_findings_of(row)}
    if is_active(row) and record.Quarantined is True:
        # The credential of a user AWS quarantined is as hot as the user's key: like ``quarantined`` on a key, no
        # wildcard accepts it (NAMED_ONLY); only an exception naming ``quarantined`` does.
        found.add(QUARANTINED.name)
    return found


Annotated = TypeVar("Annotated", KeyRecord, CredentialRecord)


def annotate(record: Annotated, *, exceptions: ExceptionSet, now: datetime) -> tuple[Annotated, Decision]:
    """The record (its ``Owner`` already set) with ``Excepted``/``ExceptionReason``/``ExceptionExpires`` from the
    findings it has. ``now`` is the run's start, so every key of a run is judged at the same instant. A credential
    other than a key is selected as a key is: by its fingerprint, its user's ARN or its account."""
    if not exceptions.exceptions:
        return record, NOT_EXCEPTED
    fingerprint = record.CredentialFingerprint if isinstance(record, CredentialRecord) else record.AccessKeyFingerprint
    decision = exceptions.decide(account_id=record.AccountId, user_arn=record.UserArn,
                                 fingerprint=fingerprint, findings=key_findings(record), now=now)
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
