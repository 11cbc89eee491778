"""Every AssumeRole and AssumeRoleWithWebIdentity the collector makes carries the read-only session policy (audit
finding F15), as the recording proxy in front of moto sees the requests."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.aws.session_policy import home_session_policy, member_session_policy
from shared.tools.demo import SeededOrganization, seed_organization
from tests.support.aws_proxy import AwsProxy
from tests.support.collect import FixedToken, collect, env_for


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed_organization(moto_url)


def test_every_assume_role_carries_the_session_policy(aws: AwsProxy, org: SeededOrganization, tmp_path: Path) -> None:
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    assert run.status == "Succeeded" and len(rows) == org.expected_keys
    assumes = [c for c in aws.calls if c.action == "AssumeRole"]
    assert len(assumes) == len(org.accounts)  # the home role, then each member account's role
    home = [c for c in assumes if c.params["RoleArn"] == org.home_role_arn]
    members = [c for c in assumes if c.params["RoleArn"] != org.home_role_arn]
    assert len(home) == 1 and len(members) == len(org.accounts) - 1
    assert home[0].params["Policy"] == home_session_policy("aws", org.member_role_name)
    assert all(c.params["Policy"] == member_session_policy() for c in members)


def test_assume_role_with_web_identity_carries_the_session_policy(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    env = env_for(org, tmp_path, AWS_AUTH_MODE="web_identity", AWS_WEB_IDENTITY_AUDIENCE="api://AzureADTokenExchange")
    del env["AWS_EXTERNAL_ID"]
    run, _ = collect(env, org, tokens=FixedToken())
    assert run.status == "Succeeded"
    (web,) = [c for c in aws.calls if c.action == "AssumeRoleWithWebIdentity"]
    assert web.params["Policy"] == home_session_policy("aws", org.member_role_name)
