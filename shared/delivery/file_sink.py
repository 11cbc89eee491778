"""The ``file`` sink: one JSON Lines file per table in ``FILE_SINK_DIR``, appended run after run."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
        text = "".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in rows)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # One write per batch, flushed and synced; a crash mid-write can still leave a torn last line.
            with open(self.path(table), "a", encoding="utf-8") as handle:
                handle.write(self._end_torn_line(self.path(table)) + text)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise SinkError(
                f"file sink: cannot write {self.path(table)} ({exc.strerror}); check FILE_SINK_DIR", len(rows)
            ) from None

    @staticmethod
    def _end_torn_line(path: Path) -> str:
        """A file that does not end with a newline ends with a line torn by a crash mid-write: end it, so that the
        torn fragment stays a line of its own (readers skip it; it is kept for inspection) and the first row of this
        batch is not glued onto it."""
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell() == 0:
                    return ""
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) == b"\n":
                    return ""
        except FileNotFoundError:
            return ""
        log.warning("%s ends with a torn line (a run stopped mid-write); it is left as a line of its own, which "
                    "readers skip", path)
        return "\n"

    def close(self) -> None:
        pass
