"""Pure transformations on canned API responses (shaped exactly as boto3 returns them)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.aws.organizations import active_accounts
from shared.collection.directory import UserEntry, read_directory
from shared.collection.last_use import LastUse
from shared.collection.transform import fingerprint, key_records_for_user, last_use_from_api, whole_days
from shared.domain import Account, AccountFailure, RunContext, RunResult
from shared.errors import MalformedResponseError
from shared.records import KeyRecord, columns

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
RUN = RunContext(run_id="8f7e6d5c-0000-4000-8000-000000000001", started_at=NOW, rotation_days=90, unused_days=45)
ACCOUNT = Account("111122223333", "Production")
# A GetAccountAuthorizationDetails UserDetailList item, as boto3 returns it.
USER_DETAIL = {"Path": "/", "UserName": "alice", "UserId": "AIDAEXAMPLE", "Arn": "arn:aws:iam::111122223333:user/alice",
               "CreateDate": NOW - timedelta(days=900), "GroupList": [], "AttachedManagedPolicies": [],
               "UserPolicyList": []}


def entry(detail: dict[str, Any]) -> UserEntry:
    """The user as the account's directory holds it."""
    (user,) = read_directory([{"UserDetailList": [detail]}]).users
    return user


USER = entry(USER_DETAIL)
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
NEVER_USED = {"ServiceName": "N/A", "Region": "N/A"}


def key(key_id: str = KEY_ID, age: float = 10, status: str = "Active") -> dict[str, Any]:
    return {"UserName": "alice", "AccessKeyId": key_id, "Status": status, "CreateDate": NOW - timedelta(days=age)}


def used(days_ago: float, service: str = "s3", region: str = "eu-west-1") -> dict[str, Any]:
    return {"LastUsedDate": NOW - timedelta(days=days_ago), "ServiceName": service, "Region": region}


def api(answer: dict[str, Any], key_id: str = KEY_ID, at: datetime = NOW) -> LastUse:
    """GetAccessKeyLastUsed's answer, as the inventory turns it into a key's last use."""
    return last_use_from_api(answer, at, "alice", key_id)


def one(k: dict[str, Any], last: dict[str, Any]) -> KeyRecord:
    (record,) = key_records_for_user(USER, [k], {k["AccessKeyId"]: api(last, k["AccessKeyId"])}, ACCOUNT, RUN)
    return record


def test_masking_and_fingerprint_are_exact() -> None:
    record = one(key(), NEVER_USED)
    assert record.AccessKeyId == "AKIA...MPLE"
    assert record.AccessKeyFingerprint == hashlib.sha256(KEY_ID.encode()).hexdigest()[:16]
    assert record.AccessKeyFingerprint == fingerprint(KEY_ID)
    assert len(record.AccessKeyFingerprint) == 16
    assert KEY_ID not in json.dumps(record.to_row())


def test_fingerprint_is_stable_and_distinguishes_keys() -> None:
    assert fingerprint(KEY_ID) == fingerprint(KEY_ID)
    assert fingerprint(KEY_ID) != fingerprint("AKIAIOSFODNN7EXAMPLF")


def test_never_used_key() -> None:
    r = one(key(age=10), NEVER_USED)
    assert r.NeverUsed is True
    assert r.LastUsedAt is None and r.LastUsedRegion is None and r.LastUsedService is None
    assert r.DaysSinceLastUse is None
    assert r.Unused is False  # only 10 days old


def test_used_key_fields() -> None:
    r = one(key(age=30), used(3, "iam", "us-east-1"))
    assert (r.NeverUsed, r.DaysSinceLastUse, r.LastUsedService, r.LastUsedRegion) == (False, 3, "iam", "us-east-1")
    assert r.LastUsedAt == NOW - timedelta(days=3)


@pytest.mark.parametrize(("age", "due"), [(90, False), (90.99, False), (91, True), (500, True)])
def test_rotation_due_boundary(age: float, due: bool) -> None:
    r = one(key(age=age), used(1))
    assert r.AgeDays == int(age)
    assert r.RotationDue is due


@pytest.mark.parametrize(("days", "unused"), [(45, False), (45.5, False), (46, True)])
def test_unused_boundary_for_used_keys(days: float, unused: bool) -> None:
    assert one(key(age=400), used(days)).Unused is unused


@pytest.mark.parametrize(("age", "unused"), [(45, False), (46, True)])
def test_unused_boundary_for_never_used_keys(age: float, unused: bool) -> None:
    assert one(key(age=age), NEVER_USED).Unused is unused


def test_inactive_keys_are_never_due_or_unused() -> None:
    r = one(key(age=1000, status="Inactive"), NEVER_USED)
    assert (r.Status, r.RotationDue, r.Unused, r.NeverUsed, r.AgeDays) == ("Inactive", False, False, True, 1000)


def test_use_after_run_start_counts_as_zero_days() -> None:
    r = one(key(age=5), {"LastUsedDate": NOW + timedelta(minutes=3), "ServiceName": "s3", "Region": "us-east-1"})
    assert r.DaysSinceLastUse == 0


def test_thresholds_come_from_the_run() -> None:
    strict = RunContext(RUN.run_id, NOW, rotation_days=30, unused_days=7)
    (r,) = key_records_for_user(USER, [key(age=31)], {KEY_ID: api(used(8))}, ACCOUNT, strict)
    assert r.RotationDue and r.Unused


def test_user_active_key_count_counts_only_active_keys() -> None:
    keys = [key("AKIAAAAAAAAAAAAAAAA1"), key("AKIAAAAAAAAAAAAAAAA2"), key("AKIAAAAAAAAAAAAAAAA3", status="Inactive")]
    records = key_records_for_user(USER, keys, {k["AccessKeyId"]: api(NEVER_USED, k["AccessKeyId"]) for k in keys},
                                   ACCOUNT, RUN)
    assert [r.UserActiveKeyCount for r in records] == [2, 2, 2]
    assert len({r.AccessKeyFingerprint for r in records}) == 3


def test_user_without_keys_has_no_records() -> None:
    assert key_records_for_user(USER, [], {}, ACCOUNT, RUN) == []


def test_record_row_matches_the_contract() -> None:
    row = one(key(age=100), used(50)).to_row()
    assert list(row) == [name for name, _ in columns(KeyRecord)]
    assert row["TimeGenerated"] == "2026-11-28T12:00:00Z"
    assert row["CreatedAt"].endswith("Z")
    assert row["AccountId"] == "111122223333" and row["AccountName"] == "Production"
    assert row["UserArn"] == USER_DETAIL["Arn"] and row["IsRootKey"] is False
    assert row["RunId"] == RUN.run_id


def test_dates_in_other_time_zones_are_normalised_to_utc() -> None:
    k = key()
    k["CreateDate"] = datetime(2026, 11, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert one(k, NEVER_USED).to_row()["CreatedAt"] == "2026-11-01T12:00:00Z"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda u, k, last: u.pop("Arn"), "IAM GetAccountAuthorizationDetails (user alice): field Arn is missing"),
        (lambda u, k, last: u.pop("UserName"), "IAM GetAccountAuthorizationDetails: field UserName is missing"),
        (lambda u, k, last: k.pop("CreateDate"), "field CreateDate is missing"),
        (lambda u, k, last: k.update(CreateDate="yesterday"), "field CreateDate is not a date"),
        (lambda u, k, last: k.update(CreateDate=datetime(2026, 1, 1)), "field CreateDate has no time zone"),
        (lambda u, k, last: k.update(Status="Expired"), "field Status is 'Expired'"),
        (lambda u, k, last: k.update(AccessKeyId="not-a-key"), "field AccessKeyId is not an access key id"),
        # the one key-id shape (shared/identifiers.py), matched whole: "$" alone would let a trailing newline in
        (lambda u, k, last: k.update(AccessKeyId=KEY_ID + "\n"), "field AccessKeyId is not an access key id"),
        (lambda u, k, last: last.update(LastUsedDate="2026-01-01"), "field LastUsedDate is not a date"),
        (lambda u, k, last: last.update(ServiceName=42), "field ServiceName is not a string"),
    ],
)
def test_malformed_responses_fail_clearly_with_no_record(mutate: Any, message: str) -> None:
    user, k, last = dict(USER_DETAIL), key(), dict(used(1))
    mutate(user, k, last)
    with pytest.raises(MalformedResponseError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        key_records_for_user(entry(user), [k], {KEY_ID: api(last)}, ACCOUNT, RUN)
    assert KEY_ID not in str(info.value)


def test_last_used_as_of_is_when_the_answer_was_true() -> None:
    answered = NOW + timedelta(minutes=2, seconds=7, microseconds=5)
    (r,) = key_records_for_user(USER, [key()], {KEY_ID: api(used(3), at=answered)}, ACCOUNT, RUN)
    assert r.to_row()["LastUsedAsOf"] == "2026-11-28T12:02:07Z"
    report_time = datetime(2026, 11, 28, 8, 0, tzinfo=timezone(timedelta(hours=-2)))
    from_report = LastUse(NOW - timedelta(days=3), "eu-west-1", "s3", report_time)
    (r,) = key_records_for_user(USER, [key()], {KEY_ID: from_report}, ACCOUNT, RUN)
    assert r.to_row()["LastUsedAsOf"] == "2026-11-28T10:00:00Z"
    assert (r.DaysSinceLastUse, r.LastUsedService) == (3, "s3")


def test_missing_last_used_answer_is_an_error_that_masks_the_key() -> None:
    with pytest.raises(MalformedResponseError, match=r"key AKIA\.\.\.MPLE\): AccessKeyLastUsed is missing"):
        key_records_for_user(USER, [key()], {}, ACCOUNT, RUN)


def test_whole_days() -> None:
    assert whole_days(NOW - timedelta(days=2, hours=23), NOW) == 2
    assert whole_days(NOW + timedelta(days=1), NOW) == 0


def test_active_accounts_keeps_active_ones_sorted_with_names() -> None:
    pages = [
        {"Accounts": [{"Id": "222233334444", "Name": "Prod", "Status": "ACTIVE", "State": "ACTIVE"},
                      {"Id": "333344445555", "Name": "Old", "Status": "SUSPENDED", "State": "SUSPENDED"}]},
        {"Accounts": [{"Id": "111122223333", "Name": "Mgmt", "State": "ACTIVE"},
                      {"Id": "444455556666", "Name": "Closing", "State": "PENDING_CLOSURE"}]},
    ]
    assert active_accounts(pages) == [Account("111122223333", "Mgmt"), Account("222233334444", "Prod")]


def test_active_accounts_rejects_a_malformed_id() -> None:
    with pytest.raises(MalformedResponseError, match="12-digit"):
        active_accounts([{"Accounts": [{"Id": "12", "State": "ACTIVE"}]}])


@pytest.mark.parametrize(
    ("total", "failures", "signed_in", "status"),
    [(3, [], True, "Succeeded"), (3, [("1", "x")], True, "PartiallySucceeded"),
     (1, [("1", "x")], True, "Failed"), (1, [("1", "x")], False, "Failed")],
)
def test_run_record_status(total: int, failures: list[tuple[str, str]], signed_in: bool, status: str) -> None:
    r = RunResult(RUN, auth_mode="access_key", sink="file", accounts_total=total,
                  failures=tuple(AccountFailure(a, e) for a, e in failures), keys_collected=7,
                  duration_seconds=1.23456, version="0.1.0", signed_in=signed_in).to_record()
    assert r.Status == status
    assert (r.AccountsTotal, r.AccountsFailed, r.AccountsSucceeded) == (total, len(failures), total - len(failures))
    assert json.loads(r.FailedAccounts) == [{"AccountId": a, "Error": e} for a, e in failures]
    assert r.DurationSeconds == 1.235 and r.KeysCollected == 7
