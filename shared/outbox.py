"""Nothing lost: rows a sink could not deliver after its own retries are kept durably in an outbox and delivered
first by the next run, at least once.

- ``FileOutbox``: a folder (beside the ``file`` sink's files for local runs).
- ``BlobOutbox`` (shared/blob_outbox.py): a container in the Function's own storage account, identity-based.

At least once: an item is claimed before it is replayed (a file renamed, a blob leased and the lease renewed while
the item is delivered), so two runs do not replay the same item at the same time, and it is deleted as soon as its
delivery succeeds. A run that dies between the sink's accept and the delete leaves the item for the next run, which
delivers it again: the queries count a row once (RunId + AccessKeyFingerprint), so a duplicate never shows.

No item stops the outbox: an item that cannot be read (not UTF-8, not JSON lines, a name with no valid or a future
time) is moved aside to a dead-letter place beside the outbox (a ``dead-letter`` folder or blob prefix), kept,
logged and counted; every outbox operation is guarded, so a failing outbox never stops the run's collection.

Bounded: items past the age limit are dropped at the start of a run; the row cap is applied only after a delivery
attempt (what the sink took is gone from the outbox first), oldest first, never the newest item; all with a logged
count.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from shared.deadline import Deadline
from shared.errors import SinkError
from shared.ports import Sink
from shared.records import KEYS_TABLE, RUNS_TABLE, Table
from shared.redaction import redact

log = logging.getLogger(__name__)

TABLES = {KEYS_TABLE.file_name: KEYS_TABLE, RUNS_TABLE.file_name: RUNS_TABLE}
# <UTC time>-<row count>-<unique>-<table file name>: sortable by age, countable without reading the body.
_ITEM_NAME = re.compile(r"^([0-9]{8}T[0-9]{12}Z)-([0-9]{1,9})-([0-9a-f]{32})-(.+\.jsonl)$")
# Where unreadable items are moved: a folder inside the file outbox, a name prefix in the blob container.
DEAD_LETTER = "dead-letter"
# A name whose time is later than now by more than this was not written by a sane clock: it could never age out.
CLOCK_SKEW = timedelta(hours=1)
# An item name whose time cannot be parsed is treated as one from the future: moved aside, never replayed blindly.
_NO_VALID_TIME = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class OutboxItem:
    name: str
    created: datetime
    rows: int
    table: Table


def item_name(table: Table, rows: int, now: datetime) -> str:
    return f"{now.astimezone(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{rows}-{uuid.uuid4().hex}-{table.file_name}"


def parse_item_name(name: str) -> OutboxItem | None:
    match = _ITEM_NAME.match(name)
    if not match or match.group(4) not in TABLES:
        return None
    try:
        created = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:  # e.g. month 13: an item, but one whose age is unknown
        created = _NO_VALID_TIME
    return OutboxItem(name, created, int(match.group(2)), TABLES[match.group(4)])


def encode_rows(rows: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in rows).encode()


class UnreadableItemError(ValueError):
    """An outbox item's body is not UTF-8 JSON lines of objects."""


def decode_rows(data: bytes) -> list[dict[str, Any]]:
    try:
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise UnreadableItemError(f"not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UnreadableItemError(f"not JSON lines (line {exc.lineno}: {exc.msg})") from None
    if not all(isinstance(row, dict) for row in rows):
        raise UnreadableItemError("a line is JSON but not an object")
    return rows


class Outbox(Protocol):
    """Durable storage of undelivered rows."""

    location: str

    def put(self, table: Table, rows: Sequence[dict[str, Any]], now: datetime) -> None: ...

    def items(self) -> list[OutboxItem]: ...  # oldest first

    def claim(self, item: OutboxItem) -> bytes | None: ...  # the item's body; None: another run has it

    def release(self, item: OutboxItem) -> None: ...  # delivery failed: keep it for the next run

    def delete(self, item: OutboxItem) -> None: ...  # delivered or dropped

    def dead_letter(self, item: OutboxItem, reason: str) -> str: ...  # move a claimed item aside; returns where

    def close(self) -> None: ...


# A claimed file outbox item whose claim is older than this was left by a run that died while replaying it (killed,
# Ctrl-C past the handler, power lost): it is put back for replay, as an expired blob lease is. Far longer than
# replaying one item takes (an item holds one delivery batch) and than the Function's 30-minute timeout.
CLAIM_EXPIRY = timedelta(minutes=30)
# A ``.partial`` file older than this was left by a run that died while writing it: never a whole item, removed.
PARTIAL_EXPIRY = timedelta(minutes=10)


class FileOutbox:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.location = str(self.directory)

    def put(self, table: Table, rows: Sequence[dict[str, Any]], now: datetime) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = item_name(table, len(rows), now)
        partial = self.directory / f".{name}.partial"
        with open(partial, "wb") as handle:
            handle.write(encode_rows(rows))
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(self.directory / name)  # atomic: an item is whole or absent

    def items(self) -> list[OutboxItem]:
        if not self.directory.is_dir():
            return []
        self._reclaim_abandoned()
        self._remove_partials()
        found = (parse_item_name(p.name) for p in self.directory.iterdir())
        return sorted((i for i in found if i is not None), key=lambda i: i.name)

    def _remove_partials(self) -> None:
        expired = datetime.now(UTC).timestamp() - PARTIAL_EXPIRY.total_seconds()
        for path in self.directory.glob(".*.partial"):
            try:
                if path.stat().st_mtime < expired:
                    path.unlink()
                    log.warning("Removed %s, an outbox item a run did not finish writing (it holds no whole item)",
                                path.name)
            except FileNotFoundError:
                continue

    def _reclaim_abandoned(self) -> None:
        expired = datetime.now(UTC).timestamp() - CLAIM_EXPIRY.total_seconds()
        for path in self.directory.glob(".*.claimed"):
            name = path.name[1 : -len(".claimed")]
            try:
                if parse_item_name(name) is None or path.stat().st_mtime > expired:
                    continue
                path.rename(self.directory / name)  # atomic: if two runs find it, one puts it back
            except FileNotFoundError:
                continue
            log.warning("Outbox item %s was claimed by a run that did not finish; it is replayed again", name)

    def _claimed(self, item: OutboxItem) -> Path:
        return self.directory / f".{item.name}.claimed"

    def claim(self, item: OutboxItem) -> bytes | None:
        claimed = self._claimed(item)
        try:
            (self.directory / item.name).rename(claimed)  # atomic: exactly one run wins
        except FileNotFoundError:
            return None
        os.utime(claimed)  # the claim's time, for _reclaim_abandoned (a rename keeps the item's own mtime)
        return claimed.read_bytes()

    def release(self, item: OutboxItem) -> None:
        self._claimed(item).rename(self.directory / item.name)

    def delete(self, item: OutboxItem) -> None:
        for path in (self._claimed(item), self.directory / item.name):
            path.unlink(missing_ok=True)

    def dead_letter(self, item: OutboxItem, reason: str) -> str:
        folder = self.directory / DEAD_LETTER
        folder.mkdir(exist_ok=True)
        (folder / f"{item.name}.reason.txt").write_text(reason + "\n", encoding="utf-8")
        self._claimed(item).rename(folder / item.name)
        return str(folder / item.name)

    def close(self) -> None:
        pass


class NoOutbox:
    """For runs that must not touch the outbox (``collect --dry-run``): nothing to replay, nowhere to defer."""

    location = "(no outbox)"

    def put(self, table: Table, rows: Sequence[dict[str, Any]], now: datetime) -> None:
        raise SinkError("this run keeps no outbox", len(rows))

    def items(self) -> list[OutboxItem]:
        return []

    def claim(self, item: OutboxItem) -> bytes | None:
        return None

    def release(self, item: OutboxItem) -> None:
        pass

    def delete(self, item: OutboxItem) -> None:
        pass

    def dead_letter(self, item: OutboxItem, reason: str) -> str:
        return self.location

    def close(self) -> None:
        pass


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
    outbox_errors: int = 0  # outbox operations that failed (listing, claiming, releasing, deleting): logged, survived


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

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
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
        until = until or self.deadline.cut(self.deadline.reserve)
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
        if self.stats.replayed:
            log.info("Delivered %d row(s) kept in the outbox by earlier runs", self.stats.replayed)
        return self.stats

    def _replay_one(self, item: OutboxItem) -> _Replayed:
        try:
            data = self.outbox.claim(item)
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
            item.name, item.rows, item.table.table, reason, where,
        )

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
