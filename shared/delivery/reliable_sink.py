"""``ReliableSink``: a sink that never loses a row it was given. Rows the sink does not accept wait in the outbox;
the next run replays them first. A breaker sends the rest of a run straight to the outbox once the sink failed in it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from shared.deadline import Deadline
from shared.delivery.outbox import (
    CLOCK_SKEW,
    DEAD_LETTER_MAX_ITEMS,
    NoOutbox,
    Outbox,
    OutboxItem,
    UnreadableItemError,
    decode_rows,
)
from shared.errors import SinkError
from shared.ports import Sink
from shared.records import Table
from shared.redaction import redact

log = logging.getLogger(__name__)


def _send(sink: Sink, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """``sink.send``, with any error it should have turned into a SinkError turned into one (nothing delivered is
    assumed), so that an unexpected exception in a sink defers the rows instead of losing them and the run."""
    try:
        sink.send(table, rows)
    except SinkError:
        raise
    except Exception as exc:  # a sink bug must not lose rows
        raise SinkError(f"{sink.name}: {type(exc).__name__}: {redact(str(exc))}", len(rows)) from None


def _undelivered(exc: SinkError, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows to keep: those the sink names as not delivered (a partial upload), else all of them."""
    return list(exc.rows) if exc.rows is not None else list(rows)


@dataclass
class DeliveryStats:
    deferred: int = 0  # rows kept in the outbox this run
    last_error: str = ""  # why the sink refused the last rows kept (secret-free: the sinks' own messages)
    replayed: int = 0  # rows of earlier runs delivered this run
    dropped: int = 0  # rows dropped from the outbox past its age or size limit
    dead_lettered: int = 0  # outbox items that could not be read, moved aside to the dead-letter place (kept)
    dead_letter_removed: int = 0  # the oldest items set aside, removed past DEAD_LETTER_MAX_ITEMS
    outbox_errors: int = 0  # outbox operations that failed (listing, claiming, releasing, deleting): logged, survived


class _Gate:
    """Who is inside the sink or the outbox. Once closed nobody enters (SinkError), and ``close`` waits, bounded, for
    those inside: when it returns True, no thread can touch the sink or the outbox any more."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._inside = 0
        self._closed = False

    @contextmanager
    def entered(self, rows: int) -> Iterator[None]:
        with self._changed:
            if self._closed:
                raise SinkError("not sent: the run has ended; its sink and outbox take nothing more", rows)
            self._inside += 1
        try:
            yield
        finally:
            with self._changed:
                self._inside -= 1
                self._changed.notify_all()

    def close(self, wait: float | None) -> bool:
        with self._changed:
            self._closed = True
            return self._changed.wait_for(lambda: self._inside == 0, timeout=wait)


class _Replayed(Enum):
    DELIVERED = "delivered"
    NOT_MINE = "not mine"  # another run has it, or it was moved aside
    STOP = "stop"  # the sink or the outbox is failing: leave the rest for the next run


class ReliableSink:
    """Wraps a sink: rows it cannot deliver go to the outbox instead of failing the run, and earlier rows in the
    outbox are delivered first (``replay``) at the start of the next run.

    A breaker: once the sink has failed in this run (after its own retries), every later batch goes straight to the
    outbox instead of costing one more full retry cycle against a sink that is down or hung.
    """

    def __init__(
        self, sink: Sink, outbox: Outbox, max_rows: int, max_age: timedelta, deadline: Deadline | None = None
    ) -> None:
        self.inner = sink
        self.name = sink.name
        self.outbox = outbox
        self.max_rows = max_rows
        self.max_age = max_age
        self.deadline = deadline or Deadline.never()  # the run's: past its reserve, rows go straight to the outbox
        self.stats = DeliveryStats()
        self.sink_failure: str | None = None  # set once the sink has failed in this run: the breaker is open
        self._gate = _Gate()

    def shut(self, wait: float | None) -> bool:
        """The run has ended: nothing enters the sink or the outbox any more. Waits at most ``wait`` seconds for calls
        already inside; True when none is left (then no thread of the run can touch either again)."""
        return self._gate.close(wait)

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        with self._gate.entered(len(rows)):
            self._send(table, rows)

    def _send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if self.sink_failure is None and self.deadline.delivery_over():
            self._trip(f"the run's time is almost up ({self.deadline.remaining():.0f} s left): no more delivery tried")
        # Without an outbox (a dry run) the sink is the rows' only chance: no breaker then.
        if self.sink_failure is None or isinstance(self.outbox, NoOutbox):
            try:
                _send(self.inner, table, rows)
                return
            except SinkError as exc:
                self._trip(str(exc))
                undelivered = _undelivered(exc, rows)
                reason = str(exc)
        else:
            undelivered = list(rows)
            reason = (f"{len(rows)} {table.table} row(s) not sent: the {self.inner.name} sink already failed in this "
                      f"run ({self.sink_failure})")
        if undelivered:
            self._keep(table, undelivered, reason)

    def _trip(self, reason: str) -> None:
        if self.sink_failure is None:
            self.sink_failure = reason
            self.stats.last_error = reason
            log.warning("%s sink failed; the rest of this run goes straight to the outbox: %s", self.inner.name, reason)

    def keep(self, table: Table, rows: Sequence[dict[str, Any]], reason: str) -> None:
        """Put rows straight into the outbox, without trying the sink (the sink is busy past the run's deadline)."""
        with self._gate.entered(len(rows)):
            self._keep(table, rows, reason)

    def _keep(self, table: Table, rows: Sequence[dict[str, Any]], reason: str) -> None:
        try:
            self.outbox.put(table, rows, datetime.now(UTC))
        except Exception as outbox_exc:  # the outbox is down too: now, and only now, rows are lost
            raise SinkError(
                f"{reason}; and the outbox at {self.outbox.location} could not keep them either: "
                f"{type(outbox_exc).__name__}: {redact(str(outbox_exc))}",
                len(rows),
            ) from None
        self.stats.deferred += len(rows)
        log.warning("%d %s row(s) kept in the outbox for the next run: %s", len(rows), table.table, reason)

    def replay(self, now: datetime, until: Deadline | None = None) -> DeliveryStats:
        """Deliver what earlier runs kept, oldest first, then bound the outbox. Stops at the first failure (the sink
        is still down, and the breaker opens), or when ``until`` (the share of the run's time the replay may use)
        has passed: what is left stays for the next run. Never raises for the outbox's sake: an outbox that fails is
        logged and counted, and the run goes on."""
        with self._gate.entered(0):
            return self._replay(now, until or self.deadline.delivery_deadline())

    def _replay(self, now: datetime, until: Deadline) -> DeliveryStats:
        try:
            items = self.outbox.items()
        except Exception as exc:  # an unreadable outbox must not stop this run's collection
            self._outbox_failed("cannot be listed; its records wait for a later run", exc)
            return self.stats
        pending: list[OutboxItem] = []
        for item in items:
            if item.created > now + CLOCK_SKEW:
                self._set_aside(item, "its name carries no valid time, or one in the future: it would never age out")
            elif now - item.created > self.max_age:
                self._drop(item, "older than the outbox's age limit")
            else:
                pending.append(item)
        for item in list(pending):
            if self.sink_failure is not None:
                break
            if until.expired():
                log.warning("Outbox replay stopped: its share of the run's time is used; %d item(s) wait for the next "
                            "run", len(pending))
                break
            outcome = self._replay_one(item)
            if outcome is _Replayed.STOP:
                break
            pending.remove(item)
        self._bound(pending)
        self._trim_dead_letter()
        if self.stats.replayed:
            log.info("Delivered %d row(s) kept in the outbox by earlier runs", self.stats.replayed)
        return self.stats

    def _replay_one(self, item: OutboxItem) -> _Replayed:
        try:
            data = self.outbox.claim(item)
        except UnreadableItemError as exc:  # claimed, but not a file the outbox reads (a link, a device)
            self._dead_letter(item, f"unreadable: {exc}")
            return _Replayed.NOT_MINE
        except Exception as exc:
            self._outbox_failed(f"could not claim item {item.name}; replay stopped", exc)
            return _Replayed.STOP
        if data is None:
            return _Replayed.NOT_MINE  # another run is replaying it
        try:
            rows = decode_rows(data)
        except UnreadableItemError as exc:
            self._dead_letter(item, f"unreadable: {exc}")
            return _Replayed.NOT_MINE
        if len(rows) != item.named_rows:  # this collector names an item by what it holds: someone else wrote it
            self._dead_letter(item, f"it holds {len(rows)} row(s) but its name says {item.named_rows}: not an item "
                              "this collector wrote")
            return _Replayed.NOT_MINE
        try:
            _send(self.inner, item.table, rows)
        except SinkError as exc:
            self._trip(str(exc))
            log.warning("Outbox replay stopped, %s is still failing: %s", self.inner.name, exc)
            undelivered = _undelivered(exc, rows)
            if len(undelivered) < len(rows):  # part was delivered: keep only the rest, under the item's own time
                try:
                    if undelivered:
                        self.outbox.put(item.table, undelivered, item.created)
                    self._delete(item)
                    return _Replayed.STOP
                except Exception as put_exc:
                    self._outbox_failed(f"could not keep the undelivered part of {item.name}", put_exc)
            self._release(item)
            return _Replayed.STOP
        except BaseException:  # interrupted (Ctrl-C, shutdown): hand the item back before stopping
            self._release(item)
            raise
        self.stats.replayed += len(rows)
        self._delete(item)
        return _Replayed.DELIVERED

    def _set_aside(self, item: OutboxItem, reason: str) -> None:
        try:
            data = self.outbox.claim(item)
        except Exception as exc:
            self._outbox_failed(f"could not claim item {item.name} to move it aside", exc)
            return
        if data is not None:
            self._dead_letter(item, reason)

    def _dead_letter(self, item: OutboxItem, reason: str) -> None:
        try:
            where = self.outbox.dead_letter(item, reason)
        except Exception as exc:
            self._outbox_failed(f"could not move unreadable item {item.name} aside", exc)
            self._release(item)
            return
        self.stats.dead_lettered += 1
        log.error(
            "Outbox item %s (%d %s row(s) by its name) cannot be replayed (%s); moved aside to %s and kept: inspect "
            "it, then delete it or put a corrected copy back in the outbox",
            item.name, item.named_rows, item.table.table, reason, where,
        )

    def _trim_dead_letter(self) -> None:
        try:
            removed = self.outbox.trim_dead_letter(DEAD_LETTER_MAX_ITEMS)
        except Exception as exc:
            self._outbox_failed("could not trim its dead-letter place", exc)
            return
        if removed:
            self.stats.dead_letter_removed += removed
            log.warning("Removed the %d oldest item(s) set aside in the outbox's dead-letter place: it keeps at most "
                        "%d", removed, DEAD_LETTER_MAX_ITEMS)

    def _bound(self, pending: list[OutboxItem]) -> None:
        """After the delivery attempt: the oldest items still waiting go while the outbox holds more than its row cap.
        The newest item always stays, so that a cap below one batch never drops every deferred batch unsent."""
        total = sum(i.rows for i in pending)
        while len(pending) > 1 and total > self.max_rows:
            oldest = pending.pop(0)
            total -= oldest.rows
            self._drop(oldest, "over the outbox's size limit (OUTBOX_MAX_RECORDS)")

    def _drop(self, item: OutboxItem, why: str) -> None:
        try:
            self.outbox.delete(item)
        except Exception as exc:
            self._outbox_failed(f"could not drop item {item.name}", exc)
            return
        self.stats.dropped += item.rows
        log.warning("Dropped %d undelivered %s row(s) from %s: %s", item.rows, item.table.table, item.created, why)

    def _release(self, item: OutboxItem) -> None:
        try:
            self.outbox.release(item)
        except Exception as exc:  # the claim lapses on its own (lease expiry, CLAIM_EXPIRY): the item is not lost
            self._outbox_failed(f"could not hand item {item.name} back; its claim lapses on its own", exc)

    def _delete(self, item: OutboxItem) -> None:
        try:
            self.outbox.delete(item)
        except Exception as exc:  # delivered but still there: the next run delivers it again (at least once)
            self._outbox_failed(f"could not remove delivered item {item.name}; a later run delivers it again", exc)

    def _outbox_failed(self, what: str, exc: Exception) -> None:
        self.stats.outbox_errors += 1
        log.error("Outbox at %s: %s: %s: %s", self.outbox.location, what, type(exc).__name__, redact(str(exc)))

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.outbox.close()
