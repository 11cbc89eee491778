"""One collection run: accounts in parallel, users and keys in parallel within each account, records streamed to
the sink as each account finishes, then one run record.

Memory stays flat however large the organization: an account's records go to a temporary spool file while its
inventory runs, and are sent from there in batches once the account is complete. An account that fails half-way
sends nothing, so no partial account ever lands; the others are not affected.
"""

from __future__ import annotations

import logging
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from concurrent.futures import TimeoutError as FuturesTimeoutError
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from shared import __version__, jsonl
from shared.collection.inventory import describe_account_error, inventory_account, write_rows
from shared.collection.transform import root_key_records
from shared.deadline import REPLAY_SHARE, Deadline, as_timeout, parse_function_timeout
from shared.delivery.reliable_sink import ReliableSink
from shared.domain import Account, AccountFailure, RunContext, RunResult
from shared.errors import DeliveryDeferredError, SinkError, describe_error
from shared.findings.exceptions import EMPTY, ExceptionSet
from shared.findings.owners import DEFAULT_OWNER_TAG_KEYS
from shared.ports import AwsAccounts, Clock, IamReader, Progress
from shared.records import KEYS_TABLE, RUNS_TABLE
from shared.redaction import redact

log = logging.getLogger(__name__)

IAM_CALLS_IN_FLIGHT = 32
SEND_BATCH_ROWS = 5000  # rows per sink call; the Azure sinks chunk further to their own size limits


class LogProgress:
    """One log line per account and one per run: what the Function host shows."""

    def started(self, total: int) -> None:
        log.info("Collecting IAM access keys from %d AWS account(s)", total)

    def account_done(self, account: Account, keys: int, error: str | None) -> None:
        if error is None:
            log.info("Account %s: %d access key(s) collected", account.id, keys)
        else:
            log.warning("Account %s failed: %s", account.id, error)

    def finished(self, result: RunResult) -> None:
        log.info(
            "Run %s %s: %d of %d account(s), %d key(s) in %.1f s",
            result.run.run_id,
            result.status,
            result.accounts_succeeded,
            result.accounts_total,
            result.keys_collected,
            round(result.duration_seconds, 3),
        )


class SystemClock:
    """The real clocks (``Clock`` port)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class AccountResult:
    keys: int
    error: str | None
    root_keys_known: bool = True


@dataclass(frozen=True)
class CollectorOptions:
    auth_mode: str
    sink_name: str
    rotation_days: int
    unused_days: int
    account_concurrency: int
    owner_tag_keys: tuple[str, ...] = DEFAULT_OWNER_TAG_KEYS
    exceptions: ExceptionSet = EMPTY
    # Accounts not started within this time from the run's start are not collected this run: each is named in
    # FailedAccounts, so the run still ends, and delivers its run record, before the Function's timeout kills it.
    time_budget: timedelta | None = None
    # The run's one deadline (under the Function: from functionTimeout): replay, sign-in, accounts, delivery and the
    # run record all end before it. None: no deadline (the command line).
    deadline: Deadline | None = None


def time_budget_of(function_timeout: str) -> timedelta:
    """Three quarters of host.json's ``functionTimeout``: the rest is for the accounts still in flight and the run
    record. Read by the same parser as the run's deadline (shared/deadline.py)."""
    return parse_function_timeout(function_timeout) * 0.75


class Collector:
    def __init__(
        self,
        options: CollectorOptions,
        source: AwsAccounts,
        sink: ReliableSink,
        progress: Progress | None = None,
        clock: Clock | None = None,
        shuffle: Callable[[list[Account]], None] = random.shuffle,
    ) -> None:
        self._options = options
        self._source = source
        self._sink = sink
        self._progress = progress or LogProgress()
        self._clock = clock or SystemClock()
        self._shuffle = shuffle  # an order of work, not a secret: any generator will do
        self._sink_lock = threading.Lock()  # sinks are called from one thread at a time
        # Per-user and per-key IAM calls in flight in the whole process, whatever the number of accounts: enough to
        # hide 100 ms of latency at the CPU one process has (W2 and many-small peaked at 45), few enough that
        # with no latency to hide a few hundred runnable threads do not fight over the GIL (benchmarks/README.md).
        self._in_flight = threading.BoundedSemaphore(IAM_CALLS_IN_FLIGHT)
        self._deadline = options.deadline or Deadline.never()
        self._state_lock = threading.Lock()
        self._read: set[str] = set()  # accounts whose reading is complete: their rows are delivered or kept
        self._report_stops: set[threading.Event] = set()  # the credential report waits of accounts still reading
        self._futures: dict[Future[AccountResult], Account] = {}  # the accounts' work, joined when the run ends
        self._pool: ThreadPoolExecutor | None = None  # the accounts' threads, joined when the run ends

    def run(self) -> RunResult:
        """One run, step by step: earlier runs' rows first, then sign-in and every account, the run record, and the
        end of every thread of the run. Returns what the run record says, typed."""
        started = self._clock.monotonic()
        run = self._new_run()
        self._deadline.stop_signal.clear()
        self._read.clear()
        try:
            self._replay_earlier_runs(run)
            collected = self._sign_in_and_collect(run)
            result = self._result(run, collected, started)
            run_record_kept = self._send_run_record(result)
        finally:
            self._end_threads()
        self._progress.finished(result)
        if run_record_kept:  # the sink took nothing, not even the run record: make the platform show it
            delivery = self._sink.stats
            raise DeliveryDeferredError(
                f"{self._sink.name} sink unavailable: {delivery.deferred} record(s) of this run kept in the outbox "
                f"at {self._sink.outbox.location}; the next run delivers them first. Last error: "
                f"{redact(delivery.last_error)}"
            )
        return result

    # --- the run's steps, in order -------------------------------------------------------------------------------

    def _new_run(self) -> RunContext:
        opts = self._options
        run = RunContext(
            run_id=str(uuid.uuid4()),
            started_at=self._clock.now().replace(microsecond=0),
            rotation_days=opts.rotation_days,
            unused_days=opts.unused_days,
            owner_tag_keys=opts.owner_tag_keys,
            exceptions=opts.exceptions,
        )
        expired = opts.exceptions.expired(run.started_at)
        if expired:  # they no longer apply: their keys count again until the file is renewed or cleaned up
            log.warning("%d exception(s) of %s expired and no longer apply: %s. Renew them through review or remove "
                        "them", len(expired), opts.exceptions.source, "; ".join(e.label for e in expired[:10]))
        return run

    def _replay_earlier_runs(self, run: RunContext) -> None:
        """Earlier runs' undelivered rows go first, within their share of the run's time and inside the run's error
        handling: whatever the outbox does, this run collects and reports."""
        until = self._deadline.share(REPLAY_SHARE) if self._deadline.bounded else None
        try:
            with self._sink_lock:
                self._sink.replay(run.started_at, until=until)
        except Exception as exc:  # replay guards the outbox's own failures; this is a bug's last line of defence
            log.error("Outbox replay failed; its records wait for a later run: %s", describe_error(exc))

    def _sign_in_and_collect(self, run: RunContext) -> _Collected:
        """Sign in, list the accounts, collect each. A sign-in failure names every planned account; a failure of the
        run itself (not of one account) names every account; both still end with a run record."""
        try:
            self._source.sign_in(run.run_id)
            accounts = self._source.accounts()
        except Exception as exc:  # sign-in failed: nothing can be collected; say so in the run record
            message = describe_error(exc)
            log.error("AWS sign-in failed: %s", message)
            planned = self._planned_accounts()
            self._progress.started(len(planned))
            return _Collected.failed(planned, message)
        self._progress.started(len(accounts))
        try:
            results = self._collect_accounts(accounts, run)
        except Exception as exc:  # not one account's failure: the run itself broke; it still reports
            message = f"the run stopped: {describe_error(exc)}"
            log.error("Run %s: %s", run.run_id, message)
            return _Collected.failed(accounts, message)
        return _Collected.of(accounts, results)

    def _planned_accounts(self) -> list[Account]:
        try:
            return [Account(i) for i in self._source.planned_account_ids()]
        except Exception:  # the plan itself cannot be had: the run record names the run, not an account
            return []

    def _result(self, run: RunContext, collected: _Collected, started: float) -> RunResult:
        opts, delivery = self._options, self._sink.stats
        return RunResult(
            run,
            auth_mode=opts.auth_mode,
            sink=opts.sink_name,
            accounts_total=len(collected.accounts),
            failures=collected.failures,
            keys_collected=collected.keys,
            duration_seconds=self._clock.monotonic() - started,
            version=__version__,
            signed_in=collected.signed_in,
            deferred=delivery.deferred,
            replayed=delivery.replayed,
            dropped=delivery.dropped,
            root_keys_unknown=collected.root_keys_unknown,
            dead_lettered=delivery.dead_lettered,
        )

    def _send_run_record(self, result: RunResult) -> bool:
        """Deliver the run record, or keep it in the outbox with the reason; True when it was kept."""
        stats = self._sink.stats
        before = stats.deferred
        row = [result.to_record().to_row()]
        wait_for_sink = as_timeout(self._deadline.left(self._deadline.reserve / 4))
        if self._sink_lock.acquire(timeout=-1 if wait_for_sink is None else wait_for_sink):
            try:
                self._sink.send(RUNS_TABLE, row)
            finally:
                self._sink_lock.release()
        else:  # an account still holds the sink past the deadline: the run record must not wait for it
            self._sink.keep(RUNS_TABLE, row, "the sink was still busy at the run's deadline")
        return stats.deferred > before

    def _end_threads(self) -> None:
        """No thread of the run outlives it: AWS calls stop (the clients refuse to start one), the sink and the
        outbox close to everyone (those inside are waited for), then the accounts' threads are joined, each wait
        bounded by what is left of the run."""
        self._stop()
        if not self._sink.shut(wait=as_timeout(self._deadline.left(self._deadline.reserve / 8))):
            log.error("A thread was still inside the %s sink or the outbox when the run ended; nothing enters them "
                      "any more", self._sink.name)
        futures, self._futures = self._futures, {}
        pool, self._pool = self._pool, None
        _, not_done = wait(futures, timeout=as_timeout(self._deadline.remaining()))
        if pool is not None:  # every account's work has ended: its idle threads end now; else they are left to end
            pool.shutdown(wait=not not_done, cancel_futures=True)
        if not_done:
            log.error("%d account thread(s) still in an AWS call at the run's end: they start no AWS call and cannot "
                      "reach the sink or the outbox any more (%s)", len(not_done),
                      ", ".join(sorted(futures[f].id for f in not_done)))

    def _stop(self) -> None:
        """The run's deadline: no AWS call starts any more, and credential report waits end."""
        self._deadline.stop()
        with self._state_lock:
            for stop in self._report_stops:
                stop.set()

    # --- the accounts ------------------------------------------------------------------------------------------

    def _collect_accounts(self, accounts: list[Account], run: RunContext) -> dict[str, AccountResult]:
        """Every account in parallel. An account whose work raises anything fails alone (point: a full disk or a
        thread that cannot start is that account's error).

        When the run's delivery time is up (only the reserve is left), the run stops: accounts still reading fail
        (their own deadline, an AWS-side reason; nothing of them is sent), accounts that finished reading keep their
        rows in the outbox (the breaker is open by then), and both are waited for until half the reserve is left."""
        results: dict[str, AccountResult] = {}
        start_by = self._start_by()
        # Joined, bounded, when the run ends (_end_threads), after the run record.
        pool = self._pool = ThreadPoolExecutor(self._options.account_concurrency, thread_name_prefix="account")
        for account in self._start_order(accounts):
            try:
                self._futures[pool.submit(self._collect_account_safely, account, run, start_by)] = account
            except Exception as exc:  # e.g. RuntimeError: can't start new thread
                self._record(results, account, AccountResult(0, f"not collected: {describe_error(exc)}"))
        if not self._wait_for_accounts(results, self._deadline.delivery_left()):
            self._stop()
            self._wait_for_accounts(results, self._deadline.keeping_left())
            for account in self._futures.values():
                if account.id not in results:
                    self._record(results, account, AccountResult(0, self._unfinished(account)))
        return results

    def _wait_for_accounts(self, results: dict[str, AccountResult], seconds: float) -> bool:
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
        self._progress.account_done(account, done.keys, done.error)

    def _unfinished(self, account: Account) -> str:
        with self._state_lock:
            read = account.id in self._read
        if read:  # read, but neither delivered nor kept in time: the outbox itself did not answer
            return (f"records neither delivered nor kept in the outbox by the run's deadline (the {self._sink.name} "
                    "sink and the outbox did not answer in time); the next run collects this account again")
        return NOT_READ_BY_THE_DEADLINE

    def _start_by(self) -> Deadline | None:
        """Accounts not started by then are left for the next run (the time budget); None: no budget."""
        budget = self._options.time_budget
        return None if budget is None else Deadline.after(budget.total_seconds(), self._clock.monotonic, reserve=0.0)

    def _start_order(self, accounts: list[Account]) -> list[Account]:
        """With a time budget, a new random order each run: when the budget leaves accounts for the next run, the
        same ones are not left every time. Without one (the command line), the organization's order."""
        if self._options.time_budget is None:
            return accounts
        shuffled = list(accounts)
        self._shuffle(shuffled)
        return shuffled

    def _collect_account_safely(self, account: Account, run: RunContext, start_by: Deadline | None) -> AccountResult:
        """``_collect_account``; anything it raises (a full disk for the spool, a thread that cannot start, a bug)
        fails this account alone, named, instead of the run."""
        try:
            return self._collect_account(account, run, start_by)
        except Exception as exc:
            log.error("Account %s: unexpected error: %s", account.id, describe_error(exc))
            return AccountResult(0, f"unexpected error while collecting this account: {describe_error(exc)}")

    def _collect_account(self, account: Account, run: RunContext, start_by: Deadline | None) -> AccountResult:
        """Read one account into a spool, then deliver it (or keep it in the outbox).

        The credential report is read alongside the inventory from the account's start, on one more connection of
        the account's IAM client: the inventory takes keys' last use from it (``shared.inventory``), and the root
        keys come from it; when AWS has to generate it, its polling overlaps the users' listing."""
        if start_by is not None and start_by.expired():
            return AccountResult(0, (
                f"not collected: the run used its time budget ({self._options.time_budget}, three quarters of the "
                "Function's functionTimeout) before reaching this account; the next run, which takes the accounts in a "
                "new order, tries again. For an organization this large, raise functionTimeout in host.json"
            ))
        if self._deadline.stopped:
            return AccountResult(0, NOT_READ_BY_THE_DEADLINE)
        with tempfile.TemporaryFile("w+b", prefix="iam-keys-") as spool:
            try:
                iam = self._source.iam_reader(account)
            except Exception as exc:
                return AccountResult(0, self._reading_error(describe_error(exc)))
            try:
                read = self._read_account(iam, account, run, spool)
            finally:
                iam.close()  # its report's read has ended too: the reader may serve the next account
            if read.error is not None:
                return read
            with self._state_lock:
                self._read.add(account.id)
            try:
                self._deliver(spool)
            except SinkError as exc:  # neither the sink nor the outbox took them: lost, so the account is failed
                return AccountResult(0, f"records not delivered: {redact(str(exc))}")
            return read

    def _read_account(self, iam: IamReader, account: Account, run: RunContext, spool: IO[bytes]) -> AccountResult:
        """The account's keys and root keys into the spool, its credential report read alongside."""
        stop = threading.Event()
        with self._state_lock:
            self._report_stops.add(stop)
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"report-{account.id}") as side:
                report = side.submit(iam.credential_report, run.started_at, stop)
                try:
                    count = inventory_account(iam, account, run, spool, report, self._clock.now, self._in_flight)
                except Exception as exc:
                    stop.set()  # the account failed: stop waiting for its report
                    return AccountResult(0, self._reading_error(describe_account_error(exc, account)))
                root_known = True
                try:
                    root_records = root_key_records(report.result(), account, run)
                except Exception as exc:  # root keys unknown this run: said in the run record, the account goes on
                    root_known = False
                    log.warning("Account %s: root keys unknown: %s", account.id, describe_error(exc))
                else:
                    write_rows(root_records, spool)
                    count += len(root_records)
                return AccountResult(count, None, root_known)
        finally:
            with self._state_lock:
                self._report_stops.discard(stop)

    def _reading_error(self, error: str) -> str:
        """An account's reading failed: when the run had stopped, its deadline is the reason, not the call it cut."""
        return NOT_READ_BY_THE_DEADLINE if self._deadline.stopped else error

    def _deliver(self, spool: IO[bytes]) -> None:
        """The spool's rows to the sink in batches. Past the run's delivery time the sink keeps them in the outbox
        (ReliableSink); once the run has ended it refuses them (SinkError)."""
        spool.seek(0)
        batches = _batches(spool, SEND_BATCH_ROWS)
        while True:
            # A batch is read from the spool only once this account holds the sink: when many accounts finish
            # together, one batch is in memory at a time, not one per waiting account (about 13 MB each).
            with self._sink_lock:
                batch = next(batches, None)
                if batch is None:
                    return
                self._sink.send(KEYS_TABLE, batch)


NOT_READ_BY_THE_DEADLINE = (
    "not finished reading by the run's deadline (the Function's functionTimeout, less a margin): AWS answered too "
    "slowly for this account; nothing of it was sent this run, the next run collects it again"
)


@dataclass(frozen=True)
class _Collected:
    """What sign-in and the accounts gave: the accounts in scope, the failures and counts in the accounts' order."""

    accounts: list[Account]
    failures: tuple[AccountFailure, ...]
    keys: int = 0
    root_keys_unknown: tuple[str, ...] = ()
    signed_in: bool = True

    @classmethod
    def failed(cls, accounts: list[Account], message: str) -> _Collected:
        """Nothing collected: every account (or the run, when none is known) named with ``message``."""
        failures = [AccountFailure(a.id, message) for a in accounts] or [AccountFailure("-", message)]
        return cls(accounts, tuple(failures), signed_in=False)

    @classmethod
    def of(cls, accounts: list[Account], results: dict[str, AccountResult]) -> _Collected:
        """In the accounts' order, whatever order they finished in."""
        done = [(a, results[a.id]) for a in accounts]
        return cls(
            accounts,
            tuple(AccountFailure(a.id, r.error) for a, r in done if r.error is not None),
            sum(r.keys for _, r in done),
            tuple(a.id for a, r in done if r.error is None and not r.root_keys_known),
        )


def _batches(spool: IO[bytes], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in jsonl.iter_rows(spool, "the account's spool"):
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
