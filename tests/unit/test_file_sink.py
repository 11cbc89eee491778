"""The file sink and the report reader survive a line torn by a crash mid-write."""

from __future__ import annotations

import json
from pathlib import Path

from shared.delivery.file_sink import FileSink
from shared.insight.report import write_report
from shared.insight.snapshot import read_jsonl
from shared.records import KEYS_TABLE, RUNS_TABLE
from tests.support.rows import T0, key, run


def test_a_torn_last_line_does_not_corrupt_the_next_batch_and_the_report_still_reads(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    sink.send(KEYS_TABLE, [key("r1", T0, "111111111111", "jürgen")])
    path = sink.path(KEYS_TABLE)
    whole = '{"RunId": "r1", "UserName": "山田"}'.encode()
    with open(path, "ab") as handle:  # a crash mid-write: half a row, cut inside a multi-byte character
        handle.write(whole[: whole.index("山".encode()) + 1])
    sink.send(KEYS_TABLE, [key("r2", T0, "111111111111", "ana"), key("r2", T0, "111111111111", "bo")])
    rows = read_jsonl(path)
    assert [(r["RunId"], r["UserName"]) for r in rows] == [("r1", "jürgen"), ("r2", "ana"), ("r2", "bo")]
    assert path.read_bytes().endswith(b"}\n")

    sink.send(RUNS_TABLE, [run("r2", T0, "Succeeded")])
    with open(sink.path(RUNS_TABLE), "ab") as handle:
        handle.write(b'{"RunId": "r3", "Sta')  # the reader meets the torn line last, as a crash leaves it
    assert [r["RunId"] for r in read_jsonl(sink.path(RUNS_TABLE))] == ["r2"]
    assert write_report(tmp_path).is_file()


def test_a_file_that_ends_cleanly_gets_no_extra_line(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    sink.send(KEYS_TABLE, [{"a": 1}])
    sink.send(KEYS_TABLE, [{"a": 2}])
    assert sink.path(KEYS_TABLE).read_text(encoding="utf-8").splitlines() == [json.dumps({"a": n}).replace(" ", "")
                                                                               for n in (1, 2)]
