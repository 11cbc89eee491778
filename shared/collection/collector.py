"""One collection run, in its steps: earlier runs' undelivered rows first, then sign-in and every account in parallel
(shared/collection/accounts.py: users and keys in parallel within each, records streamed to the sink as each account
finishes), then one run record, then the end of every thread of the run.

An account that fails half-way sends nothing, so no partial account ever lands; the others are not affected. Rows
the sink does not take are kept in the outbox and counted in the run record (``RecordsDeferred``, under the run's
``Sink``): a sink fault never fails an account.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared import __version__
from shared.collection.accounts import AccountResult, AccountsSetup, RunAccounts
from shared.deadline import REPLAY_SHARE, Deadline, as_timeout, parse_function_timeout
from shared.delivery.reliable_sink import ReliableSink
from shared.domain import Account, AccountFailure, CredentialsUnknown, RunContext, RunResult
from shared.errors import DeliveryDeferredError, describe_error
from shared.findings.exceptions import EMPTY, ExceptionSet
from shared.findings.exceptions_file import ExceptionsLoad
from shared.findings.owners import DEFAULT_OWNER_TAG_KEYS
from shared.ports import AwsAccounts, Clock, Progress
from shared.records import RUNS_TABLE
from shared.redaction import redact

log = logging.getLogger(__name__)

IAM_CALLS_IN_FLIGHT = 32


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
class CollectorOptions:
    auth_mode: str
    sink_name: str
    rotation_days: int
    unused_days: int
    account_concurrency: int
    owner_tag_keys: tuple[str, ...] = DEFAULT_OWNER_TAG_KEYS
    exceptions: ExceptionSet = EMPTY
    # EXCEPTIONS_SOURCE=blob: read at the start of each run instead of ``exceptions``; an unusable blob gives no
    # exception and a problem for the run record, never a failed run.
    exceptions_source: Callable[[datetime], ExceptionsLoad] | None = None
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
        self._accounts: RunAccounts | None = None  # this run's accounts, ended when the run ends
        self._exceptions_problem = ""  # this run's: why no exception applies (an unusable exceptions source)

    def run(self) -> RunResult:
        """One run, step by step: earlier runs' rows first, then sign-in and every account, the run record, and the
        end of every thread of the run. Returns what the run record says, typed."""
        started = self._clock.monotonic()
        run = self._new_run()
        self._deadline.stop_signal.clear()
        try:
            self._replay_earlier_runs(run)
            collected = self._sign_in_and_collect(run)
            result = self._result(run, collected, started)
            run_record_kept = self._send_run_record(result)
        finally:
            self._end_threads()
        self._progress.finished(result)
        delivery = self._sink.stats
        if delivery.deferred:  # the sink's fault, said as such: no account failed for it
            log.warning("Run %s: %d record(s) kept in the outbox at %s for the next run: the %s sink did not take them "
                        "(%s)", run.run_id, delivery.deferred, self._sink.outbox.location, self._sink.name,
                        redact(delivery.last_error))
        if run_record_kept:  # the sink took nothing, not even the run record: make the platform show it
            raise DeliveryDeferredError(
                f"{self._sink.name} sink unavailable: {delivery.deferred} record(s) of this run kept in the outbox "
                f"at {self._sink.outbox.location}; the next run delivers them first. Last error: "
                f"{redact(delivery.last_error)}"
            )
        return result

    # --- the run's steps, in order -------------------------------------------------------------------------------

    def _new_run(self) -> RunContext:
        opts = self._options
        started_at = self._clock.now().replace(microsecond=0)
        exceptions, self._exceptions_problem = self._exceptions(started_at)
        run = RunContext(
            run_id=str(uuid.uuid4()),
            started_at=started_at,
            rotation_days=opts.rotation_days,
            unused_days=opts.unused_days,
            owner_tag_keys=opts.owner_tag_keys,
            exceptions=exceptions,
        )
        expired = exceptions.expired(run.started_at)
        if expired:  # they no longer apply: their keys count again until the file is renewed or cleaned up
            log.warning("%d exception(s) of %s expired and no longer apply: %s. Renew them through review or remove "
                        "them", len(expired), exceptions.source, "; ".join(e.label for e in expired[:10]))
        return run

    def _exceptions(self, now: datetime) -> tuple[ExceptionSet, str]:
        """This run's exceptions and, when a source read each run was unusable, the problem for the run record. A
        source that itself breaks (a bug) is the same: no exception, the run goes on."""
        source = self._options.exceptions_source
        if source is None:
            return self._options.exceptions, ""
        try:
            loaded = source(now)
        except Exception as exc:  # the source reports its own failures; this is a bug's last line of defence
            message = f"exceptions source failed: {describe_error(exc)}; no exception applied"
            log.error("%s", message)
            return EMPTY, message
        if loaded.problems:
            return EMPTY, loaded.problem
        return loaded.exceptions, ""

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
        opts = self._options
        self._accounts = RunAccounts(AccountsSetup(
            self._source, self._sink, self._sink_lock, self._progress, self._clock, self._deadline, self._in_flight,
            opts.account_concurrency, opts.time_budget, self._shuffle,
        ))
        try:
            results = self._accounts.collect(accounts, run)
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
            exceptions_problem=self._exceptions_problem,
            credentials_collected=collected.credentials,
            credentials_unknown=collected.credentials_unknown,
        )

    def _send_run_record(self, result: RunResult) -> bool:
        """Deliver the run record, or keep it in the outbox with the reason; True when it was kept."""
        stats = self._sink.stats
        before = stats.deferred
        row = [result.to_record().to_row()]
        wait_for_sink = as_timeout(self._deadline.run_record_left())
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
        outbox close to everyone (those inside are waited for, bounded), then the accounts' threads are joined."""
        accounts, self._accounts = self._accounts, None
        if accounts is not None:
            accounts.stop()
        self._deadline.stop()
        if not self._sink.shut(wait=as_timeout(self._deadline.closing_left())):
            log.error("A thread was still inside the %s sink or the outbox when the run ended; nothing enters them "
                      "any more", self._sink.name)
        if accounts is not None:
            accounts.end()


@dataclass(frozen=True)
class _Collected:
    """What sign-in and the accounts gave: the accounts in scope, the failures and counts in the accounts' order."""

    accounts: list[Account]
    failures: tuple[AccountFailure, ...]
    keys: int = 0
    root_keys_unknown: tuple[str, ...] = ()
    signed_in: bool = True
    credentials: int = 0  # rows of AwsIamCredentials_CL
    credentials_unknown: tuple[CredentialsUnknown, ...] = ()

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
            credentials=sum(len(r.credentials.records) for _, r in done if r.error is None),
            credentials_unknown=tuple(u for _, r in done if r.error is None for u in r.credentials.unknown),
        )

