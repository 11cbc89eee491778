"""The one JSON Lines encoding of the package: every file of rows (the file sink, the outbox, the blob outbox, an
account's spool) is written by ``encode_line`` and read back by ``decode`` or ``read_rows``.

Text from AWS is hostile (a tag value is whatever anyone with ``iam:TagUser`` wrote), so nothing in it may be able to
break the framing: a row is ``json.dumps(..., ensure_ascii=True)``, which escapes every character that any reader
could take for a line end (``\\n``, ``\\r``, U+2028, U+2029, U+0085, form feeds), NUL and every other control
character, and lone surrogates (which UTF-8 cannot even encode). A line is therefore pure ASCII, and its only line
end is the ``\\n`` after it. Reading splits on ``b"\\n"`` and nothing else (never ``str.splitlines``, which also
splits at U+2028 and seven other characters).

A file written by appending (the file sink) can end with a line torn by a crash mid-write: readers of such files
skip exactly that one torn last line (logged). A line that does not parse anywhere else was not torn by a crash: it
is an error naming the file and the line, never skipped silently.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any

log = logging.getLogger(__name__)

Row = dict[str, Any]


class JsonLinesError(ValueError):
    """A line that is not one UTF-8 JSON object, where no torn line can be (the middle of a file, an outbox item)."""


def dumps(row: Row) -> str:
    """One row as compact JSON, ASCII only (every other character escaped): safe inside any framing."""
    return json.dumps(row, ensure_ascii=True, separators=(",", ":"))


def encode_line(row: Row) -> str:
    """One row as one line: ASCII only, ending with its one ``\\n``."""
    return dumps(row) + "\n"


def encode(rows: Iterable[Row]) -> bytes:
    """Rows as JSON Lines bytes."""
    return "".join(encode_line(row) for row in rows).encode("ascii")


def decode_line(line: bytes | str, number: int = 1, source: str = "") -> Row:
    """One line (with or without its ``\\n``) as a row; ``JsonLinesError`` naming ``source`` and the line when it is
    not a UTF-8 JSON object."""
    where = f"{source + ': ' if source else ''}line {number}"
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonLinesError(f"{where}: not UTF-8 (byte {exc.start})") from None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise JsonLinesError(f"{where}: not JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(row, dict):
        raise JsonLinesError(f"{where}: JSON, but not an object")
    return row


def _rows(lines: Iterable[bytes], torn_last_line: bool, source: str) -> Iterator[Row]:
    torn: JsonLinesError | None = None  # a line that did not parse: allowed only as the last one
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if torn is not None:  # a line follows the broken one: it was not torn by a crash
            raise torn
        try:
            yield decode_line(line, number, source)
        except JsonLinesError as exc:
            if not torn_last_line:
                raise
            torn = exc
    if torn is not None:
        log.warning("%s; it is the last line: a write torn by a crash, skipped", torn)


def decode(data: bytes, *, torn_last_line: bool = False, source: str = "") -> list[Row]:
    """Every row of ``data``. ``torn_last_line``: a last line that does not parse is skipped (a file appended to by a
    writer that may have crashed); otherwise every line must parse."""
    return list(_rows(data.split(b"\n"), torn_last_line, source))


def read_rows(path: str | os.PathLike[str]) -> list[Row]:
    """Every row of a JSON Lines file that a writer appends to, skipping exactly one torn last line; a line that
    does not parse anywhere else raises ``JsonLinesError`` naming the file and the line."""
    with open(path, "rb") as handle:  # binary: a line ends at b"\n" and nowhere else
        try:
            return list(_rows(handle, True, os.fspath(path)))
        except JsonLinesError as exc:
            raise JsonLinesError(
                f"{exc}; a crash mid-write tears only a file's last line, so this line was written by something else: "
                "repair or remove it, then read the file again"
            ) from None


def iter_rows(handle: IO[bytes], source: str = "") -> Iterator[Row]:
    """The rows of an open binary file, one at a time, each line required whole (a spool this run wrote)."""
    return _rows(handle, False, source)
