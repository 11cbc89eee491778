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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Protocol

from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from shared import __version__
from shared.aws import (
    describe_aws_error,
    get_access_key_last_used,
    is_no_such_entity,
    list_access_keys,
    list_users,
    read_credential_report,
)
from shared.outbox import ReliableSink
from shared.ports import CollectorError, SinkError
from shared.records import KEYS_TABLE, RUNS_TABLE, RunRecord
from shared.redaction import redact
from shared.transform import (
    Account,
    MalformedResponseError,
    RunContext,
    key_records_for_user,
    parse_key_metadata,
    root_key_records,
    run_record,
)

log = logging.getLogger(__name__)

SEND_BATCH_ROWS = 5000  # rows per sink call; the Azure sinks chunk further to their own size limits


class AwsAccounts(Protocol):
    """The AWS source port (``shared.aws.AwsSource`` in production)."""

    def sign_in(self, run_id: str) -> None: ...

    def planned_account_ids(self) -> list[str]: ...

    def accounts(self) -> list[Account]: ...

    def iam_client(self, account: Account) -> BaseClient: ...


class Progress(Protocol):
    """Where a run reports what it is doing: a progress line on a terminal, one log line per account under the
    Function."""

    def started(self, total: int) -> None: ...

    def account_done(self, account: Account, keys: int, error: str | None) -> None: ...

    def finished(self, run: RunRecord) -> None: ...


class LogProgress:
    """One log line per account and one per run: what the Function host shows."""

    def started(self, total: int) -> None:
        log.info("Collecting IAM access keys from %d AWS account(s)", total)

    def account_done(self, account: Account, keys: int, error: str | None) -> None:
        if error is None:
            log.info("Account %s: %d access key(s) collected", account.id, keys)
        else:
            log.warning("Account %s failed: %s", account.id, error)

    def finished(self, run: RunRecord) -> None:
        log.info(
            "Run %s %s: %d of %d account(s), %d key(s) in %.1f s",
            run.RunId,
            run.Status,
            run.AccountsSucceeded,
            run.AccountsTotal,
            run.KeysCollected,
            run.DurationSeconds,
        )


class DeliveryDeferredError(SinkError):
    """The sink took nothing this run; everything is in the outbox for the next run."""

    def __init__(self, message: str) -> None:
        super().__init__(message, undelivered=0)


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
    iam_concurrency: int
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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._options = options
        self._source = source
        self._sink = sink
        self._progress = progress or LogProgress()
        self._clock = clock
        self._sink_lock = threading.Lock()  # sinks are called from one thread at a time

    def run(self) -> RunRecord:
        opts = self._options
        started_monotonic = time.monotonic()
        run = RunContext(
            run_id=str(uuid.uuid4()),
            started_at=self._clock().replace(microsecond=0),
            rotation_days=opts.rotation_days,
            unused_days=opts.unused_days,
        )
        deadline = None if opts.time_budget is None else started_monotonic + opts.time_budget.total_seconds()
        failures: list[tuple[str, str]] = []
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
            failures = [(a.id, message) for a in accounts]
            self._progress.started(len(accounts))
        else:
            self._progress.started(len(accounts))
            with ThreadPoolExecutor(max_workers=opts.account_concurrency, thread_name_prefix="account") as pool:
                futures = {pool.submit(self._collect_account, account, run, deadline): account
                           for account in self._start_order(accounts)}
                results: dict[str, AccountResult] = {}
                for future in as_completed(futures):
                    account = futures[future]
                    result = results[account.id] = future.result()
                    self._progress.account_done(account, result.keys, result.error)
            for account in accounts:  # in the accounts' order, whatever order they finished in
                result = results[account.id]
                keys_total += result.keys
                if result.error is not None:
                    failures.append((account.id, result.error))
                elif not result.root_keys_known:
                    root_unknown.append(account.id)

        record = run_record(
            run,
            auth_mode=opts.auth_mode,
            sink=opts.sink_name,
            accounts_total=len(accounts),
            failures=failures,
            keys_collected=keys_total,
            duration_seconds=time.monotonic() - started_monotonic,
            version=__version__,
            signed_in=signed_in,
            deferred=delivery.deferred,
            replayed=delivery.replayed,
            dropped=delivery.dropped,
            root_keys_unknown=root_unknown,
        )
        with self._sink_lock:
            before = delivery.deferred
            self._sink.send(RUNS_TABLE, [record.to_row()])
            run_record_deferred = delivery.deferred > before
        self._progress.finished(record)
        if run_record_deferred:  # the sink took nothing, not even the run record: make the platform show it
            raise DeliveryDeferredError(
                f"{self._sink.name} sink unavailable: {delivery.deferred} record(s) of this run kept in the outbox "
                f"at {self._sink.outbox.location}; the next run delivers them first. Last error: "
                f"{redact(delivery.last_error)}"
            )
        return record

    def _start_order(self, accounts: list[Account]) -> list[Account]:
        """With a time budget, a new random order each run: when the budget leaves accounts for the next run, the
        same ones are not left every time. Without one (the command line), the organization's order."""
        if self._options.time_budget is None:
            return accounts
        shuffled = list(accounts)
        random.shuffle(shuffled)  # an order of work, not a secret: any generator will do
        return shuffled

    def _collect_account(self, account: Account, run: RunContext, deadline: float | None) -> AccountResult:
        """Inventory one account into a spool, then deliver it.

        The credential report (root keys) is read alongside the inventory, on one more connection of the account's
        IAM client: when AWS has to generate it, its polling waits seconds that would otherwise add to the account."""
        if deadline is not None and time.monotonic() > deadline:
            budget = self._options.time_budget
            return AccountResult(0, (
                f"not collected: the run used its time budget ({budget}, three quarters of the Function's "
                "functionTimeout) before reaching this account; the next run, which takes the accounts in a new order, "
                "tries again. For an organization this large, raise functionTimeout in host.json"
            ))
        with (
            tempfile.TemporaryFile("w+", encoding="utf-8", prefix="iam-keys-") as spool,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"report-{account.id}") as side,
        ):
            try:
                iam = self._source.iam_client(account)
            except Exception as exc:
                return AccountResult(0, describe_error(exc))
            stop = threading.Event()
            report = side.submit(read_credential_report, iam, run.started_at, _sleep_unless(stop))
            try:
                count = inventory_account(iam, account, run, self._options.iam_concurrency, spool)
            except Exception as exc:
                stop.set()  # the account failed: stop waiting for its report
                return AccountResult(0, describe_iam_error(exc, account))
            root_known = True
            try:
                root_records = root_key_records(report.result(), account, run)
            except Exception as exc:  # root keys unknown this run: said in the run record, the account goes on
                root_known = False
                log.warning("Account %s: root keys unknown: %s", account.id, describe_error(exc))
            else:
                for record in root_records:
                    spool.write(json.dumps(record.to_row(), separators=(",", ":")) + "\n")
                count += len(root_records)
            try:
                self._deliver(spool)
            except SinkError as exc:
                return AccountResult(0, f"records not delivered: {redact(str(exc))}")
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


class _ReportNotNeededError(CollectorError):
    """The account failed before its credential report was ready."""


def _sleep_unless(stop: threading.Event) -> Callable[[float], None]:
    """The credential report's wait between polls, cut short (with an error) once ``stop`` is set."""

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise _ReportNotNeededError("the account failed; its credential report is no longer read")

    return sleep


def _batches(lines: IO[str], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for line in lines:
        batch.append(json.loads(line))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def inventory_account(iam: BaseClient, account: Account, run: RunContext, concurrency: int, out: IO[str]) -> int:
    """Every access key of every IAM user of one account, as JSON Lines rows written to ``out``.

    ListUsers pages stream in while up to ``concurrency`` users are read in parallel (ListAccessKeys, then
    GetAccessKeyLastUsed per key): exactly the calls of a serial walk, fewer ListUsers pages, no call twice.
    """
    count = 0

    def write(user: dict[str, Any], keys: list[dict[str, Any]], last_used: dict[str, dict[str, Any]]) -> None:
        nonlocal count
        for record in key_records_for_user(user, keys, last_used, account, run):
            out.write(json.dumps(record.to_row(), separators=(",", ":")) + "\n")
            count += 1

    window = max(1, concurrency) * 4  # bounded look-ahead: memory does not grow with the number of users
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=f"iam-{account.id}") as pool:
        pending: set[Future[tuple[dict[str, Any], list[dict[str, Any]], dict[str, dict[str, Any]]] | None]] = set()
        try:
            for user in list_users(iam):
                pending.add(pool.submit(_read_user, iam, user))
                if len(pending) >= window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        if (result := future.result()) is not None:
                            write(*result)
            for future in as_completed(pending):
                if (result := future.result()) is not None:
                    write(*result)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return count


def _read_user(
    iam: BaseClient, user: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, dict[str, Any]]] | None:
    name = user.get("UserName") if isinstance(user, dict) else None
    if not isinstance(name, str) or not name:
        raise MalformedResponseError("IAM ListUsers: field UserName is missing")
    try:
        keys = list_access_keys(iam, name)
    except ClientError as exc:
        if is_no_such_entity(exc):
            return None  # the user was deleted while we listed: it has no keys any more
        raise
    last_used: dict[str, dict[str, Any]] = {}
    present = []
    for key in keys:
        key_id, _, _ = parse_key_metadata(name, key)  # a malformed key fails the account before any further call
        try:
            last_used[key_id] = get_access_key_last_used(iam, key_id)
        except ClientError as exc:
            if is_no_such_entity(exc):
                continue  # the key was deleted while we listed
            raise
        present.append(key)
    return user, present, last_used


IAM_READ_ACTIONS = "iam:ListUsers, iam:ListAccessKeys, iam:GetAccessKeyLastUsed"


def describe_iam_error(exc: BaseException, account: Account) -> str:
    """An account's inventory failed: which dependency (IAM), which account, what failed and what to check."""
    described = describe_error(exc)
    text = described if described.startswith("IAM ") else f"IAM in account {account.id}: {described}"
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        return f"{text} (the account's collector role needs {IAM_READ_ACTIONS})"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) if isinstance(exc, ClientError) else 0
    if isinstance(exc, ResponseParserError):  # botocore does not retry an answer it cannot parse
        return f"{text} (IAM's answer was cut off or garbled; the next run retries the account)"
    if isinstance(exc, BotoCoreError) or status >= 500 or status == 429 or "Throttl" in code:
        return f"{text} (still failing after botocore's retries: check the network path to IAM; the next run retries)"
    return text


def describe_error(exc: BaseException) -> str:
    """A clear, secret-free, one-line error for logs and the run record."""
    if isinstance(exc, ClientError | BotoCoreError | ResponseParserError):
        return describe_aws_error(exc)
    if isinstance(exc, CollectorError):
        return redact(str(exc))
    return redact(f"{type(exc).__name__}: {exc}")
