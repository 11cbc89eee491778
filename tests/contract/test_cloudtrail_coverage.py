"""CloudTrail coverage (queries/cloudtrail-coverage.kql): per AWS account of the inventory, when AWSCloudTrail last had
an event from it, or never; executed over fixture rows in the local KQL engine (tests/support/kql_engine.py). And the
usage views say when their data cannot be trusted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("duckdb_kql", reason="duckdb-kql is a test dependency (requirements-dev.txt)")

from tests.support.kql_engine import Row, Workspace

ROOT = Path(__file__).resolve().parents[2]
QUERY = ROOT / "queries" / "cloudtrail-coverage.kql"
NOW = datetime.now(UTC)
SENDING, STALE, NEVER, OUTSIDE = "111111111111", "222222222222", "333333333333", "444444444444"


def keys() -> list[Row]:
    accounts = [(SENDING, "Prod"), (STALE, "Dev"), (NEVER, "Sandbox")]
    return [{"TimeGenerated": (NOW - timedelta(hours=2)).isoformat(), "RunId": "run-1", "AccountId": a,
             "AccountName": n, "AccessKeyFingerprint": f"fp-{a}"} for a, n in accounts]


def trail() -> list[Row]:
    return [
        {"TimeGenerated": (NOW - timedelta(minutes=30)).isoformat(), "RecipientAccountId": SENDING},
        {"TimeGenerated": (NOW - timedelta(hours=5)).isoformat(), "RecipientAccountId": SENDING},
        {"TimeGenerated": (NOW - timedelta(days=3)).isoformat(), "RecipientAccountId": STALE},
        # an account outside the inventory sends CloudTrail: not listed (the coverage is of the inventory)
        {"TimeGenerated": (NOW - timedelta(minutes=5)).isoformat(), "RecipientAccountId": OUTSIDE},
    ]


def run(text: str, trail_rows: list[Row]) -> dict[str, Row]:
    workspace = Workspace(keys(), [], {"AWSCloudTrail": trail_rows})
    try:
        return {r["AccountId"]: r for r in workspace.query(text)}
    finally:
        workspace.close()


def state(row: Row) -> str:
    return str(row["Coverage"]).split(" ")[0]


def test_each_inventory_account_shows_its_last_trail_event_or_never() -> None:
    rows = run(QUERY.read_text(encoding="utf-8"), trail())
    assert set(rows) == {SENDING, STALE, NEVER}
    assert {a: state(r) for a, r in rows.items()} == {SENDING: "sending", STALE: "stale", NEVER: "never"}
    assert rows[SENDING]["LastTrailEvent"] == NOW - timedelta(minutes=30)
    assert (rows[SENDING]["TrailEvents"], rows[NEVER]["TrailEvents"], rows[NEVER]["LastTrailEvent"]) == (2, 0, None)
    assert "cannot be trusted" in rows[NEVER]["Coverage"] and "cannot be trusted" in rows[STALE]["Coverage"]
    assert rows[SENDING]["AccountName"] == "Prod"


def test_without_the_trail_table_every_account_is_never() -> None:
    rows = run(QUERY.read_text(encoding="utf-8"), [])
    assert {state(r) for r in rows.values()} == {"never"}


@pytest.mark.parametrize(("old", "new"), [
    ("inventory\n| join kind=leftouter lastEvent", "inventory\n| join kind=inner lastEvent"),  # "never" drops out
    ("by AccountId = RecipientAccountId", "by AccountId = tostring(RecipientAccountId) | where false"),
    ("LastTrailEvent < ago(staleAfter)", "LastTrailEvent > ago(staleAfter)"),
])
def test_a_wrong_query_disagrees(old: str, new: str) -> None:
    text = QUERY.read_text(encoding="utf-8")
    assert old in text
    rows = run(text.replace(old, new), trail())
    assert {a: state(r) for a, r in rows.items()} != {SENDING: "sending", STALE: "stale", NEVER: "never"}


def test_the_usage_views_say_when_their_data_cannot_be_trusted() -> None:
    workbook = (ROOT / "infra" / "workbook" / "aws-iam-keys.workbook.json").read_text(encoding="utf-8")
    usage_tab = workbook[workbook.index('"name": "usage-intro"') - 2000:]
    assert "cannot be trusted" in usage_tab and "coverage table" in usage_tab
    assert '"name": "cloudtrail-coverage"' in workbook
    docs = (ROOT / "docs" / "insight.md").read_text(encoding="utf-8")
    section = docs[docs.index("## CloudTrail coverage"):]
    assert "az monitor log-analytics workspace table show" in section and "plan" in section
