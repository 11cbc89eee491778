"""The reviewed exceptions file: its format and its validation, naming the file, the entry and the field of every
problem (``python -m shared exceptions check`` and the settings check both call it)."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.findings.exceptions import (
    KNOWN_FINDINGS,
    NAMED_ONLY,
    ROOT_KEY_FINDING,
    SELECTORS,
    WILDCARD,
    ExceptionSet,
    RiskException,
)
from shared.identifiers import is_account_id, is_fingerprint

FORMAT_VERSION = 1
MAX_FILE_BYTES = 1024 * 1024  # 1 MiB: thousands of entries; a reviewed list is far shorter
# EXCEPTIONS_MAX_DAYS, defined here only: its default (shared/config/defaults.py shows it to the settings) and range.
DEFAULT_MAX_DAYS = 365
MAX_DAYS_RANGE = (1, 730)
_FIELDS = frozenset((*SELECTORS, "finding", "reason", "approvedBy", "expires"))
# A userArn glob: arn:<partition>:iam::<12-digit account>:user/<path and name>, the account and partition written out
# (no wildcard: one entry per account), wildcards (* ? [...]) only in the user's path and name, where none crosses
# a / (shared/findings/exceptions.py). IAM user names and paths: letters, digits and +=,.@_- (and / in a path).
_USER_ARN_GLOB = re.compile(r"arn:(aws|aws-us-gov|aws-cn):iam::([0-9]{12}):user/[\w+=,.@/*?\[\]!-]{1,1024}", re.ASCII)
_USER_ARN_EXPECTED = ("expected an IAM user ARN, or a glob over its user path and name, like "
                      "arn:aws:iam::123456789012:user/ci-* (the account written out: no wildcard in the partition or "
                      "account; * ? [...] never cross a / or :)")
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
    within: Path | None = None,
) -> ExceptionSet:
    """Read and validate one exceptions file. Raises ``ExceptionsFileError`` naming every problem.

    Only a regular file of at most ``MAX_FILE_BYTES`` is read (a device such as /dev/zero, a pipe or a folder is
    refused before any read, and no more than the bound plus one byte is ever read). ``within``: the folder the file
    must be in once symbolic links and ``..`` are resolved (the settings check passes the app's folder)."""
    source = shown_as or str(path)
    if within is not None and not Path(path).resolve().is_relative_to(within.resolve()):
        raise ExceptionsFileError(source, [f"not under the app's folder {within.resolve()} once links and .. are "
                                           "resolved: EXCEPTIONS_FILE names a file deployed with the app, relative "
                                           "to its folder (e.g. exceptions.json)"])
    try:
        data = _read_bounded(Path(path))
    except FileNotFoundError:
        raise ExceptionsFileError(source, ["the file does not exist (EXCEPTIONS_FILE names a path relative to "
                                           "the app; leave it empty for no exceptions)"]) from None
    except OSError as exc:
        raise ExceptionsFileError(source, [f"cannot be read: {exc.strerror or exc}"]) from None
    if data is None:
        raise ExceptionsFileError(source, ["not a regular file (a device, pipe or folder is never read)"])
    if len(data) > MAX_FILE_BYTES:
        raise ExceptionsFileError(source, [f"larger than {MAX_FILE_BYTES // 1024} KiB: an exceptions file is a short "
                                           "reviewed list; split out what is not needed"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExceptionsFileError(source, [f"not UTF-8 text (byte {exc.start})"]) from None
    return parse_exceptions(text, source=source, now=now, max_days=max_days, known_findings=known_findings)


def _read_bounded(path: Path) -> bytes | None:
    """At most MAX_FILE_BYTES + 1 bytes of a regular file; None when it is not one. Opened without blocking (a
    named pipe would otherwise wait for a writer), then checked on the open descriptor (no swap between a check and
    the read)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1)


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
            if is_fingerprint(value):
                pattern = value
            else:
                problem(selector, f"expected 16 lower-case hex digits (a key's AccessKeyFingerprint), got "
                                  f"{_show(value)}")
        elif selector == "accountId":
            if is_account_id(value):
                pattern = value
            else:
                problem(selector, f"expected a 12-digit account id as a string, got {_show(value)}")
        elif isinstance(value, str) and _USER_ARN_GLOB.fullmatch(value):
            pattern = value
        elif isinstance(value, str) and value.endswith(":root"):
            problem(selector, "a root user has no IAM user ARN to select: select its key by fingerprint, or its "
                              f"account by accountId, got {_show(value)}")
        else:
            problem(selector, f"{_USER_ARN_EXPECTED}, got {_show(value)}")

    finding = entry.get("finding")
    if not isinstance(finding, str) or (finding != WILDCARD and finding not in findings):
        problem("finding", f"expected one of {', '.join(sorted(findings))} or {WILDCARD} (every finding but "
                           f"{' and '.join(NAMED_ONLY)}), got {_show(finding)}")
    elif finding == ROOT_KEY_FINDING and selector == "userArn":
        # A root key has no IAM user: it is accepted one by one (its fingerprint) or per account, never by a glob.
        problem("finding", f"{ROOT_KEY_FINDING} is accepted only with a fingerprint or accountId selector, not "
                           "userArn; name the root key's AccessKeyFingerprint or its account's accountId")

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
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
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


@dataclass(frozen=True)
class ExceptionsLoad:
    """What one run read from a source of exceptions read each run (EXCEPTIONS_SOURCE=blob): the exceptions when
    valid, else none (``EMPTY``: the findings stay visible) and every problem, each naming the source, the entry and
    the field. The run writes ``problem`` to its record (ExceptionsProblem)."""

    exceptions: ExceptionSet
    problems: tuple[str, ...] = ()

    @property
    def problem(self) -> str:
        """One line for the run record: the first problems, each naming the entry and field; empty when valid."""
        if not self.problems:
            return ""
        shown = "; ".join(self.problems[:5])
        more = f"; and {len(self.problems) - 5} more" if len(self.problems) > 5 else ""
        return f"{self.exceptions.source}: no exception applied: {shown}{more}"[:2000]
