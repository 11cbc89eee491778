"""The run's one deadline: parsing functionTimeout, what is left, bounded waits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.deadline import HOST_MARGIN, SHORTEST_WAIT, Deadline, as_timeout, parse_function_timeout, run_deadline


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("text", "seconds"), [("00:30:00", 1800), ("00:00:20", 20), ("1.02:00:00", 93600)])
def test_function_timeout_is_parsed(text: str, seconds: int) -> None:
    assert parse_function_timeout(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["30", "-1", "00:30", "", "unlimited", "00:60:00", "00:00:75"])
def test_a_function_timeout_that_is_not_hh_mm_ss_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="functionTimeout"):
        parse_function_timeout(text)


def test_the_run_ends_a_margin_before_the_host_kills_it() -> None:
    clock = Clock()
    deadline = run_deadline(timedelta(minutes=30), clock)
    assert deadline.remaining() == 1800 - HOST_MARGIN
    assert run_deadline(timedelta(seconds=20), clock).remaining() == 10  # a short timeout: half of it


def test_waits_are_bounded_by_what_is_left() -> None:
    clock = Clock()
    deadline = Deadline.after(100, clock)
    assert deadline.bound(60) == 60
    clock.now += 70
    assert deadline.bound(60) == 30 and deadline.bound(60, reserve=20) == 10
    clock.now += 100
    assert deadline.remaining() == 0 and deadline.expired() and deadline.bound(60) == SHORTEST_WAIT
    assert not Deadline.never().expired(10**9) and not Deadline.never().bounded


def test_a_short_function_timeout_keeps_a_fifth_of_the_run_for_the_records() -> None:
    clock = Clock()
    assert run_deadline(timedelta(seconds=20), clock).reserve == 2  # 10 s run, 2 s reserve
    assert run_deadline(timedelta(minutes=30), clock).reserve == 60
    deadline = run_deadline(timedelta(seconds=20), clock)
    clock.now += 7.9
    assert not deadline.delivery_over()
    clock.now += 0.2
    assert deadline.delivery_over()


def test_aws_clients_made_late_in_the_run_wait_no_longer_than_it_has_left() -> None:
    from shared.aws.clients import AwsClientFactory

    clock = Clock()
    deadline = Deadline.after(35, clock, reserve=5)
    factory = AwsClientFactory("us-east-1", max_attempts=3, deadline=deadline)
    early = factory.client("sts").meta.config
    assert (early.read_timeout, early.connect_timeout) == (10, 10)  # 30 s left for 3 attempts
    clock.now += 27  # 3 s left before the reserve: each of the 3 attempts gets 1 s
    late = factory.client("iam").meta.config
    assert (late.read_timeout, late.connect_timeout) == (1, 1)
    unbounded = AwsClientFactory("us-east-1").client("iam").meta.config
    assert (unbounded.read_timeout, unbounded.connect_timeout) == (60, 10)  # the command line: production's own


def test_the_run_is_divided_in_one_place() -> None:
    clock = Clock()
    deadline = Deadline.after(100, clock, reserve=20)
    assert (deadline.delivery_left(), deadline.keeping_left()) == (80, 90)
    assert (deadline.run_record_left(), deadline.closing_left()) == (95, 97.5)
    assert deadline.delivery_deadline().remaining() == 80
    assert deadline.share(0.25).remaining() == 25  # the replay's share of what is left
    call = deadline.call(180, 0.25)  # one sink call: a quarter of the delivery window, at most 180 s
    assert (call.remaining(), call.reserve) == (20, 0)
    clock.now += 70
    assert deadline.call(180, 0.25).remaining() == 2.5 and deadline.call(1, 0.25).remaining() == 1
    assert 179 < Deadline.never().call(180, 0.25).remaining() <= 180  # the command line's sink calls are bounded too
    assert as_timeout(Deadline.never().delivery_left()) is None and as_timeout(3.0) == 3.0


def test_derived_deadlines_share_the_stop_signal() -> None:
    deadline = Deadline.after(100)
    derived = [deadline.cut(10), deadline.share(0.5), deadline.call(5, 0.1)]
    deadline.stop()
    assert all(d.stopped for d in derived)


def test_once_the_run_stopped_its_aws_clients_start_no_call() -> None:
    """Checked before every attempt of every call: a thread the run left behind cannot call AWS after it returned.
    (No connection is even tried: the unit tier refuses network connections.)"""
    from botocore.credentials import Credentials

    from shared.aws.clients import AwsClientFactory
    from shared.errors import RunStoppedError

    deadline = Deadline.after(60)
    factory = AwsClientFactory("us-east-1", deadline=deadline)
    made_before = factory.client("iam", Credentials("AKIAEXAMPLEEXAMPLE00", "not-a-secret-not-a-secret-not-a-s"))
    deadline.stop()
    made_after = factory.client("sts", Credentials("AKIAEXAMPLEEXAMPLE00", "not-a-secret-not-a-secret-not-a-s"))
    with pytest.raises(RunStoppedError, match="the run stopped at its deadline"):
        made_before.list_users()
    with pytest.raises(RunStoppedError):
        made_after.get_caller_identity()
