"""The CLI summary's owner and exception parts on canned key rows: findings by owner, excepted keys counted under no
finding but listed (inactive ones too), and the exceptions file's expired entries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from shared.domain import RunContext, RunResult
from shared.findings.exceptions_file import load_exceptions
from shared.insight.summary import summarize

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
DATA = Path(__file__).parents[1] / "data" / "exceptions"


def row(user: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "AccountId": "123456789012", "AccountName": "Prod", "UserName": user, "Owner": "",
        "AccessKeyId": f"AKIA...{user[:4].upper()}", "Status": "Active", "AgeDays": 100, "DaysSinceLastUse": 1,
        "NeverUsed": False, "RotationDue": True, "Unused": False, "UserActiveKeyCount": 1, "IsRootKey": False,
        "Excepted": False, "ExceptionReason": None, "ExceptionExpires": None,
    }
    return {**base, **fields}


def test_owners_exceptions_and_expired_entries_in_the_summary() -> None:
    rows = [
        row("alice", Owner="alice@example.com"),
        row("bob"),  # rotation due and no owner
        row("ci-build", Owner="ci@example.com", Excepted=True, ExceptionReason="rebuilt weekly",
            ExceptionExpires="2027-01-15T12:00:00Z"),
        row("<root_account>", IsRootKey=True, Status="Inactive", RotationDue=False, AccessKeyId=None, Excepted=True,
            ExceptionReason="break-glass key in the safe", ExceptionExpires="2027-06-30T00:00:00Z"),
    ]
    result = RunResult(RunContext("r-1", NOW, 90, 45), "access_key", "file", 1, (), len(rows), 1.0, "t")
    text = summarize(result, rows, load_exceptions(DATA / "valid.json", now=NOW))
    lines = text.splitlines()
    (prod,) = [line.split() for line in lines if line.startswith("123456789012")][:1]
    header = lines[2].split("  ")
    assert [h.strip() for h in header if h.strip()][-2:] == ["No owner", "Excepted"]
    assert prod[-2:] == ["1", "2"]  # bob has no owner; both excepted keys counted as such, the inactive root key too
    assert prod[6] == "2"  # rotation due: alice and bob, not the excepted ci-build
    owners = lines[lines.index("Findings by owner (active keys of IAM users):") + 3:]
    assert owners[0].startswith("(no owner)  ") and owners[0].split()[2] == "1"
    assert any(line.startswith("ci@example.com") for line in owners)
    findings = text.split("Findings (active keys):")[1].split("Excepted (")[0]
    assert "ci-build" not in findings and "bob" in findings and "no owner" in findings
    excepted = text.split("Excepted (accepted risk, left out of the counts above):")[1]
    assert "ci-build" in excepted and "rebuilt weekly" in excepted and "2027-01-15" in excepted
    assert "<root_account>" in excepted and "ROOT ACCOUNT KEY" in excepted
    assert "entry 3 (accountId 602955238310): unused - expired 2026-10-01; approved by carol@example.com" in text
