"""The outbox: undelivered rows are kept, replayed first by the next run exactly once, and bounded."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.errors import SinkError
from shared.outbox import FileOutbox, ReliableSink, parse_item_name
from shared.records import KEYS_TABLE, RUNS_TABLE, Table
from tests.support.sinks import FlakySink, rows

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def sink() -> FlakySink:
    return FlakySink()


def reliable(
    sink: FlakySink, directory: Path, max_rows: int = 1000, max_age: timedelta = timedelta(hours=48)
) -> ReliableSink:
    return ReliableSink(sink, FileOutbox(directory), max_rows, max_age)


def test_undelivered_rows_are_kept_and_replayed_first_by_the_next_run(sink: FlakySink, tmp_path: Path) -> None:
    first = reliable(sink, tmp_path)
    sink.down = True
    first.send(KEYS_TABLE, rows(3))
    first.send(RUNS_TABLE, [{"RunId": "r1"}])
    assert first.stats.deferred == 4 and sink.delivered == []
    assert len(FileOutbox(tmp_path).items()) == 2

    sink.down = False
    second = reliable(sink, tmp_path)
    stats = second.replay(datetime.now(UTC))
    assert stats.replayed == 4 and stats.dropped == 0
    assert [t for t, _ in sink.delivered] == [KEYS_TABLE.table] * 3 + [RUNS_TABLE.table]
    assert sink.delivered[0][1]["UserName"] == "jürgen"
    assert FileOutbox(tmp_path).items() == []

    third = reliable(sink, tmp_path)
    assert third.replay(datetime.now(UTC)).replayed == 0  # never replayed twice
    assert len(sink.delivered) == 4


def test_replay_stops_while_the_sink_is_still_down_and_keeps_everything(sink: FlakySink, tmp_path: Path) -> None:
    sink.down = True
    run = reliable(sink, tmp_path)
    run.send(KEYS_TABLE, rows(2))
    run.send(KEYS_TABLE, rows(2, 2))
    stats = reliable(sink, tmp_path).replay(datetime.now(UTC))
    assert stats.replayed == 0
    assert [i.rows for i in FileOutbox(tmp_path).items()] == [2, 2]  # released, not lost


def test_items_past_the_age_limit_are_dropped_with_a_logged_count(
    sink: FlakySink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = FileOutbox(tmp_path)
    outbox.put(KEYS_TABLE, rows(5), NOW - timedelta(hours=49))
    outbox.put(KEYS_TABLE, rows(1), NOW - timedelta(hours=1))
    with caplog.at_level(logging.WARNING):
        stats = reliable(sink, tmp_path).replay(NOW)
    assert (stats.dropped, stats.replayed) == (5, 1)
    assert "Dropped 5 undelivered AwsIamAccessKeys_CL row(s)" in caplog.text


def test_oldest_items_past_the_size_cap_are_dropped_first(sink: FlakySink, tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path)
    for age, n in ((5, 400), (4, 400), (3, 400)):
        outbox.put(KEYS_TABLE, rows(n, age * 1000), NOW - timedelta(hours=age))
    stats = reliable(sink, tmp_path, max_rows=900).replay(NOW)
    assert (stats.dropped, stats.replayed) == (400, 800)
    kept = {f"{i:016x}" for i in [*range(4000, 4400), *range(3000, 3400)]}
    assert {r["AccessKeyFingerprint"] for _, r in sink.delivered} == kept


def test_two_runs_replaying_at_once_deliver_each_item_once(sink: FlakySink, tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path)
    for i in range(40):
        outbox.put(KEYS_TABLE, rows(1, i), NOW)
    barrier = threading.Barrier(2)

    def replay() -> None:
        barrier.wait()
        reliable(sink, tmp_path).replay(NOW)

    threads = [threading.Thread(target=replay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fingerprints = [r["AccessKeyFingerprint"] for _, r in sink.delivered]
    assert sorted(fingerprints) == sorted(f"{i:016x}" for i in range(40))


def test_an_outbox_that_cannot_keep_rows_raises_instead_of_losing_them(sink: FlakySink, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    sink.down = True
    with pytest.raises(SinkError, match="could not keep them either") as info:
        reliable(sink, blocker).send(KEYS_TABLE, rows(3))
    assert info.value.undelivered == 3


def test_item_names_round_trip_and_foreign_files_are_ignored(tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path)
    outbox.put(RUNS_TABLE, [{"RunId": "x"}], NOW)
    (tmp_path / "notes.txt").write_text("not an item")
    (item,) = outbox.items()
    assert (item.rows, item.table, item.created) == (1, RUNS_TABLE, NOW)
    assert parse_item_name("notes.txt") is None


def test_an_item_left_claimed_by_a_run_that_died_is_replayed_later(sink: FlakySink, tmp_path: Path) -> None:
    import os

    sink.down = True
    reliable(sink, tmp_path).send(KEYS_TABLE, rows(2))
    (item,) = FileOutbox(tmp_path).items()
    assert FileOutbox(tmp_path).claim(item) is not None  # a run claims it, then dies before delivering it
    sink.down = False
    assert reliable(sink, tmp_path).replay(NOW).replayed == 0  # the claim is fresh: it may still be delivering
    claimed = tmp_path / f".{item.name}.claimed"
    an_hour_ago = datetime.now(UTC).timestamp() - 3600
    os.utime(claimed, (an_hour_ago, an_hour_ago))
    later = reliable(sink, tmp_path)
    assert later.replay(NOW).replayed == 2
    assert [row["AccessKeyFingerprint"] for _, row in sink.delivered] == [f"{i:016x}" for i in range(2)]
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_replay_hands_its_item_back(sink: FlakySink, tmp_path: Path) -> None:
    sink.down = True
    reliable(sink, tmp_path).send(KEYS_TABLE, rows(2))
    sink.down = False

    class Interrupted(FlakySink):
        def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ReliableSink(Interrupted(), FileOutbox(tmp_path), 1000, timedelta(hours=48)).replay(NOW)
    assert reliable(sink, tmp_path).replay(NOW).replayed == 2
