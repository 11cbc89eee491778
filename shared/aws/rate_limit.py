"""A cap on the rate of calls, shared by every thread that calls one account's IAM: a token bucket.

IAM's request rate is one budget per account, shared with the customer's own automation. The collector's parallel
reads can take most of it for minutes; a customer whose automation must keep headroom sets
``COLLECTOR_IAM_MAX_CALLS_PER_SECOND`` and every account's calls (retries included) are spaced to that rate.
0 turns the cap off.

The bucket holds ``burst`` tokens (1 by default: calls are spaced evenly, never bunched) and refills at ``rate``
tokens per second. A caller takes a token; when none is left it reserves the next one under the lock and sleeps,
outside the lock, until that token is due, so waiting callers are served in the order they asked. Clock and sleep
are passed in, so tests run on a fake clock without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CallRateLimiter:
    def __init__(
        self,
        calls_per_second: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls_per_second < 0:
            raise ValueError("calls_per_second must be 0 (no cap) or more")
        if burst < 1:
            raise ValueError("burst must be at least 1 call")
        self.rate = float(calls_per_second)
        self._capacity = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self._capacity
        self._updated = clock()
        self.waited = 0.0  # seconds callers spent waiting in total (for the run's measurements)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self) -> float:
        """Wait, if need be, until one more call may go; return the seconds waited (0 when the cap is off)."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0  # below zero: this call holds a reservation on a future token
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
            self.waited += wait
        if wait > 0:
            self._sleep(wait)
        return wait
