"""One account's inventory: every access key of every IAM user, read through the ``IamReader`` port (no SDK here),
as records written to a spool; and its root keys, from the credential report.

ListUsers pages stream in while up to ``iam.concurrency`` users are read in parallel (ListAccessKeys per user). A
key's last use comes from the account's credential report whenever the report can vouch for it
(``shared.last_use``); ``GetAccessKeyLastUsed`` is called only for the keys it cannot vouch for (created after the
report, no certain slot, or values the report does not give, such as moto's ``not_supported`` region and service).
A user that still has keys then gets one ListUserTags (its owner). So the common case costs ⌈users/1000⌉ ListUsers +
one ListAccessKeys per user + one ListUserTags per user with keys + the report's own calls.

The report is read alongside (the collector starts it with the account): users whose keys are listed before it is
ready wait, as key metadata only, and are finished as soon as it is. When the report cannot be had, every key's last
use comes from the API, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from shared import jsonl
from shared.collection.last_use import LastUse, ReportKeySlots, key_slots, last_use_from_report
from shared.collection.transform import key_records_for_user, last_use_from_api, parse_key_metadata
from shared.domain import Account, CredentialReport, RunContext
from shared.errors import MalformedResponseError, NoSuchEntityError, describe_error
from shared.ports import IamReader
from shared.records import KeyRecord

log = logging.getLogger(__name__)


def write_rows(records: list[KeyRecord], out: IO[bytes]) -> None:
    """Records as JSON Lines rows (``Record.to_row()``), in the package's one encoding (shared/jsonl.py)."""
    out.write(jsonl.encode(record.to_row() for record in records))


class ReportSlots:
    """The account's credential report as key slots, parsed once, for every worker: ``None`` when the report could
    not be had (then every key's last use comes from the API)."""

    def __init__(self, report: Future[CredentialReport] | None) -> None:
        self._report = report
        self._lock = threading.Lock()
        self._parsed = False
        self._slots: ReportKeySlots | None = None

    def ready(self) -> bool:
        return self._report is None or self._report.done()

    def get(self) -> ReportKeySlots | None:
        """The slots, waiting for the report if it is still being read."""
        with self._lock:
            if not self._parsed:
                self._parsed = True
                if self._report is not None:
                    try:
                        report = self._report.result()
                        self._slots = key_slots(report.rows, report.generated_at)
                    except Exception as exc:  # the collector reports an unavailable report (root keys unknown)
                        log.info("Credential report not usable for last use (GetAccessKeyLastUsed for every key): %s",
                                 describe_error(exc))
            return self._slots


class LastUseCalls:
    """How each key's last use was had in one account (for the debug log), counted from every worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.from_report = 0
        self.from_api = 0

    def add(self, *, from_report: bool) -> None:
        with self._lock:
            if from_report:
                self.from_report += 1
            else:
                self.from_api += 1


@dataclass(frozen=True)
class _UserKeys:
    user: Mapping[str, Any]
    keys: list[Mapping[str, Any]]
    last_used: dict[str, LastUse] | None  # None: waiting for the credential report
    tags: Sequence[Mapping[str, Any]] = ()  # ListUserTags, read once the user's keys are known


def inventory_account(
    iam: IamReader,
    account: Account,
    run: RunContext,
    out: IO[bytes],
    report: Future[CredentialReport] | None = None,
    now: Callable[[], datetime] | None = None,
    in_flight: threading.Semaphore | None = None,
) -> int:
    """Every access key of every IAM user of one account, as JSON Lines rows written to ``out``; returns how many.

    ``report`` is the account's credential report being read (None: last use from the API for every key); ``now``
    stamps an API answer's ``LastUsedAsOf``. A user or key deleted while the account is walked has no record; any
    other error fails the account (raised). ``in_flight``, shared by every account of the run, bounds the per-user and
    per-key calls in flight in the whole process."""
    clock = now or (lambda: run.started_at)
    gate = in_flight or _NO_GATE
    slots = ReportSlots(report)
    calls = LastUseCalls()
    count = 0
    waiting: list[_UserKeys] = []

    workers = max(1, iam.concurrency)
    window = workers * 4  # bounded look-ahead: memory does not grow with the number of users
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"iam-{account.id}") as pool:
        pending: set[Future[_UserKeys | None]] = set()

        def take(done: set[Future[_UserKeys | None]]) -> None:
            nonlocal count
            for future in done:
                result = future.result()
                if result is None:
                    continue
                if result.last_used is None:
                    waiting.append(result)
                    continue
                records = key_records_for_user(result.user, result.keys, result.last_used, account, run, result.tags)
                write_rows(records, out)
                count += len(records)
            if waiting and slots.ready():  # the report is here: finish the users that waited for it
                for held in waiting:
                    pending.add(pool.submit(_finish_user, iam, held.user, held.keys, slots, clock, calls, gate))
                waiting.clear()

        try:
            for user in iam.users():
                pending.add(pool.submit(_read_user, iam, user, slots, clock, calls, gate))
                if len(pending) >= window:
                    done, rest = wait(pending, return_when=FIRST_COMPLETED)
                    pending.clear()
                    pending.update(rest)
                    take(done)
            while pending or waiting:
                if not pending:
                    slots.get()  # only users waiting for the report are left: wait for it, then finish them
                    take(set())
                    continue
                done, rest = wait(pending, return_when=FIRST_COMPLETED)
                pending.clear()
                pending.update(rest)
                take(done)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    log.debug("Account %s: last use of %d key(s) from the credential report, %d from GetAccessKeyLastUsed",
              account.id, calls.from_report, calls.from_api)
    return count


class _NoGate:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


_NO_GATE: Any = _NoGate()


def _read_user(
    iam: IamReader,
    user: Mapping[str, Any],
    slots: ReportSlots,
    now: Callable[[], datetime],
    calls: LastUseCalls,
    gate: Any,
) -> _UserKeys | None:
    name = user.get("UserName") if isinstance(user, Mapping) else None
    if not isinstance(name, str) or not name:
        raise MalformedResponseError("IAM ListUsers: field UserName is missing")
    try:
        with gate:
            keys = list(iam.access_keys(name))
    except NoSuchEntityError:
        return None  # the user was deleted while we listed: it has no keys any more
    for key in keys:
        parse_key_metadata(name, key)  # a malformed key fails the account before any further call
    if keys and not slots.ready():
        return _UserKeys(user, keys, None)  # finished once the credential report is here
    return _finish_user(iam, user, keys, slots, now, calls, gate)


def _finish_user(
    iam: IamReader,
    user: Mapping[str, Any],
    keys: list[Mapping[str, Any]],
    slots: ReportSlots,
    now: Callable[[], datetime],
    calls: LastUseCalls,
    gate: Any,
) -> _UserKeys | None:
    name = str(user["UserName"])
    report = slots.get() if keys else None
    last_used: dict[str, LastUse] = {}
    present = []
    for key in keys:
        key_id, _, created = parse_key_metadata(name, key)
        vouched = last_use_from_report(report, name, created) if report is not None else None
        if isinstance(vouched, LastUse):
            last_used[key_id] = vouched
            calls.add(from_report=True)
        else:
            try:
                with gate:
                    answer = iam.key_last_used(key_id)
            except NoSuchEntityError:
                continue  # the key was deleted while we listed
            last_used[key_id] = last_use_from_api(answer, now(), name, key_id)
            calls.add(from_report=False)
        present.append(key)
    if not present:
        return _UserKeys(user, present, last_used)
    try:  # the owner tags: one ListUserTags, only for a user that still has keys
        with gate:
            tags = iam.user_tags(name)
    except NoSuchEntityError:
        return None  # the user was deleted while we read it: its keys went with it
    return _UserKeys(user, present, last_used, tags)


def describe_account_error(exc: BaseException, account: Account) -> str:
    """An account's inventory failed: which dependency (IAM), which account, what failed and what to check (the
    reader's errors say all of that already; anything else is named as IAM's in this account)."""
    described = describe_error(exc)
    return described if described.startswith("IAM ") else f"IAM in account {account.id}: {described}"
