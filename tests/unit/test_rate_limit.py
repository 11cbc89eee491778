"""The per-account call-rate cap (shared/aws/rate_limit.py), on a fake clock: nothing here really sleeps."""

from __future__ import annotations

import threading

import pytest

from shared.aws.rate_limit import CallRateLimiter


class FakeTime:
    """A clock that moves only when someone sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def clock(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds


def limiter(rate: float, fake: FakeTime, burst: float = 1.0) -> CallRateLimiter:
    return CallRateLimiter(rate, burst=burst, clock=fake.clock, sleep=fake.sleep)


def test_zero_is_off_and_never_waits() -> None:
    fake = FakeTime()
    cap = limiter(0, fake)
    assert not cap.enabled
    assert [cap.acquire() for _ in range(1000)] == [0.0] * 1000
    assert fake.sleeps == []


def test_calls_are_spaced_to_the_rate() -> None:
    fake = FakeTime()
    cap = limiter(10, fake)
    start = fake.now
    for _ in range(25):
        cap.acquire()
    # the first call goes at once, each next one 0.1 s later: 25 calls span 2.4 s
    assert fake.now - start == pytest.approx(2.4)
    assert fake.sleeps == pytest.approx([0.1] * 24)


def test_idle_time_refills_only_up_to_the_burst() -> None:
    fake = FakeTime()
    cap = limiter(2, fake, burst=3)
    for _ in range(3):
        assert cap.acquire() == 0.0  # a full bucket lets the burst through
    assert cap.acquire() == pytest.approx(0.5)
    fake.now += 60  # a minute idle is worth 120 tokens, but the bucket holds 3
    assert [cap.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert cap.acquire() == pytest.approx(0.5)


def test_calls_slower_than_the_rate_never_wait() -> None:
    fake = FakeTime()
    cap = limiter(5, fake)
    for _ in range(20):
        assert cap.acquire() == 0.0
        fake.now += 0.25  # slower than 5 per second
    assert fake.sleeps == []


def test_parallel_callers_each_get_their_own_slot() -> None:
    # The clock stands still, so every caller after the first must reserve a distinct future token: 0.05 s apart.
    frozen = FakeTime()
    waits: list[float] = []
    lock = threading.Lock()
    cap = CallRateLimiter(20, clock=frozen.clock, sleep=lambda s: None)
    barrier = threading.Barrier(16)

    def call() -> None:
        barrier.wait()
        waited = cap.acquire()
        with lock:
            waits.append(waited)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == pytest.approx([i * 0.05 for i in range(16)])
    assert cap.waited == pytest.approx(sum(i * 0.05 for i in range(16)))


@pytest.mark.parametrize(("rate", "burst"), [(-1, 1), (5, 0.5)])
def test_bad_bounds_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        CallRateLimiter(rate, burst=burst)
