"""A run killed (SIGKILL: no handler runs) while it replays the outbox loses nothing: the item it held is replayed by
a later run once its claim lapses (a blob lease after its duration, a file claim after CLAIM_EXPIRY). Killed after
the sink took the rows, those rows are delivered twice: at least once, and the queries count a row once (RunId +
AccessKeyFingerprint)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.composition import ClientOptions
from shared.delivery.blob_outbox import BlobOutbox
from shared.delivery.outbox import FileOutbox, Outbox
from shared.delivery.reliable_sink import ReliableSink
from shared.records import KEYS_TABLE
from tests.support.azurite import StorageTokenCredential, azurite_blob_with_own_ca
from tests.support.sinks import FlakySink

ROOT = Path(__file__).resolve().parents[2]
LEASE = 15  # the shortest blob lease: the killed run's claim lapses this long after its last renewal


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with azurite_blob_with_own_ca(tmp_path_factory.mktemp("azurite-kill")) as served:
        yield served


def rows(item: int) -> list[dict[str, str]]:
    return [{"RunId": f"run-{item}", "AccessKeyFingerprint": f"{item:04d}{n:012x}"} for n in range(3)]


def kill_mid_replay(outbox_args: list[str], tmp_path: Path, mode: str) -> list[dict[str, str]]:
    """Start a replaying run in a child process, SIGKILL it once its sink holds the first item; what it delivered."""
    delivered, marker = tmp_path / "delivered-by-killed-run.jsonl", tmp_path / "in-send"
    child = subprocess.Popen([sys.executable, "-m", "tests.support.replay_child", str(delivered), str(marker), mode,
                              *outbox_args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert child.poll() is None, "the replaying run ended before it was killed"
        assert time.monotonic() < deadline, "the replaying run never reached its sink"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL
    if not delivered.exists():
        return []
    return [json.loads(line) for line in delivered.read_text(encoding="utf-8").splitlines()]


def replay_until_empty(outbox: Outbox, sink: FlakySink, within: float) -> None:
    deadline = time.monotonic() + within
    while outbox.items():
        assert time.monotonic() < deadline, "the killed run's item was never replayed"
        ReliableSink(sink, outbox, 1_000_000, timedelta(hours=48)).replay(datetime.now(UTC))
        time.sleep(0.5)


def assert_nothing_lost(expected: list[dict[str, str]], killed: list[dict[str, str]], later: FlakySink,
                        mode: str) -> None:
    seen = killed + [row for _, row in later.delivered]
    identity = {(r["RunId"], r["AccessKeyFingerprint"]) for r in seen}
    assert identity == {(r["RunId"], r["AccessKeyFingerprint"]) for r in expected}  # every row, counted once
    assert len(killed) == (3 if mode == "accept" else 0)
    assert len(seen) == len(expected) + len(killed)  # duplicates: at most the one item the killed run held


@pytest.mark.parametrize("mode", ["accept", "hang"])
def test_a_run_killed_mid_replay_of_the_blob_outbox_loses_nothing(
    azurite: tuple[str, str], tmp_path: Path, mode: str
) -> None:
    url, ca = azurite
    container = f"kill-{uuid.uuid4().hex[:12]}"
    box = BlobOutbox(url, container, StorageTokenCredential(), ClientOptions(ca_bundle=ca))
    expected = []
    for item in range(3):
        box.put(KEYS_TABLE, rows(item), datetime.now(UTC) - timedelta(minutes=10 - item))
        expected += rows(item)
    killed = kill_mid_replay(["blob", url, container, ca, str(LEASE)], tmp_path, mode)
    later = FlakySink()
    replay_until_empty(box, later, within=LEASE + 30)
    assert_nothing_lost(expected, killed, later, mode)


@pytest.mark.parametrize("mode", ["accept", "hang"])
def test_a_run_killed_mid_replay_of_the_file_outbox_loses_nothing(tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "outbox"
    box = FileOutbox(folder)
    expected = []
    for item in range(3):
        box.put(KEYS_TABLE, rows(item), datetime.now(UTC) - timedelta(minutes=10 - item))
        expected += rows(item)
    killed = kill_mid_replay(["file", str(folder)], tmp_path, mode)
    later = FlakySink()
    ReliableSink(later, box, 1_000_000, timedelta(hours=48)).replay(datetime.now(UTC))
    assert len(box.items()) == 0 and len(list(folder.glob(".*.claimed"))) == 1  # still claimed by the dead run
    an_hour_ago = time.time() - 3600  # CLAIM_EXPIRY (30 min) has passed
    for claimed in folder.glob(".*.claimed"):
        os.utime(claimed, (an_hour_ago, an_hour_ago))
    replay_until_empty(box, later, within=10)
    assert not list(folder.glob(".*"))
    assert_nothing_lost(expected, killed, later, mode)
