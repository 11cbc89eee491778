"""The queries of where each key is used from (the AWSCloudTrail join) and what changed since the last run.

The column check of every query (against shared/records.py and AWSCloudTrail's published columns) is in
tests/contract/test_queries.py; here: the join's definition, the missing-table behaviour, the shared KeyChanges block,
that no query lets a full access key id out, and that the alerts report each run or call once.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from shared.collection.transform import fingerprint

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "queries"
CHANGES_BEGIN = "// --- key changes:"
CHANGES_END = "// --- end of key changes ---"
FINGERPRINT = "substring(hash_sha256(UserIdentityAccessKeyId), 0, 16)"

USAGE_QUERIES = ["key-usage", "key-usage-sources"]
TRAIL_QUERIES = [*USAGE_QUERIES, "alert-key-new-source", "alert-key-usage-mismatch"]
CHANGE_QUERIES = ["key-changes", "key-changes-per-day", "alert-new-key"]


def read(name: str) -> str:
    return (QUERIES / f"{name}.kql").read_text(encoding="utf-8")


def changes_block(text: str) -> str:
    return text[text.index(CHANGES_BEGIN):text.index(CHANGES_END) + len(CHANGES_END)]


def test_the_fingerprint_is_the_collectors() -> None:
    """KQL's hash_sha256 gives lowercase hex, as hashlib's hexdigest: the first 16 characters of both must match the
    AccessKeyFingerprint the collector writes."""
    key_id = "AKIAIOSFODNN7EXAMPLE"
    assert fingerprint(key_id) == hashlib.sha256(key_id.encode()).hexdigest()[:16]
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint(key_id))


@pytest.mark.parametrize("name", TRAIL_QUERIES)
def test_the_trail_is_joined_on_the_fingerprint_of_long_term_keys(name: str) -> None:
    text = read(name)
    assert FINGERPRINT in text
    assert 'UserIdentityAccessKeyId startswith "AKIA"' in text  # temporary (ASIA...) credentials are not inventoried


@pytest.mark.parametrize("name", TRAIL_QUERIES)
def test_a_missing_trail_table_is_no_error(name: str) -> None:
    """union isfuzzy=true skips a table the workspace does not have; the datatable leg keeps the union valid and
    declares every column the query reads from the trail."""
    text = read(name)
    match = re.search(r"union isfuzzy=true\s*\(datatable\(([^)]*)\)\[\]\),\s*\(AWSCloudTrail\b", text)
    assert match, name
    stub_columns = set(re.findall(r"(\w+):\s*\w+", match[1]))
    leg = text[match.end():text.index(";", match.end())]
    projected = set(re.findall(r"\w+", leg.rsplit("| project", 1)[1]))
    assert projected <= stub_columns, f"{name}: the stub lacks {projected - stub_columns}"


@pytest.mark.parametrize("name", USAGE_QUERIES)
def test_the_usage_queries_say_when_the_trail_is_missing(name: str) -> None:
    text = read(name)
    note = re.search(r'print Note = strcat\(("[^"]*",\s*)+"[^"]*"\)\s*\|\s*where trailEvents == 0', text)
    assert note and "No AWSCloudTrail events" in note[0] and "Amazon Web Services connector" in note[0]
    assert "let trailEvents = toscalar(trail | count);" in text


def test_keys_without_calls_stay_in_the_usage_table_with_zero() -> None:
    assert "join kind=leftouter usage on AccessKeyFingerprint" in read("key-usage")


def test_the_usage_query_reports_every_asked_dimension() -> None:
    text = read("key-usage")
    for column in ("SourceIps", "Countries", "Networks", "UserAgents", "Services", "Regions", "Calls", "Errors",
                   "ErrorRatePct", "FirstSeen", "LastSeen"):
        assert re.search(rf"\b{column}\b", text.rsplit("| project", 1)[1]), column
    assert "geo_info_from_ip_address(SourceIpAddress)" in text


@pytest.mark.parametrize("name", TRAIL_QUERIES)
def test_no_full_key_id_leaves_a_query(name: str) -> None:
    """The final projection of every query reading the trail names no UserIdentityAccessKeyId (the contract: the
    full id is never shown); the new-source alert masks it as the collector does."""
    text = read(name)
    final = text[text.rindex(";\n") + 2:]  # the query's own statement, after the last let
    clauses = re.findall(r"\|\s*project\s(.*?)(?=\n\s*\||\)\s*$|\),\s*$|\Z)", final, re.S | re.M)
    assert clauses, f"{name}: its output is a projection"
    for clause in clauses:
        assert "UserIdentityAccessKeyId" not in clause, clause


def test_the_new_source_alert_masks_ids_as_the_collector() -> None:
    text = read("alert-key-new-source")
    assert 'strcat(substring(UserIdentityAccessKeyId, 0, 4), "...",' in text
    assert "substring(UserIdentityAccessKeyId, strlen(UserIdentityAccessKeyId) - 4)" in text


def test_every_change_query_uses_the_same_key_changes_function() -> None:
    reference = changes_block(read("key-changes"))
    assert reference.count("let KeyChanges = (window: timespan) {") == 1
    for name in CHANGE_QUERIES:
        assert changes_block(read(name)) == reference, f"{name}: copy the block from key-changes.kql"
        assert "KeyChanges(lookback)" in read(name)


def test_key_changes_follows_the_snapshot_rules() -> None:
    block = changes_block(read("key-changes"))
    assert 'Status in ("Succeeded", "PartiallySucceeded")' in block  # good runs only
    assert "summarize arg_max(TimeGenerated, *) by RunId, AccessKeyFingerprint;" in block  # a row twice counts once
    assert "summarize arg_max(TimeGenerated, *) by RunId;" in block
    assert "join kind=leftanti failed on RunId, AccountId" in block  # a run an account failed in is no snapshot of it
    for event in ("Created", "Deactivated", "Reactivated", "Deleted", "Rotated", "RootKeyAppeared", "RootKeyRemoved"):
        assert f'"{event}"' in block, event


@pytest.mark.parametrize("name", ["alert-new-key", "alert-key-new-source", "alert-key-usage-mismatch"])
def test_alerts_report_each_run_or_call_once(name: str) -> None:
    """Alerts look back far enough for context but report only what arrived within the report window (the rules'
    frequency), by ingestion time: a run's or a call's late arrival is neither missed nor reported twice."""
    text = read(name)
    assert "let reportWindow = 1h;" in text
    assert "ingestion_time()" in text
    assert re.search(r"(RunIngestedAt|FirstIngested) > ago\(reportWindow\)", text)


def test_the_change_timeline_is_a_make_series_per_day_and_event_type() -> None:
    text = read("key-changes-per-day")
    assert re.search(r"make-series Events = count\(\) default = 0 on TimeGenerated .*\n?\s*step 1d by EventType", text)


def test_the_new_key_alert_fires_on_new_keys_only() -> None:
    text = read("alert-new-key")
    assert 'EventType in ("Created", "Rotated", "RootKeyAppeared")' in text


# --------------------------------------------------------------------------------------------------------------------
# The workbook's usage and timeline tabs


def workbook() -> dict[str, object]:
    from tests.contract.test_queries import build_workbook_module

    return dict(build_workbook_module().build_workbook())


def test_the_workbook_has_a_tab_strip_and_a_group_per_tab() -> None:
    from tests.contract.test_queries import build_workbook_module

    builder = build_workbook_module()
    items = workbook()["items"]
    assert isinstance(items, list)
    (strip,) = [i for i in items if i["type"] == 11]
    assert strip["content"]["style"] == "tabs"
    links = strip["content"]["links"]
    assert [(link["linkTarget"], link["cellValue"]) for link in links] == [("parameter", builder.TAB_PARAMETER)] * 4
    tabs = [link["subTarget"] for link in links]
    assert tabs == ["keys", "long-lived", "usage", "changes"]
    groups = {i["name"]: i for i in items if i["type"] == 12}
    for tab in tabs:
        visibility = groups[f"tab-{tab}"]["conditionalVisibility"]
        assert visibility == {"parameterName": builder.TAB_PARAMETER, "comparison": "isEqualTo", "value": tab}
    # everything but the intro, the account filter and the strip lives in a tab
    assert [i["name"] for i in items if i["type"] != 12] == ["intro", "accounts", "tabs"]


def tab_queries(tab: str) -> dict[str, dict[str, object]]:
    items = workbook()["items"]
    assert isinstance(items, list)
    (group,) = [i for i in items if i["name"] == f"tab-{tab}"]
    return {i["name"]: i["content"] for i in group["content"]["items"] if i["type"] == 3}


def test_the_long_lived_tab_shows_every_long_lived_credential() -> None:
    queries = tab_queries("long-lived")
    assert set(queries) == {"credentials-summary", "long-lived-by-type", "credential-findings", "credential-changes"}
    assert queries["credentials-summary"]["visualization"] == "tiles"
    items = workbook()["items"]
    assert isinstance(items, list)
    (group,) = [i for i in items if i["name"] == "tab-long-lived"]
    nested = [g for g in group["content"]["items"] if g["type"] == 12]
    assert [i["name"] for g in nested for i in g["content"]["items"]] == ["long-lived-credentials"]


def test_the_usage_tab_shows_the_usage_join_per_key_and_per_source() -> None:
    queries = tab_queries("usage")
    assert set(queries) == {"cloudtrail-coverage", "key-usage", "key-usage-sources", "key-creators"}
    for name, content in queries.items():
        assert content["visualization"] == "table"
        assert str(content["query"]).startswith(read(name).rstrip("\n"))


def test_the_timeline_tab_charts_the_changes_per_day_and_lists_them() -> None:
    queries = tab_queries("changes")
    assert set(queries) == {"key-changes-per-day", "key-changes"}
    chart = queries["key-changes-per-day"]
    assert chart["visualization"] == "timechart"
    assert chart["chartSettings"] == {"xAxis": "TimeGenerated", "yAxis": ["Events"], "group": "EventType",
                                      "showLegend": True}
    assert queries["key-changes"]["visualization"] == "table"
    assert chart["timeContext"] == {"durationMs": 30 * 86_400_000}


# --------------------------------------------------------------------------------------------------------------------
# The Azure Monitor alert rules of the new alerts


@pytest.mark.parametrize(("rule", "query"), [("newKey", "alert-new-key"), ("newSource", "alert-key-new-source"),
                                             ("usageMismatch", "alert-key-usage-mismatch")])
def test_new_alerts_fire_per_account_once_per_report_window(rule: str, query: str) -> None:
    from tests.contract.test_queries import alert_rules

    properties = alert_rules()[rule]["properties"]
    (criterion,) = properties["criteria"]["allOf"]
    assert [d["name"] for d in criterion["dimensions"]] == ["AccountId"]
    assert re.search(r"\bAccountId\b", read(query)[read(query).rindex(";\n"):])  # the dimension is an output column
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == ("Count", "GreaterThan", 0)
    # evaluated as often as the query's report window: each run or call reported once, then resolved
    window = re.search(r"^let reportWindow = (\d+)h;", read(query), re.M)
    assert window and properties["evaluationFrequency"] == f"PT{window[1]}H"
    assert properties["windowSize"] == "P2D"  # the most a log alert looks back: the context the query needs
    assert properties["autoMitigate"] is True
