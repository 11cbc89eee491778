"""The owner digests' pure parts (shared/notify/digest.py, render.py, run.py in memory): the 15/7/1-then-daily rule,
who gets which row, what a digest shows (never a full key id, hostile text cleaned), and the run's record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import SinkError
from shared.findings.catalogue import Thresholds
from shared.notify import render
from shared.notify.digest import (
    Digest,
    DigestRow,
    build_digests,
    due_rows,
    masked_key,
    notice_rows,
    recipient_of,
)
from shared.notify.run import NotifyRun, run_digests
from shared.records import DIGEST_RUNS_TABLE, Table

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
LIMITS = Thresholds(90, 45)


def key(age: float, *, owner: str = "ann@example.com", used: float | None = 1, **fields: Any) -> dict[str, Any]:
    row = {"Status": "Active", "AccountId": "111122223333", "AccountName": "Prod", "UserName": "ann",
           "AccessKeyId": "AKIA...WXYZ", "CreatedAt": (NOW - timedelta(days=age)).isoformat(),
           "LastUsedAt": None if used is None else (NOW - timedelta(days=used)).isoformat(),
           "NeverUsed": used is None, "Unused": False, "Excepted": False, "Owner": owner,
           "TimeGenerated": (NOW - timedelta(hours=2)).isoformat()}
    return {**row, **fields}


@pytest.mark.parametrize(("days_to_due", "listed"), [
    (16, False), (15, True), (14, False), (8, False), (7, True), (6, False), (2, False), (1, True), (0, True),
    (-1, True), (-400, True)])
def test_rotation_is_listed_15_7_and_1_days_before_then_every_day(days_to_due: int, listed: bool) -> None:
    rows = notice_rows([key(90 - days_to_due + 0.1)], NOW, LIMITS)
    assert [(r.finding, r.days_to_due) for r in rows] == ([("Rotation due", days_to_due)] if listed else [])


def test_due_dates_and_the_other_findings() -> None:
    never = due_rows(key(38.5, used=None), NOW, LIMITS)  # never used: unused in 7 days
    assert [(r.finding, r.days_to_due) for r in never] == [("Rotation due", 52), ("Never used", 7)]
    assert never[1].due_date == NOW - timedelta(days=38.5) + timedelta(days=45)
    idle = due_rows(key(60, used=50, Unused=True), NOW, LIMITS)
    assert [(r.finding, r.days_to_due) for r in idle] == [("Rotation due", 30), ("Unused", -5)]
    flagged = due_rows(key(10, Privileged=True, Quarantined=True), NOW, LIMITS)
    assert [(r.finding, r.days_to_due) for r in flagged] == [("Quarantined", 0), ("Privileged", 0), (
        "Rotation due", 80)]
    # excepted and inactive keys are nobody's business today
    assert due_rows(key(200, Excepted=True), NOW, LIMITS) == []
    assert due_rows(key(200, Status="Inactive"), NOW, LIMITS) == []


def row(owner: str, days: int = -1, user: str = "ann") -> DigestRow:
    return DigestRow(owner, "111122223333", "Prod", user, "AKIA...WXYZ", "Rotation due", NOW, days)


def test_one_digest_per_owner_address_and_the_rest_to_the_fallback() -> None:
    rows = [row("Ann@Example.com", 7), row("ann@example.com", -3, "ann2"), row(""), row("platform team"),
            row("x@y.com, evil@z.com")]
    digests = build_digests(rows, "sec@example.com")
    assert [(d.recipient, len(d.rows), d.fallback) for d in digests.digests] == [
        ("ann@example.com", 2, False), ("sec@example.com", 3, True)]
    assert [r.days_to_due for r in digests.digests[0].rows] == [-3, 7]  # most urgent first
    nobody = build_digests(rows, None)
    assert [d.recipient for d in nobody.digests] == ["ann@example.com"] and len(nobody.unaddressed) == 3


@pytest.mark.parametrize("owner", ["", "a b@example.com", "<a@example.com>", "a@example", "Ann <a@example.com>",
                                   "a@example.com\nBcc: b@example.com", "a@@example.com"])
def test_an_owner_that_is_not_a_plain_address_is_nobody(owner: str) -> None:
    assert recipient_of(owner) is None


def test_a_digest_never_shows_a_full_key_id_and_cleans_hostile_text() -> None:
    assert masked_key("AKIAIOSFODNN7EXAMPLE") == "AKIA...MPLE" and masked_key(None) == "(root key)"
    hostile = DigestRow("ann@example.com", "111122223333", "<script>alert(1)</script>", "bob\u202e\x1b[31m",
                        masked_key("AKIAIOSFODNN7EXAMPLE"), "Rotation due", NOW, -2)
    digest = Digest("ann@example.com", (hostile,))
    html, text = render.html_text(digest), render.plain_text(digest)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "\u202e" not in text and "\x1b" not in text and "AKIAIOSFODNN7EXAMPLE" not in text + html
    assert "2 day(s) overdue" in text and render.subject(digest).endswith("1 overdue")


def test_a_broken_masking_is_caught() -> None:
    """The check above on a copy of the rendering that shows the raw value: the full id would be seen."""
    raw = DigestRow("ann@example.com", "1", "", "u", "AKIAIOSFODNN7EXAMPLE", "Rotation due", NOW, -1)
    assert "AKIAIOSFODNN7EXAMPLE" in render.plain_text(Digest("ann@example.com", (raw,)))


class Rows:
    def __init__(self, rows: list[DigestRow] | Exception) -> None:
        self._rows = rows

    def digest_rows(self, now: datetime) -> list[DigestRow]:
        if isinstance(self._rows, Exception):
            raise self._rows
        return self._rows


class Sink:
    name = "memory"

    def __init__(self, fail: bool = False) -> None:
        self.rows: list[dict[str, Any]] = []
        self.fail = fail

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if self.fail:
            raise SinkError("down", len(rows))
        assert table is DIGEST_RUNS_TABLE
        self.rows += rows

    def close(self) -> None:
        pass


class Mailer:
    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.sent: list[str] = []

    def send(self, digest: Digest, run_id: str) -> None:
        if digest.recipient in self.refuse:
            from shared.notify.email import DigestNotSentError

            raise DigestNotSentError("HTTP 403: no role")
        self.sent.append(digest.recipient)


def test_the_run_record_counts_what_was_sent_and_not_sent() -> None:
    rows = [row("ann@example.com"), row("bob@example.com"), row("")]
    sink, mailer = Sink(), Mailer({"bob@example.com"})
    record = run_digests(NotifyRun("send", None), Rows(rows), sink, mailer, now=NOW)
    assert (record.Status, record.DigestsBuilt, record.DigestsSent, record.DigestsNotSent,
            record.RowsWithoutRecipient) == ("PartiallySucceeded", 2, 1, 1, 1)
    assert json.loads(record.Errors) == [{"Recipient": "bob@example.com", "Error": "HTTP 403: no role"}]
    assert sink.rows == [record.to_row()] and mailer.sent == ["ann@example.com"]
    everyone = Mailer({"ann@example.com", "bob@example.com"})
    assert run_digests(NotifyRun("send", None), Rows(rows), Sink(), everyone, now=NOW).Status == "Failed"
    nothing_to_say = run_digests(NotifyRun("send", None), Rows([]), Sink(), Mailer(set()), now=NOW)
    assert (nothing_to_say.Status, nothing_to_say.DigestsBuilt) == ("Succeeded", 0)


def test_no_rows_is_a_failed_run_and_an_undelivered_record_is_raised() -> None:
    failed = run_digests(NotifyRun("dry_run", None), Rows(ValueError("workspace said no")), Sink(), now=NOW)
    assert failed.Status == "Failed" and "workspace said no" in failed.Errors
    with pytest.raises(SinkError):
        run_digests(NotifyRun("dry_run", None), Rows([row("ann@example.com")]), Sink(fail=True), now=NOW)


def test_the_errors_field_stays_bounded() -> None:
    from shared.notify.run import MAX_ERRORS, errors_field

    many = [{"Recipient": f"u{n}@example.com", "Error": "HTTP 500"} for n in range(MAX_ERRORS + 7)]
    kept = json.loads(errors_field(many))
    assert len(kept) == MAX_ERRORS + 1 and kept[-1]["Error"] == "7 more error(s), not listed"
    assert json.loads(errors_field(many[:3])) == many[:3]
