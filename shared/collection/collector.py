"""One collection run: accounts in parallel, users and keys in parallel within each account, records streamed to
the sink as each account finishes, then one run record.

Memory stays flat however large the organization: an account's records go to a temporary spool file while its
inventory runs, and are sent from there in batches once the account is complete. An account that fails half-way
sends nothing, so no partial account ever lands; the others are not affected.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeoutError
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from shared import __version__
from shared.collection.credentials import AccountCredentials, CredentialsStep
from shared.collection.inventory import describe_account_error, inventory_account, write_rows
from shared.collection.transform import root_key_records
from shared.deadline import Deadline, parse_function_timeout
from shared.delivery.reliable_sink import ReliableSink
from shared.domain import Account, AccountFailure, CredentialsUnknown, RunContext, RunResult
from shared.errors import DeliveryDeferredError, SinkError, describe_error
from shared.findings.exceptions import EMPTY, ExceptionSet
from shared.findings.owners import DEFAULT_OWNER_TAG_KEYS
from shared.ports import AwsAccounts, Clock, IamReader, Progress
from shared.records import CREDENTIALS_TABLE, KEYS_TABLE, RUNS_TABLE, Table
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


NO_CREDENTIALS = AccountCredentials()


@dataclass(frozen=True)
class AccountResult:
    keys: int
    error: str | None
    root_keys_known: bool = True
    credentials: AccountCredentials = NO_CREDENTIALS  # the account's other long-lived credentials


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
        self._stopping = threading.Event()  # set at the run's deadline: accounts still working send nothing more
        # Per-user and per-key IAM calls in flight in the whole process, whatever the number of accounts: enough to
        # hide 100 ms of latency at the CPU one process has (W2 and many-small peaked at 45), few enough that
        # with no latency to hide a few hundred runnable threads do not fight over the GIL (benchmarks/README.md).
        self._in_flight = threading.BoundedSemaphore(IAM_CALLS_IN_FLIGHT)

    def run(self) -> RunResult:
        """One run: every account in scope, then the run record. Returns what the run record says, typed."""
        opts = self._options
        started_monotonic = self._clock.monotonic()
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
        deadline = None if opts.time_budget is None else started_monotonic + opts.time_budget.total_seconds()
        failures: list[AccountFailure] = []
        root_unknown: list[str] = []
        credentials_unknown: list[CredentialsUnknown] = []
        keys_total = credentials_total = 0
        signed_in = True
        run_deadline = opts.deadline or Deadline.never()
        self._stopping.clear()
        delivery = self._sink.stats
        # Earlier runs' undelivered records go first, within a quarter of the run's time and inside the run's error
        # handling: whatever the outbox does, this run collects and reports.
        try:
            replay_until = run_deadline.cut(run_deadline.remaining() * 0.75) if run_deadline.bounded else None
            with self._sink_lock:
                delivery = self._sink.replay(run.started_at, until=replay_until)
        except Exception as exc:  # replay guards the outbox's own failures; this is a bug's last line of defence
            log.error("Outbox replay failed; its records wait for a later run: %s", describe_error(exc))
        accounts: list[Account] = []
        try:
            self._source.sign_in(run.run_id)
            accounts = self._source.accounts()
        except Exception as exc:  # sign-in failed: nothing can be collected; say so in the run record
            signed_in = False
            message = describe_error(exc)
            log.error("AWS sign-in failed: %s", message)
            try:
                accounts = [Account(i) for i in self._source.planned_account_ids()]
            except Exception:  # the plan itself cannot be had: the run record names the run, not an account
                accounts = []
            failures = [AccountFailure(a.id, message) for a in accounts] or [AccountFailure("-", message)]
            self._progress.started(len(accounts))
        else:
            self._progress.started(len(accounts))
            try:
                results = self._collect_accounts(accounts, run, deadline, run_deadline)
            except Exception as exc:  # not one account's failure: the run itself broke; it still reports
                message = f"the run stopped: {describe_error(exc)}"
                log.error("Run %s: %s", run.run_id, message)
                results = {}
                signed_in = False
                failures = [AccountFailure(a.id, message) for a in accounts] or [AccountFailure("-", message)]
            for account in accounts if results else []:  # in the accounts' order, whatever order they finished in
                done = results[account.id]
                keys_total += done.keys
                if done.error is not None:
                    failures.append(AccountFailure(account.id, done.error))
                    continue
                if not done.root_keys_known:
                    root_unknown.append(account.id)
                credentials_total += len(done.credentials.records)
                credentials_unknown += done.credentials.unknown

        result = RunResult(
            run,
            auth_mode=opts.auth_mode,
            sink=opts.sink_name,
            accounts_total=len(accounts),
            failures=tuple(failures),
            keys_collected=keys_total,
            duration_seconds=self._clock.monotonic() - started_monotonic,
            version=__version__,
            signed_in=signed_in,
            deferred=delivery.deferred,
            replayed=delivery.replayed,
            dropped=delivery.dropped,
            root_keys_unknown=tuple(root_unknown),
            dead_lettered=delivery.dead_lettered,
            credentials_collected=credentials_total,
            credentials_unknown=tuple(credentials_unknown),
        )
        run_record_deferred = self._send_run_record(result, run_deadline)
        self._progress.finished(result)
        if run_record_deferred:  # the sink took nothing, not even the run record: make the platform show it
            raise DeliveryDeferredError(
                f"{self._sink.name} sink unavailable: {delivery.deferred} record(s) of this run kept in the outbox "
                f"at {self._sink.outbox.location}; the next run delivers them first. Last error: "
                f"{redact(delivery.last_error)}"
            )
        return result

    def _collect_accounts(
        self, accounts: list[Account], run: RunContext, budget_end: float | None, run_deadline: Deadline
    ) -> dict[str, AccountResult]:
        """Every account in parallel. An account whose work raises anything fails alone (point: a full disk or a
        thread that cannot start is that account's error). Accounts still working when the run's deadline leaves
        only half its reserve are named as not finished, so the run record goes out in time; their rows are not
        sent (the next run collects them again)."""
        results: dict[str, AccountResult] = {}
        pool = ThreadPoolExecutor(max_workers=self._options.account_concurrency, thread_name_prefix="account")
        futures: dict[Future[AccountResult], Account] = {}
        try:
            for account in self._start_order(accounts):
                try:
                    futures[pool.submit(self._collect_account_safely, account, run, budget_end)] = account
                except Exception as exc:  # e.g. RuntimeError: can't start new thread
                    results[account.id] = AccountResult(0, f"not collected: {describe_error(exc)}")
                    self._progress.account_done(account, 0, results[account.id].error)
            wait_for = (
                max(0.0, run_deadline.remaining() - run_deadline.reserve / 2) if run_deadline.bounded else None
            )
            try:
                for future in as_completed(futures, timeout=wait_for):
                    account = futures[future]
                    done = results[account.id] = future.result()
                    self._progress.account_done(account, done.keys, done.error)
            except FuturesTimeoutError:
                self._stopping.set()  # accounts still working send nothing more: the run record goes first
                for account in futures.values():
                    if account.id not in results:
                        results[account.id] = AccountResult(0, (
                            "not finished by the run's deadline (the Function's functionTimeout, less a margin): "
                            "a dependency answered too slowly; nothing of this account was sent this run, the next "
                            "run collects it again"
                        ))
                        self._progress.account_done(account, 0, results[account.id].error)
        finally:
            pool.shutdown(wait=not self._stopping.is_set(), cancel_futures=True)
        return results

    def _send_run_record(self, result: RunResult, run_deadline: Deadline) -> bool:
        """Deliver the run record, or keep it in the outbox with the reason; True when it was kept."""
        stats = self._sink.stats
        before = stats.deferred
        row = [result.to_record().to_row()]
        wait = max(0.0, run_deadline.remaining() - run_deadline.reserve / 2) if run_deadline.bounded else -1
        if self._sink_lock.acquire(timeout=wait):
            try:
                self._sink.send(RUNS_TABLE, row)
            finally:
                self._sink_lock.release()
        else:  # an account still holds the sink past the deadline: the run record must not wait for it
            self._sink.keep(RUNS_TABLE, row, "the sink was still busy at the run's deadline")
        return stats.deferred > before

    def _start_order(self, accounts: list[Account]) -> list[Account]:
        """With a time budget, a new random order each run: when the budget leaves accounts for the next run, the
        same ones are not left every time. Without one (the command line), the organization's order."""
        if self._options.time_budget is None:
            return accounts
        shuffled = list(accounts)
        self._shuffle(shuffled)
        return shuffled

    def _collect_account_safely(self, account: Account, run: RunContext, deadline: float | None) -> AccountResult:
        """``_collect_account``; anything it raises (a full disk for the spool, a thread that cannot start, a bug)
        fails this account alone, named, instead of the run."""
        try:
            return self._collect_account(account, run, deadline)
        except Exception as exc:
            log.error("Account %s: unexpected error: %s", account.id, describe_error(exc))
            return AccountResult(0, f"unexpected error while collecting this account: {describe_error(exc)}")

    def _collect_account(self, account: Account, run: RunContext, deadline: float | None) -> AccountResult:
        """Inventory one account into a spool, then deliver it.

        The credential report is read alongside the inventory from the account's start, on one more connection of
        the account's IAM client: the inventory takes keys' last use from it (``shared.inventory``), and the root
        keys come from it; when AWS has to generate it, its polling overlaps the users' listing."""
        if deadline is not None and self._clock.monotonic() > deadline:
            budget = self._options.time_budget
            return AccountResult(0, (
                f"not collected: the run used its time budget ({budget}, three quarters of the Function's "
                "functionTimeout) before reaching this account; the next run, which takes the accounts in a new order, "
                "tries again. For an organization this large, raise functionTimeout in host.json"
            ))
        with tempfile.TemporaryFile("w+", encoding="utf-8", prefix="iam-keys-") as spool:
            try:
                iam = self._source.iam_reader(account)
            except Exception as exc:
                return AccountResult(0, describe_error(exc))
            try:
                read = self._read_account(iam, account, run, spool)
            finally:
                iam.close()  # its report's read has ended too: the reader may serve the next account
            if read.error is not None:
                return read
            try:
                self._deliver(spool)
                self._deliver_rows(CREDENTIALS_TABLE, [r.to_row() for r in read.credentials.records])
            except SinkError as exc:
                return AccountResult(0, f"records not delivered: {redact(str(exc))}")
            return read

    def _read_account(self, iam: IamReader, account: Account, run: RunContext, spool: IO[str]) -> AccountResult:
        """The account's keys and root keys into the spool, its credential report and its other long-lived
        credentials (shared/collection/credentials.py) read alongside."""
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"report-{account.id}") as side:
            stop = threading.Event()
            report = side.submit(iam.credential_report, run.started_at, stop)
            others = CredentialsStep(iam, account, run, report)
            others.start(side)
            try:
                count = inventory_account(others.reader, account, run, spool, report, self._clock.now,
                                          self._in_flight)
            except Exception as exc:
                stop.set()  # the account failed: stop waiting for its report
                return AccountResult(0, describe_account_error(exc, account))
            root_known = True
            try:
                root_records = root_key_records(report.result(), account, run)
            except Exception as exc:  # root keys unknown this run: said in the run record, the account goes on
                root_known = False
                log.warning("Account %s: root keys unknown: %s", account.id, describe_error(exc))
            else:
                write_rows(root_records, spool)
                count += len(root_records)
            return AccountResult(count, None, root_known, others.finish())

    def _deliver(self, spool: IO[str]) -> None:
        spool.seek(0)
        batches = _batches(spool, SEND_BATCH_ROWS)
        while True:
            # A batch is read from the spool only once this account holds the sink: when many accounts finish
            # together, one batch is in memory at a time, not one per waiting account (about 13 MB each).
            with self._sink_lock:
                if self._stopping.is_set():  # past the run's deadline: the run record has gone out without these
                    raise SinkError("not sent: the run's deadline came first; the next run collects them again", 0)
                batch = next(batches, None)
                if batch is None:
                    return
                self._sink.send(KEYS_TABLE, batch)


    def _deliver_rows(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """A few rows of another table (an account's other credentials), once its keys are delivered."""
        with self._sink_lock:
            if rows and self._stopping.is_set():
                raise SinkError("not sent: the run's deadline came first; the next run collects them again", 0)
            self._sink.send(table, rows)


def _batches(lines: IO[str], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for line in lines:
        batch.append(json.loads(line))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
