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
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from shared import __version__
from shared.domain import Account, AccountFailure, RunContext, RunResult
from shared.errors import DeliveryDeferredError, SinkError, describe_error
from shared.inventory import describe_account_error, inventory_account, write_rows
from shared.outbox import ReliableSink
from shared.ports import AwsAccounts, Clock, IamReader, Progress
from shared.records import KEYS_TABLE, RUNS_TABLE
from shared.redaction import redact
from shared.transform import root_key_records

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
    # Accounts not started within this time from the run's start are not collected this run: each is named in
    # FailedAccounts, so the run still ends, and delivers its run record, before the Function's timeout kills it.
    time_budget: timedelta | None = None


def time_budget_of(function_timeout: str) -> timedelta:
    """Three quarters of host.json's ``functionTimeout`` ("hh:mm:ss"): the rest is for the accounts still in flight
    and the run record."""
    match = re.fullmatch(r"(\d+):([0-5]\d):([0-5]\d)", function_timeout.strip())
    if match is None:
        raise ValueError(f"host.json functionTimeout: expected hh:mm:ss, got {function_timeout!r}")
    hours, minutes, seconds = (int(part) for part in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds) * 0.75


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

    def run(self) -> RunResult:
        """One run: every account in scope, then the run record. Returns what the run record says, typed."""
        opts = self._options
        started_monotonic = self._clock.monotonic()
        run = RunContext(
            run_id=str(uuid.uuid4()),
            started_at=self._clock.now().replace(microsecond=0),
            rotation_days=opts.rotation_days,
            unused_days=opts.unused_days,
        )
        deadline = None if opts.time_budget is None else started_monotonic + opts.time_budget.total_seconds()
        failures: list[AccountFailure] = []
        root_unknown: list[str] = []
        keys_total = 0
        signed_in = True
        with self._sink_lock:
            delivery = self._sink.replay(run.started_at)  # earlier runs' undelivered records go first
        try:
            self._source.sign_in(run.run_id)
            accounts = self._source.accounts()
        except Exception as exc:  # sign-in failed: nothing can be collected; say so in the run record
            signed_in = False
            message = describe_error(exc)
            log.error("AWS sign-in failed: %s", message)
            accounts = [Account(i) for i in self._source.planned_account_ids()]
            failures = [AccountFailure(a.id, message) for a in accounts]
            self._progress.started(len(accounts))
        else:
            self._progress.started(len(accounts))
            with ThreadPoolExecutor(max_workers=opts.account_concurrency, thread_name_prefix="account") as pool:
                futures = {pool.submit(self._collect_account, account, run, deadline): account
                           for account in self._start_order(accounts)}
                results: dict[str, AccountResult] = {}
                for future in as_completed(futures):
                    account = futures[future]
                    done = results[account.id] = future.result()
                    self._progress.account_done(account, done.keys, done.error)
            for account in accounts:  # in the accounts' order, whatever order they finished in
                done = results[account.id]
                keys_total += done.keys
                if done.error is not None:
                    failures.append(AccountFailure(account.id, done.error))
                elif not done.root_keys_known:
                    root_unknown.append(account.id)

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
        )
        with self._sink_lock:
            before = delivery.deferred
            self._sink.send(RUNS_TABLE, [result.to_record().to_row()])
            run_record_deferred = delivery.deferred > before
        self._progress.finished(result)
        if run_record_deferred:  # the sink took nothing, not even the run record: make the platform show it
            raise DeliveryDeferredError(
                f"{self._sink.name} sink unavailable: {delivery.deferred} record(s) of this run kept in the outbox "
                f"at {self._sink.outbox.location}; the next run delivers them first. Last error: "
                f"{redact(delivery.last_error)}"
            )
        return result

    def _start_order(self, accounts: list[Account]) -> list[Account]:
        """With a time budget, a new random order each run: when the budget leaves accounts for the next run, the
        same ones are not left every time. Without one (the command line), the organization's order."""
        if self._options.time_budget is None:
            return accounts
        shuffled = list(accounts)
        self._shuffle(shuffled)
        return shuffled

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
            except SinkError as exc:
                return AccountResult(0, f"records not delivered: {redact(str(exc))}")
            return read

    def _read_account(self, iam: IamReader, account: Account, run: RunContext, spool: IO[str]) -> AccountResult:
        """The account's keys and root keys into the spool, its credential report read alongside."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"report-{account.id}") as side:
            stop = threading.Event()
            report = side.submit(iam.credential_report, run.started_at, stop)
            try:
                count = inventory_account(iam, account, run, spool, report, self._clock.now, self._in_flight)
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
            return AccountResult(count, None, root_known)

    def _deliver(self, spool: IO[str]) -> None:
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


def _batches(lines: IO[str], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for line in lines:
        batch.append(json.loads(line))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
