"""Nothing lost: rows a sink could not deliver after its own retries are kept durably in an outbox and delivered
first by the next run, at least once.

- ``FileOutbox``: a folder (beside the ``file`` sink's files for local runs).
- ``BlobOutbox`` (shared/delivery/blob_outbox.py): a container in the Function's own storage account, identity-based.

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
from pathlib import Path
from typing import Any, Protocol

from shared.errors import SinkError
from shared.records import TABLES as ALL_TABLES
from shared.records import Table

log = logging.getLogger(__name__)

TABLES = {table.file_name: table for table in ALL_TABLES}
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
