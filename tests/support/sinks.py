"""In-memory sinks for tests: one that is down on demand, one that keeps what it got."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.errors import SinkError
from shared.records import Table


class FlakySink:
    """A sink that is down while ``down`` is set, and records what it delivered."""

    name = "flaky"

    def __init__(self) -> None:
        self.down = False
        self.delivered: list[tuple[str, dict[str, Any]]] = []

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if self.down:
            raise SinkError("flaky sink: 503 Service Unavailable after retries", len(rows))
        self.delivered += [(table.table, row) for row in rows]

    def close(self) -> None:
        pass


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"AccessKeyFingerprint": f"{i:016x}", "UserName": "jürgen"} for i in range(start, start + n)]


class ListSink:
    """Keeps every call: ``calls`` is (table, rows) per ``send``; ``fail_on`` makes sends of one table fail."""

    name = "list"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []
        self.fail_on: str | None = None

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if table.table == self.fail_on:
            raise SinkError(f"list sink: {table.table} refused", len(rows))
        self.calls.append((table.table, list(rows)))

    def rows(self, table: Table) -> list[dict[str, Any]]:
        return [row for name, rows in self.calls if name == table.table for row in rows]

    def close(self) -> None:
        pass
