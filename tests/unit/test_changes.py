"""shared/insight/changes.py on canned records (rows as the file sink writes them, built from the record dataclasses):
the key lifecycle events of queries/key-changes.kql between consecutive good snapshots, and the key age distribution."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.findings.catalogue import FINDINGS
from shared.insight.changes import (
    AGE_BANDS,
    CREATED,
    DEACTIVATED,
    DELETED,
    EXCEPTED,
    INACTIVE,
    NO_FINDING,
    REACTIVATED,
    ROOT_KEY_APPEARED,
    ROOT_KEY_REMOVED,
    ROTATED,
    SEVERITY_ORDER,
    age_band,
    key_age_distribution,
    key_changes,
    primary_finding,
)
from shared.records import KeyRecord, RunRecord

T0 = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
ACCOUNT = "111111111111"
OTHER = "222222222222"


def run(n: int, status: str = "Succeeded", failed: tuple[str, ...] = ()) -> dict[str, Any]:
    return RunRecord(
        TimeGenerated=T0 + timedelta(hours=6 * n), RunId=f"run-{n}", Status=status, AuthMode="access_key",
        Sink="file", AccountsTotal=2, AccountsSucceeded=2 - len(failed), AccountsFailed=len(failed),
        FailedAccounts=json.dumps([{"AccountId": a, "Error": "AccessDenied"} for a in failed]),
        KeysCollected=0, DurationSeconds=1.0, CollectorVersion="test",
    ).to_row()


def key(n: int, user: str, kid: str, *, status: str = "Active", account: str = ACCOUNT, created_days_ago: int = 10,
        root: bool = False, age: int | None = None, **flags: Any) -> dict[str, Any]:
    at = T0 + timedelta(hours=6 * n)
    return KeyRecord(
        TimeGenerated=at, RunId=f"run-{n}", AccountId=account, AccountName="Prod", UserName=user,
        UserArn=f"arn:aws:iam::{account}:user/{user}", AccessKeyId=None if root else f"AKIA...{kid}",
        AccessKeyFingerprint=f"fp-{account}-{kid}", Status=status,
        CreatedAt=T0 - timedelta(days=created_days_ago), LastUsedAt=None, LastUsedRegion=None,
        LastUsedService=None, LastUsedAsOf=T0,
        AgeDays=created_days_ago if age is None else age, DaysSinceLastUse=None,
        NeverUsed=flags.get("NeverUsed", False), RotationDue=flags.get("RotationDue", False),
        Unused=flags.get("Unused", False), UserActiveKeyCount=flags.get("UserActiveKeyCount", 1), IsRootKey=root,
        Owner="" if root else flags.get("Owner", "team@example.com"), Excepted=flags.get("Excepted", False),
    ).to_row()


def events(changes: list[Any]) -> set[tuple[str, str, str]]:
    return {(c.EventType, c.UserName, c.AccessKeyId) for c in changes}


def test_the_first_snapshot_is_the_baseline_and_no_change_is_no_event() -> None:
    keys = [key(0, "alice", "AAAA"), key(1, "alice", "AAAA")]
    assert key_changes(keys[:1], [run(0)]) == []
    assert key_changes(keys, [run(0), run(1)]) == []


def test_created_deactivated_reactivated_deleted() -> None:
    runs = [run(0), run(1), run(2)]
    keys = [
        key(0, "alice", "AAAA"), key(0, "bob", "BBBB"), key(0, "carol", "CCCC", status="Inactive"),
        key(1, "alice", "AAAA", status="Inactive"), key(1, "carol", "CCCC"), key(1, "dave", "DDDD",
                                                                                created_days_ago=0),
        key(2, "alice", "AAAA", status="Inactive"), key(2, "carol", "CCCC"), key(2, "dave", "DDDD"),
    ]
    changes = key_changes(keys, runs)
    assert events(changes) == {
        (DEACTIVATED, "alice", "AKIA...AAAA"), (DELETED, "bob", "AKIA...BBBB"),
        (REACTIVATED, "carol", "AKIA...CCCC"), (CREATED, "dave", "AKIA...DDDD"),
    }
    assert {c.RunId for c in changes} == {"run-1"}  # run 2 changed nothing
    created = next(c for c in changes if c.EventType == CREATED)
    assert created.Detail == "created 2026-11-01"
    assert created.PreviousRun == T0 and created.TimeGenerated == T0 + timedelta(hours=6)


def test_a_rotation_is_one_event_per_user_besides_the_facts() -> None:
    runs = [run(0), run(1)]
    keys = [key(0, "alice", "OLD1", created_days_ago=200),
            key(1, "alice", "NEW1", created_days_ago=0)]
    changes = key_changes(keys, runs)
    assert events(changes) == {(CREATED, "alice", "AKIA...NEW1"), (DELETED, "alice", "AKIA...OLD1"),
                               (ROTATED, "alice", "AKIA...NEW1")}
    rotated = next(c for c in changes if c.EventType == ROTATED)
    assert rotated.Detail == "replaces AKIA...OLD1" and rotated.AccessKeyFingerprint == ""


def test_a_two_step_rotation_completes_when_the_old_key_is_deactivated() -> None:
    """AWS's recommended rotation: create the new key, switch over, then deactivate the old one, in separate runs."""
    runs = [run(0), run(1), run(2)]
    keys = [key(0, "alice", "OLD1", created_days_ago=200),
            key(1, "alice", "OLD1", created_days_ago=200), key(1, "alice", "NEW1", created_days_ago=0),
            key(2, "alice", "OLD1", created_days_ago=200, status="Inactive"), key(2, "alice", "NEW1",
                                                                                   created_days_ago=0)]
    by_run = {(c.RunId, c.EventType) for c in key_changes(keys, runs)}
    assert by_run == {("run-1", CREATED), ("run-2", DEACTIVATED), ("run-2", ROTATED)}


def test_deactivating_the_newer_key_is_no_rotation() -> None:
    runs = [run(0), run(1)]
    keys = [key(0, "alice", "OLD1", created_days_ago=200), key(0, "alice", "NEW1", created_days_ago=1),
            key(1, "alice", "OLD1", created_days_ago=200), key(1, "alice", "NEW1", created_days_ago=1,
                                                                  status="Inactive")]
    assert events(key_changes(keys, runs)) == {(DEACTIVATED, "alice", "AKIA...NEW1")}


def test_root_keys_appear_and_disappear() -> None:
    runs = [run(0), run(1), run(2)]
    keys = [key(0, "alice", "AAAA"),
            key(1, "alice", "AAAA"), key(1, "<root_account>", "ROOT1", root=True),
            key(2, "alice", "AAAA")]
    changes = key_changes(keys, runs)
    assert [(c.RunId, c.EventType, c.AccessKeyId) for c in changes] == [
        ("run-2", ROOT_KEY_REMOVED, None), ("run-1", ROOT_KEY_APPEARED, None)]


def test_a_failed_or_partial_run_is_no_snapshot_of_the_failing_account() -> None:
    """Account OTHER failed in run 1 (no rows): its keys are not Deleted then Created again; its snapshot before run
    2 is run 0. A Failed run is skipped altogether."""
    runs = [run(0), run(1, "PartiallySucceeded", failed=(OTHER,)), run(2, "Failed"), run(3)]
    keys = [key(0, "alice", "AAAA"), key(0, "erin", "EEEE", account=OTHER),
            key(1, "alice", "AAAA"),
            key(3, "alice", "AAAA"), key(3, "erin", "EEEE", account=OTHER, status="Inactive")]
    changes = key_changes(keys, runs)
    assert [(c.RunId, c.AccountId, c.EventType, c.PreviousRun) for c in changes] == [
        ("run-3", OTHER, DEACTIVATED, T0)]


def test_an_account_that_succeeded_with_no_keys_lost_them() -> None:
    runs = [run(0), run(1)]
    keys = [key(0, "alice", "AAAA"), key(0, "erin", "EEEE", account=OTHER), key(1, "alice", "AAAA")]
    assert events(key_changes(keys, runs)) == {(DELETED, "erin", "AKIA...EEEE")}


def test_a_row_delivered_twice_counts_once() -> None:
    runs = [run(0), run(1), run(1)]
    keys = [key(0, "alice", "AAAA"), key(1, "alice", "AAAA"), key(1, "alice", "AAAA", status="Inactive"),
            key(1, "bob", "BBBB"), key(1, "bob", "BBBB")]
    changes = key_changes(keys, runs)
    assert sorted(c.EventType for c in changes) == [CREATED, DEACTIVATED]


def test_an_account_first_seen_later_starts_with_a_baseline() -> None:
    runs = [run(0), run(1), run(2)]
    keys = [key(0, "alice", "AAAA"), key(1, "alice", "AAAA"), key(1, "erin", "EEEE", account=OTHER),
            key(2, "alice", "AAAA"), key(2, "erin", "EEEE", account=OTHER), key(2, "frank", "FFFF", account=OTHER)]
    assert events(key_changes(keys, runs)) == {(CREATED, "frank", "AKIA...FFFF")}


def test_the_window_counts_back_from_the_newest_run() -> None:
    runs = [run(0), run(1), run(8)]  # 48 h after run 0
    keys = [key(0, "alice", "AAAA"), key(1, "bob", "BBBB"), key(8, "bob", "BBBB"), key(8, "carol", "CCCC")]
    assert events(key_changes(keys, runs)) == {(DELETED, "alice", "AKIA...AAAA"), (CREATED, "bob", "AKIA...BBBB"),
                                               (CREATED, "carol", "AKIA...CCCC")}
    assert events(key_changes(keys, runs, window=timedelta(hours=43))) == {(CREATED, "carol", "AKIA...CCCC")}


def test_no_runs_no_events() -> None:
    assert key_changes([key(0, "alice", "AAAA")], []) == []
    assert key_changes([key(0, "alice", "AAAA")], [run(0, "Failed")]) == []


# --------------------------------------------------------------------------------------------------------------------
# Key age distribution


@pytest.mark.parametrize(("age", "label"), [(0, "0-30 days"), (29, "0-30 days"), (30, "30-90 days"),
                                            (89, "30-90 days"), (90, "90-180 days"), (179, "90-180 days"),
                                            (180, "180-365 days"), (364, "180-365 days"), (365, "365+ days"),
                                            (5000, "365+ days"), (-1, "0-30 days")])
def test_age_bands_are_half_open(age: int, label: str) -> None:
    assert age_band(age).label == label


def test_a_key_stacks_under_its_most_severe_finding() -> None:
    assert primary_finding(key(0, "r", "R", root=True, RotationDue=True)) == "Root account keys"
    assert primary_finding(key(0, "a", "A", RotationDue=True, Unused=True)) == "Due for rotation"
    assert primary_finding(key(0, "a", "A", Unused=True, NeverUsed=True)) == "Unused"
    assert primary_finding(key(0, "a", "A", NeverUsed=True)) == "Never used"
    assert primary_finding(key(0, "a", "A", NeverUsed=True, status="Inactive")) == INACTIVE
    assert primary_finding(key(0, "a", "A", UserActiveKeyCount=2)) == "Keys of users with two active keys"
    assert primary_finding(key(0, "r", "R", root=True, UserActiveKeyCount=2)) == "Root account keys"
    assert primary_finding(key(0, "a", "A")) == NO_FINDING
    assert primary_finding(key(0, "a", "A", Owner="")) == "Unowned active keys"
    assert primary_finding(key(0, "a", "A", RotationDue=True, Excepted=True)) == EXCEPTED  # counted under no finding


def test_the_stacking_order_is_the_catalogues_by_severity() -> None:
    assert [name for name, _ in SEVERITY_ORDER] == [
        EXCEPTED, "Root account keys", "Quarantined (exposed)", "Due for rotation", "Unused", "Never used",
        "Keys of users with two active keys", "Unowned active keys", INACTIVE]
    assert [name for name, _ in SEVERITY_ORDER][1:-1] == [
        f.chart_label for f in sorted(FINDINGS, key=lambda f: f.severity, reverse=True)]


def test_key_age_distribution_counts_every_key_once_with_zeros_kept() -> None:
    keys = [key(0, "a", "1", age=5), key(0, "b", "2", age=100, RotationDue=True),
            key(0, "c", "3", age=100, RotationDue=True, Unused=True), key(0, "d", "4", age=400, status="Inactive"),
            key(0, "r", "5", age=700, root=True)]
    buckets = key_age_distribution(keys)
    assert [b.band for b in buckets] == list(AGE_BANDS)
    assert [b.total for b in buckets] == [1, 0, 2, 0, 2]
    assert sum(b.total for b in buckets) == len(keys)
    counts = {b.band.label: dict(b.counts) for b in buckets}
    assert counts["90-180 days"]["Due for rotation"] == 2
    assert counts["365+ days"] == {**dict.fromkeys(counts["365+ days"], 0), INACTIVE: 1, "Root account keys": 1}
    assert list(counts["30-90 days"]) == [name for name, _ in buckets[0].counts]  # every finding, in order
    assert all(n == 0 for n in counts["30-90 days"].values())
