"""A run that replays the outbox in a process of its own, so that a test can kill it (SIGKILL) mid-replay.

    python -m tests.support.replay_child <delivered.jsonl> <marker> <accept|hang> file <folder>
    python -m tests.support.replay_child <delivered.jsonl> <marker> <accept|hang> blob <url> <container> <ca> <lease s>

The sink of this run writes what it accepts to <delivered.jsonl> (synced), then, on the first item, touches <marker>
and hangs: ``accept`` after taking the rows (the kill falls between the sink's accept and the outbox's delete),
``hang`` before taking them (the kill falls inside an upload).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.delivery.outbox import FileOutbox, Outbox
from shared.delivery.reliable_sink import ReliableSink
from shared.records import Table


class HangingSink:
    name = "hanging"

    def __init__(self, delivered: Path, marker: Path, accept: bool) -> None:
        self.delivered, self.marker, self.accept = delivered, marker, accept

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if self.accept:
            with open(self.delivered, "a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps(r) + "\n" for r in rows))
                handle.flush()
                os.fsync(handle.fileno())
        self.marker.touch()
        time.sleep(600)  # killed here

    def close(self) -> None:
        pass


def main(argv: list[str]) -> None:
    delivered, marker, mode, kind = Path(argv[0]), Path(argv[1]), argv[2], argv[3]
    outbox: Outbox
    if kind == "file":
        outbox = FileOutbox(argv[4])
    else:
        from shared.composition import ClientOptions
        from shared.delivery.blob_outbox import BlobOutbox
        from tests.support.azurite import StorageTokenCredential

        outbox = BlobOutbox(argv[4], argv[5], StorageTokenCredential(), ClientOptions(ca_bundle=argv[6]),
                            lease_seconds=int(argv[7]))
    sink = HangingSink(delivered, marker, accept=mode == "accept")
    ReliableSink(sink, outbox, 1_000_000, timedelta(hours=48)).replay(datetime.now(UTC))


if __name__ == "__main__":
    main(sys.argv[1:])
