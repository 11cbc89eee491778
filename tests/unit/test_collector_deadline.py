"""The run at its deadline, against the in-memory IAM fake: a sink that hangs costs no collected row (accounts are
failed only for AWS-side reasons, their rows are kept in the outbox and counted), and nothing the run leaves behind
reaches the sink, the outbox or AWS after it returned."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.collection.collector import Collector, CollectorOptions
from shared.deadline import Deadline
from shared.delivery.outbox import FileOutbox, NoOutbox, decode_rows
from shared.delivery.reliable_sink import ReliableSink
from shared.errors import DeliveryDeferredError, SinkError
from shared.records import KEYS_TABLE, RUNS_TABLE, Table
from tests.support.iam_fake import IamFake, account_with_keys
from tests.support.sinks import ListSink

A, B, C = "111111111111", "222222222222", "333333333333"


class HungSink:
    """A sink that accepts and never answers, as a real sink does under its per-call bound (shared/deadline.py's
    ``Deadline.call``): each call waits out its bound, then fails."""

    name = "hung"

    def __init__(self, deadline: Deadline) -> None:
        self._deadline = deadline
        self.calls = 0

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        self.calls += 1
        call = self._deadline.call(60.0, 0.25)
        time.sleep(call.remaining())
        raise SinkError(f"hung: no answer within the call's bound ({len(rows)} row(s))", len(rows))

    def close(self) -> None:
        pass


def outbox_rows(directory: Path) -> dict[str, list[dict[str, Any]]]:
    outbox = FileOutbox(directory)
    found: dict[str, list[dict[str, Any]]] = {KEYS_TABLE.table: [], RUNS_TABLE.table: []}
    for item in outbox.items():
        found[item.table.table] += decode_rows((outbox.directory / item.name).read_bytes())
    return found


def test_a_hung_sink_fails_no_account_and_every_row_it_did_not_take_is_kept(tmp_path: Path) -> None:
    fake = IamFake([account_with_keys(A, 3), account_with_keys(B, 2), account_with_keys(C, 4)])
    deadline = Deadline.after(2, reserve=0.5)  # a 1.5 s delivery window: the hung call gives up after 0.375 s
    sink = HungSink(deadline)
    options = CollectorOptions("access_key", "hung", 90, 45, 3, deadline=deadline)
    reliable = ReliableSink(sink, FileOutbox(tmp_path), 1000, timedelta(hours=48), deadline=deadline)
    started = time.monotonic()
    with pytest.raises(DeliveryDeferredError, match="hung sink unavailable: 10 record"):
        Collector(options, fake, reliable, clock=fake.clock).run()
    assert time.monotonic() - started < 1, "the breaker did not open: every account waited for the hung sink"
    assert sink.calls == 1  # one bounded call, then the breaker: the rest went straight to the outbox
    kept = outbox_rows(tmp_path)
    (run_row,) = kept[RUNS_TABLE.table]
    assert run_row["Status"] == "Succeeded" and run_row["FailedAccounts"] == "[]"
    assert run_row["RecordsDeferred"] == run_row["KeysCollected"] == len(kept[KEYS_TABLE.table]) == 9


def test_rows_read_when_the_deadline_comes_are_kept_not_dropped(tmp_path: Path) -> None:
    """The sink is held past the deadline (its call longer than the run): the accounts that finished reading
    meanwhile keep their rows in the outbox in the reserve, and are not reported failed."""
    fake = IamFake([account_with_keys(A, 2), account_with_keys(B, 3)])
    deadline = Deadline.after(1.0, reserve=0.6)  # delivery until 0.4 s, keeping read rows until 0.7 s

    class HeldSink(ListSink):
        def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
            time.sleep(0.45)  # past the delivery window, within the keeping window
            raise SinkError("held: no answer", len(rows))

    options = CollectorOptions("access_key", "held", 90, 45, 2, deadline=deadline)
    reliable = ReliableSink(HeldSink(), FileOutbox(tmp_path), 1000, timedelta(hours=48), deadline=deadline)
    with pytest.raises(DeliveryDeferredError):
        Collector(options, fake, reliable, clock=fake.clock).run()
    kept = outbox_rows(tmp_path)
    (run_row,) = kept[RUNS_TABLE.table]
    assert run_row["FailedAccounts"] == "[]" and run_row["Status"] == "Succeeded"
    assert sorted(r["AccountId"] for r in kept[KEYS_TABLE.table]) == [A] * 2 + [B] * 3


def test_a_thread_left_in_an_aws_call_reaches_neither_sink_nor_outbox_after_the_run() -> None:
    hung = account_with_keys(B, 1)
    hung.wait_for = threading.Event()  # IAM does not answer for this account until the run has returned
    fake = IamFake([account_with_keys(A, 2), hung])
    sink = ListSink()
    deadline = Deadline.after(0.8, reserve=0.3)
    options = CollectorOptions("access_key", "list", 90, 45, 4, deadline=deadline)
    reliable = ReliableSink(sink, NoOutbox(), 1000, timedelta(hours=48), deadline=deadline)
    result = Collector(options, fake, reliable, clock=fake.clock).run()
    assert [f.account_id for f in result.failures] == [B]
    assert deadline.stopped  # the AWS clients refuse every call from here (tests/unit/test_deadline.py)
    calls_at_return = list(sink.calls)
    hung.wait_for.set()  # IAM answers now: the thread reads on, and must not deliver
    assert hung.finished.wait(2)
    time.sleep(0.1)
    assert sink.calls == calls_at_return
    with pytest.raises(SinkError, match="the run has ended"):
        reliable.send(KEYS_TABLE, [{"AccessKeyFingerprint": "late"}])
