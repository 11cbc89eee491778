"""The CLI summary counts what the findings catalogue counts: an inactive root key is a root key (as in the HTML
report and queries/findings-by-account.kql), listed among the findings and marked inactive."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.domain import RunContext, RunResult
from shared.findings.catalogue import FINDINGS
from shared.insight.summary import summarize
from tests.support.rows import key

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def row(user: str, **fields: object) -> dict[str, object]:
    return key("r-1", NOW, "123456789012", user, **{"AccountName": "Prod", "Owner": "o@example.com", **fields})


def summary_of(*rows: dict[str, object]) -> list[str]:
    result = RunResult(RunContext("r-1", NOW, 90, 45), "access_key", "file", 1, (), len(rows), 1.0, "t")
    return summarize(result, list(rows)).splitlines()


def test_an_inactive_root_key_counts_as_a_root_key_and_is_listed_marked() -> None:
    lines = summary_of(
        row("alice"),
        row("<root_account>", IsRootKey=True, Status="Inactive", AccessKeyId=None, Owner="", AgeDays=700,
            UserActiveKeyCount=0),
    )
    header = lines[2].split()
    prod = lines[4].split()
    assert header[:6] == ["Account", "Name", "Keys", "Active", "Root", "keys"]
    assert prod[:5] == ["123456789012", "Prod", "2", "1", "1"]  # two keys, one active, one root key
    title = lines.index("Findings (active keys, and inactive keys that still count):")
    assert "<root_account>" in lines[title + 3] and "(root, inactive)" in lines[title + 3]
    assert "ROOT ACCOUNT KEY" in lines[title + 3]


def test_with_active_keys_only_the_findings_title_is_unchanged() -> None:
    lines = summary_of(row("alice", RotationDue=True, AgeDays=100), row("bob", Status="Inactive", AgeDays=400))
    title = lines.index("Findings (active keys):")
    table = lines[title + 3:lines.index("", title)]  # the table ends at the next blank line
    assert [line.split()[1] for line in table] == ["alice"]  # bob is inactive, with no finding


def test_an_excepted_inactive_root_key_counts_under_no_finding() -> None:
    lines = summary_of(row("<root_account>", IsRootKey=True, Status="Inactive", AccessKeyId=None, Excepted=True))
    counts = lines[4].split()[2:]  # Keys, Active, one column per finding of the catalogue, Excepted
    assert counts == ["1", "0", *["0"] * len(FINDINGS), "1"]
    assert not any(line.startswith("Findings (") for line in lines)
