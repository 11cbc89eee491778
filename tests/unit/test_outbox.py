"""The outbox: undelivered rows are kept, replayed first by the next run (at least once), no item stops it, bounded."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.delivery.outbox import DEAD_LETTER, FileOutbox, OutboxItem, encode_rows, item_name, parse_item_name
from shared.delivery.reliable_sink import ReliableSink
from shared.errors import SinkError
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


def test_the_size_cap_applies_after_a_delivery_attempt_oldest_first(sink: FlakySink, tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path)
    for age, n in ((5, 400), (4, 400), (3, 400)):
        outbox.put(KEYS_TABLE, rows(n, age * 1000), NOW - timedelta(hours=age))
    sink.down = True  # the delivery attempt fails: only now is the outbox cut to its cap, oldest first
    stats = reliable(sink, tmp_path, max_rows=900).replay(NOW)
    assert (stats.dropped, stats.replayed) == (400, 0)
    sink.down = False
    assert reliable(sink, tmp_path, max_rows=900).replay(NOW).replayed == 800
    kept = {f"{i:016x}" for i in [*range(4000, 4400), *range(3000, 3400)]}
    assert {r["AccessKeyFingerprint"] for _, r in sink.delivered} == kept


def test_a_sink_that_is_back_takes_everything_before_any_size_cut(sink: FlakySink, tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path)
    for age in (3, 2):  # two deferred 5,000-row batches, a cap of 1,000 rows: nothing may be cut unsent
        outbox.put(KEYS_TABLE, rows(5000, age * 10_000), NOW - timedelta(hours=age))
    stats = reliable(sink, tmp_path, max_rows=1000).replay(NOW)
    assert (stats.dropped, stats.replayed) == (0, 10_000)


def test_a_cap_below_one_batch_keeps_the_newest_batch(sink: FlakySink, tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path)
    for age in (3, 2):
        outbox.put(KEYS_TABLE, rows(5000, age * 10_000), NOW - timedelta(hours=age))
    sink.down = True
    stats = reliable(sink, tmp_path, max_rows=1000).replay(NOW)
    assert stats.dropped == 5000
    (left,) = FileOutbox(tmp_path).items()
    assert left.rows == 5000 and left.created == NOW - timedelta(hours=2)


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
    # the claim is fresh: that run may still be delivering
    assert reliable(sink, tmp_path).replay(datetime.now(UTC)).replayed == 0
    claimed = tmp_path / f".{item.name}.claimed"
    an_hour_ago = datetime.now(UTC).timestamp() - 3600
    os.utime(claimed, (an_hour_ago, an_hour_ago))
    later = reliable(sink, tmp_path)
    assert later.replay(datetime.now(UTC)).replayed == 2
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
        ReliableSink(Interrupted(), FileOutbox(tmp_path), 1000, timedelta(hours=48)).replay(datetime.now(UTC))
    assert reliable(sink, tmp_path).replay(datetime.now(UTC)).replayed == 2


# ---------------------------------------------------------------------------------------------- no item stops it


def test_unreadable_items_are_moved_aside_kept_counted_and_the_run_goes_on(
    sink: FlakySink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = item_name(KEYS_TABLE, 2, NOW - timedelta(hours=1))
    bad = {
        item_name(KEYS_TABLE, 1, NOW - timedelta(hours=3)): b'{"AccessKeyFingerprint": "a"}\n{not json\n',
        item_name(KEYS_TABLE, 1, NOW - timedelta(hours=2)): b'{"UserName": "j\xfcrgen"}\n',  # Latin-1, not UTF-8
        item_name(KEYS_TABLE, 1, NOW - timedelta(hours=2)).replace("-1-", "-1-", 1): b"[1, 2]\n",  # not an object
        item_name(KEYS_TABLE, 1, NOW + timedelta(days=400)): b'{"a": 1}\n',  # would never age out
        "20261399T000000000000Z-1-" + "0" * 32 + "-" + KEYS_TABLE.file_name: b'{"a": 1}\n',  # month 13
    }
    for name, body in bad.items():
        (tmp_path / name).write_bytes(body)
    (tmp_path / good).write_bytes(encode_rows(rows(2)))
    with caplog.at_level(logging.ERROR):
        stats = reliable(sink, tmp_path).replay(NOW)
    assert (stats.dead_lettered, stats.replayed) == (len(bad), 2)
    assert [r["AccessKeyFingerprint"] for _, r in sink.delivered] == [f"{i:016x}" for i in range(2)]
    dead = tmp_path / DEAD_LETTER
    for name, body in bad.items():
        assert (dead / name).read_bytes() == body  # kept as it was, never deleted
        assert (dead / f"{name}.reason.txt").read_text().strip()
    assert FileOutbox(tmp_path).items() == []
    assert "not UTF-8" in caplog.text and "not JSON lines" in caplog.text and "future" in caplog.text
    assert caplog.text.count("moved aside to") == len(bad)
    # a later run does not trip over them again
    assert reliable(sink, tmp_path).replay(NOW).dead_lettered == 0


class FailingOutbox(FileOutbox):
    """A file outbox whose chosen operations fail, as a storage account returning 503 would."""

    def __init__(self, directory: Path, *failing: str) -> None:
        super().__init__(directory)
        self.failing = set(failing)

    def _maybe_fail(self, operation: str) -> None:
        if operation in self.failing:
            raise SinkError(f"outbox {self.location}: {operation} failed: HttpResponseError 503", 0)

    def items(self) -> list[OutboxItem]:
        self._maybe_fail("items")
        return super().items()

    def claim(self, item: OutboxItem) -> bytes | None:
        self._maybe_fail("claim")
        return super().claim(item)

    def release(self, item: OutboxItem) -> None:
        self._maybe_fail("release")
        super().release(item)

    def delete(self, item: OutboxItem) -> None:
        self._maybe_fail("delete")
        super().delete(item)

    def dead_letter(self, item: OutboxItem, reason: str) -> str:
        self._maybe_fail("dead_letter")
        return super().dead_letter(item, reason)


@pytest.mark.parametrize("failing", ["items", "claim", "release", "delete", "dead_letter"])
def test_no_failing_outbox_operation_stops_the_run(sink: FlakySink, tmp_path: Path, failing: str) -> None:
    FileOutbox(tmp_path).put(KEYS_TABLE, rows(2), NOW - timedelta(hours=1))
    (tmp_path / item_name(KEYS_TABLE, 1, NOW - timedelta(hours=2))).write_bytes(b"\xff\n")
    sink.down = failing == "release"  # a release happens only after a failed delivery
    run = ReliableSink(sink, FailingOutbox(tmp_path, failing), 1000, timedelta(hours=48))
    stats = run.replay(NOW)  # returns: no exception escapes
    assert stats.outbox_errors >= 1
    left = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    # nothing lost: every row is delivered, still waiting (perhaps claimed), or kept aside
    delivered = len(sink.delivered)
    assert delivered == 2 or any(KEYS_TABLE.file_name in n and "-2-" in n for n in left)  # perhaps still claimed


def test_partial_leftovers_of_a_dead_writer_are_cleaned(tmp_path: Path) -> None:
    import os

    outbox = FileOutbox(tmp_path)
    outbox.put(KEYS_TABLE, rows(1), NOW)
    old = tmp_path / f".{item_name(KEYS_TABLE, 3, NOW)}.partial"
    fresh = tmp_path / f".{item_name(KEYS_TABLE, 3, NOW)}.partial"
    old.write_bytes(b'{"a":')
    fresh.write_bytes(b'{"a":')
    an_hour_ago = datetime.now(UTC).timestamp() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert len(outbox.items()) == 1
    assert not old.exists() and fresh.exists()  # a partial being written right now is left alone


# ---------------------------------------------------------------------------------------------- breaker, partial


class CountingSink(FlakySink):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        self.calls += 1
        super().send(table, rows)


def test_once_the_sink_failed_the_rest_of_the_run_goes_straight_to_the_outbox(tmp_path: Path) -> None:
    sink = CountingSink()
    sink.down = True
    run = ReliableSink(sink, FileOutbox(tmp_path), 100_000, timedelta(hours=48))
    for start in range(0, 50, 10):
        run.send(KEYS_TABLE, rows(10, start))
    run.send(RUNS_TABLE, [{"RunId": "r1"}])
    assert sink.calls == 1  # one full retry cycle, not one per batch
    assert run.stats.deferred == 51 and "503" in run.stats.last_error
    assert sum(i.rows for i in FileOutbox(tmp_path).items()) == 51


def test_a_failed_replay_opens_the_breaker_for_the_run(tmp_path: Path) -> None:
    sink = CountingSink()
    sink.down = True
    FileOutbox(tmp_path).put(KEYS_TABLE, rows(2), NOW)
    run = ReliableSink(sink, FileOutbox(tmp_path), 100_000, timedelta(hours=48))
    run.replay(NOW)
    run.send(KEYS_TABLE, rows(3, 10))
    assert sink.calls == 1 and run.stats.deferred == 3


class PartialSink(FlakySink):
    """Delivers every row but those whose fingerprint is in ``fail``, and says which ones, as the Logs Ingestion
    sink does from the SDK's on_error."""

    def __init__(self, fail: set[str]) -> None:
        super().__init__()
        self.fail = fail

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        failed = [r for r in rows if r.get("AccessKeyFingerprint") in self.fail]
        self.delivered += [(table.table, r) for r in rows if r not in failed]
        if failed:
            raise SinkError(f"partial: {len(failed)} of {len(rows)}", len(failed), rows=failed)


def test_only_the_rows_of_failed_chunks_are_kept(tmp_path: Path) -> None:
    sink = PartialSink({f"{i:016x}" for i in (3, 4)})
    run = ReliableSink(sink, FileOutbox(tmp_path), 100_000, timedelta(hours=48))
    run.send(KEYS_TABLE, rows(10))
    assert run.stats.deferred == 2
    (item,) = FileOutbox(tmp_path).items()
    assert item.rows == 2
    sink.fail = set()
    later = ReliableSink(sink, FileOutbox(tmp_path), 100_000, timedelta(hours=48))
    assert later.replay(datetime.now(UTC)).replayed == 2
    assert sorted(r["AccessKeyFingerprint"] for _, r in sink.delivered) == [f"{i:016x}" for i in range(10)]


def test_a_partially_replayed_item_keeps_only_its_undelivered_rows_and_its_age(tmp_path: Path) -> None:
    created = NOW - timedelta(hours=5)
    FileOutbox(tmp_path).put(KEYS_TABLE, rows(6), created)
    sink = PartialSink({f"{i:016x}" for i in (5,)})
    stats = ReliableSink(sink, FileOutbox(tmp_path), 100_000, timedelta(hours=48)).replay(NOW)
    assert stats.replayed == 0
    (item,) = FileOutbox(tmp_path).items()
    assert (item.rows, item.created) == (1, created)
    assert len(sink.delivered) == 5


# ---------------------------------------------------------------------------------------------- the run's deadline


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_replay_stops_when_its_share_of_the_run_time_is_used(tmp_path: Path) -> None:
    from shared.deadline import Deadline

    clock = Clock()
    for i in range(3):
        FileOutbox(tmp_path).put(KEYS_TABLE, rows(1, i), NOW - timedelta(hours=3 - i))

    class SlowSink(FlakySink):
        def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
            clock.now += 10  # each item takes 10 s
            super().send(table, rows)

    sink = SlowSink()
    run = ReliableSink(sink, FileOutbox(tmp_path), 1000, timedelta(hours=48), Deadline.after(600, clock))
    stats = run.replay(NOW, until=Deadline.after(15, clock))
    assert stats.replayed == 2 and len(FileOutbox(tmp_path).items()) == 1  # the third waits for the next run


def test_near_the_deadline_rows_go_straight_to_the_outbox(tmp_path: Path) -> None:
    from shared.deadline import Deadline

    clock = Clock()
    sink = CountingSink()
    run = ReliableSink(sink, FileOutbox(tmp_path), 1000, timedelta(hours=48), Deadline.after(300, clock))
    run.send(KEYS_TABLE, rows(2))
    clock.now += 300 - 60 + 1  # inside the reserve (60 s): no sink call may start now
    run.send(KEYS_TABLE, rows(3, 10))
    run.send(RUNS_TABLE, [{"RunId": "r1"}])
    assert sink.calls == 1 and run.stats.deferred == 4
    assert "time is almost up" in run.stats.last_error


def test_once_shut_neither_the_sink_nor_the_outbox_takes_anything_and_shut_waits_for_calls_inside(
    tmp_path: Path,
) -> None:
    inside, leave = threading.Event(), threading.Event()

    class SlowSink(FlakySink):
        def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
            inside.set()
            leave.wait(2)
            super().send(table, rows)

    sink = SlowSink()
    run = ReliableSink(sink, FileOutbox(tmp_path), 1000, timedelta(hours=48))
    caller = threading.Thread(target=run.send, args=(KEYS_TABLE, rows(1)))
    caller.start()
    assert inside.wait(2)
    assert run.shut(wait=0.05) is False  # a call is still inside: not provably done
    leave.set()
    caller.join(2)
    assert run.shut(wait=0.05) is True and len(sink.delivered) == 1
    with pytest.raises(SinkError, match="the run has ended"):
        run.send(KEYS_TABLE, rows(1))
    with pytest.raises(SinkError, match="the run has ended"):
        run.keep(RUNS_TABLE, [{"RunId": "r"}], "late")
    assert FileOutbox(tmp_path).items() == [] and len(sink.delivered) == 1


# ------------------------------------------------------------------------- nothing in the outbox is trusted blindly


def test_a_planted_item_named_as_a_billion_rows_costs_no_real_row(tmp_path: Path) -> None:
    """F12: the row cap counted rows from item names: one planted item named as 999,999,999 rows dropped every real
    row. An item is trusted for no more rows than its size holds, and one whose content disagrees with its name is
    moved aside when read."""
    outbox = FileOutbox(tmp_path)
    outbox.put(KEYS_TABLE, rows(300), NOW - timedelta(hours=3))
    outbox.put(KEYS_TABLE, rows(300, 300), NOW - timedelta(hours=2))
    planted = item_name(KEYS_TABLE, 999_999_999, NOW - timedelta(hours=1))
    (tmp_path / planted).write_bytes(encode_rows(rows(1, 9000)))
    sink = FlakySink()
    sink.down = True
    stats = ReliableSink(sink, outbox, 1000, timedelta(hours=48)).replay(NOW)
    assert stats.dropped == 0 and sum(i.rows for i in outbox.items()) < 1000
    sink.down = False
    stats = ReliableSink(sink, outbox, 1000, timedelta(hours=48)).replay(NOW)
    assert (stats.replayed, stats.dropped, stats.dead_lettered) == (600, 0, 1)
    assert (tmp_path / DEAD_LETTER / planted).is_file() and outbox.items() == []


def test_the_dead_letter_place_is_bounded_oldest_first_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    from shared.delivery import reliable_sink

    monkeypatch.setattr(reliable_sink, "DEAD_LETTER_MAX_ITEMS", 3)
    names = [item_name(KEYS_TABLE, 1, NOW - timedelta(hours=10 - n)) for n in range(5)]
    for name in names:
        (tmp_path / name).write_bytes(b"\xff not an item\n")
    with caplog.at_level(logging.WARNING):
        stats = ReliableSink(FlakySink(), FileOutbox(tmp_path), 1000, timedelta(hours=48)).replay(NOW)
    assert (stats.dead_lettered, stats.dead_letter_removed) == (5, 2)
    left = sorted(p.name for p in (tmp_path / DEAD_LETTER).iterdir())
    assert left == sorted([*names[2:], *(f"{n}.reason.txt" for n in names[2:])])  # the newest three, with reasons
    assert "Removed the 2 oldest item(s) set aside" in caplog.text


def test_the_file_outbox_follows_no_link_and_reads_only_regular_files(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_bytes(encode_rows([{"RunId": "not-ours", "AccessKeyFingerprint": "0" * 16}]))
    box = tmp_path / "outbox"
    box.mkdir()
    planted = item_name(KEYS_TABLE, 1, NOW - timedelta(hours=1))
    (box / planted).symlink_to(outside)
    sink = FlakySink()
    stats = ReliableSink(sink, FileOutbox(box), 1000, timedelta(hours=48)).replay(NOW)
    assert sink.delivered == [] and stats.dead_lettered == 1  # never read through the link
    assert (box / DEAD_LETTER / planted).is_symlink() and outside.is_file()  # moved aside as a link; target intact
    linked = tmp_path / "linked-outbox"
    linked.symlink_to(box, target_is_directory=True)
    with pytest.raises(SinkError, match="symbolic link"):
        FileOutbox(linked).put(KEYS_TABLE, rows(1), NOW)


def test_the_file_outbox_keeps_its_items_to_its_own_user(tmp_path: Path) -> None:
    import os
    import stat

    box = tmp_path / "outbox"
    outbox = FileOutbox(box)
    outbox.put(KEYS_TABLE, rows(1), NOW - timedelta(hours=1))
    (item,) = outbox.items()
    assert stat.S_IMODE(os.stat(box).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(box / item.name).st_mode) == 0o600
    assert outbox.claim(item) is not None
    outbox.dead_letter(item, "inspect")
    assert stat.S_IMODE(os.stat(box / DEAD_LETTER).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(box / DEAD_LETTER / f"{item.name}.reason.txt").st_mode) == 0o600
