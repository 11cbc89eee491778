"""Privilege, quarantine, console facts and the kill-first score, on canned GetAccountAuthorizationDetails pages and
credential report rows (shaped as boto3 returns them): the documented heuristic, what it counts and what it does not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from shared.collection.console import KEY_AT_SETUP_TOLERANCE, ConsoleAccess, console_access, key_at_user_setup
from shared.collection.directory import UserEntry, read_directory
from shared.errors import MalformedResponseError
from shared.findings.catalogue import MAX_RISK, RISK_FACTORS, kill_first, kill_first_order, risk_of
from shared.findings.privilege import Level, document_level, user_privilege

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
ACCOUNT = "111122223333"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
IAM_FULL = "arn:aws:iam::aws:policy/IAMFullAccess"
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
QUARANTINE = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource,
                                                    **extra}]}


def user(name: str, **fields: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {"UserName": name, "Arn": f"arn:aws:iam::{ACCOUNT}:user/{name}", "Path": "/",
                              "UserId": "AIDA" + name.upper(), "CreateDate": NOW - timedelta(days=100),
                              "GroupList": [], "AttachedManagedPolicies": [], "UserPolicyList": []}
    detail.update(fields)
    return detail


def boundary(arn: str) -> dict[str, str]:
    return {"PermissionsBoundaryType": "PermissionsBoundaryPolicy", "PermissionsBoundaryArn": arn}


def attached(*arns: str) -> list[dict[str, str]]:
    return [{"PolicyName": arn.rsplit("/", 1)[-1], "PolicyArn": arn} for arn in arns]


def customer_policy(name: str, default: dict[str, Any], older: dict[str, Any] | None = None) -> dict[str, Any]:
    versions = [{"Document": default, "VersionId": "v2", "IsDefaultVersion": True}]
    if older is not None:
        versions.insert(0, {"Document": older, "VersionId": "v1", "IsDefaultVersion": False})
    return {"PolicyName": name, "Arn": f"arn:aws:iam::{ACCOUNT}:policy/{name}", "DefaultVersionId": "v2",
            "PolicyVersionList": versions}


def users_of(*pages: dict[str, Any]) -> dict[str, UserEntry]:
    return {u.name: u for u in read_directory(pages).users}


def test_what_a_policy_document_grants() -> None:
    assert document_level(allow("*"), "t") is Level.FULL
    assert document_level(allow("*:*"), "t") is Level.FULL
    assert document_level(allow(["s3:GetObject", "IAM:*"], ["*"]), "t") is Level.IAM  # actions are case-insensitive
    assert document_level(allow("iam:*", "arn:aws:iam::111122223333:user/*"), "t") is Level.NONE  # not on "*"
    assert document_level(allow("s3:*"), "t") is Level.NONE
    assert document_level(allow("iam:Get*"), "t") is Level.NONE
    # A condition is not evaluated: the Allow counts as if it always applied.
    assert document_level(allow("*", Condition={"Bool": {"aws:MultiFactorAuthPresent": "true"}}), "t") is Level.FULL
    # A single statement as an object, as IAM allows.
    assert document_level({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}, "t") is Level.FULL


def test_what_the_heuristic_does_not_evaluate_is_never_counted() -> None:
    deny = {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    not_action = {"Statement": [{"Effect": "Allow", "NotAction": ["iam:*", "organizations:*"], "Resource": "*"}]}
    not_resource = {"Statement": [{"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:s3:::logs/*"}]}
    for document in (deny, not_action, not_resource):
        assert document_level(document, "t") is Level.NONE
    # An explicit Deny next to an Allow of "*" is not subtracted (documented: the finding is not lowered by it).
    both = {"Statement": [*deny["Statement"], *allow("*")["Statement"]]}
    assert document_level(both, "t") is Level.FULL


def test_documents_as_iam_sends_them_url_encoded_or_as_json_text() -> None:
    text = json.dumps(allow("iam:*"))
    assert document_level(quote(text), "t") is Level.IAM
    assert document_level(text, "t") is Level.IAM
    with pytest.raises(MalformedResponseError, match="inline policy x: the policy document is not JSON"):
        document_level("%7Bnot json", "inline policy x")
    with pytest.raises(MalformedResponseError, match="has no Statement list"):
        document_level({"Version": "2012-10-17"}, "t")


def test_direct_group_inline_and_customer_managed_grants_with_their_reasons() -> None:
    page = {
        "UserDetailList": [
            user("root-like", AttachedManagedPolicies=attached(ADMIN)),
            user("iam-admin", AttachedManagedPolicies=attached(IAM_FULL)),
            user("inline", UserPolicyList=[{"PolicyName": "user-x", "PolicyDocument": allow("*")}]),
            user("member", GroupList=["Admins"]),
            user("deployer", AttachedManagedPolicies=attached(f"arn:aws:iam::{ACCOUNT}:policy/deploy-all")),
            user("reader", AttachedManagedPolicies=attached(READ_ONLY), GroupList=["Readers"]),
        ],
        "GroupDetailList": [
            {"GroupName": "Admins", "AttachedManagedPolicies": attached(ADMIN),
             "GroupPolicyList": [{"PolicyName": "break-glass", "PolicyDocument": allow("iam:*")}]},
            {"GroupName": "Readers", "AttachedManagedPolicies": attached(READ_ONLY), "GroupPolicyList": []},
        ],
        "Policies": [customer_policy("deploy-all", allow("iam:*"))],
    }
    users = users_of(page)
    assert {name: u.privilege.privileged for name, u in users.items()} == {
        "root-like": True, "iam-admin": True, "inline": True, "member": True, "deployer": True, "reader": False}
    assert users["root-like"].privilege.reasons == "AdministratorAccess attached"
    assert users["iam-admin"].privilege.reasons == "IAMFullAccess attached"
    assert users["inline"].privilege.reasons == "inline policy user-x allows *"
    assert users["member"].privilege.reasons == (
        "AdministratorAccess via group Admins; inline policy break-glass of group Admins allows iam:*")
    assert users["deployer"].privilege.reasons == "iam:* via policy deploy-all"
    assert users["reader"].privilege.reasons == ""


def test_groups_and_policies_on_later_pages_still_count() -> None:
    """IAM pages users first, then groups and policies: privilege is settled once every page is read."""
    pages = (
        {"UserDetailList": [user("member", GroupList=["Ops"])], "IsTruncated": True},
        {"GroupDetailList": [{"GroupName": "Ops", "AttachedManagedPolicies": attached(
            f"arn:aws:iam::{ACCOUNT}:policy/ops-all"), "GroupPolicyList": []}], "IsTruncated": True},
        {"Policies": [customer_policy("ops-all", allow("*"))], "IsTruncated": False},
    )
    assert users_of(*pages)["member"].privilege.reasons == "* via policy ops-all of group Ops"


def test_only_the_default_version_of_a_customer_managed_policy_counts() -> None:
    page = {"UserDetailList": [user("u", AttachedManagedPolicies=attached(f"arn:aws:iam::{ACCOUNT}:policy/p"))],
            "Policies": [customer_policy("p", default=allow("s3:*"), older=allow("*"))]}
    assert not users_of(page)["u"].privilege.privileged
    page["Policies"] = [customer_policy("p", default=allow("*"), older=allow("s3:*"))]
    assert users_of(page)["u"].privilege.privileged
    broken = customer_policy("p", allow("*"))
    broken["PolicyVersionList"][0]["IsDefaultVersion"] = False
    broken["DefaultVersionId"] = "v9"
    page["Policies"] = [broken]
    with pytest.raises(MalformedResponseError, match=r"\(policy p\): no default version"):
        users_of(page)


def test_a_permissions_boundary_caps_what_the_user_gets() -> None:
    bounded = f"arn:aws:iam::{ACCOUNT}:policy/iam-only"
    page = {
        "UserDetailList": [
            user("capped-out", AttachedManagedPolicies=attached(ADMIN),
                 PermissionsBoundary=boundary(READ_ONLY)),
            user("capped-at-iam", AttachedManagedPolicies=attached(ADMIN),
                 PermissionsBoundary=boundary(bounded)),
            user("admin-boundary", AttachedManagedPolicies=attached(ADMIN),
                 PermissionsBoundary=boundary(ADMIN)),
        ],
        "Policies": [customer_policy("iam-only", allow("iam:*"))],
    }
    users = users_of(page)
    assert not users["capped-out"].privilege.privileged and users["capped-out"].privilege.reasons == ""
    assert users["capped-at-iam"].privilege.reasons == (
        "AdministratorAccess attached (capped at iam:* by boundary iam-only)")
    assert users["admin-boundary"].privilege.reasons == "AdministratorAccess attached"


def test_the_boundary_check_catches_a_broken_copy_that_ignores_it() -> None:
    """A copy of user_privilege without the cap would call the ReadOnlyAccess-bounded admin privileged."""
    grants = users_of({"UserDetailList": [user("a", AttachedManagedPolicies=attached(ADMIN))]})["a"].privilege
    assert grants.privileged
    from shared.findings.privilege import Grant

    capped = user_privilege([Grant(Level.FULL, "AdministratorAccess attached")], Level.NONE, "ReadOnlyAccess")
    uncapped = user_privilege([Grant(Level.FULL, "AdministratorAccess attached")], None)
    assert (capped.privileged, uncapped.privileged) == (False, True)


def test_quarantine_is_any_version_attached_to_the_user_itself() -> None:
    versions = ("AWSCompromisedKeyQuarantine", "AWSCompromisedKeyQuarantineV2", "AWSCompromisedKeyQuarantineV3")
    page = {
        "UserDetailList": [user(v, AttachedManagedPolicies=attached(f"arn:aws:iam::aws:policy/{v}")) for v in versions]
        + [user("via-group", GroupList=["Q"]),
           user("look-alike", AttachedManagedPolicies=attached(f"arn:aws:iam::{ACCOUNT}:policy/{versions[1]}"))],
        "GroupDetailList": [{"GroupName": "Q", "AttachedManagedPolicies": attached(QUARANTINE)}],
    }
    users = users_of(page)
    assert [users[v].privilege.quarantined for v in versions] == [True, True, True]
    assert not users["via-group"].privilege.quarantined  # AWS attaches it to the user
    assert not users["look-alike"].privilege.quarantined  # a customer policy of that name is not AWS's


def test_tags_give_the_owner_and_each_keys_console_description() -> None:
    tags = [{"Key": "owner", "Value": "team@example.com"}, {"Key": "AKIAIOSFODNN7EXAMPLE", "Value": "CI deploy key"},
            {"Key": "AKIAIOSFODNN7EXAMPLF", "Value": "  "}, {"Key": "CostCenter", "Value": "4711"}]
    u = users_of({"UserDetailList": [user("alice", Tags=tags)]})["alice"]
    assert u.owner == "team@example.com"
    assert u.description("AKIAIOSFODNN7EXAMPLE") == "CI deploy key"
    assert u.description("AKIAIOSFODNN7EXAMPLF") == "" and u.description("AKIAOTHER") == ""
    no_tags = users_of({"UserDetailList": [user("bob")]})["bob"]  # IAM leaves Tags out when a user has none
    assert (no_tags.owner, no_tags.descriptions) == ("", ())


def test_a_description_never_carries_a_key_id() -> None:
    tags = [{"Key": "AKIAIOSFODNN7EXAMPLE", "Value": "replaces AKIAOLDKEY0000000001\n\x1b[2Jgone"}]
    u = users_of({"UserDetailList": [user("alice", Tags=tags)]})["alice"]
    assert u.description("AKIAIOSFODNN7EXAMPLE") == "replaces AKIA...0001  [2Jgone"  # one printable line


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ({"UserDetailList": [{"Arn": "x", "CreateDate": NOW}]}, "GetAccountAuthorizationDetails: field UserName"),
        ({"UserDetailList": [user("a", CreateDate="2026-01-01")]}, r"\(user a\): field CreateDate is not a date"),
        ({"UserDetailList": [user("a", GroupList="Admins")]}, r"\(user a\): field GroupList is not a list"),
        ({"UserDetailList": "nope"}, "field UserDetailList is not a list of objects"),
        ({"UserDetailList": [user("a", PermissionsBoundary={})]}, "PermissionsBoundary has no PermissionsBoundaryArn"),
        ({"UserDetailList": [user("a", UserPolicyList=[{"PolicyName": "p", "PolicyDocument": 7}])]},
         r"\(user a\), inline policy p: the policy document is not a JSON object"),
    ],
)
def test_a_malformed_answer_fails_naming_the_api_and_the_entity(page: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedResponseError, match=message):
        read_directory([page])


def test_console_facts_from_the_credential_report() -> None:
    rows = [{"user": "a", "password_enabled": "true", "mfa_active": "false"},
            {"user": "b", "password_enabled": "true", "mfa_active": "true"},
            {"user": "c", "password_enabled": "false", "mfa_active": "false"},
            {"user": "<root_account>", "password_enabled": "not_supported", "mfa_active": "false"}]
    access = console_access(rows)
    assert {name: a.without_mfa for name, a in access.items()} == {"a": True, "b": False, "c": False,
                                                                  "<root_account>": True}


def test_key_at_user_setup_within_the_tolerance_and_only_with_a_console_password() -> None:
    created = NOW - timedelta(days=300)
    console = ConsoleAccess(password=True, mfa=True)
    assert key_at_user_setup(created + KEY_AT_SETUP_TOLERANCE, created, console)
    assert not key_at_user_setup(created + KEY_AT_SETUP_TOLERANCE + timedelta(seconds=1), created, console)
    assert not key_at_user_setup(created, created, ConsoleAccess(password=False, mfa=False))  # API-only user
    assert not key_at_user_setup(created, created, None)  # no credential report: unknown, false


def row(**fields: Any) -> dict[str, Any]:
    return {"Status": "Active", "IsRootKey": False, "AgeDays": 10, "AccountId": ACCOUNT, "UserName": "u",
            "AccessKeyFingerprint": "0" * 16, **fields}


def test_the_risk_formula_adds_its_documented_parts_and_caps_at_100() -> None:
    assert risk_of(row()) == (0, "")
    assert risk_of(row(Quarantined=True, Privileged=True, Unused=True)) == (
        75, "quarantined by AWS (key exposed in public) +40; admin-equivalent user +25; unused +10")
    everything = row(Quarantined=True, IsRootKey=True, Privileged=True, ConsoleWithoutMfa=True, Unused=True,
                     RotationDue=True, NeverUsed=True, UserActiveKeyCount=2, KeyAtUserSetup=True)
    score, reasons = risk_of(everything)
    assert score == MAX_RISK and sum(f.points for f in RISK_FACTORS) > MAX_RISK
    assert reasons.count("+") == len(RISK_FACTORS) - 1  # a root key is no "second key of the user"
    # An inactive key scores nothing, whatever else is true of it; an exception lowers nothing.
    assert risk_of({**everything, "Status": "Inactive"}) == (0, "")
    assert risk_of(row(RotationDue=True, Excepted=True)) == risk_of(row(RotationDue=True))


def test_kill_first_is_highest_score_then_oldest_then_account_user_fingerprint() -> None:
    rows = [row(RiskScore=30, AgeDays=10, UserName="b"), row(RiskScore=30, AgeDays=10, UserName="a"),
            row(RiskScore=30, AgeDays=400), row(RiskScore=65), row(RiskScore=0), row(RiskScore=None)]
    ranked = kill_first(rows)
    assert [(r["RiskScore"], r["AgeDays"], r["UserName"]) for r in ranked] == [
        (65, 10, "u"), (30, 400, "u"), (30, 10, "a"), (30, 10, "b")]
    assert sorted(rows[:4], key=kill_first_order) == ranked
