"""One account's inventory: every access key of every IAM user, read through the ``IamReader`` port (no SDK here),
as records written to a spool; and its root keys, from the credential report.

Three named steps (``inventory_account``):

1. ``read_directory``: the account's users, from ``GetAccountAuthorizationDetails`` (Filter User, Group,
   LocalManagedPolicy; ⌈entities/1000⌉ calls): each user with its owner and its keys' console descriptions (its
   tags), and its privilege (its policies, its groups', its boundary: ``shared.findings.privilege``).
2. ``AccountWalk``: up to ``iam.concurrency`` users read in parallel: one ListAccessKeys per user. A key's last use
   comes from the account's credential report whenever the report can vouch for it (``shared.last_use``);
   ``GetAccessKeyLastUsed`` is called only for the keys it cannot vouch for (created after the report, no certain
   slot, or values the report does not give, such as moto's ``not_supported`` region and service).
3. The records, one per key, written as each user is finished (``key_records_for_user``), with the user's console
   facts from the same report.

So the common case costs ⌈entities/1000⌉ GetAccountAuthorizationDetails + one ListAccessKeys per user + the report's
own calls.

The report is read alongside (the collector starts it with the account): users whose keys are listed before it is
ready wait, as key metadata only, and are finished as soon as it is. When the report cannot be had, every key's last
use comes from the API, as before, and the console facts are unknown (false).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from shared import jsonl
from shared.collection.console import ConsoleAccess, console_access
from shared.collection.directory import AccountDirectory, UserEntry, read_directory
from shared.collection.last_use import LastUse, ReportKeySlots, key_slots, last_use_from_report
from shared.collection.transform import key_records_for_user, last_use_from_api, parse_key_metadata
from shared.domain import Account, CredentialReport, RunContext
from shared.errors import NoSuchEntityError, describe_error
from shared.ports import IamReader
from shared.records import KeyRecord

log = logging.getLogger(__name__)


def write_rows(records: list[KeyRecord], out: IO[bytes]) -> None:
    """Records as JSON Lines rows (``Record.to_row()``), in the package's one encoding (shared/jsonl.py)."""
    out.write(jsonl.encode(record.to_row() for record in records))


class ReportSlots:
    """The account's credential report as key slots and console facts, parsed once, for every worker: ``None`` when
    the report could not be had (then every key's last use comes from the API, and console facts are unknown)."""

    def __init__(self, report: Future[CredentialReport] | None) -> None:
        self._report = report
        self._lock = threading.Lock()
        self._parsed = False
        self._slots: ReportKeySlots | None = None
        self._console: dict[str, ConsoleAccess] = {}

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
                        self._console = console_access(report.rows)
                    except Exception as exc:  # the collector reports an unavailable report (root keys unknown)
                        log.info("Credential report not usable for last use (GetAccessKeyLastUsed for every key): %s",
                                 describe_error(exc))
            return self._slots

    def console(self, user_name: str) -> ConsoleAccess | None:
        """The user's console facts from the report (None: unknown); only once ``get`` has returned."""
        return self._console.get(user_name)


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
class Inventory:
    """What one account's inventory gave: how many key records it wrote, and the directory it read (which the
    account's other credentials take their holders from: shared/collection/credentials.py)."""

    keys: int
    directory: AccountDirectory


@dataclass(frozen=True)
class _UserKeys:
    user: UserEntry
    keys: list[Mapping[str, Any]]
    last_used: dict[str, LastUse] | None  # None: waiting for the credential report


def inventory_account(
    iam: IamReader,
    account: Account,
    run: RunContext,
    out: IO[bytes],
    report: Future[CredentialReport] | None = None,
    now: Callable[[], datetime] | None = None,
    in_flight: threading.Semaphore | None = None,
) -> Inventory:
    """Every access key of every IAM user of one account, as JSON Lines rows written to ``out``; returns how many, and
    the account's directory.

    ``report`` is the account's credential report being read (None: last use from the API for every key); ``now``
    stamps an API answer's ``LastUsedAsOf``. A user or key deleted while the account is walked has no record; any
    other error fails the account (raised). ``in_flight``, shared by every account of the run, bounds the per-user and
    per-key calls in flight in the whole process."""
    directory = read_directory(iam.authorization_details(), run.owner_tag_keys)
    walk = AccountWalk(iam, account, run, out, ReportSlots(report), now or (lambda: run.started_at),
                       in_flight or _NO_GATE)
    count = walk.run(directory.users)
    log.debug("Account %s: %d user(s), %d group(s), %d customer-managed policies; last use of %d key(s) from the "
              "credential report, %d from GetAccessKeyLastUsed", account.id, len(directory.users), directory.groups,
              directory.policies, walk.calls.from_report, walk.calls.from_api)
    return Inventory(count, directory)


class AccountWalk:
    """Step 2 and 3 of one account: its users' keys read in parallel (a bounded look-ahead, so memory does not grow
    with the number of users), each user finished once the credential report is here, its records written."""

    def __init__(self, iam: IamReader, account: Account, run: RunContext, out: IO[bytes], slots: ReportSlots,
                 now: Callable[[], datetime], gate: Any) -> None:
        self._iam = iam
        self._account = account
        self._run = run
        self._out = out
        self._slots = slots
        self._now = now
        self._gate = gate
        self.calls = LastUseCalls()
        self.count = 0
        self._waiting: list[_UserKeys] = []  # users whose keys are listed, waiting for the credential report
        self._pending: set[Future[_UserKeys | None]] = set()
        self._workers = max(1, iam.concurrency)

    def run(self, users: list[UserEntry]) -> int:
        window = self._workers * 4
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=f"iam-{self._account.id}") as pool:
            try:
                for user in users:
                    self._pending.add(pool.submit(self._read_user, user))
                    if len(self._pending) >= window:
                        self._take_some(pool)
                while self._pending or self._waiting:
                    if not self._pending:
                        self._slots.get()  # only users waiting for the report are left: wait for it, then finish them
                        self._release_waiting(pool)
                        continue
                    self._take_some(pool)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return self.count

    def _take_some(self, pool: ThreadPoolExecutor) -> None:
        """Write the users finished so far; hold those that wait for the report; release them once it is here."""
        done, rest = wait(self._pending, return_when=FIRST_COMPLETED)
        self._pending = set(rest)
        for future in done:
            result = future.result()
            if result is None:
                continue
            if result.last_used is None:
                self._waiting.append(result)
            else:
                self._write(result)
        self._release_waiting(pool)

    def _release_waiting(self, pool: ThreadPoolExecutor) -> None:
        if self._waiting and self._slots.ready():
            for held in self._waiting:
                self._pending.add(pool.submit(self._finish_user, held.user, held.keys))
            self._waiting.clear()

    def _write(self, result: _UserKeys) -> None:
        records = key_records_for_user(result.user, result.keys, result.last_used or {}, self._account, self._run,
                                       self._slots.console(result.user.name))
        write_rows(records, self._out)
        self.count += len(records)

    def _read_user(self, user: UserEntry) -> _UserKeys | None:
        """ListAccessKeys of one user; its keys' last use at once, or once the credential report is here."""
        try:
            with self._gate:
                keys = list(self._iam.access_keys(user.name))
        except NoSuchEntityError:
            return None  # the user was deleted while we listed: it has no keys any more
        for key in keys:
            parse_key_metadata(user.name, key)  # a malformed key fails the account before any further call
        if keys and not self._slots.ready():
            return _UserKeys(user, keys, None)  # finished once the credential report is here
        return self._finish_user(user, keys)

    def _finish_user(self, user: UserEntry, keys: list[Mapping[str, Any]]) -> _UserKeys:
        """Each key's last use: from the report when it vouches for it, else GetAccessKeyLastUsed."""
        report = self._slots.get() if keys else None
        last_used: dict[str, LastUse] = {}
        present = []
        for key in keys:
            key_id, _, created = parse_key_metadata(user.name, key)
            vouched = last_use_from_report(report, user.name, created) if report is not None else None
            if isinstance(vouched, LastUse):
                last_used[key_id] = vouched
                self.calls.add(from_report=True)
            else:
                try:
                    with self._gate:
                        answer = self._iam.key_last_used(key_id)
                except NoSuchEntityError:
                    continue  # the key was deleted while we listed
                last_used[key_id] = last_use_from_api(answer, self._now(), user.name, key_id)
                self.calls.add(from_report=False)
            present.append(key)
        return _UserKeys(user, present, last_used)


class _NoGate:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


_NO_GATE: Any = _NoGate()


def describe_account_error(exc: BaseException, account: Account) -> str:
    """An account's inventory failed: which dependency (IAM), which account, what failed and what to check (the
    reader's errors say all of that already; anything else is named as IAM's in this account)."""
    described = describe_error(exc)
    return described if described.startswith("IAM ") else f"IAM in account {account.id}: {described}"
