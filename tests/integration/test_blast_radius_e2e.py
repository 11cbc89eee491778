"""Blast radius end to end on an emulated AWS: the demo organization on moto (server mode), real boto3 clients through
the recording proxy, GetAccountAuthorizationDetails served in IAM's own pages with URL-encoded policy documents
(tests/support/iam_pages.py: moto answers in one page and forgets permissions boundaries), composed as the Function
composes them, into the file sink. A privileged user's keys, a group admin's keys and a quarantined user's keys carry
the flags and the right reasons, and the kill-first order of the records is the one the executed KQL gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.findings.catalogue import kill_first
from shared.records import RUNS_TABLE
from shared.tools.demo import MANAGEMENT_ACCOUNT_ID, AccountSpec, KeySpec, SeededOrganization, UserSpec
from shared.tools.demo import seed_organization as seed
from tests.support.aws_proxy import AwsProxy, aws_error
from tests.support.collect import collect, env_for, read
from tests.support.iam_pages import filter_of, serve_authorization_details

ROOT = Path(__file__).resolve().parents[2]
GAAD = "GetAccountAuthorizationDetails"


def keys_of(rows: list[dict[str, Any]], user: str) -> list[dict[str, Any]]:
    return sorted((r for r in rows if r["UserName"] == user), key=lambda r: r["Status"])


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed(moto_url)


def test_privileged_group_admin_and_quarantined_keys_carry_the_flags_and_reasons(
    aws: AwsProxy, moto_url: str, org: SeededOrganization, tmp_path: Path
) -> None:
    aws.rules.append(serve_authorization_details(moto_url, page_size=3))  # several pages per account
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    assert run.status == "Succeeded" and len(rows) == org.expected_keys
    pages = [c for c in aws.calls if c.action == GAAD]
    assert len(pages) > 3 and all(filter_of(c) == ["User", "Group", "LocalManagedPolicy"] for c in pages)
    assert not {"ListUsers", "ListUserTags"} & set(aws.actions())

    (admin,) = keys_of(rows, "ops-admin")
    assert (admin["Privileged"], admin["PrivilegeReasons"]) == (True, "AdministratorAccess attached")
    assert (admin["ConsoleWithoutMfa"], admin["Description"]) == (False, "break-glass automation")  # console + MFA
    (group_admin,) = keys_of(rows, "release-bot")
    assert group_admin["Privileged"] and group_admin["PrivilegeReasons"] == "AdministratorAccess via group Admins"
    assert group_admin["RiskReasons"] == "admin-equivalent user +25"
    (deployer,) = keys_of(rows, "deploy-bot")
    assert (deployer["Privileged"], deployer["PrivilegeReasons"]) == (True, "iam:* via policy deploy-all")
    active, inactive = keys_of(rows, "build-agent")
    assert (active["Quarantined"], inactive["Quarantined"], active["Privileged"]) == (True, True, False)
    assert (active["RiskScore"], active["RiskReasons"]) == (40, "quarantined by AWS (key exposed in public) +40")
    assert (inactive["RiskScore"], inactive["RiskReasons"]) == (0, "")  # switched off: it signs nothing
    (contractor,) = keys_of(rows, "contractor")
    assert (contractor["ConsoleWithoutMfa"], contractor["KeyAtUserSetup"], contractor["Privileged"]) == (
        True, True, False)
    (root,) = keys_of(rows, "<root_account>")
    assert root["Privileged"] and root["PrivilegeReasons"].startswith("root user")
    assert {r["Description"] for r in keys_of(rows, "ci-runner")} == {"GitHub Actions runner", ""}
    plain = [r for r in rows if r["UserName"] in ("alice", "bob", "carol", "grace", "ivan")]
    assert plain and not any(r["Privileged"] or r["Quarantined"] or r["ConsoleWithoutMfa"] for r in plain)

    # the kill-first order of the records, as queries/kill-first.kql computes it from them
    pytest.importorskip("duckdb_kql", reason="duckdb-kql is a test dependency (requirements-dev.txt)")
    from tests.support.kql_engine import Workspace

    workspace = Workspace(rows, read(tmp_path / RUNS_TABLE.file_name))
    try:
        ranked = workspace.query((ROOT / "queries" / "kill-first.kql").read_text(encoding="utf-8"))
    finally:
        workspace.close()
    order = [(r["AccountId"], r["UserName"], r["AccessKeyFingerprint"]) for r in ranked]
    assert order == [(r["AccountId"], r["UserName"], r["AccessKeyFingerprint"]) for r in kill_first(rows)]
    assert [user for _, user, _ in order[:2]] == ["<root_account>", "build-agent"]


def test_a_permissions_boundary_caps_the_privilege(aws: AwsProxy, moto_url: str, tmp_path: Path) -> None:
    """moto forgets boundaries: the proxy adds IAM's PermissionsBoundary to the users' items, as IAM answers."""
    users = (UserSpec("bounded-admin", (KeySpec(10, 1),), policies=("aws:AdministratorAccess",)),
             UserSpec("admin", (KeySpec(10, 1),), policies=("aws:AdministratorAccess",)))
    org = seed(moto_url, (AccountSpec("Management", users),))
    boundary = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    aws.rules.append(serve_authorization_details(moto_url, page_size=1000, boundaries={"bounded-admin": boundary}))
    _, rows = collect(env_for(org, tmp_path), org)
    (bounded,) = keys_of(rows, "bounded-admin")
    (admin,) = keys_of(rows, "admin")
    assert (bounded["Privileged"], bounded["PrivilegeReasons"], bounded["RiskScore"]) == (False, "", 0)
    assert admin["Privileged"] and admin["RiskScore"] == 25


def test_a_role_without_the_permission_fails_its_account_naming_the_permission_and_the_stack(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    """The home role deployed from the stack before GetAccountAuthorizationDetails was granted: its account fails with
    one line saying which permission and which stack; the member accounts (their roles updated) are collected."""

    def home_session(key: str) -> bool:  # the home role's session signs ListAccounts; member sessions never do
        return key in {c.access_key_id for c in aws.calls if c.action == "ListAccounts"}

    aws.rules.append(lambda c: aws_error(
        "AccessDenied", f"User: arn:aws:sts::{MANAGEMENT_ACCOUNT_ID}:assumed-role/AwsIamKeyCollectorHome/x is not "
        "authorized to perform: iam:GetAccountAuthorizationDetails on resource: *")
        if c.action == GAAD and home_session(c.access_key_id) else None)
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    assert run.status == "PartiallySucceeded"
    (failure,) = run.failures
    assert failure.account_id == MANAGEMENT_ACCOUNT_ID and "\n" not in failure.error
    assert failure.error.startswith(f"IAM in account {MANAGEMENT_ACCOUNT_ID}: GetAccountAuthorizationDetails: "
                                    "AccessDenied: ")
    assert failure.error.endswith("(the account's collector role needs iam:GetAccountAuthorizationDetails: update "
                                  "its stack from infra/aws/member-account.yaml (member accounts) or "
                                  "infra/aws/home-account.yaml (the home account))")
    assert rows and MANAGEMENT_ACCOUNT_ID not in {r["AccountId"] for r in rows}
    assert not [c for c in aws.calls if c.action == "ListAccessKeys" and home_session(c.access_key_id)]
