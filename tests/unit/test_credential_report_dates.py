"""The credential report's dates have one reading (``report_date`` in shared/domain.py), so its two readers, the users'
key slots (shared/collection/last_use.py) and the root keys (shared/collection/transform.py), read every date cell
alike: the same moment, or both refuse it. What a refused cell costs is each reader's own decision: a user's key falls
back to GetAccessKeyLastUsed (the report cannot vouch), a root key has no other source (an error: the account's root
keys are unknown this run)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.collection.last_use import CannotVouch, LastUse, key_slots_from_csv, last_use_from_report
from shared.collection.transform import root_key_records
from shared.domain import Account, RunContext, parse_credential_report, report_date
from shared.errors import MalformedResponseError
from tests.support.credential_report import HEADER

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
GENERATED = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
CREATED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
USED = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
ACCOUNT = Account("111122223333", "Prod")

DATES = [  # as IAM writes it, and the other ways of writing the same moment that ISO 8601 allows
    "2026-11-01T08:30:00+00:00", "2026-11-01T08:30:00Z", "2026-11-01T10:30:00+02:00", "2026-11-01T08:30:00",
    " 2026-11-01T08:30:00+00:00 ",
]
NO_DATE = ["", "  ", "N/A", "no_information", "not_supported", None]
NOT_A_DATE = ["yesterday", "2026-13-01T00:00:00+00:00", "1700000000", "N/A N/A"]


def report_csv(user: str, cell: str, created: str = "2024-01-02T03:04:05+00:00") -> str:
    prefix = (f"{user},arn:aws:iam::111122223333:{'root' if user == '<root_account>' else 'user/' + user},"
              "2019-01-01T00:00:00+00:00,not_supported,N/A,not_supported,not_supported,false")
    slots = f"true,{created},{cell},us-east-1,iam,false,N/A,N/A,N/A,N/A"
    return "\n".join([HEADER, f"{prefix},{slots},false,N/A,false,N/A"])


@pytest.mark.parametrize("cell", DATES)
def test_a_date_is_one_utc_moment(cell: str) -> None:
    moment = report_date(cell)
    assert moment == USED and moment is not None and moment.tzinfo is UTC


@pytest.mark.parametrize("cell", NO_DATE)
def test_the_cells_that_hold_no_date(cell: str | None) -> None:
    assert report_date(cell) is None


@pytest.mark.parametrize("cell", NOT_A_DATE)
def test_anything_else_is_refused(cell: str) -> None:
    with pytest.raises(ValueError):
        report_date(cell)


def user_last_used(cell: str) -> datetime | str:
    answer = last_use_from_report(key_slots_from_csv(report_csv("bob", cell), GENERATED), "bob", CREATED)
    return answer.used_at if isinstance(answer, LastUse) and answer.used_at else str(answer)


def root_last_used(cell: str) -> datetime | str:
    report = parse_credential_report(report_csv("<root_account>", cell), GENERATED)
    try:
        (record,) = root_key_records(report, ACCOUNT, RunContext("run-1", NOW, 90, 45))
    except MalformedResponseError as exc:
        return str(exc)
    return record.LastUsedAt or "never"


@pytest.mark.parametrize("cell", DATES)
def test_both_readers_read_a_last_used_date_alike(cell: str) -> None:
    assert user_last_used(cell) == root_last_used(cell) == USED


@pytest.mark.parametrize("cell", NOT_A_DATE)
def test_both_readers_refuse_what_is_not_a_date(cell: str) -> None:
    assert user_last_used(cell) == str(CannotVouch("last used date is not a date"))
    assert root_last_used(cell) == "IAM GetCredentialReport: last used date is not a date"


@pytest.mark.parametrize("created", ["2024-01-02T03:04:05+00:00", "2024-01-02T05:04:05+02:00", " 2024-01-02T03:04:05Z"])
def test_both_readers_read_a_creation_date_alike(created: str) -> None:
    slots = key_slots_from_csv(report_csv("bob", "N/A", created).replace(",N/A,us-east-1,iam,", ",N/A,N/A,N/A,"),
                               GENERATED)
    assert last_use_from_report(slots, "bob", CREATED) == LastUse(None, None, None, GENERATED)  # matched, never used
    report = parse_credential_report(report_csv("<root_account>", "N/A", created), GENERATED)
    (record,) = root_key_records(report, ACCOUNT, RunContext("run-1", NOW, 90, 45))
    assert record.CreatedAt == CREATED
