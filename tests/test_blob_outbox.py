"""The outbox in blob storage, identity-based, on Azurite over HTTPS (the real azure-storage-blob client)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import trustme

from shared.blob_outbox import BlobOutbox
from shared.composition import ClientOptions
from shared.errors import SinkError
from shared.outbox import ReliableSink
from shared.records import KEYS_TABLE, RUNS_TABLE
from tests.support.azurite import StorageTokenCredential, azurite_blob
from tests.support.sinks import FlakySink, rows


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(blob service URL, CA bundle path)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("azurite")
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    with azurite_blob(folder / "cert.pem", folder / "key.pem", folder / "data") as url:
        yield url, str(folder / "ca.pem")


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
