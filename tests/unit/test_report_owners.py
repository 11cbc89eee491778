"""The HTML report's owner and exception tables on canned records: findings by owner, excepted keys out of the
tiles, and the expired exceptions of the file given (or a note that none was)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from shared.findings.exceptions_file import load_exceptions
from shared.insight.report import render_report
from shared.insight.snapshot import findings_by_owner, findings_summary
from tests.unit.test_summary_owners import row

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
DATA = Path(__file__).parents[1] / "data" / "exceptions"
RUN = {"TimeGenerated": "2026-11-29T08:00:00Z", "RunId": "r-1", "Status": "Succeeded", "AuthMode": "access_key",
       "Sink": "file", "AccountsTotal": 1, "AccountsSucceeded": 1, "AccountsFailed": 0, "FailedAccounts": "[]",
       "KeysCollected": 3, "DurationSeconds": 1.0, "CollectorVersion": "t", "RootKeysUnknownAccounts": "[]"}


def keys() -> list[dict[str, object]]:
    common = {"TimeGenerated": RUN["TimeGenerated"], "RunId": "r-1", "CreatedAt": "2026-08-01T00:00:00Z"}
    return [{**row("alice", Owner="alice@example.com"), **common, "AccessKeyFingerprint": "a" * 16,
             "UserArn": "arn:aws:iam::123456789012:user/alice"},
            {**row("bob"), **common, "AccessKeyFingerprint": "b" * 16, "UserArn": "arn:aws:iam::123456789012:user/bob"},
            {**row("ci-build", Owner="ci@example.com", Excepted=True, ExceptionReason="rebuilt weekly",
                   ExceptionExpires="2027-01-15T12:00:00Z"), **common, "AccessKeyFingerprint": "c" * 16,
             "UserArn": "arn:aws:iam::123456789012:user/ci-build"}]


def test_excepted_keys_leave_the_tiles_and_owners_are_grouped() -> None:
    tiles = {name: n for name, _, n in findings_summary(keys())}
    assert tiles["RotationDueKeys"] == 2 and tiles["UnownedKeys"] == 1 and tiles["ActiveKeys"] == 3
    owners = {r["Owner"]: r for r in findings_by_owner(keys())}
    assert owners["(no owner)"]["Findings"] == 2 and owners["ci@example.com"]["ExceptedKeys"] == 1
    assert owners["ci@example.com"]["Findings"] == 0


def test_expired_exceptions_come_from_the_file_given() -> None:
    page = render_report(keys(), [RUN], now=NOW, exceptions=load_exceptions(DATA / "valid.json", now=NOW))
    assert 'data-table="expired-exceptions"' in page and "carol@example.com" in page and "2026-10-01" in page
    assert 'data-table="excepted-keys"' in page and "rebuilt weekly" in page
    without = render_report(keys(), [RUN], now=NOW)
    assert "No exceptions file given: set EXCEPTIONS_FILE" in without
    assert "carol@example.com" not in without
