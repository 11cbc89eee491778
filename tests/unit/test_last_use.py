"""Last use from the credential report (shared/collection/last_use.py), on canned report CSVs shaped as IAM and moto
write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.collection.last_use import (
    CannotVouch,
    CredentialReportFormatError,
    LastUse,
    ReportKeySlots,
    key_slots,
    key_slots_from_csv,
    last_use_from_report,
)
from tests.support.credential_report import HEADER

GENERATED = datetime(2026, 11, 29, 6, 0, 0, tzinfo=UTC)
ALICE_KEY_1 = datetime(2025, 3, 1, 10, 0, 5, tzinfo=UTC)
ALICE_KEY_2 = datetime(2026, 10, 1, 8, 30, 0, tzinfo=UTC)
BOB_KEY = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def row(user: str, slot1: str, slot2: str = "false,N/A,N/A,N/A,N/A") -> str:
    return (f"{user},arn:aws:iam::111122223333:user/{user},2020-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,"
            f"{slot1},{slot2},false,N/A,false,N/A")


ROOT = ("<root_account>,arn:aws:iam::111122223333:root,2019-01-01T00:00:00+00:00,not_supported,"
        "2026-11-01T00:00:00+00:00,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,"
        "false,N/A,false,N/A")

# As IAM writes it: dates with +00:00, N/A where nothing applies.
AWS_REPORT = "\n".join([
    HEADER,
    ROOT,
    row("alice", "true,2025-03-01T10:00:05+00:00,2026-11-28T17:42:00+00:00,eu-west-1,s3",
        "false,2026-10-01T08:30:00+00:00,N/A,N/A,N/A"),
    row("bob", "true,2024-01-02T03:04:05+00:00,2025-06-01T00:00:00+00:00,us-east-1,iam"),
    row("carol", "false,N/A,N/A,N/A,N/A"),
]) + "\n"


def report(text: str = AWS_REPORT, generated: datetime = GENERATED) -> ReportKeySlots:
    return key_slots_from_csv(text, generated)


def test_a_used_key_gets_date_region_service_and_the_reports_time() -> None:
    used = last_use_from_report(report(), "alice", ALICE_KEY_1)
    assert used == LastUse(datetime(2026, 11, 28, 17, 42, tzinfo=UTC), "eu-west-1", "s3", GENERATED)


def test_the_second_slot_is_matched_by_its_creation_time_not_its_position() -> None:
    assert last_use_from_report(report(), "alice", ALICE_KEY_2) == LastUse(None, None, None, GENERATED)
    assert last_use_from_report(report(), "bob", BOB_KEY) == LastUse(
        datetime(2025, 6, 1, tzinfo=UTC), "us-east-1", "iam", GENERATED
    )


def test_a_never_used_key_reads_as_the_api_would_answer() -> None:
    never = last_use_from_report(report(), "alice", ALICE_KEY_2)
    assert isinstance(never, LastUse)
    assert never.as_api_answer() == {"Region": "N/A", "ServiceName": "N/A"}
    used = last_use_from_report(report(), "alice", ALICE_KEY_1)
    assert isinstance(used, LastUse)
    assert used.as_api_answer() == {
        "LastUsedDate": datetime(2026, 11, 28, 17, 42, tzinfo=UTC), "Region": "eu-west-1", "ServiceName": "s3"
    }


def test_creation_time_matches_to_the_second_in_any_time_zone() -> None:
    # botocore may return microseconds or another offset; the report has whole seconds in UTC.
    same = ALICE_KEY_1.replace(microsecond=999_999).astimezone(timezone(timedelta(hours=2)))
    assert isinstance(last_use_from_report(report(), "alice", same), LastUse)
    one_second_later = ALICE_KEY_1 + timedelta(seconds=1)
    assert last_use_from_report(report(), "alice", one_second_later) == CannotVouch(
        "no slot with the key's creation time"
    )


def test_a_key_created_after_the_report_cannot_be_vouched_for() -> None:
    assert last_use_from_report(report(), "alice", GENERATED + timedelta(minutes=5)) == CannotVouch(
        "created after the report"
    )
    assert last_use_from_report(report(), "alice", GENERATED) == CannotVouch("created after the report")


def test_a_user_missing_from_the_report_cannot_be_vouched_for() -> None:
    assert last_use_from_report(report(), "dave", BOB_KEY) == CannotVouch("user not in the report")


def test_a_rotated_slot_does_not_vouch_for_the_new_key() -> None:
    # bob deleted his key and made a new one after the report: the slot still shows the old one
    assert last_use_from_report(report(), "bob", datetime(2026, 11, 29, 7, 0, tzinfo=UTC)) == CannotVouch(
        "created after the report"
    )
    assert last_use_from_report(report(), "bob", datetime(2024, 1, 2, tzinfo=UTC)) == CannotVouch(
        "no slot with the key's creation time"
    )


def test_two_slots_with_the_same_creation_second_are_ambiguous() -> None:
    text = "\n".join([
        HEADER,
        row("erin", "true,2025-05-05T05:05:05+00:00,2026-11-01T00:00:00+00:00,eu-west-1,s3",
            "true,2025-05-05T05:05:05+00:00,N/A,N/A,N/A"),
    ])
    assert last_use_from_report(report(text), "erin", datetime(2025, 5, 5, 5, 5, 5, tzinfo=UTC)) == CannotVouch(
        "both slots have the key's creation time"
    )


def test_a_user_in_two_rows_is_ambiguous() -> None:
    text = "\n".join([HEADER, row("bob", "true,2024-01-02T03:04:05+00:00,N/A,N/A,N/A"),
                      row("bob", "true,2024-01-02T03:04:05+00:00,2026-01-01T00:00:00+00:00,us-east-1,s3")])
    assert last_use_from_report(report(text), "bob", BOB_KEY) == CannotVouch("user in more than one row")


def test_moto_style_not_supported_region_and_service_need_the_api() -> None:
    # moto writes "not_supported" for every key's last-used region and service
    text = "\n".join([
        HEADER,
        row("alice", "true,2025-03-01T10:00:05+00:00,2026-11-28T17:42:00+00:00,not_supported,not_supported",
            "true,2026-10-01T08:30:00+00:00,N/A,not_supported,not_supported"),
    ])
    assert last_use_from_report(report(text), "alice", ALICE_KEY_1) == CannotVouch("last use not_supported")
    assert last_use_from_report(report(text), "alice", ALICE_KEY_2) == CannotVouch("last use not_supported")


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ("no_information,N/A,N/A", "last use no_information"),
        ("2026-11-01T00:00:00+00:00,N/A,s3", "last use partly N/A or empty"),
        ("N/A,eu-west-1,s3", "last use partly N/A or empty"),
        ("2026-11-01T00:00:00+00:00,,s3", "last use partly N/A or empty"),
        ("yesterday,eu-west-1,s3", "last used date is not a date"),
        ("2026-11-29T07:00:00+00:00,eu-west-1,s3", "last used after the report was generated"),
    ],
)
def test_values_that_do_not_mean_what_the_api_says_cannot_be_vouched_for(cells: str, reason: str) -> None:
    text = "\n".join([HEADER, row("bob", f"true,2024-01-02T03:04:05+00:00,{cells}")])
    assert last_use_from_report(report(text), "bob", BOB_KEY) == CannotVouch(reason)


def test_a_report_without_the_key_columns_is_a_named_error() -> None:
    with pytest.raises(CredentialReportFormatError, match="access_key_1_active"):
        key_slots_from_csv("user,arn\nalice,arn:aws:iam::111122223333:user/alice\n", GENERATED)
    with pytest.raises(CredentialReportFormatError, match="access_key_1_active"):
        key_slots([{"user": "alice", "arn": "arn:aws:iam::111122223333:user/alice"}], GENERATED)


def test_parsed_rows_give_the_same_slots_as_the_csv() -> None:
    import csv
    import io

    rows = [dict(r) for r in csv.DictReader(io.StringIO(AWS_REPORT))]
    assert key_slots(rows, GENERATED) == report()


def test_the_root_row_and_slots_without_keys_parse() -> None:
    parsed = report()
    carol = parsed.slots_by_user["carol"]
    assert carol is not None and all(slot.created is None for slot in carol)
    assert "<root_account>" in parsed.slots_by_user
    assert parsed.generated_at == GENERATED


def test_generated_time_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        key_slots_from_csv(AWS_REPORT, GENERATED.replace(tzinfo=None))
