"""The collector's own logic against the in-memory IAM fake and a fake clock: the time budget, partial failure, a user
deleted mid-walk, ordering and spooling. No network, no sleep: each test runs in milliseconds."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest

from shared.collection import accounts as accounts_module
from shared.collection import collector as collector_module
from shared.collection.accounts import start_order
from shared.collection.collector import Collector, CollectorOptions
from shared.delivery.outbox import NoOutbox
from shared.delivery.reliable_sink import ReliableSink
from shared.domain import Account, RunResult
from shared.errors import IamCallError
from shared.records import KEYS_TABLE, RUNS_TABLE
from tests.support.iam_fake import FakeAccount, FakeKey, FakeUser, IamFake, account_with_keys, key_id
from tests.support.iam_fake import sign_in_fails as make_sign_in_fail
from tests.support.sinks import ListSink

A, B, C, D = "111111111111", "222222222222", "333333333333", "444444444444"
BUDGET = timedelta(minutes=22, seconds=30)
GAAD = "GetAccountAuthorizationDetails"


class Recorder:
    """The ``Progress`` port, remembering the order accounts finished in."""

    def __init__(self) -> None:
        self.done: list[tuple[str, int, str | None]] = []
        self.result: RunResult | None = None
        self.finished_accounts: dict[str, threading.Event] = defaultdict(threading.Event)

    def started(self, total: int) -> None:
        pass

    def account_done(self, account: Account, keys: int, error: str | None) -> None:
        self.done.append((account.id, keys, error))
        self.finished_accounts[account.id].set()

    def finished(self, result: RunResult) -> None:
        self.result = result


def run(
    fake: IamFake,
    *,
    budget: timedelta | None = None,
    account_concurrency: int = 4,
    shuffle: Any = None,
    sink: ListSink | None = None,
    progress: Recorder | None = None,
) -> tuple[RunResult, ListSink, Recorder]:
    sink = sink or ListSink()
    progress = progress or Recorder()
    options = CollectorOptions("access_key", "file", 90, 45, account_concurrency, time_budget=budget)
    reliable = ReliableSink(sink, NoOutbox(), max_rows=1000, max_age=timedelta(hours=48))
    collector = Collector(options, fake, reliable, progress, clock=fake.clock, shuffle=shuffle or random.shuffle)
    result = collector.run()
    assert progress.result == result
    (run_row,) = sink.rows(RUNS_TABLE)
    assert run_row == result.to_record().to_row()  # the run record is the typed result
    return result, sink, progress


def test_a_clean_run_collects_every_key_and_says_so() -> None:
    fake = IamFake([account_with_keys(A, 3, 2), account_with_keys(B, 2, root_key_age_days=400)])
    result, sink, _ = run(fake)
    keys = sink.rows(KEYS_TABLE)
    assert result.status == "Succeeded" and result.failures == ()
    assert result.keys_collected == len(keys) == 3 * 2 + 2 + 1  # B's root key comes from its credential report
    assert {k["RunId"] for k in keys} == {result.run.run_id}
    assert result.run.started_at == fake.clock.now()  # the run's time is the clock's
    (root,) = [k for k in keys if k["IsRootKey"]]
    assert (root["AccountId"], root["AgeDays"], root["RotationDue"]) == (B, 400, True)


def test_every_reader_is_closed_once_its_account_is_done_failed_or_not() -> None:
    failing = account_with_keys(B, 3, fail_with=IamCallError(f"IAM in account 222222222222: {GAAD}: boom"))
    fake = IamFake([account_with_keys(A, 2), failing, account_with_keys(C, 1, report_unavailable=True)])
    result, _, _ = run(fake)
    assert [f.account_id for f in result.failures] == [B]
    assert set(fake.readers) == {A, B, C} and all(reader.closed for reader in fake.readers.values())


# ListAccessKeys, GetAccessKeyLastUsed
@pytest.mark.parametrize("hook", ["while_listing_keys", "while_reading_last_use"])
def test_calls_in_flight_are_bounded_across_all_accounts(monkeypatch: pytest.MonkeyPatch, hook: str) -> None:
    monkeypatch.setattr(collector_module, "IAM_CALLS_IN_FLIGHT", 3)
    lock = threading.Lock()
    inside = [0]
    most = [0]
    crowd = threading.Event()

    def listing() -> None:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            if inside[0] >= 3:
                crowd.set()
        crowd.wait(timeout=0.5)  # give the others every chance to crowd in: only 3 ever may
        time.sleep(0.01)  # and stay a moment once they have, so that an unbounded call would overlap them
        with lock:
            inside[0] -= 1

    accounts = [account_with_keys(a, 6, **{hook: listing}) for a in (A, B, C, D)]
    result, _, _ = run(IamFake(accounts, iam_concurrency=4), account_concurrency=4)
    assert result.status == "Succeeded" and result.keys_collected == 24
    assert most[0] == 3  # 4 accounts x 4 IAM threads could have made 16


def _last_use_calls(fake: IamFake, account_id: str) -> int:
    return fake.actions(account_id).count("GetAccessKeyLastUsed")


def test_the_credential_report_vouches_for_last_use_so_no_key_needs_its_own_call() -> None:
    users = [FakeUser("alice", [FakeKey(key_id(1), age_days=30, used_days_ago=2),
                                FakeKey(key_id(2), age_days=400, used_days_ago=None)]),
             FakeUser("bob", [FakeKey(key_id(3), status="Inactive", age_days=900, used_days_ago=120)])]
    with_report = IamFake([FakeAccount(A, users=users, report_lists_users=True)])
    from_api = IamFake([FakeAccount(B, users=users)])  # same keys, no user rows in the report
    _, report_sink, _ = run(with_report)
    _, api_sink, _ = run(from_api)
    assert _last_use_calls(with_report, A) == 0
    assert with_report.actions(A).count("ListAccessKeys") == 2 and with_report.actions(A).count(GAAD) == 1
    assert _last_use_calls(from_api, B) == 3

    def facts(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((r["UserName"], r["AccessKeyId"], r["LastUsedAt"], r["LastUsedRegion"], r["LastUsedService"],
                       r["DaysSinceLastUse"], r["NeverUsed"], r["RotationDue"], r["Unused"], r["LastUsedAsOf"])
                      for r in rows)

    # the same facts and findings, whichever source the last use came from (the fake's report is generated when
    # the run starts, and its API answers at that moment too)
    assert facts(report_sink.rows(KEYS_TABLE)) == facts(api_sink.rows(KEYS_TABLE))
    assert {r["LastUsedAsOf"] for r in report_sink.rows(KEYS_TABLE)} == {"2026-11-28T12:00:00Z"}


def test_keys_the_report_cannot_vouch_for_get_their_own_call() -> None:
    users = [FakeUser("alice", [FakeKey(key_id(1), age_days=30), FakeKey(key_id(2), age_days=0)]),  # 2: just made
             FakeUser("bob", [FakeKey(key_id(3), age_days=10)])]
    fake = IamFake([FakeAccount(A, users=users, report_lists_users=True)])
    result, _, _ = run(fake)
    assert result.keys_collected == 3
    assert [arg for acct, action, arg in fake.calls if action == "GetAccessKeyLastUsed"] == [key_id(2)]


def two_key_users(count: int) -> list[FakeUser]:
    """Users with two keys made ten days apart (the report tells their slots apart by creation time)."""
    return [FakeUser(f"user{u}", [FakeKey(key_id(u * 10), age_days=10), FakeKey(key_id(u * 10 + 1), age_days=20)])
            for u in range(count)]


def test_two_keys_made_in_the_same_second_are_ambiguous_and_get_their_own_calls() -> None:
    fake = IamFake([account_with_keys(A, 3, 2, report_lists_users=True)])  # each user's two keys: the same second
    _, sink, _ = run(fake)
    assert _last_use_calls(fake, A) == 6 and len(sink.rows(KEYS_TABLE)) == 6


def test_moto_style_not_supported_region_and_service_keep_the_api_call() -> None:
    fake = IamFake([FakeAccount(A, users=two_key_users(3), report_lists_users=True,
                                report_slot_values="not_supported")])
    _, sink, _ = run(fake)
    assert _last_use_calls(fake, A) == 6
    assert {r["LastUsedRegion"] for r in sink.rows(KEYS_TABLE)} == {"eu-west-1"}


def test_users_listed_before_the_report_is_ready_are_finished_from_it() -> None:
    fake = IamFake([FakeAccount(A, users=two_key_users(12), report_lists_users=True, report_after_listing=True)])
    result, sink, _ = run(fake)
    assert result.status == "Succeeded" and result.keys_collected == len(sink.rows(KEYS_TABLE)) == 24
    assert _last_use_calls(fake, A) == 0


def test_without_a_report_every_key_gets_its_own_call_and_root_keys_are_unknown() -> None:
    fake = IamFake([account_with_keys(A, 4, 2, report_lists_users=True, report_unavailable=True)])
    result, sink, _ = run(fake)
    assert result.status == "Succeeded" and result.root_keys_unknown == (A,)
    assert _last_use_calls(fake, A) == 8 and len(sink.rows(KEYS_TABLE)) == 8


def test_accounts_not_started_within_the_time_budget_are_named_and_the_run_still_reports() -> None:
    """The first account outlasts the budget (fake time); it completes, the others are named and make no IAM call."""
    fake = IamFake([account_with_keys(A, 2, takes_seconds=BUDGET.total_seconds() + 1),
                    account_with_keys(B, 2), account_with_keys(C, 2)])
    result, sink, _ = run(fake, budget=BUDGET, account_concurrency=1, shuffle=lambda accounts: None)

    assert result.status == "PartiallySucceeded" and result.accounts_succeeded == 1
    assert [f.account_id for f in result.failures] == [B, C]
    assert all("not collected: the run used its time budget (0:22:30" in f.error for f in result.failures)
    assert {k["AccountId"] for k in sink.rows(KEYS_TABLE)} == {A} and result.keys_collected == 2
    assert fake.actions(B) == fake.actions(C) == []  # the skipped accounts made no IAM call
    assert result.duration_seconds == pytest.approx(BUDGET.total_seconds() + 1)  # measured on the given clock


def test_an_account_started_within_the_budget_is_collected_whatever_it_takes() -> None:
    fake = IamFake([account_with_keys(A, 1, takes_seconds=BUDGET.total_seconds() - 1),
                    account_with_keys(B, 1, takes_seconds=3600)])
    result, _, _ = run(fake, budget=BUDGET, account_concurrency=1, shuffle=lambda accounts: None)
    assert result.status == "Succeeded" and result.keys_collected == 2


def test_one_failing_account_fails_alone_and_is_named() -> None:
    denied = IamCallError(f"IAM in account {B}: GetAccountAuthorizationDetails: AccessDenied: not authorized (the "
                          "account's collector role needs iam:GetAccountAuthorizationDetails)")
    fake = IamFake([account_with_keys(A, 2), account_with_keys(B, 5, fail_with=denied, fail_after=3),
                    account_with_keys(C, 1)])
    result, sink, _ = run(fake)
    assert result.status == "PartiallySucceeded"
    (failure,) = result.failures
    assert failure.account_id == B and failure.error == str(denied)
    assert {k["AccountId"] for k in sink.rows(KEYS_TABLE)} == {A, C}  # no partial inventory of B
    assert result.keys_collected == 3
    assert fake.readers[B].report_stopped is False  # its report was already there; nothing to stop


def test_an_unexpected_error_is_named_as_iam_in_that_account() -> None:
    fake = IamFake([account_with_keys(A, 2, fail_with=RuntimeError("boom\nsecond line"), fail_after=1)])
    result, sink, _ = run(fake)
    assert result.status == "Failed"
    assert [f.error for f in result.failures] == [f"IAM in account {A}: RuntimeError: boom"]
    assert sink.rows(KEYS_TABLE) == []


def test_a_failing_account_stops_waiting_for_its_credential_report() -> None:
    fake = IamFake([account_with_keys(A, 2, fail_with=IamCallError(f"IAM in account x: {GAAD}: Throttling"),
                                      report_pending=True)])
    result, _, _ = run(fake)
    assert result.status == "Failed" and fake.readers[A].report_stopped


def test_an_unavailable_credential_report_leaves_root_keys_unknown_without_failing_the_account() -> None:
    fake = IamFake([account_with_keys(A, 1), account_with_keys(B, 1)])
    fake.organization[1].report_unavailable = True
    result, _, _ = run(fake)
    assert result.status == "Succeeded" and result.root_keys_unknown == (B,) and result.keys_collected == 2


def test_a_user_or_key_deleted_mid_walk_has_no_record_and_fails_nothing() -> None:
    account = FakeAccount(A, users=[
        FakeUser("alice", [FakeKey(key_id(1))]),
        FakeUser("bob", [FakeKey(key_id(2))]),  # deleted between GetAccountAuthorizationDetails and ListAccessKeys
        FakeUser("carol", [FakeKey(key_id(3)), FakeKey(key_id(4))]),  # one key deleted before its last use is read
    ], deleted_after_listing={"bob", key_id(4)})
    fake = IamFake([account])
    result, sink, _ = run(fake)
    assert result.status == "Succeeded"
    assert sorted((k["UserName"], k["UserActiveKeyCount"]) for k in sink.rows(KEYS_TABLE)) == [
        ("alice", 1), ("carol", 1)]
    assert result.keys_collected == 2
    assert [(action, arg) for _, action, arg in fake.calls if arg == "bob"] == [("ListAccessKeys", "bob")]


def test_a_malformed_key_fails_the_account_before_any_further_call() -> None:
    account = account_with_keys(A, 3)
    account.users[1].keys[0].status = "Deleted"
    fake = IamFake([account], iam_concurrency=1)
    result, sink, _ = run(fake)
    (failure,) = result.failures
    assert failure.error == "IAM ListAccessKeys (user user1): field Status is 'Deleted', expected Active or Inactive"
    assert sink.rows(KEYS_TABLE) == []


def test_the_run_record_lists_accounts_in_the_organizations_order_whatever_order_they_finish_in() -> None:
    """D fails first, then C (waiting for D), then B succeeds (waiting for C), then A fails (waiting for B): the run
    record names A, C, D in the organization's order."""
    progress = Recorder()
    done = progress.finished_accounts
    denied = IamCallError("IAM: GetAccountAuthorizationDetails: AccessDenied")
    fake = IamFake([
        account_with_keys(A, 1, fail_with=denied, wait_for=done[B]),
        account_with_keys(B, 2, wait_for=done[C]),
        account_with_keys(C, 1, fail_with=denied, wait_for=done[D]),
        account_with_keys(D, 1, fail_with=denied),
    ])
    result, _, _ = run(fake, account_concurrency=4, progress=progress)
    assert [account for account, _, _ in progress.done] == [D, C, B, A]
    assert [f.account_id for f in result.failures] == [A, C, D] and result.keys_collected == 2


def test_under_a_budget_the_accounts_start_in_a_shuffled_order_and_are_reported_in_the_organizations() -> None:
    fake = IamFake([account_with_keys(i, 1) for i in (A, B, C, D)])
    result, _, progress = run(fake, budget=BUDGET, account_concurrency=1, shuffle=lambda accounts: accounts.reverse())
    assert [account for account, _, _ in progress.done] == [D, C, B, A]  # started (and, one at a time, done) reversed
    assert [acct for acct, action, _ in fake.calls if action == GAAD] == [D, C, B, A]

    fake = IamFake([account_with_keys(i, 1, takes_seconds=BUDGET.total_seconds() + 1) for i in (A, B, C, D)])
    result, _, _ = run(fake, budget=BUDGET, account_concurrency=1, shuffle=lambda accounts: accounts.reverse())
    assert [f.account_id for f in result.failures] == [A, B, C]  # D went first; the rest, in the organization's order


def test_without_a_budget_the_organizations_order_is_kept() -> None:
    fake = IamFake([account_with_keys(i, 1) for i in (A, B, C, D)])
    run(fake, account_concurrency=1, shuffle=lambda accounts: accounts.reverse())
    assert [acct for acct, action, _ in fake.calls if action == GAAD] == [A, B, C, D]


def test_with_a_time_budget_each_run_starts_the_accounts_in_a_new_random_order() -> None:
    """Accounts a run's time budget leaves out are not the same ones every run (the default shuffle)."""
    accounts = [Account(f"{i:012d}") for i in range(20)]

    def orders(budget: timedelta | None) -> list[list[str]]:
        return [[a.id for a in start_order(accounts, budget, random.shuffle)] for _ in range(5)]

    budgeted = orders(BUDGET)
    assert all(sorted(order) == [a.id for a in accounts] for order in budgeted)
    assert len({tuple(order) for order in budgeted}) > 1  # 5 draws of 20! orders: equal by chance ~never
    assert orders(None) == [[a.id for a in accounts]] * 5


def test_a_sign_in_failure_names_every_planned_account_and_still_reports() -> None:
    fake = IamFake([account_with_keys(A, 1), account_with_keys(B, 1)])
    make_sign_in_fail(fake)
    result, sink, _ = run(fake)
    assert result.status == "Failed" and not result.signed_in and sink.rows(KEYS_TABLE) == []
    assert [f.account_id for f in result.failures] == [A, B]
    assert all(f.error.startswith("STS AssumeRole into") for f in result.failures)
    assert fake.calls == []


def test_an_account_is_sent_in_batches_once_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts_module, "SEND_BATCH_ROWS", 4)
    fake = IamFake([account_with_keys(A, 5, 2)])
    result, sink, _ = run(fake)
    batches = [len(rows) for table, rows in sink.calls if table == KEYS_TABLE.table]
    assert batches == [4, 4, 2] and result.keys_collected == 10


def test_an_account_whose_records_the_sink_refuses_fails_without_an_outbox() -> None:
    sink = ListSink()
    sink.fail_on = KEYS_TABLE.table
    fake = IamFake([account_with_keys(A, 1)])
    result, _, _ = run(fake, sink=sink)
    (failure,) = result.failures
    assert failure.error.startswith("records not delivered: list sink: AwsIamAccessKeys_CL refused")
    assert result.keys_collected == 0


# ---------------------------------------------------------------------------------------------- the run's deadline


def test_an_unexpected_error_in_one_account_fails_that_account_not_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    real = accounts_module.tempfile.TemporaryFile
    calls = {"n": 0}
    lock = threading.Lock()

    def disk_full_once(*args: Any, **kwargs: Any) -> Any:
        with lock:
            calls["n"] += 1
            first = calls["n"] == 1
        if first:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(accounts_module.tempfile, "TemporaryFile", disk_full_once)
    fake = IamFake([account_with_keys(A, 1), account_with_keys(B, 2), account_with_keys(C, 1)])
    result, sink, _ = run(fake, account_concurrency=1, shuffle=lambda accounts: None)
    (failure,) = result.failures
    assert failure.account_id == A and "No space left on device" in failure.error
    assert result.status == "PartiallySucceeded" and result.keys_collected == 3
    assert {k["AccountId"] for k in sink.rows(KEYS_TABLE)} == {B, C}


def test_an_account_still_working_at_the_run_deadline_is_named_and_the_run_record_goes_out_in_time() -> None:
    from shared.deadline import Deadline

    hung = account_with_keys(B, 1)
    hung.wait_for = threading.Event()  # never set: IAM does not answer for this account
    fake = IamFake([account_with_keys(A, 2), hung])
    sink = ListSink()
    options = CollectorOptions("access_key", "file", 90, 45, 4, deadline=Deadline.after(1.5, reserve=0.5))
    reliable = ReliableSink(sink, NoOutbox(), max_rows=1000, max_age=timedelta(hours=48))
    started = time.monotonic()
    result = Collector(options, fake, reliable, Recorder(), clock=fake.clock).run()
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"the run took {elapsed:.1f} s past its 1.5 s deadline"
    (failure,) = result.failures
    assert failure.account_id == B and "not finished reading by the run's deadline" in failure.error
    assert {k["AccountId"] for k in sink.rows(KEYS_TABLE)} == {A}
    (run_row,) = sink.rows(RUNS_TABLE)
    assert run_row["Status"] == "PartiallySucceeded" and run_row["AccountsFailed"] == 1
    hung.wait_for.set()  # let the abandoned worker end
