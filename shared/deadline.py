"""One deadline for a whole run: replay, sign-in, accounts, delivery and the run record all end before it.

Under the Function it comes from host.json's ``functionTimeout`` (the host kills the invocation at that time, losing
whatever is still in memory), less a margin for the host itself. Every network wait is bounded by what is left
(``Deadline.bound``), and each step leaves ``RESERVE_FOR_RECORDS`` for keeping what is undelivered and for the run
record. On the command line there is no timeout: ``Deadline.never()``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

# What the run keeps, at the end, for writing undelivered records to the outbox and sending or keeping the run record
# (at most this, or a fifth of a short functionTimeout).
RESERVE_FOR_RECORDS = 60.0
# A network wait shorter than this is not worth starting: the answer could not come in time.
SHORTEST_WAIT = 1.0
# The host needs a moment after the function returns (logs, bindings): the run ends this long before functionTimeout.
HOST_MARGIN = 30.0


@dataclass(frozen=True)
class Deadline:
    ends_at: float  # on ``clock``'s scale (monotonic seconds)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    reserve: float = RESERVE_FOR_RECORDS  # kept, at the end, for the outbox and the run record

    @classmethod
    def after(
        cls, seconds: float, clock: Callable[[], float] = time.monotonic, reserve: float = RESERVE_FOR_RECORDS
    ) -> Deadline:
        return cls(clock() + seconds, clock, reserve)

    @classmethod
    def never(cls) -> Deadline:
        return cls(math.inf)

    @property
    def bounded(self) -> bool:
        return self.ends_at != math.inf

    def remaining(self) -> float:
        """Seconds left (0 when past)."""
        return max(0.0, self.ends_at - self.clock())

    def expired(self, reserve: float = 0.0) -> bool:
        """True when no more than ``reserve`` seconds are left."""
        return self.remaining() <= reserve

    def bound(self, wait: float, reserve: float = 0.0) -> float:
        """``wait``, shortened to what is left after ``reserve`` (never below SHORTEST_WAIT)."""
        return max(SHORTEST_WAIT, min(wait, self.remaining() - reserve))

    def cut(self, seconds: float) -> Deadline:
        """An earlier deadline: this one less ``seconds`` (for a step that must leave time to those after it)."""
        return Deadline(self.ends_at - seconds, self.clock, self.reserve)

    def delivery_over(self) -> bool:
        """No network delivery may start now: only the reserve is left (for the outbox and the run record)."""
        return self.expired(self.reserve)


def parse_function_timeout(value: str) -> timedelta:
    """host.json's ``functionTimeout`` (``hh:mm:ss``, or ``d.hh:mm:ss``) as a duration."""
    match = re.fullmatch(r"(?:([0-9]+)\.)?([0-9]{1,2}):([0-5][0-9]):([0-5][0-9])", value.strip(), re.ASCII)
    if not match:
        raise ValueError(f"host.json functionTimeout: expected hh:mm:ss (or d.hh:mm:ss), got {value!r}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def run_deadline(function_timeout: timedelta, clock: Callable[[], float] = time.monotonic) -> Deadline:
    """The run's deadline under the Function: ``functionTimeout`` less the host's margin (at least half of it)."""
    total = function_timeout.total_seconds()
    run = max(total / 2, total - HOST_MARGIN)
    return Deadline.after(run, clock, reserve=min(RESERVE_FOR_RECORDS, run / 5))
