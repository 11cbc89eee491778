"""Nothing lost: rows a sink could not deliver after its own retries are kept durably in an outbox and delivered
first by the next run, exactly once.

- ``FileOutbox``: a folder (beside the ``file`` sink's files for local runs).
- ``BlobOutbox`` (shared/blob_outbox.py): a container in the Function's own storage account, identity-based.

Exactly once: an item is claimed before it is replayed (a file renamed, a blob leased), so two runs never replay
the same item, and it is deleted as soon as its delivery succeeds, so it is never replayed twice. Bounded: items
past the age limit, and the oldest items past the row cap, are dropped at the start of a run, with a logged count.
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
from pathlib import Path
from typing import Any, Protocol

from shared.errors import SinkError
from shared.ports import Sink
from shared.records import KEYS_TABLE, RUNS_TABLE, Table
from shared.redaction import redact

log = logging.getLogger(__name__)

TABLES = {KEYS_TABLE.file_name: KEYS_TABLE, RUNS_TABLE.file_name: RUNS_TABLE}
# <UTC time>-<row count>-<unique>-<table file name>: sortable by age, countable without reading the body.
_ITEM_NAME = re.compile(r"^(\d{8}T\d{6}\d{6}Z)-(\d+)-([0-9a-f]{32})-(.+\.jsonl)$")


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
    created = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    return OutboxItem(name, created, int(match.group(2)), TABLES[match.group(4)])


def encode_rows(rows: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in rows).encode()


def decode_rows(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


class Outbox(Protocol):
    """Durable storage of undelivered rows."""

    location: str

    def put(self, table: Table, rows: Sequence[dict[str, Any]], now: datetime) -> None: ...

    def items(self) -> list[OutboxItem]: ...  # oldest first

    def claim(self, item: OutboxItem) -> list[dict[str, Any]] | None: ...  # None: another run has it

    def release(self, item: OutboxItem) -> None: ...  # delivery failed: keep it for the next run

    def delete(self, item: OutboxItem) -> None: ...  # delivered or dropped

    def close(self) -> None: ...


# A claimed file outbox item whose claim is older than this was left by a run that died while replaying it (killed,
# Ctrl-C past the handler, power lost): it is put back for replay, as an expired blob lease is. Far longer than
# replaying one item takes (an item holds one delivery batch) and than the Function's 30-minute timeout.
CLAIM_EXPIRY = timedelta(minutes=30)


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
        found = (parse_item_name(p.name) for p in self.directory.iterdir())
        return sorted((i for i in found if i is not None), key=lambda i: i.name)

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

    def claim(self, item: OutboxItem) -> list[dict[str, Any]] | None:
        claimed = self.directory / f".{item.name}.claimed"
        try:
            (self.directory / item.name).rename(claimed)  # atomic: exactly one run wins
        except FileNotFoundError:
            return None
        os.utime(claimed)  # the claim's time, for _reclaim_abandoned (a rename keeps the item's own mtime)
        return decode_rows(claimed.read_bytes())

    def release(self, item: OutboxItem) -> None:
        (self.directory / f".{item.name}.claimed").rename(self.directory / item.name)

    def delete(self, item: OutboxItem) -> None:
        for path in (self.directory / f".{item.name}.claimed", self.directory / item.name):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        pass


class NoOutbox:
    """For runs that must not touch the outbox (``collect --dry-run``): nothing to replay, nowhere to defer."""

    location = "(no outbox)"

    def put(self, table: Table, rows: Sequence[dict[str, Any]], now: datetime) -> None:
        raise SinkError("this run keeps no outbox", len(rows))

    def items(self) -> list[OutboxItem]:
        return []

    def claim(self, item: OutboxItem) -> list[dict[str, Any]] | None:
        return None

    def release(self, item: OutboxItem) -> None:
        pass

    def delete(self, item: OutboxItem) -> None:
        pass

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


@dataclass
class DeliveryStats:
    deferred: int = 0  # rows kept in the outbox this run
    last_error: str = ""  # why the sink refused the last rows kept (secret-free: the sinks' own messages)
    replayed: int = 0  # rows of earlier runs delivered this run
    dropped: int = 0  # rows dropped from the outbox past its age or size limit


class ReliableSink:
    """Wraps a sink: rows it cannot deliver go to the outbox instead of failing the run, and earlier rows in the
    outbox are delivered first (``replay``) at the start of the next run."""

    def __init__(self, sink: Sink, outbox: Outbox, max_rows: int, max_age: timedelta) -> None:
        self.inner = sink
        self.name = sink.name
        self.outbox = outbox
        self.max_rows = max_rows
        self.max_age = max_age
        self.stats = DeliveryStats()

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        try:
            _send(self.inner, table, rows)
        except SinkError as exc:
            try:
                self.outbox.put(table, rows, datetime.now(UTC))
            except (OSError, SinkError) as outbox_exc:  # the outbox is down too: now, and only now, rows are lost
                raise SinkError(
                    f"{exc}; and the outbox at {self.outbox.location} could not keep them either: {outbox_exc}",
                    len(rows),
                ) from None
            self.stats.deferred += len(rows)
            self.stats.last_error = str(exc)
            log.warning("%d %s row(s) kept in the outbox for the next run: %s", len(rows), table.table, exc)

    def replay(self, now: datetime) -> DeliveryStats:
        """Prune the outbox to its bounds, then deliver what is left, oldest first. Stops at the first failure
        (the sink is still down): what is left stays for the next run."""
        try:
            items = self.outbox.items()
        except (OSError, SinkError) as exc:  # an unreadable outbox must not stop this run's collection
            log.error("Outbox at %s cannot be read; its records wait for a later run: %s", self.outbox.location, exc)
            return self.stats
        keep: list[OutboxItem] = []
        for item in items:
            if now - item.created > self.max_age:
                self._drop(item, "older than the outbox's age limit")
            else:
                keep.append(item)
        total = sum(i.rows for i in keep)
        while keep and total > self.max_rows:
            oldest = keep.pop(0)
            total -= oldest.rows
            self._drop(oldest, "over the outbox's size limit")
        for item in keep:
            try:
                rows = self.outbox.claim(item)
                if rows is None:
                    continue  # another run is replaying it
                try:
                    _send(self.inner, item.table, rows)
                except SinkError as exc:
                    self.outbox.release(item)
                    log.warning("Outbox replay stopped, %s is still failing: %s", self.inner.name, exc)
                    break
                except BaseException:  # interrupted (Ctrl-C, shutdown): hand the item back before stopping
                    self.outbox.release(item)
                    raise
                self.outbox.delete(item)
            except (OSError, SinkError) as exc:
                log.error("Outbox replay stopped, the outbox at %s failed: %s", self.outbox.location, exc)
                break
            self.stats.replayed += len(rows)
        if self.stats.replayed:
            log.info("Delivered %d row(s) kept in the outbox by earlier runs", self.stats.replayed)
        return self.stats

    def _drop(self, item: OutboxItem, why: str) -> None:
        self.outbox.delete(item)
        self.stats.dropped += item.rows
        log.warning("Dropped %d undelivered %s row(s) from %s: %s", item.rows, item.table.table, item.created, why)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.outbox.close()

