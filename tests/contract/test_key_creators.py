"""Who created each key: queries/key-creators.kql (deployed as the workspace function AwsIamKeyCreators) and the alert
queries/alert-key-created-for-another-user.kql, executed over fixture AWSCloudTrail rows in the local KQL engine
(duckdb-kql, tests/support/kql_engine.py) next to collector key records; and the Bicep that saves the function,
against Azure's type data."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("duckdb_kql", reason="duckdb-kql is a test dependency (requirements-dev.txt)")
pycep = pytest.importorskip("pycep")

from shared.collection.transform import fingerprint  # noqa: E402
from shared.redaction import mask_access_key_id  # noqa: E402
from tests.support.kql_engine import Row, Workspace  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "queries"
CREATORS = QUERIES / "key-creators.kql"
ALERT = QUERIES / "alert-key-created-for-another-user.kql"
TYPES = ROOT / "tests" / "data" / "azure-types"
ACCOUNT = "111111111111"
NOW = datetime.now(UTC)

# Key ids of the fixture (documentation-style, not real keys).
ALICE_OWN = "AKIAEXAMPLEALICE0001"
BOB_BY_MALLORY = "AKIAEXAMPLEBOBBY0002"
CAROL_BY_ROLE = "AKIAEXAMPLECAROL0003"
DAVE_BY_ROOT = "AKIAEXAMPLEDAVEE0004"


def event(caller_type: str, caller: str, key_id: str, key_user: str, requested: str | None, *,
          error: str | None = None, ip: str = "203.0.113.7") -> Row:
    arn = {"IAMUser": f"arn:aws:iam::{ACCOUNT}:user/{caller}", "Root": f"arn:aws:iam::{ACCOUNT}:root",
           "AssumedRole": f"arn:aws:sts::{ACCOUNT}:assumed-role/{caller}/session"}[caller_type]
    return {
        "TimeGenerated": (NOW - timedelta(hours=20)).isoformat(), "EventName": "CreateAccessKey", "ErrorCode": error,
        "RecipientAccountId": ACCOUNT, "UserIdentityType": caller_type, "UserIdentityArn": arn,
        "UserIdentityUserName": caller if caller_type == "IAMUser" else None, "SourceIpAddress": ip,
        "UserAgent": "aws-cli/2.15.0", "UserIdentityAccessKeyId": "ASIAEXAMPLECALLER001",
        "RequestParameters": json.dumps({"userName": requested} if requested else {}),
        "ResponseElements": None if error else json.dumps(
            {"accessKey": {"accessKeyId": key_id, "userName": key_user, "status": "Active",
                           "createDate": "Dec 1, 2026 10:00:00 AM"}}),
    }


TRAIL = [
    event("IAMUser", "alice", ALICE_OWN, "alice", "alice"),  # her own key, named: not for another user
    event("IAMUser", "alice", "AKIAEXAMPLEALICE0006", "alice", None),  # her own, unnamed: the same
    event("IAMUser", "mallory", BOB_BY_MALLORY, "bob", "bob", ip="198.51.100.9"),  # for another user
    event("AssumedRole", "deployer", CAROL_BY_ROLE, "carol", "carol"),  # a role has no keys of its own
    event("Root", "root", DAVE_BY_ROOT, "dave", "dave"),  # root acting for a user
    event("IAMUser", "eve", "AKIAEXAMPLEDENIED005", "frank", "frank", error="AccessDenied"),  # failed: no key
]


def key_record(key_id: str, user: str, owner: str) -> Row:
    return {"TimeGenerated": NOW.isoformat(), "RunId": "run-1", "AccountId": ACCOUNT, "AccountName": "Prod",
            "UserName": user, "UserArn": f"arn:aws:iam::{ACCOUNT}:user/{user}", "Owner": owner,
            "AccessKeyId": mask_access_key_id(key_id), "AccessKeyFingerprint": fingerprint(key_id),
            "Status": "Active", "IsRootKey": False}


KEYS = [key_record(ALICE_OWN, "alice", "alice@example.com"), key_record(BOB_BY_MALLORY, "bob", "bob@example.com")]


def run(text: str, trail: list[Row] | None = None) -> list[Row]:
    workspace = Workspace(KEYS, [], {"AWSCloudTrail": TRAIL if trail is None else trail})
    try:
        return workspace.query(text)
    finally:
        workspace.close()


def by_user(rows: list[Row]) -> dict[str, Row]:
    return {r["UserName"]: r for r in rows}


def flags(rows: list[Row]) -> list[tuple[str, str, bool]]:
    """(user, masked key, created for another user) per creation."""
    return sorted((r["UserName"], r["AccessKeyId"], r["CreatedForAnotherUser"]) for r in rows)


EXPECTED_FLAGS = sorted([("alice", "AKIA...0001", False), ("alice", "AKIA...0006", False), ("bob", "AKIA...0002", True),
                         ("carol", "AKIA...0003", True), ("dave", "AKIA...0004", True)])


def test_the_creator_query_names_the_creator_and_flags_keys_created_for_another_user() -> None:
    rows = by_user(run(CREATORS.read_text(encoding="utf-8")))
    assert set(rows) == {"alice", "bob", "carol", "dave"}  # the failed creation made no key
    bob = rows["bob"]
    assert bob["CreatorArn"] == f"arn:aws:iam::{ACCOUNT}:user/mallory"
    assert (bob["SourceIpAddress"], bob["UserAgent"], bob["CreatorType"]) == ("198.51.100.9", "aws-cli/2.15.0",
                                                                             "IAMUser")
    assert bob["CreatedAt"] == NOW - timedelta(hours=20)
    # joined on the collector's fingerprint: the inventory's masked id, account name and owner
    assert bob["AccessKeyFingerprint"] == fingerprint(BOB_BY_MALLORY)
    assert (bob["AccessKeyId"], bob["Owner"], bob["AccountName"], bob["InInventory"]) == (
        "AKIA...0002", "bob@example.com", "Prod", True)
    assert flags(run(CREATORS.read_text(encoding="utf-8"))) == EXPECTED_FLAGS
    # a key not (yet) in the inventory is listed, masked as the collector masks it
    assert (rows["carol"]["AccessKeyId"], rows["carol"]["InInventory"]) == ("AKIA...0003", False)


def test_no_full_key_id_leaves_the_creator_queries() -> None:
    rows = run(CREATORS.read_text(encoding="utf-8"))
    text = json.dumps(rows, default=str)
    for event_row in TRAIL:
        assert "AKIAEXAMPLE" not in text and event_row["UserIdentityAccessKeyId"] not in text
    for path in (CREATORS, ALERT):
        final = path.read_text(encoding="utf-8").rsplit("\n| project", 1)[1]
        assert "NewKeyId" not in final.replace("strcat(substring(NewKeyId", "").split("AccessKeyFingerprint")[-1]


def alert_without_ingestion_time() -> str:
    """The alert's text as the engine can run it: ingestion_time() (the report window) is the one construct duckdb-kql
    refuses; over the fixture every event is recent, so it is replaced by the event time."""
    text = ALERT.read_text(encoding="utf-8")
    assert "| extend IngestedAt = ingestion_time()" in text
    return text.replace("ingestion_time()", "now()")


def test_the_alert_reports_exactly_the_keys_created_for_another_user() -> None:
    rows = run(alert_without_ingestion_time())
    assert sorted(r["UserName"] for r in rows) == ["bob", "carol", "dave"]
    assert {r["AccessKeyId"] for r in rows} == {"AKIA...0002", "AKIA...0003", "AKIA...0004"}
    assert all(r["AccountId"] == ACCOUNT for r in rows)


def for_another_user_block(text: str) -> str:
    match = re.search(r"\| extend CreatedForAnotherUser = case\(.*?\n    true\)", text, re.S)
    assert match, "the CreatedForAnotherUser rule"
    return match[0]


def test_the_alert_and_the_creator_query_decide_for_another_user_alike() -> None:
    assert for_another_user_block(ALERT.read_text("utf-8")) == for_another_user_block(CREATORS.read_text("utf-8"))


@pytest.mark.parametrize(("old", "new"), [
    # a role or root acting for a user is missed when only IAM users' requests are compared
    ("    true)", "    false)"),
    # a user's key for itself would count as for another user
    ("isnotempty(RequestedUser) and RequestedUser != UserIdentityUserName", "isnotempty(RequestedUser)"),
    # the request's userName is ignored: mallory's key for bob looks like her own
    ("RequestedUser != UserIdentityUserName", "KeyUserName == UserIdentityUserName"),
])
def test_a_wrong_rule_disagrees(old: str, new: str) -> None:
    text = CREATORS.read_text(encoding="utf-8")
    assert old in text
    assert flags(run(text.replace(old, new))) != EXPECTED_FLAGS


def test_a_wrong_fingerprint_does_not_join() -> None:
    text = CREATORS.read_text(encoding="utf-8")
    mutant = text.replace("substring(hash_sha256(NewKeyId), 0, 16)", "substring(hash_sha256(NewKeyId), 0, 15)")
    assert mutant != text
    assert not any(r["InInventory"] for r in run(mutant))


def test_without_the_trail_table_the_query_returns_nothing_rather_than_failing() -> None:
    assert run(CREATORS.read_text(encoding="utf-8"), trail=[]) == []


# --------------------------------------------------------------------------------------------------------------------
# The workspace function


def type_nodes(file_name: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = json.loads((TYPES / file_name).read_text(encoding="utf-8"))
    return nodes


def test_the_function_is_saved_with_the_query_file_and_properties_azure_accepts() -> None:
    module = ROOT / "infra" / "modules" / "log-analytics-functions.bicep"
    parsed = pycep.BicepParser().parse(text=module.read_text(encoding="utf-8"))
    resource = parsed["resources"]["keyCreators"]
    assert resource["type"] == "Microsoft.OperationalInsights/workspaces/savedSearches"
    assert resource["api_version"] == "2023-09-01"
    properties = resource["config"]["properties"]
    nodes = type_nodes("operationalinsights__microsoft.operationalinsights__2023-09-01.json")
    (schema,) = [n for n in nodes if n.get("$type") == "ObjectType" and n.get("name") == "SavedSearchProperties"]
    assert set(properties) <= set(schema["properties"])
    assert {name for name, p in schema["properties"].items() if p.get("flags", 0) & 1} <= set(properties)
    assert properties["functionAlias"] == "AwsIamKeyCreators"
    loaded = properties["query"]["function"]["parameters"]["file_path"]
    assert (module.parent / loaded).resolve() == CREATORS
    main = pycep.BicepParser().parse(text=(ROOT / "infra" / "main.bicep").read_text(encoding="utf-8"))
    path = "modules/log-analytics-functions.bicep"
    (deployed,) = [m for m in main["modules"].values() if m["detail"]["path"] == path]
    assert deployed["config"]["scope"]["function"]["type"] == "resource_group"  # the workspace's
