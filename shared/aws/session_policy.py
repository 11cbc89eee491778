"""The read-only session policy passed on every AssumeRole and AssumeRoleWithWebIdentity (audit finding F15).

A session's permissions are the intersection of the role's policies and the session policy. Without one, the collector
would hold whatever a role with the member-role name grants in each account (anyone who can create that role in a
member account decides); with one, it holds at most the reads listed here, whatever the role allows.

The list of actions lives here and only here: the CloudFormation templates (infra/aws/*.yaml) are compared with it by
tests/contract/test_session_policy.py, so that a read the role grants is never denied by the session, and the session
never allows more than the reads the collector makes.
"""

from __future__ import annotations

import json

# Every IAM read the collector makes in an account (home and members alike).
IAM_READ_ACTIONS: tuple[str, ...] = (
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:GenerateCredentialReport",  # root keys: the report is generated, then read
    "iam:GetCredentialReport",
    "iam:GetAccountAuthorizationDetails",  # users with their tags (owners), groups and policies (privilege)
    "iam:ListServiceSpecificCredentials",  # API keys, Git and Keyspaces credentials: one call per service (AllUsers)
)
# What only the home role's session does besides: list the organization's accounts and assume the member roles.
HOME_ACTIONS: tuple[str, ...] = ("organizations:ListAccounts", "sts:AssumeRole")

# STS refuses a packed session policy over 2,048 characters (PackedPolicyTooLarge); ours stays far below.
MAX_POLICY_CHARS = 2048


def _document(statements: list[dict[str, object]]) -> str:
    text = json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
    if len(text) > MAX_POLICY_CHARS:  # a member role name is at most 64 characters: never in practice
        raise ValueError(f"session policy of {len(text)} characters is over STS's {MAX_POLICY_CHARS}")
    return text


def member_session_policy() -> str:
    """A member account's session: the IAM reads, nothing else."""
    return _document([{"Sid": "IamRead", "Effect": "Allow", "Action": list(IAM_READ_ACTIONS), "Resource": "*"}])


def home_session_policy(partition: str, member_role_name: str) -> str:
    """The home role's session: the IAM reads of its own account, the organization's account list, and AssumeRole
    into the member role (by its name, in any account) only."""
    return _document([
        {"Sid": "IamRead", "Effect": "Allow", "Action": list(IAM_READ_ACTIONS), "Resource": "*"},
        {"Sid": "ListAccounts", "Effect": "Allow", "Action": "organizations:ListAccounts", "Resource": "*"},
        {"Sid": "AssumeMemberRole", "Effect": "Allow", "Action": "sts:AssumeRole",
         "Resource": f"arn:{partition}:iam::*:role/{member_role_name}"},
    ])


def actions_of(policy: str) -> set[str]:
    """Every action a session policy allows (for the tests that compare it with the templates)."""
    found: set[str] = set()
    for statement in json.loads(policy)["Statement"]:
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found
