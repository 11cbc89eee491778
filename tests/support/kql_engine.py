"""Run the product's KQL locally: the records (JSON Lines rows, as the file sink writes them) loaded into DuckDB
tables typed from shared/records.py, and a query executed by duckdb-kql (a KQL-to-DuckDB translator that refuses
loudly, with KqlUnsupportedError, what it does not support). Results come back as rows of Python values with
datetimes in UTC, ready to compare with what shared/insight/report.py and shared/tools/cli.py compute from the same
rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb_kql

from shared.records import CREDENTIALS_TABLE, KEYS_TABLE, RUNS_TABLE, columns

Row = dict[str, Any]

# Log Analytics / Kusto column type -> DuckDB column type.
DUCKDB_TYPES = {"string": "VARCHAR", "int": "INTEGER", "long": "BIGINT", "boolean": "BOOLEAN", "bool": "BOOLEAN",
                "real": "DOUBLE", "datetime": "TIMESTAMPTZ", "guid": "VARCHAR", "dynamic": "JSON"}
# Tables the product reads but does not write (AWSCloudTrail): their columns, from Azure Monitor's table reference.
SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "schemas"


class Workspace:
    """An in-memory stand-in for the Log Analytics workspace: the collector's tables, filled with rows."""

    def __init__(
        self, key_rows: Sequence[Row], run_rows: Sequence[Row], other_tables: dict[str, Sequence[Row]] | None = None,
        credential_rows: Sequence[Row] = (),
    ) -> None:
        self.connection = duckdb_kql.connect()
        for table, rows in ((KEYS_TABLE, key_rows), (RUNS_TABLE, run_rows), (CREDENTIALS_TABLE, credential_rows)):
            self._create(table.table, columns(table.record_type), rows)
        for schema_file in sorted(SCHEMAS.glob("*.json")):
            schema = json.loads(schema_file.read_text(encoding="utf-8"))
            self._create(schema["table"], [tuple(c) for c in schema["columns"]],
                         (other_tables or {}).get(schema["table"], []))

    def _create(self, table: str, cols: Sequence[tuple[str, str]], rows: Sequence[Row]) -> None:
        declared = ", ".join(f'"{name}" {DUCKDB_TYPES[kind]}' for name, kind in cols)
        self.connection.execute(f'CREATE TABLE "{table}" ({declared})')
        if rows:
            placeholders = ", ".join("?" for _ in cols)
            insert = f'INSERT INTO "{table}" VALUES ({placeholders})'  # noqa: S608 - our table names, bound values
            self.connection.executemany(insert, [[row.get(n) for n, _ in cols] for row in rows])

    def columns(self) -> set[str]:
        """Every column of every table of the workspace."""
        rows = self.connection.execute("SELECT column_name FROM information_schema.columns").fetchall()
        return {name for (name,) in rows}

    def query(self, text: str) -> list[Row]:
        """The result rows of a KQL text; KqlUnsupportedError for what the engine cannot translate.

        ``column_ifexists("Name", default)``, which the engine lacks, is resolved first as Log Analytics does it: the
        column where it exists (here: a column of any of the workspace's tables), else the default."""
        relation = duckdb_kql.kql(self.connection, resolve_column_ifexists(text, self.columns()))
        names = relation.columns
        return [{name: _python(value) for name, value in zip(names, values, strict=True)}
                for values in relation.fetchall()]

    def close(self) -> None:
        self.connection.close()


COLUMN_IFEXISTS = re.compile(r'column_ifexists\(\s*"(\w+)"\s*,\s*([^()]+?)\s*\)')


def resolve_column_ifexists(text: str, columns: set[str]) -> str:
    return COLUMN_IFEXISTS.sub(lambda m: m[1] if m[1] in columns else m[2], text)


def _python(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value
