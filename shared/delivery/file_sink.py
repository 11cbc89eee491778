"""The ``file`` sink: one JSON Lines file per table in ``FILE_SINK_DIR``, appended run after run."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from shared import jsonl
from shared.errors import SinkError
from shared.records import Table

log = logging.getLogger(__name__)


class FileSink:
    name = "file"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, table: Table) -> Path:
        return self.directory / table.file_name

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        text = "".join(jsonl.encode_line(row) for row in rows)  # the package's one encoding: ASCII, one line a row
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._set_torn_line_aside(self.path(table))
            # One write per batch, flushed and synced; a crash mid-write can still leave a torn last line.
            with open(self.path(table), "a", encoding="ascii", newline="\n") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise SinkError(
                f"file sink: cannot write {self.path(table)} ({exc.strerror}); check FILE_SINK_DIR", len(rows)
            ) from None

    @staticmethod
    def _set_torn_line_aside(path: Path) -> None:
        """A file that does not end with a newline ends with a line torn by a crash mid-write. Readers skip a torn
        line only where a crash leaves it, last (shared/jsonl.py), so before appending it is moved out of the file,
        to ``<file>.torn`` beside it (kept for inspection), and the file ends with its last whole row again."""
        try:
            with open(path, "r+b") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - 1))
                if size == 0 or handle.read(1) == b"\n":
                    return
                keep = _end_of_last_line(handle, size)
                handle.seek(keep)
                torn = handle.read()
                with open(path.with_name(path.name + ".torn"), "ab") as aside:  # kept first, then cut
                    aside.write(torn + b"\n")
                handle.truncate(keep)
        except FileNotFoundError:
            return
        log.warning("%s ended with a line torn by a crash mid-write (%d bytes); moved to %s.torn, kept for inspection",
                    path, len(torn), path.name)

    def close(self) -> None:
        pass


def _end_of_last_line(handle: BinaryIO, size: int, block: int = 65536) -> int:
    """The offset just after the last b"\\n" of an open file of ``size`` bytes (0 when there is none)."""
    end = size
    while end > 0:
        start = max(0, end - block)
        handle.seek(start)
        found = handle.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0
