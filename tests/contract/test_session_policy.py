"""The session policy (shared/aws/session_policy.py) and the CloudFormation roles (infra/aws/*.yaml) agree: every
read a role grants is allowed by the session (or a call would be denied), and the session allows nothing the roles
do not grant. With tests/contract/test_infra.py (the roles grant exactly the IAM calls the code makes), the session
allows exactly those calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.aws.session_policy import (
    HOME_ACTIONS,
    IAM_READ_ACTIONS,
    actions_of,
    home_session_policy,
    member_session_policy,
)

cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")

AWS = Path(__file__).resolve().parents[2] / "infra" / "aws"
def role_actions(template: str, role: str) -> set[str]:
    properties = cfn_yaml.load(str(AWS / template))["Resources"][role]["Properties"]
    found: set[str] = set()
    for policy in properties.get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            variants = statement["Fn::If"][1:] if "Fn::If" in statement else [statement]
            for s in variants:
                found.update([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    return found


def compare(granted: set[str], allowed: set[str]) -> list[str]:
    problems = [f"{a}: granted by the role, denied by the session policy" for a in sorted(granted - allowed)]
    problems += [f"{a}: in the session policy, granted by no role" for a in sorted(allowed - granted)]
    return problems


def test_member_role_and_member_session_agree() -> None:
    assert compare(role_actions("member-account.yaml", "MemberRole"), actions_of(member_session_policy())) == []


def test_home_role_and_home_session_agree() -> None:
    policy = home_session_policy("aws", "AwsIamKeyCollector")
    assert compare(role_actions("home-account.yaml", "HomeRole"), actions_of(policy)) == []
    assert actions_of(policy) == set(IAM_READ_ACTIONS) | set(HOME_ACTIONS)


def test_the_home_session_assumes_only_the_member_role() -> None:
    statements = json.loads(home_session_policy("aws-us-gov", "Collector"))["Statement"]
    (assume,) = [s for s in statements if s["Action"] == "sts:AssumeRole"]
    assert assume["Resource"] == "arn:aws-us-gov:iam::*:role/Collector"
    assert all(s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s for s in statements)


def test_the_comparison_catches_a_drift_either_way() -> None:
    """The broken copies: a role granting a read the session lacks, a session allowing what no role grants."""
    member = role_actions("member-account.yaml", "MemberRole")
    assert compare(member | {"iam:ListRoles"}, actions_of(member_session_policy())) == [
        "iam:ListRoles: granted by the role, denied by the session policy"]
    assert compare(member, actions_of(member_session_policy()) | {"iam:CreateAccessKey"}) == [
        "iam:CreateAccessKey: in the session policy, granted by no role"]
    # a member stack from before issue 21, without the service-specific credentials' read: the session allows more
    assert compare(member - {"iam:ListServiceSpecificCredentials"}, actions_of(member_session_policy())) == [
        "iam:ListServiceSpecificCredentials: in the session policy, granted by no role"]


def test_policies_fit_stss_limit() -> None:
    longest: dict[str, Any] = {"home": home_session_policy("aws-us-gov", "x" * 64), "member": member_session_policy()}
    assert all(len(p) < 1024 for p in longest.values())
