"""The ``file`` sink: one JSON Lines file per table in ``FILE_SINK_DIR``, appended run after run."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.errors import SinkError
from shared.records import Table


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
            # One write per batch, flushed and synced: a crash leaves whole lines, never half a batch's worth.
            with open(self.path(table), "a", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise SinkError(
                f"file sink: cannot write {self.path(table)} ({exc.strerror}); check FILE_SINK_DIR", len(rows)
            ) from None

    def close(self) -> None:
        pass
