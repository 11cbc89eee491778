"""End to end on an emulated AWS: real boto3 clients over HTTP to moto (server mode), through a recording proxy,
composed exactly as the Function composes them, into the file sink."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.tools.demo import (
    MANAGEMENT_ACCOUNT_ID,
    AccountSpec,
    GroupSpec,
    KeySpec,
    SeededOrganization,
    UserSpec,
    seed_organization,
)
from tests.support.aws_proxy import AwsProxy, Call, Fault, aws_error
from tests.support.collect import WEB_TOKEN, FixedToken, collect, env_for
from tests.support.iam_pages import filter_of, serve_authorization_details

GAAD = "GetAccountAuthorizationDetails"


def by_user(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    result: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        result.setdefault(row["UserName"], []).append(row)
    return result


def iam_calls(proxy: AwsProxy) -> list[Call]:
    return [c for c in proxy.calls if c.action in (GAAD, "ListAccessKeys", "GetAccessKeyLastUsed")]


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed_organization(moto_url)


def test_access_key_home_account(aws: AwsProxy, org: SeededOrganization, tmp_path: Path) -> None:
    run, rows = collect(env_for(org, tmp_path), org)
    assert run.status == "Succeeded" and run.accounts_total == 1 and run.auth_mode == "access_key"
    assert {r["AccountId"] for r in rows} == {MANAGEMENT_ACCOUNT_ID}
    assert len(rows) == run.keys_collected == 8  # 7 seeded keys + the collector's own

    (assume,) = [c for c in aws.calls if c.action == "AssumeRole"]
    assert assume.params["RoleArn"] == org.home_role_arn
    assert assume.params["ExternalId"] == org.external_id
    assert assume.params["RoleSessionName"] == f"aws-iam-key-collector-{run.run.run_id[:8]}"
    assert assume.params["DurationSeconds"] == "900"
    assert assume.access_key_id == org.collector_key_id  # the IAM user's key signs AssumeRole ...
    calls = iam_calls(aws)
    assert calls and all(c.access_key_id and c.access_key_id != org.collector_key_id for c in calls)  # ... only


def test_keys_of_every_kind(aws: AwsProxy, org: SeededOrganization, tmp_path: Path) -> None:
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    users = by_user(rows)
    assert len(rows) == org.expected_keys == run.keys_collected

    (alice,) = users["alice"]
    assert (alice["AgeDays"], alice["RotationDue"], alice["Unused"], alice["DaysSinceLastUse"]) == (200, True, False, 2)
    assert alice["LastUsedService"] == "s3" and alice["LastUsedRegion"] == "eu-west-1"
    (bob,) = users["bob"]
    assert (bob["NeverUsed"], bob["Unused"], bob["LastUsedAt"], bob["LastUsedService"]) == (True, False, None, None)
    assert {r["UserActiveKeyCount"] for r in users["carol"]} == {2}
    assert sorted((r["AgeDays"], r["Unused"]) for r in users["carol"]) == [(30, False), (120, True)]
    (dave,) = users["dave"]
    assert (dave["Status"], dave["RotationDue"], dave["Unused"]) == ("Inactive", False, False)
    assert {(r["Status"], r["UserActiveKeyCount"]) for r in users["heidi"]} == {("Inactive", 1), ("Active", 1)}
    (erin,) = users["erin"]
    assert (erin["NeverUsed"], erin["Unused"]) == (True, True)
    (judy,) = users["judy"]
    (test_user,) = users["test-user"]
    assert (judy["AgeDays"], judy["RotationDue"]) == (91, True)
    assert (test_user["AgeDays"], test_user["RotationDue"]) == (90, False)
    assert "frank" not in users  # a user without keys has no record
    (collector_key,) = users["aws-iam-key-collector"]
    assert collector_key["LastUsedService"] == "sts" and collector_key["DaysSinceLastUse"] == 0

    for row in rows:
        if row["UserName"] == "<root_account>":
            assert row["IsRootKey"] is True and row["AccessKeyId"] is None
        else:
            assert row["IsRootKey"] is False
            assert row["AccessKeyId"].startswith("AKIA") and row["AccessKeyId"][4:7] == "..."
    assert org.collector_key_id not in json.dumps(rows)


def test_organization_scope_chains_member_roles_from_the_home_session(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    assert run.status == "Succeeded" and run.accounts_total == 3 == run.accounts_succeeded
    names = {r["AccountId"]: r["AccountName"] for r in rows}
    assert set(names) == set(org.accounts)
    for account_id, name in org.accounts.items():
        if account_id != MANAGEMENT_ACCOUNT_ID:
            assert names[account_id] == name  # names from Organizations

    assumes = [c for c in aws.calls if c.action == "AssumeRole"]
    home_key = assumes[0].access_key_id
    members = assumes[1:]
    assert {c.params["RoleArn"] for c in members} == {
        f"arn:aws:iam::{a}:role/AwsIamKeyCollector" for a in org.accounts if a != MANAGEMENT_ACCOUNT_ID
    }
    # chained: signed by the home role's session, never by the IAM user's key
    home_session_keys = {c.access_key_id for c in aws.calls if c.action == "ListAccounts"}
    assert all(c.access_key_id in home_session_keys for c in members)
    assert home_key == org.collector_key_id and org.collector_key_id not in home_session_keys
    assert "ExternalId" not in members[0].params


def test_account_list_scope(aws: AwsProxy, org: SeededOrganization, tmp_path: Path) -> None:
    member = next(a for a in org.accounts if a != MANAGEMENT_ACCOUNT_ID)
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS=f"{member},{MANAGEMENT_ACCOUNT_ID}"), org)
    assert run.accounts_total == 2 and run.status == "Succeeded"
    assert {r["AccountId"] for r in rows} == {member, MANAGEMENT_ACCOUNT_ID}
    assert all(r["AccountName"] == "" for r in rows)  # names come only from Organizations
    assert "ListAccounts" not in aws.actions()


def test_web_identity_needs_no_aws_secret(aws: AwsProxy, org: SeededOrganization, tmp_path: Path) -> None:
    tokens = FixedToken()
    env = env_for(org, tmp_path, AWS_AUTH_MODE="web_identity", AWS_WEB_IDENTITY_AUDIENCE="api://AzureADTokenExchange",
                  AWS_ACCOUNTS="organization")
    del env["AWS_EXTERNAL_ID"]
    run, rows = collect(env, org, tokens=tokens)
    assert run.status == "Succeeded" and run.auth_mode == "web_identity"
    assert len(rows) == org.expected_keys
    (web,) = [c for c in aws.calls if c.action == "AssumeRoleWithWebIdentity"]
    assert web.access_key_id == ""  # unsigned: no AWS secret anywhere
    assert web.params["WebIdentityToken"] == WEB_TOKEN and web.params["RoleArn"] == org.home_role_arn
    assert web.params["DurationSeconds"] == "900"
    assert tokens.calls == 1
    assert all(c.access_key_id != org.collector_key_id for c in aws.calls)


def test_member_role_that_cannot_be_assumed_fails_only_that_account(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    broken = next(a for a, n in org.accounts.items() if n == "Sandbox")
    aws.rules.append(
        lambda c: aws_error("AccessDenied", "not authorized to perform sts:AssumeRole")
        if c.action == "AssumeRole" and broken in c.params.get("RoleArn", "")
        else None
    )
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    assert run.status == "PartiallySucceeded"
    assert (run.accounts_total, run.accounts_succeeded, len(run.failures)) == (3, 2, 1)
    (failure,) = run.failures
    assert failure.account_id == broken
    assert "AccessDenied" in failure.error and f"arn:aws:iam::{broken}:role/AwsIamKeyCollector" in failure.error
    assert "trusts the home role" in failure.error
    assert {r["AccountId"] for r in rows} == set(org.accounts) - {broken}
    assert run.keys_collected == len(rows)


def test_home_sign_in_failure_fails_the_run_and_still_reports_it(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    aws.rules.append(lambda c: aws_error("AccessDenied", "no ExternalId match") if c.action == "AssumeRole" else None)
    run, rows = collect(env_for(org, tmp_path), org)
    assert run.status == "Failed" and rows == []
    (failure,) = run.failures
    assert failure.account_id == MANAGEMENT_ACCOUNT_ID
    assert "STS AssumeRole into" in failure.error and "ExternalId" in failure.error
    assert not iam_calls(aws)


def test_pagination_over_many_users(aws: AwsProxy, moto_url: str, tmp_path: Path) -> None:
    """moto answers GetAccountAuthorizationDetails in one page: served here in IAM's pages of 100 entities (the users,
    then the group), so the real paginator has to follow markers."""
    users = tuple(UserSpec(f"user-{i:03d}", (KeySpec(i % 200, None if i % 3 else 1),) if i % 2 else (),
                           groups=("Admins",) if i == 229 else ())
                  for i in range(230))
    org = seed_organization(moto_url, (AccountSpec("Management", users, groups=(
        GroupSpec("Admins", ("aws:AdministratorAccess",)),)),))
    aws.rules.append(serve_authorization_details(moto_url, page_size=100))
    run, rows = collect(env_for(org, tmp_path), org)
    assert run.keys_collected == len(rows) == org.expected_keys == 116
    assert len({r["AccessKeyFingerprint"] for r in rows}) == 116
    pages = [c for c in aws.calls if c.action == GAAD]
    # 231 users (the collector's own among them) and the group: three pages
    assert [c.params.get("Marker") for c in pages] == [None, "100", "200"]
    assert all(filter_of(c) == ["User", "Group", "LocalManagedPolicy"] for c in pages)
    assert len([c for c in aws.calls if c.action == "ListAccessKeys"]) == 231  # every user read exactly once
    # the last user's group arrives on the last page, after the user: its privilege is still settled
    (last,) = [r for r in rows if r["UserName"] == "user-229"]
    assert (last["Privileged"], last["PrivilegeReasons"]) == (True, "AdministratorAccess via group Admins")


def test_same_inventory_whatever_the_bounds(aws: AwsProxy, org: SeededOrganization, tmp_path: Path) -> None:
    def snapshot(**bounds: str) -> set[tuple[Any, ...]]:
        _, rows = collect(env_for(org, tmp_path / str(bounds), AWS_ACCOUNTS="organization", **bounds), org)
        # the collector's own key is used by each run's AssumeRole: its last use moves between runs; LastUsedAsOf is
        # when GetAccessKeyLastUsed answered (moto's report gives no region or service, so every key is asked)
        moving = {"RunId", "TimeGenerated", "LastUsedAt", "LastUsedAsOf"}
        return {tuple((k, v) for k, v in r.items() if k not in moving) for r in rows}

    serial = snapshot(COLLECTOR_ACCOUNT_CONCURRENCY="1", COLLECTOR_IAM_CONCURRENCY="1")
    parallel = snapshot(COLLECTOR_ACCOUNT_CONCURRENCY="8", COLLECTOR_IAM_CONCURRENCY="8")
    assert serial == parallel and len(serial) == org.expected_keys


def test_no_extra_calls_compared_with_a_serial_walk(aws: AwsProxy, org: SeededOrganization, tmp_path: Path) -> None:
    collect(env_for(org, tmp_path), org)
    calls = iam_calls(aws)
    keys = [c for c in calls if c.action == "GetAccessKeyLastUsed"]
    assert len(keys) == len({c.params["AccessKeyId"] for c in keys}) == 8
    listed = [c.params["UserName"] for c in calls if c.action == "ListAccessKeys"]
    assert len(listed) == len(set(listed)) == 7  # alice bob carol dave erin ops-admin + the collector user
    assert [c.action for c in calls].count(GAAD) == 1  # users, tags, groups and policies: one call, no call per user
    assert not {"ListUsers", "ListUserTags"} & set(aws.actions())


def test_the_call_rate_cap_spaces_each_accounts_iam_calls(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    # Real botocore clients against moto: with a cap of 20 calls a second, an account's IAM calls (credential report
    # included) are at least 1/20 s apart on average, even with 8 in flight; without it they are not.
    def rates(**cap: str) -> dict[str, float]:
        aws.calls.clear()
        run, _ = collect(env_for(org, tmp_path / str(cap), AWS_ACCOUNTS="organization",
                                 COLLECTOR_IAM_CONCURRENCY="8", **cap), org)
        assert run.status == "Succeeded"
        by_key: dict[str, list[float]] = {}
        for call in aws.calls:
            if "iam" in call.host or call.action in (GAAD, "ListAccessKeys", "GetAccessKeyLastUsed",
                                                     "GetCredentialReport", "GenerateCredentialReport"):
                by_key.setdefault(call.access_key_id, []).append(call.at)
        return {key: (len(times) - 1) / (max(times) - min(times)) for key, times in by_key.items() if len(times) > 4}

    capped = rates(COLLECTOR_IAM_MAX_CALLS_PER_SECOND="20")
    assert capped and max(capped.values()) <= 20 * 1.05
    assert max(rates().values()) > 20 * 1.05


def throttle_every_other(actions: tuple[str, ...]) -> Callable[[Call], Fault | None]:
    """Throttle the first attempt of every other matching call (AWS's 400 Throttling)."""
    lock = threading.Lock()
    seen: dict[str, int] = {}

    def rule(call: Call) -> Fault | None:
        if call.action not in actions:
            return None
        key = json.dumps(call.params, sort_keys=True)
        with lock:
            n = seen[key] = seen.get(key, 0) + 1
            index = len(seen)
        if n == 1 and index % 2 == 0:
            return aws_error("Throttling", "Rate exceeded", status=400)
        return None

    return rule


def test_throttling_is_absorbed_by_retries(aws: AwsProxy, org: SeededOrganization, tmp_path: Path) -> None:
    aws.rules.append(throttle_every_other(("ListAccessKeys", "GetAccessKeyLastUsed", "AssumeRole")))
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    assert run.status == "Succeeded" and len(rows) == org.expected_keys
    assert any(c.action == "GetAccessKeyLastUsed" for c in aws.calls)


def test_key_deleted_during_the_walk_is_skipped(aws: AwsProxy, org: SeededOrganization, tmp_path: Path) -> None:
    aws.rules.append(
        lambda c: aws_error("NoSuchEntity", "The Access Key with id X cannot be found", status=404)
        if c.action == "ListAccessKeys" and c.params.get("UserName") == "bob"
        else None
    )
    run, rows = collect(env_for(org, tmp_path), org)
    assert run.status == "Succeeded"
    assert "bob" not in by_user(rows) and len(rows) == 7


def test_malformed_answer_fails_the_account_with_no_partial_record(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    body = (
        '<ListAccessKeysResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ListAccessKeysResult>'
        "<AccessKeyMetadata><member><UserName>carol</UserName><AccessKeyId>AKIAAAAABBBBCCCCDDDD</AccessKeyId>"
        "<Status>Active</Status></member></AccessKeyMetadata><IsTruncated>false</IsTruncated>"
        "</ListAccessKeysResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></ListAccessKeysResponse>"
    )
    aws.rules.append(
        lambda c: Fault(200, body, {"Content-Type": "text/xml"})
        if c.action == "ListAccessKeys" and c.params.get("UserName") == "carol"
        else None
    )
    run, rows = collect(env_for(org, tmp_path), org)
    assert run.status == "Failed" and rows == []
    (failure,) = run.failures
    assert failure.error == "IAM ListAccessKeys (user carol): field CreateDate is missing"


@pytest.mark.parametrize(("action", "body", "error"), [
    ("ListAccessKeys",
     '<ListAccessKeysResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ListAccessKeysResult>'
     "<IsTruncated>false</IsTruncated></ListAccessKeysResult></ListAccessKeysResponse>",
     r"IAM ListAccessKeys \(user carol\): field AccessKeyMetadata is missing"),
    ("GetAccessKeyLastUsed",
     '<GetAccessKeyLastUsedResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><GetAccessKeyLastUsedResult>'
     "<UserName>carol</UserName></GetAccessKeyLastUsedResult></GetAccessKeyLastUsedResponse>",
     r"IAM GetAccessKeyLastUsed \(key AKIA\.\.\.\w{4}\): field AccessKeyLastUsed is missing"),
], ids=["ListAccessKeys", "GetAccessKeyLastUsed"])
def test_a_missing_list_or_last_use_is_an_error_not_none(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path, action: str, body: str, error: str
) -> None:
    """An answer without the list of keys must not read as "no keys", nor one without the last use as "never used"."""
    aws.rules.append(
        lambda c: Fault(200, body, {"Content-Type": "text/xml"})
        if c.action == action and c.params.get("UserName", "carol") == "carol"
        else None
    )
    run, rows = collect(env_for(org, tmp_path), org)
    assert run.status == "Failed" and rows == []
    (failure,) = run.failures
    assert re.fullmatch(error, failure.error), failure.error
