"""One deadline for a whole run: replay, sign-in, accounts, delivery and the run record all end before it.

Under the Function it comes from host.json's ``functionTimeout`` (the host kills the invocation at that time, losing
whatever is still in memory), less a margin for the host itself. On the command line there is no timeout:
``Deadline.never()``. This module is the one place the run's time is divided; everyone else asks it:

- the replay of earlier runs' rows may use ``REPLAY_SHARE`` of what is left when it starts (``share``);
- accounts read AWS and deliver until only the reserve is left (``delivery_left``, ``delivery_over``); then the run
  *stops* (``stop``): no AWS call starts any more, and rows go straight to the outbox;
- accounts that finished reading keep their rows in the outbox until half the reserve is left (``keeping_left``);
- the run record is sent or kept (``run_record_left``), the sink and the outbox are closed (``closing_left``) and
  the run's threads joined, in the last half of the reserve;
- one sink call (an upload with all its retries) ends within ``call``: a share of what delivery has left, capped
  (shared/config/transport.py has the numbers), so a sink that hangs trips the breaker long before the deadline.

``stop`` is a signal every part of the run shares (the AWS clients refuse to start a call once it is set); the run
sets it at the deadline and again when it returns, so no thread it leaves behind can call AWS.
"""

from __future__ import annotations

import math
import re
import threading
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
# The replay of earlier runs' rows may use this share of what is left when it starts; the run's own work the rest.
REPLAY_SHARE = 0.25


@dataclass(frozen=True)
class Deadline:
    ends_at: float  # on ``clock``'s scale (monotonic seconds)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    reserve: float = RESERVE_FOR_RECORDS  # kept, at the end, for the outbox and the run record
    # Set when the run stops (at its deadline, and when it returns): shared by every deadline derived from this one.
    stop_signal: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

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

    def left(self, reserve: float = 0.0) -> float:
        """Seconds left before only ``reserve`` remains (0 when past; inf without a deadline)."""
        return max(0.0, self.remaining() - reserve)

    def expired(self, reserve: float = 0.0) -> bool:
        """True when no more than ``reserve`` seconds are left."""
        return self.remaining() <= reserve

    def bound(self, wait: float, reserve: float = 0.0) -> float:
        """``wait``, shortened to what is left after ``reserve`` (never below SHORTEST_WAIT)."""
        return max(SHORTEST_WAIT, min(wait, self.remaining() - reserve))

    def cut(self, seconds: float) -> Deadline:
        """An earlier deadline: this one less ``seconds`` (for a step that must leave time to those after it)."""
        return Deadline(self.ends_at - seconds, self.clock, self.reserve, self.stop_signal)

    def share(self, fraction: float) -> Deadline:
        """An earlier deadline: ``fraction`` of what is left from now (the replay's share of the run)."""
        return self.cut(self.remaining() * (1 - fraction)) if self.bounded else self

    # --- the run's phases -------------------------------------------------------------------------------------

    def delivery_left(self) -> float:
        """Seconds in which AWS calls and network delivery may still start: all but the reserve."""
        return self.left(self.reserve)

    def delivery_over(self) -> bool:
        """No network delivery may start now: only the reserve is left (for the outbox and the run record)."""
        return self.expired(self.reserve)

    def delivery_deadline(self) -> Deadline:
        """The end of the delivery window, as a deadline of its own (a replay given no share of its own ends there)."""
        return self.cut(self.reserve)

    def keeping_left(self) -> float:
        """Seconds in which rows already read may still be kept in the outbox: all but the last half of the reserve
        (the run record's, and the joining of the run's threads)."""
        return self.left(self.reserve / 2)

    def run_record_left(self) -> float:
        """Seconds the run record may wait for a sink still busy with an account's rows before it is kept in the
        outbox instead: until a quarter of the reserve is left."""
        return self.left(self.reserve / 4)

    def closing_left(self) -> float:
        """Seconds the run's end may wait for a call still inside the sink or the outbox: until an eighth of the
        reserve is left (the rest is for joining the accounts' threads)."""
        return self.left(self.reserve / 8)

    def call(self, cap: float, share: float) -> Deadline:
        """The deadline of one sink call starting now: ``share`` of what delivery has left, at most ``cap`` seconds,
        with no reserve of its own (the run's is already left out)."""
        seconds = min(cap, self.delivery_left() * share)
        return Deadline(self.clock() + seconds, self.clock, 0.0, self.stop_signal)

    # --- the stop signal ---------------------------------------------------------------------------------------

    def stop(self) -> None:
        """The run stops: no AWS call may start any more (the AWS clients check), rows go to the outbox."""
        self.stop_signal.set()

    @property
    def stopped(self) -> bool:
        return self.stop_signal.is_set()


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


def as_timeout(seconds: float) -> float | None:
    """``seconds`` as a wait for threading and futures: None (no limit) without a deadline."""
    return None if seconds == math.inf else seconds
