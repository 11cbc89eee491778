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
count. The dead-letter place keeps at most ``DEAD_LETTER_MAX_ITEMS`` items: the oldest go, counted.

Nothing in the outbox is trusted for more than it holds: an item's row count comes from its name, but never more
than its size allows (``MIN_ROW_BYTES`` a row), and is checked against its content when it is read (an item whose
content disagrees with its name was not written by this collector: it is moved aside). The file outbox follows no
symbolic link and reads only regular files, and writes its items 0600 in a 0700 folder.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from shared import jsonl
from shared.errors import SinkError
from shared.records import TABLES as ALL_TABLES
from shared.records import Table

log = logging.getLogger(__name__)

TABLES = {table.file_name: table for table in ALL_TABLES}
# <UTC time>-<row count>-<unique>-<table file name>: sortable by age, countable without reading the body.
_ITEM_NAME = re.compile(r"([0-9]{8}T[0-9]{12}Z)-([0-9]{1,9})-([0-9a-f]{32})-(.+\.jsonl)", re.ASCII)
# Where unreadable items are moved: a folder inside the file outbox, a name prefix in the blob container.
DEAD_LETTER = "dead-letter"
# A name whose time is later than now by more than this was not written by a sane clock: it could never age out.
CLOCK_SKEW = timedelta(hours=1)
# An item name whose time cannot be parsed is treated as one from the future: moved aside, never replayed blindly.
_NO_VALID_TIME = datetime.max.replace(tzinfo=UTC)
# The fewest bytes a row takes in an item ("{}" and its line end): an item is trusted for no more rows than its size
# allows, whatever its name says (one planted item named as 999,999,999 rows made the row cap drop every real row).
MIN_ROW_BYTES = 3
# Unreadable items kept aside, at most: the oldest beyond it are removed (counted, logged): the place stays bounded.
DEAD_LETTER_MAX_ITEMS = 100


@dataclass(frozen=True)
class OutboxItem:
    name: str
    created: datetime
    rows: int  # what the outbox trusts: the name's count, at most what the item's size can hold
    table: Table

    @property
    def named_rows(self) -> int:
        """The row count the item's name claims: its content must hold exactly these (checked when it is read)."""
        match = _ITEM_NAME.match(self.name)
        return int(match.group(2)) if match else 0

    def within(self, size: int) -> OutboxItem:
        """This item trusted for no more rows than ``size`` bytes can hold."""
        return replace(self, rows=min(self.rows, size // MIN_ROW_BYTES))


def item_name(table: Table, rows: int, now: datetime) -> str:
    return f"{now.astimezone(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{rows}-{uuid.uuid4().hex}-{table.file_name}"


def parse_item_name(name: str) -> OutboxItem | None:
    match = _ITEM_NAME.fullmatch(name)
    if not match or match.group(4) not in TABLES:
        return None
    try:
        created = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:  # e.g. month 13: an item, but one whose age is unknown
        created = _NO_VALID_TIME
    return OutboxItem(name, created, int(match.group(2)), TABLES[match.group(4)])


def encode_rows(rows: Sequence[dict[str, Any]]) -> bytes:
    """An item's body: the package's one JSON Lines encoding (shared/jsonl.py), which no character from AWS can
    break (a tag value with U+2028 or a NUL stays inside its line)."""
    return jsonl.encode(rows)


class UnreadableItemError(ValueError):
    """An outbox item's body is not UTF-8 JSON lines of objects."""


def decode_rows(data: bytes) -> list[dict[str, Any]]:
    """An item's rows; every line must be whole (an item is written whole or not at all)."""
    try:
        return jsonl.decode(data)
    except jsonl.JsonLinesError as exc:
        raise UnreadableItemError(f"not JSON lines of objects ({exc})") from None


class Outbox(Protocol):
    """Durable storage of undelivered rows."""

    location: str

    def put(self, table: Table, rows: Sequence[dict[str, Any]], now: datetime) -> None: ...

    def items(self) -> list[OutboxItem]: ...  # oldest first

    def claim(self, item: OutboxItem) -> bytes | None: ...  # the item's body; None: another run has it

    def release(self, item: OutboxItem) -> None: ...  # delivery failed: keep it for the next run

    def delete(self, item: OutboxItem) -> None: ...  # delivered or dropped

    def dead_letter(self, item: OutboxItem, reason: str) -> str: ...  # move a claimed item aside; returns where

    def trim_dead_letter(self, keep: int) -> int: ...  # remove the oldest items set aside beyond ``keep``; how many

    def close(self) -> None: ...


# A claimed file outbox item whose claim is older than this was left by a run that died while replaying it (killed,
# Ctrl-C past the handler, power lost): it is put back for replay, as an expired blob lease is. Far longer than
# replaying one item takes (an item holds one delivery batch) and than the Function's 30-minute timeout.
CLAIM_EXPIRY = timedelta(minutes=30)
# A ``.partial`` file older than this was left by a run that died while writing it: never a whole item, removed.
PARTIAL_EXPIRY = timedelta(minutes=10)


class FileOutbox:
    """A folder. It follows no symbolic link (items are opened with O_NOFOLLOW, and only regular files are read),
    and keeps its items to its own user: files 0600, folders 0700."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.location = str(self.directory)

    def put(self, table: Table, rows: Sequence[dict[str, Any]], now: datetime) -> None:
        _own_folder(self.directory, parents=True)
        name = item_name(table, len(rows), now)
        partial = self.directory / f".{name}.partial"
        with _create(partial) as handle:
            handle.write(encode_rows(rows))
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(self.directory / name)  # atomic: an item is whole or absent

    def items(self) -> list[OutboxItem]:
        if not self.directory.is_dir() or self.directory.is_symlink():
            return []
        self._reclaim_abandoned()
        self._remove_partials()
        found = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                item = parse_item_name(entry.name)
                if item is not None:  # a link or a device: trusted for no row, moved aside when claimed
                    size = entry.stat(follow_symlinks=False).st_size if entry.is_file(follow_symlinks=False) else 0
                    found.append(item.within(size))
        return sorted(found, key=lambda i: i.name)

    def _remove_partials(self) -> None:
        expired = datetime.now(UTC).timestamp() - PARTIAL_EXPIRY.total_seconds()
        for path in self.directory.glob(".*.partial"):
            try:
                if path.lstat().st_mtime < expired:
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
                if parse_item_name(name) is None or path.lstat().st_mtime > expired:
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
            (self.directory / item.name).rename(claimed)  # atomic: exactly one run wins (a link moves as a link)
        except FileNotFoundError:
            return None
        try:
            fd = os.open(claimed, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:  # ELOOP: a symbolic link, never followed
            raise UnreadableItemError(f"not a regular file ({exc.strerror}): not read") from None
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # a FIFO or a device
                raise UnreadableItemError("not a regular file: not read")
            os.utime(handle.fileno())  # the claim's time, for _reclaim_abandoned (a rename keeps the item's own mtime)
            return handle.read()

    def release(self, item: OutboxItem) -> None:
        self._claimed(item).rename(self.directory / item.name)

    def delete(self, item: OutboxItem) -> None:
        for path in (self._claimed(item), self.directory / item.name):
            path.unlink(missing_ok=True)

    def dead_letter(self, item: OutboxItem, reason: str) -> str:
        folder = self.directory / DEAD_LETTER
        _own_folder(folder)
        with _create(folder / f"{item.name}.reason.txt", replace_existing=True) as handle:
            handle.write((reason + "\n").encode("utf-8", "replace"))
        self._claimed(item).rename(folder / item.name)
        return str(folder / item.name)

    def trim_dead_letter(self, keep: int) -> int:
        folder = self.directory / DEAD_LETTER
        if not folder.is_dir() or folder.is_symlink():
            return 0
        kept = sorted(p.name for p in folder.iterdir() if parse_item_name(p.name) is not None)
        for name in kept[: max(0, len(kept) - keep)]:  # oldest first: names start with their time
            for path in (folder / name, folder / f"{name}.reason.txt"):
                path.unlink(missing_ok=True)  # a link is removed, never what it points to
        return max(0, len(kept) - keep)

    def close(self) -> None:
        pass


def _own_folder(path: Path, parents: bool = False) -> None:
    """A folder of the outbox: made 0700; one that is a symbolic link is refused (never followed)."""
    path.mkdir(mode=0o700, parents=parents, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise SinkError(f"outbox {path} is a symbolic link or not a folder: the outbox follows no link; make it a "
                        "folder of its own", 0)
    if stat.S_IMODE(path.lstat().st_mode) & 0o077:  # made by an earlier version, or by hand: only its user may read
        path.chmod(0o700)


def _create(path: Path, replace_existing: bool = False) -> io.BufferedWriter:
    """A new file, 0600, opened for writing; an existing name (or a planted link) is refused, not followed."""
    if replace_existing:
        path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "wb")


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

    def trim_dead_letter(self, keep: int) -> int:
        return 0

    def close(self) -> None:
        pass
