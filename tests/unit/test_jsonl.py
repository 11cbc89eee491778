"""The package's one JSON Lines encoding (shared/jsonl.py) against hostile text from AWS, and every reader of rows:
a tag value cannot break an outbox item's framing (F1), and the command line reads the torn last line the file sink
keeps (F7), but not a line broken anywhere else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared import jsonl
from shared.delivery.file_sink import FileSink
from shared.delivery.outbox import FileOutbox, decode_rows, encode_rows
from shared.delivery.reliable_sink import ReliableSink
from shared.insight.snapshot import read_jsonl
from shared.records import KEYS_TABLE
from shared.tools.cli import main, read_run_rows
from tests.support.sinks import FlakySink

# What anyone with iam:TagUser can put in a tag value, and what else a reader could take for a line end.
HOSTILE = {
    "line separator": "alice\u2028@example.com",
    "paragraph separator": "alice\u2029@example.com",
    "NUL": "alice\x00@example.com",
    "CR LF": "alice\r\n@example.com",
    "NEL and form feed": "alice\x85\x0c\x1c\x1d\x1e@example.com",
    "lone surrogates": "alice\ud800@example.com\udfff",
    "64 KB": "o" * 65536 + "\u2028" + "w" * 100,
}


def hostile_rows() -> list[dict[str, Any]]:
    return [{"RunId": "r1", "AccessKeyFingerprint": f"{n:016x}", "Owner": value, "UserName": "jürgen"}
            for n, value in enumerate(HOSTILE.values())]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_hostile_value_stays_inside_its_one_ascii_line(name: str) -> None:
    row = {"Owner": HOSTILE[name], "UserName": "山田"}
    data = jsonl.encode([row, row])
    assert data.isascii() and data.count(b"\n") == 2 and data.endswith(b"\n")
    assert len(data.decode("ascii").splitlines()) == 2  # even str.splitlines finds only the two line ends
    assert jsonl.decode(data) == [row, row]


def test_an_outbox_item_holding_hostile_tag_values_is_replayed_exactly(tmp_path: Path) -> None:
    """F1: an Owner tag with U+2028 made the item unreadable after a sink outage (dead-lettered, never delivered)."""
    rows = hostile_rows()
    assert decode_rows(encode_rows(rows)) == rows
    sink = FlakySink()
    sink.down = True
    ReliableSink(sink, FileOutbox(tmp_path), 1000, timedelta(hours=48)).send(KEYS_TABLE, rows)
    sink.down = False
    stats = ReliableSink(sink, FileOutbox(tmp_path), 1000, timedelta(hours=48)).replay(datetime.now(UTC))
    assert (stats.replayed, stats.dead_lettered) == (len(rows), 0)
    assert [row for _, row in sink.delivered] == rows


def test_the_file_sink_and_its_readers_keep_hostile_values_whole(tmp_path: Path) -> None:
    rows = hostile_rows()
    FileSink(tmp_path).send(KEYS_TABLE, rows)
    path = tmp_path / KEYS_TABLE.file_name
    assert path.read_bytes().isascii()
    assert read_jsonl(path) == rows == read_run_rows(path, "r1")


def test_a_torn_last_line_is_skipped_by_every_reader_and_a_whole_last_row_is_kept(tmp_path: Path) -> None:
    """F7: the command line crashed on the torn last line the file sink keeps."""
    path = tmp_path / KEYS_TABLE.file_name
    whole = [{"RunId": "r1", "N": n} for n in range(3)]
    path.write_bytes(jsonl.encode(whole) + b'{"RunId": "r1", "N": 3, "Owner": "\xe5\xb1')  # cut mid-character
    assert read_run_rows(path, "r1") == whole == read_jsonl(path)
    path.write_bytes(jsonl.encode(whole)[:-1])  # the last row whole, only its line end missing: kept
    assert read_run_rows(path, "r1") == whole


def test_a_broken_line_in_the_middle_fails_clearly_naming_the_file_and_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / KEYS_TABLE.file_name).write_bytes(jsonl.encode([{"RunId": "r1"}]) + b'{"RunId": "r1", "Sta\n'
                                                  + jsonl.encode([{"RunId": "r2"}]))
    with pytest.raises(jsonl.JsonLinesError, match=r"AwsIamAccessKeys\.jsonl: line 2: not JSON .*repair or remove"):
        read_jsonl(tmp_path / KEYS_TABLE.file_name)
    (tmp_path / "AwsIamKeyCollectorRuns.jsonl").write_bytes(jsonl.encode([{"RunId": "r1"}]))
    monkeypatch.delenv("EXCEPTIONS_FILE", raising=False)
    assert main(["report", "--in", str(tmp_path)]) == 1  # the command line says so, no traceback
    assert "line 2: not JSON" in capsys.readouterr().err


def test_a_torn_line_the_file_sink_finds_is_moved_aside_not_left_in_the_middle(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    sink.send(KEYS_TABLE, [{"RunId": "r1"}])
    path = sink.path(KEYS_TABLE)
    with open(path, "ab") as handle:
        handle.write(b'{"RunId": "r1", "Owner": "\xe5\xb1')  # a crash mid-write
    sink.send(KEYS_TABLE, [{"RunId": "r2"}])
    assert [r["RunId"] for r in jsonl.read_rows(path)] == ["r1", "r2"]  # no broken line left in the middle
    assert path.with_name(path.name + ".torn").read_bytes() == b'{"RunId": "r1", "Owner": "\xe5\xb1\n'  # kept

