"""The accounts of one run, in parallel: each is read into a spool (AWS), then delivered from it in batches (the
sink, or the outbox when the sink fails). Memory stays flat however large the organization: one batch in memory per
account holding the sink, the rest on disk.

An account is failed only for reasons on the AWS side: sign-in to it, an IAM error, or its own deadline while
reading. Rows an account finished reading are delivered or kept in the outbox, at the deadline too; they are lost
(and the account failed, naming both) only when neither the sink nor the outbox takes them.

At the run's delivery deadline (shared/deadline.py) the run stops: AWS calls are refused from then on, accounts still
reading fail (nothing of them is sent: no partial account lands), accounts that finished reading keep their rows in
the outbox. ``end`` joins the accounts' threads, bounded by what is left of the run.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from concurrent.futures import TimeoutError as FuturesTimeoutError
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

from shared import jsonl
from shared.collection.credentials import AccountCredentials, CredentialsStep
from shared.collection.inventory import describe_account_error, inventory_account, write_rows
from shared.collection.transform import root_key_records
from shared.deadline import Deadline, as_timeout
from shared.delivery.reliable_sink import ReliableSink
from shared.domain import Account, RunContext
from shared.errors import SinkError, describe_error
from shared.ports import AwsAccounts, Clock, IamReader, Progress
from shared.records import CREDENTIALS_TABLE, KEYS_TABLE, CredentialRecord
from shared.redaction import redact

log = logging.getLogger(__name__)

SEND_BATCH_ROWS = 5000  # rows per sink call; the Azure sinks chunk further to their own size limits

NOT_READ_BY_THE_DEADLINE = (
    "not finished reading by the run's deadline (the Function's functionTimeout, less a margin): AWS answered too "
    "slowly for this account; nothing of it was sent this run, the next run collects it again"
)


NO_CREDENTIALS = AccountCredentials()


@dataclass(frozen=True)
class AccountResult:
    keys: int
    error: str | None
    root_keys_known: bool = True
    credentials: AccountCredentials = NO_CREDENTIALS  # the account's other long-lived credentials


@dataclass(frozen=True)
class AccountsSetup:
    """What the accounts of a run share (the collector's, for this run)."""

    source: AwsAccounts
    sink: ReliableSink
    sink_lock: threading.Lock  # the sink is called from one thread at a time
    progress: Progress
    clock: Clock
    deadline: Deadline
    in_flight: threading.BoundedSemaphore  # per-user and per-key IAM calls in flight in the whole process
    concurrency: int
    time_budget: timedelta | None  # accounts not started within it are left for the next run
    shuffle: Callable[[list[Account]], None]


class RunAccounts:
    """One run's accounts: ``collect`` them, ``stop`` them at the deadline, ``end`` their threads."""

    def __init__(self, setup: AccountsSetup) -> None:
        self._s = setup
        self._lock = threading.Lock()
        self._read: set[str] = set()  # accounts whose reading is complete: their rows are delivered or kept
        self._report_stops: set[threading.Event] = set()  # the credential report waits of accounts still reading
        self._futures: dict[Future[AccountResult], Account] = {}
        self._pool: ThreadPoolExecutor | None = None

    def collect(self, accounts: list[Account], run: RunContext) -> dict[str, AccountResult]:
        """Every account in parallel; anything an account's work raises fails that account alone (a full disk, a
        thread that cannot start). When the delivery time is up, the run stops; accounts still at work are then
        waited for until half the reserve is left: those still reading fail, those that read keep their rows."""
        s = self._s
        results: dict[str, AccountResult] = {}
        start_by = None if s.time_budget is None else Deadline.after(s.time_budget.total_seconds(),
                                                                     s.clock.monotonic, reserve=0.0)
        pool = self._pool = ThreadPoolExecutor(s.concurrency, thread_name_prefix="account")
        for account in start_order(accounts, s.time_budget, s.shuffle):
            try:
                self._futures[pool.submit(self._collect_safely, account, run, start_by)] = account
            except Exception as exc:  # e.g. RuntimeError: can't start new thread
                self._record(results, account, AccountResult(0, f"not collected: {describe_error(exc)}"))
        if not self._wait(results, s.deadline.delivery_left()):
            self.stop()
            self._wait(results, s.deadline.keeping_left())
            for account in self._futures.values():
                if account.id not in results:
                    self._record(results, account, AccountResult(0, self._unfinished(account)))
        return results

    def stop(self) -> None:
        """The run's deadline: no AWS call starts any more (the AWS clients check), credential report waits end."""
        self._s.deadline.stop()
        with self._lock:
            for stop in self._report_stops:
                stop.set()

    def end(self) -> None:
        """Join the accounts' threads, bounded by what is left of the run; name any still inside an AWS call (it
        starts no other, and the sink and the outbox are closed to it)."""
        futures, self._futures = self._futures, {}
        pool, self._pool = self._pool, None
        _, not_done = wait(futures, timeout=as_timeout(self._s.deadline.remaining()))
        if pool is not None:  # every account's work has ended: its idle threads end now; else they are left to end
            pool.shutdown(wait=not not_done, cancel_futures=True)
        if not_done:
            log.error("%d account thread(s) still in an AWS call at the run's end: they start no AWS call and cannot "
                      "reach the sink or the outbox any more (%s)", len(not_done),
                      ", ".join(sorted(futures[f].id for f in not_done)))

    # --- waiting for them ------------------------------------------------------------------------------------------

    def _wait(self, results: dict[str, AccountResult], seconds: float) -> bool:
        """Take the accounts' results as they finish, for at most ``seconds``; True when every account finished."""
        try:
            for future in as_completed(self._futures, timeout=as_timeout(seconds)):
                account = self._futures[future]
                if account.id not in results:
                    self._record(results, account, future.result())
        except FuturesTimeoutError:
            return False
        return True

    def _record(self, results: dict[str, AccountResult], account: Account, done: AccountResult) -> None:
        results[account.id] = done
        self._s.progress.account_done(account, done.keys, done.error)

    def _unfinished(self, account: Account) -> str:
        with self._lock:
            read = account.id in self._read
        if read:  # read, but neither delivered nor kept in time: the outbox itself did not answer
            return (f"records neither delivered nor kept in the outbox by the run's deadline (the {self._s.sink.name} "
                    "sink and the outbox did not answer in time); the next run collects this account again")
        return NOT_READ_BY_THE_DEADLINE

    # --- one account -----------------------------------------------------------------------------------------------

    def _collect_safely(self, account: Account, run: RunContext, start_by: Deadline | None) -> AccountResult:
        """``_collect``; anything it raises (a full disk for the spool, a thread that cannot start, a bug) fails
        this account alone, named, instead of the run."""
        try:
            return self._collect(account, run, start_by)
        except Exception as exc:
            log.error("Account %s: unexpected error: %s", account.id, describe_error(exc))
            return AccountResult(0, f"unexpected error while collecting this account: {describe_error(exc)}")

    def _collect(self, account: Account, run: RunContext, start_by: Deadline | None) -> AccountResult:
        """Read one account into a spool, then deliver it (or keep it in the outbox)."""
        if start_by is not None and start_by.expired():
            return AccountResult(0, (
                f"not collected: the run used its time budget ({self._s.time_budget}, three quarters of the "
                "Function's functionTimeout) before reaching this account; the next run, which takes the accounts in a "
                "new order, tries again. For an organization this large, raise functionTimeout in host.json"
            ))
        if self._s.deadline.stopped:
            return AccountResult(0, NOT_READ_BY_THE_DEADLINE)
        with tempfile.TemporaryFile("w+b", prefix="iam-keys-") as spool:
            try:
                iam = self._s.source.iam_reader(account)
            except Exception as exc:
                return AccountResult(0, self._reading_error(describe_error(exc)))
            try:
                read = self._read_account(iam, account, run, spool)
            finally:
                iam.close()  # its report's read has ended too: the reader may serve the next account
            if read.error is not None:
                return read
            with self._lock:
                self._read.add(account.id)
            try:
                self._deliver(spool, read.credentials.records)
            except SinkError as exc:  # neither the sink nor the outbox took them: lost, so the account is failed
                return AccountResult(0, f"records not delivered: {redact(str(exc))}")
            return read

    def _read_account(self, iam: IamReader, account: Account, run: RunContext, spool: IO[bytes]) -> AccountResult:
        """The account's keys and root keys into the spool, its other long-lived credentials as records. The
        credential report and the service-specific credentials' listing are read alongside from the account's start,
        on two more connections of its IAM client: the inventory takes keys' last use from the report
        (shared/collection/inventory.py), the root keys and the signing certificates come from it; its polling overlaps
        the users' listing. The other credentials' holders come from the directory the inventory read
        (shared/collection/credentials.py)."""
        stop = threading.Event()
        with self._lock:
            self._report_stops.add(stop)
        try:
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"report-{account.id}") as side:
                report = side.submit(iam.credential_report, run.started_at, stop)
                others = CredentialsStep(iam, account, run, report)
                others.start(side)
                try:
                    inventory = inventory_account(iam, account, run, spool, report, self._s.clock.now,
                                                  self._s.in_flight)
                except Exception as exc:
                    stop.set()  # the account failed: stop waiting for its report
                    return AccountResult(0, self._reading_error(describe_account_error(exc, account)))
                count = inventory.keys
                root_known = True
                try:
                    root_records = root_key_records(report.result(), account, run)
                except Exception as exc:  # root keys unknown this run: said in the run record, the account goes on
                    root_known = False
                    log.warning("Account %s: root keys unknown: %s", account.id, describe_error(exc))
                else:
                    write_rows(root_records, spool)
                    count += len(root_records)
                return AccountResult(count, None, root_known, others.finish(inventory.directory))
        finally:
            with self._lock:
                self._report_stops.discard(stop)

    def _reading_error(self, error: str) -> str:
        """An account's reading failed: when the run had stopped, its deadline is the reason, not the call it cut."""
        return NOT_READ_BY_THE_DEADLINE if self._s.deadline.stopped else error

    def _deliver(self, spool: IO[bytes], credentials: Sequence[CredentialRecord]) -> None:
        """The spool's rows to the sink in batches, then the account's other credentials (a few rows, held in memory).
        Past the run's delivery time the sink keeps them in the outbox (ReliableSink); once the run has ended it
        refuses them (SinkError)."""
        spool.seek(0)
        batches = _batches(spool, SEND_BATCH_ROWS)
        while True:
            # A batch is read from the spool only once this account holds the sink: when many accounts finish
            # together, one batch is in memory at a time, not one per waiting account (about 13 MB each).
            with self._s.sink_lock:
                batch = next(batches, None)
                if batch is None:
                    break
                self._s.sink.send(KEYS_TABLE, batch)
        if credentials:
            with self._s.sink_lock:
                self._s.sink.send(CREDENTIALS_TABLE, [record.to_row() for record in credentials])


def start_order(
    accounts: list[Account], time_budget: timedelta | None, shuffle: Callable[[list[Account]], None]
) -> list[Account]:
    """With a time budget, a new random order each run: when the budget leaves accounts for the next run, the same
    ones are not left every time. Without one (the command line), the organization's order."""
    if time_budget is None:
        return accounts
    shuffled = list(accounts)
    shuffle(shuffled)
    return shuffled


def _batches(spool: IO[bytes], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in jsonl.iter_rows(spool, "the account's spool"):
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
