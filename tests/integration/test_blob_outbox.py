"""The outbox in blob storage, identity-based, on Azurite over HTTPS (the real azure-storage-blob client)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import BlobLeaseClient

from shared.composition import ClientOptions
from shared.delivery.blob_outbox import BlobOutbox
from shared.delivery.outbox import DEAD_LETTER, item_name
from shared.delivery.reliable_sink import ReliableSink
from shared.errors import SinkError
from shared.records import KEYS_TABLE, RUNS_TABLE, Table
from tests.support.azurite import StorageTokenCredential, azurite_blob_with_own_ca
from tests.support.sinks import FlakySink, rows


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(blob service URL, CA bundle path)."""
    with azurite_blob_with_own_ca(tmp_path_factory.mktemp("azurite")) as served:
        yield served


def outbox(azurite: tuple[str, str], container: str, credential: StorageTokenCredential | None = None) -> BlobOutbox:
    url, ca = azurite
    return BlobOutbox(url, container, credential or StorageTokenCredential(), ClientOptions(ca_bundle=ca))


def test_rows_kept_in_blob_storage_are_replayed_once(azurite: tuple[str, str]) -> None:
    credential = StorageTokenCredential()
    sink = FlakySink()
    sink.down = True
    first = ReliableSink(sink, outbox(azurite, "outbox-once", credential), 1000, timedelta(hours=48))
    first.send(KEYS_TABLE, rows(3))
    first.send(RUNS_TABLE, [{"RunId": "r1", "UserName": "山田"}])
    assert first.stats.deferred == 4
    assert credential.requests and all(s == ("https://storage.azure.com/.default",) for s in credential.requests)

    sink.down = False
    second = ReliableSink(sink, outbox(azurite, "outbox-once"), 1000, timedelta(hours=48))
    assert second.replay(datetime.now(UTC)).replayed == 4
    assert [t for t, _ in sink.delivered] == [KEYS_TABLE.table] * 3 + [RUNS_TABLE.table]
    assert sink.delivered[-1][1]["UserName"] == "山田"
    assert outbox(azurite, "outbox-once").items() == []
    third = ReliableSink(sink, outbox(azurite, "outbox-once"), 1000, timedelta(hours=48))
    assert third.replay(datetime.now(UTC)).replayed == 0 and len(sink.delivered) == 4


def test_a_failed_replay_releases_the_lease_and_keeps_the_item(azurite: tuple[str, str]) -> None:
    sink = FlakySink()
    sink.down = True
    ReliableSink(sink, outbox(azurite, "outbox-release"), 1000, timedelta(hours=48)).send(KEYS_TABLE, rows(2))
    assert ReliableSink(sink, outbox(azurite, "outbox-release"), 1000, timedelta(hours=48)).replay(
        datetime.now(UTC)).replayed == 0
    sink.down = False
    assert ReliableSink(sink, outbox(azurite, "outbox-release"), 1000, timedelta(hours=48)).replay(
        datetime.now(UTC)).replayed == 2  # not stuck behind a lease


def test_concurrent_replays_deliver_each_item_once(azurite: tuple[str, str]) -> None:
    box = outbox(azurite, "outbox-race")
    for i in range(12):
        box.put(KEYS_TABLE, rows(1, i), datetime.now(UTC))
    sink = FlakySink()
    barrier = threading.Barrier(2)

    def replay() -> None:
        barrier.wait()
        ReliableSink(sink, outbox(azurite, "outbox-race"), 1000, timedelta(hours=48)).replay(datetime.now(UTC))

    threads = [threading.Thread(target=replay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["AccessKeyFingerprint"] for _, r in sink.delivered) == sorted(f"{i:016x}" for i in range(12))


def test_old_items_are_dropped_from_blob_storage(azurite: tuple[str, str]) -> None:
    box = outbox(azurite, "outbox-age")
    box.put(KEYS_TABLE, rows(7), datetime.now(UTC) - timedelta(hours=72))
    stats = ReliableSink(FlakySink(), box, 1000, timedelta(hours=48)).replay(datetime.now(UTC))
    assert (stats.dropped, stats.replayed) == (7, 0)
    assert box.items() == []


def test_a_token_storage_rejects_is_a_clear_outbox_error(azurite: tuple[str, str]) -> None:
    sink = FlakySink()
    sink.down = True
    wrong = StorageTokenCredential(audience="https://vault.azure.net")
    reliable = ReliableSink(sink, outbox(azurite, "outbox-denied", wrong), 1000, timedelta(hours=48))
    with pytest.raises(SinkError, match="could not keep them either") as info:
        reliable.send(KEYS_TABLE, rows(2))
    assert "outbox https://127.0.0.1" in str(info.value)
    assert "403" in str(info.value) and "Storage Blob Data" in str(info.value)


def test_unreadable_blob_items_go_under_the_dead_letter_prefix_and_the_rest_is_delivered(
    azurite: tuple[str, str],
) -> None:
    box = outbox(azurite, "outbox-poison")
    box.put(KEYS_TABLE, rows(3), datetime.now(UTC) - timedelta(minutes=5))
    poison = {
        item_name(KEYS_TABLE, 1, datetime.now(UTC) - timedelta(hours=1)): b"\xff\xfe not utf-8\n",
        item_name(KEYS_TABLE, 1, datetime.now(UTC) - timedelta(hours=1)): b"{half a row\n",
        item_name(KEYS_TABLE, 1, datetime.now(UTC) + timedelta(days=30)): b'{"a": 1}\n',
    }
    raw = box._container  # test-only: write items as a buggy or hostile writer would
    for name, body in poison.items():
        raw.upload_blob(name, body)
    sink = FlakySink()
    stats = ReliableSink(sink, outbox(azurite, "outbox-poison"), 1000, timedelta(hours=48)).replay(datetime.now(UTC))
    assert (stats.dead_lettered, stats.replayed) == (3, 3)
    assert box.items() == []
    kept = {b.name: b for b in raw.list_blobs(name_starts_with=f"{DEAD_LETTER}/", include=["metadata"])}
    assert set(kept) == {f"{DEAD_LETTER}/{n}" for n in poison}
    for name, body in poison.items():
        assert raw.download_blob(f"{DEAD_LETTER}/{name}").readall() == body
        assert kept[f"{DEAD_LETTER}/{name}"].metadata["reason"]


def test_blob_items_are_trusted_for_no_more_rows_than_they_hold_and_dead_letters_are_bounded(
    azurite: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """F12 on blob storage: an item's row count is bounded by its size (the storage service's, not its name), and
    the dead-letter prefix keeps the newest DEAD_LETTER_MAX_ITEMS items, the oldest removed and counted."""
    from shared.delivery import reliable_sink
    from shared.delivery.outbox import encode_rows

    monkeypatch.setattr(reliable_sink, "DEAD_LETTER_MAX_ITEMS", 1)
    box = outbox(azurite, "outbox-planted")
    box._container.create_container()
    now = datetime.now(UTC)
    planted = [item_name(KEYS_TABLE, 999_999_999, now - timedelta(hours=h)) for h in (3, 2)]
    for name in planted:
        box._container.upload_blob(name, encode_rows(rows(1)))  # test-only: a planted item
    assert [i.rows for i in box.items()] == [len(encode_rows(rows(1))) // 3] * 2  # not 999,999,999
    stats = ReliableSink(FlakySink(), outbox(azurite, "outbox-planted"), 1000, timedelta(hours=48)).replay(now)
    assert (stats.dead_lettered, stats.dead_letter_removed, stats.replayed) == (2, 1, 0)
    left = [b.name for b in box._container.list_blobs()]
    assert left == [f"{DEAD_LETTER}/{planted[1]}"]  # the newer kept, the older removed


def test_a_delete_after_the_lease_was_taken_over_is_survived(azurite: tuple[str, str]) -> None:
    """HTTP 412/409 on delete: our lease was lost and another run holds the item. Logged; nothing raised or lost."""
    box = outbox(azurite, "outbox-412")
    box.put(KEYS_TABLE, rows(2), datetime.now(UTC))
    (item,) = box.items()
    assert box.claim(item) is not None
    blob = box._container.get_blob_client(item.name)
    BlobLeaseClient(blob).break_lease(lease_break_period=0)  # as if our lease had lapsed...
    other = BlobLeaseClient(blob)
    other.acquire(lease_duration=15)  # ...and a second run had claimed the item
    box.delete(item)  # no exception
    box.release(item)  # nothing left to release: no exception either
    other.release()
    assert [i.name for i in box.items()] == [item.name]  # still there for a later run: at least once


def test_a_lease_release_that_fails_is_survived(azurite: tuple[str, str]) -> None:
    box = outbox(azurite, "outbox-release-fails")
    box.put(KEYS_TABLE, rows(1), datetime.now(UTC))
    (item,) = box.items()
    assert box.claim(item) is not None
    BlobLeaseClient(box._container.get_blob_client(item.name)).break_lease(lease_break_period=0)
    box.release(item)  # 409 LeaseIdMismatch / lease not present: logged, not raised
    assert box.claim(item) is not None  # claimable again


def test_the_lease_is_renewed_while_an_item_is_replayed(azurite: tuple[str, str]) -> None:
    """A replay slower than the lease: a second run trying to claim the item meanwhile gets nothing."""
    box = outbox(azurite, "outbox-renew")
    box.put(KEYS_TABLE, rows(2), datetime.now(UTC))
    taken: list[bytes | None] = []

    class SlowSink(FlakySink):
        def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
            time.sleep(19)  # past the 15 s lease
            second = BlobOutbox(box.location.rsplit("/", 1)[0], "outbox-renew", StorageTokenCredential(),
                                ClientOptions(ca_bundle=azurite[1]))
            (item,) = second.items()
            taken.append(second.claim(item))
            super().send(table, rows)

    sink = SlowSink()
    first = BlobOutbox(box.location.rsplit("/", 1)[0], "outbox-renew", StorageTokenCredential(),
                       ClientOptions(ca_bundle=azurite[1]), lease_seconds=15)
    stats = ReliableSink(sink, first, 1000, timedelta(hours=48)).replay(datetime.now(UTC))
    assert taken == [None]  # the second run could not take it over
    assert stats.replayed == 2 and len(sink.delivered) == 2 and box.items() == []
