"""Run the product's KQL locally: the records (JSON Lines rows, as the file sink writes them) loaded into DuckDB
tables typed from shared/records.py, and a query executed by duckdb-kql (a KQL-to-DuckDB translator that refuses
loudly, with KqlUnsupportedError, what it does not support). Results come back as rows of Python values with
datetimes in UTC, ready to compare with what shared/report.py and shared/cli.py compute from the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb_kql

from shared.records import KEYS_TABLE, RUNS_TABLE, columns

Row = dict[str, Any]

# Log Analytics column type -> DuckDB column type.
DUCKDB_TYPES = {"string": "VARCHAR", "int": "INTEGER", "boolean": "BOOLEAN", "real": "DOUBLE",
                "datetime": "TIMESTAMPTZ"}


class Workspace:
    """An in-memory stand-in for the Log Analytics workspace: the two tables, filled with rows."""

    def __init__(self, key_rows: Sequence[Row], run_rows: Sequence[Row]) -> None:
        self.connection = duckdb_kql.connect()
        for table, rows in ((KEYS_TABLE, key_rows), (RUNS_TABLE, run_rows)):
            cols = columns(table.record_type)
            declared = ", ".join(f'"{name}" {DUCKDB_TYPES[kind]}' for name, kind in cols)
            self.connection.execute(f'CREATE TABLE "{table.table}" ({declared})')
            placeholders = ", ".join("?" for _ in cols)
            insert = f'INSERT INTO "{table.table}" VALUES ({placeholders})'  # noqa: S608 - our table names, bound values
            self.connection.executemany(insert, [[row.get(n) for n, _ in cols] for row in rows])

    def query(self, text: str) -> list[Row]:
        """The result rows of a KQL text; KqlUnsupportedError for what the engine cannot translate."""
        relation = duckdb_kql.kql(self.connection, text)
        names = relation.columns
        return [{name: _python(value) for name, value in zip(names, values, strict=True)}
                for values in relation.fetchall()]

    def close(self) -> None:
        self.connection.close()


def _python(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value
