"""The demo's emulated IAM: what an account holds (keys, users, groups, policies: the specs) and how it is seeded into
moto in server mode, through IAM's own API where moto has one and in moto's in-process backend where it has none
(creation and last-use dates, root keys, AWS-managed policies). Used by the demo (``shared.tools.demo``) and the
end-to-end tests; moto is a development dependency and nothing in the Function imports this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

ROOT_USER = "<root_account>"
# moto accepts any signature; these only have to look like credentials
_SEED_CREDENTIALS = {"aws_access_key_id": "AKIADEMOSEEDER000001", "aws_secret_access_key": "demo" * 10}
DEMO_PASSWORD = "Demo-password-0001!"  # noqa: S105 - a console password only moto keeps: nothing signs in with it


@dataclass(frozen=True)
class KeySpec:
    age_days: int
    last_used_days_ago: int | None = None  # None: never used
    status: str = "Active"
    service: str = "s3"
    region: str = "eu-west-1"
    description: str = ""  # the console's description: a user tag whose key is the access key id


@dataclass(frozen=True)
class UserSpec:
    name: str
    keys: tuple[KeySpec, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()  # IAM user tags (Key, Value): the owner tags among them
    policies: tuple[str, ...] = ()  # managed policies attached: "aws:<name>" (AWS-managed) or a customer policy's name
    groups: tuple[str, ...] = ()  # the account's groups it is a member of
    console: bool = False  # a console password (login profile)
    mfa: bool = False  # a virtual MFA device enabled
    key_at_setup: bool = False  # the user was created with its first key (else well before its keys)


@dataclass(frozen=True)
class GroupSpec:
    name: str
    policies: tuple[str, ...] = ()  # as UserSpec.policies


@dataclass(frozen=True)
class AccountSpec:
    name: str
    users: tuple[UserSpec, ...]
    root_keys: tuple[KeySpec, ...] = ()
    groups: tuple[GroupSpec, ...] = ()
    policies: tuple[tuple[str, dict[str, Any]], ...] = ()  # customer-managed policies: (name, document)


def allow(action: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}


def client(service: str, endpoint_url: str, credentials: dict[str, str] | None = None) -> Any:
    return boto3.client(
        service, endpoint_url=endpoint_url, region_name="us-east-1", **(credentials or _SEED_CREDENTIALS)
    )


def backdate_key(account_id: str, key_id: str, spec: KeySpec, now: datetime) -> None:
    """moto creates every key 'now' and never used; set the creation and last-use dates the spec asks for.
    moto documents ``last_used`` as settable (its AccessKey comment); it runs in this process."""
    from moto.iam.models import AccessKeyLastUsed, iam_backends

    key = iam_backends[account_id]["aws"].access_keys[key_id]
    key.create_date = (now - timedelta(days=spec.age_days, hours=1)).replace(tzinfo=None)
    if spec.last_used_days_ago is None:
        key.last_used = None
    else:
        used = (now - timedelta(days=spec.last_used_days_ago, minutes=30)).replace(tzinfo=None)
        key.last_used = AccessKeyLastUsed(timestamp=used, service=spec.service, region=spec.region)


def seed_root_keys(account_id: str, slots: tuple[KeySpec, ...], now: datetime) -> None:
    """Give the account's root user access keys in its IAM credential report.

    AWS has no API to create root access keys (only the root user can, in the console), and moto's report lists
    IAM users only; so the demo adds the ``<root_account>`` row that AWS's report carries, with these keys."""
    from moto.iam.models import iam_backends

    backend = iam_backends[account_id]["aws"]
    original = backend.get_credential_report

    def fmt(value: datetime | None) -> str:
        return "N/A" if value is None else value.strftime("%Y-%m-%dT%H:%M:%S+00:00")

    cells = [ROOT_USER, f"arn:aws:iam::{account_id}:root", fmt(now - timedelta(days=2000)), "not_supported",
             fmt(now - timedelta(days=3)), "not_supported", "not_supported", "false"]
    for n in (0, 1):
        if n < len(slots):
            spec = slots[n]
            used = None if spec.last_used_days_ago is None else now - timedelta(days=spec.last_used_days_ago)
            cells += [str(spec.status == "Active").lower(), fmt(now - timedelta(days=spec.age_days, hours=1)),
                      fmt(used), "N/A" if used is None else spec.region, "N/A" if used is None else spec.service]
        else:
            cells += ["false", "N/A", "N/A", "N/A", "N/A"]
    cells += ["false", "N/A", "false", "N/A"]

    def report_with_root() -> str:
        header, _, users = original().partition("\n")
        return f"{header}\n{','.join(cells)}\n{users}"

    backend.get_credential_report = report_with_root  # type: ignore[method-assign]  # moto runs in-process


def seed_aws_managed_policies(account_id: str, names: set[str]) -> None:
    """AWS-managed policies the demo attaches, from moto's own copy of them. moto loads none by default (all of them
    cost seconds per account; MOTO_IAM_LOAD_MANAGED_POLICIES); it runs in-process, so only these are added."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data
    from moto.iam.models import AWSManagedPolicy, iam_backends

    backend = iam_backends[account_id]["aws"]
    data = json.loads(aws_managed_policies_data)
    for name in sorted(names):
        policy = AWSManagedPolicy.from_data(name, account_id, "us-east-1", data[name])
        if policy.arn not in backend.managed_policies:
            backend.managed_policies[policy.arn] = policy
            backend.aws_managed_policies.append(policy)


def _policy_arn(account_id: str, reference: str) -> str:
    if reference.startswith("aws:"):
        return f"arn:aws:iam::aws:policy/{reference.removeprefix('aws:')}"
    return f"arn:aws:iam::{account_id}:policy/{reference}"


def backdate_user(account_id: str, user_name: str, created: datetime) -> None:
    """moto creates every user 'now'; the demo's users predate their keys (or were made with their first one)."""
    from moto.iam.models import iam_backends

    iam_backends[account_id]["aws"].users[user_name].create_date = created.astimezone(UTC).replace(tzinfo=None)


def seed_account_iam(endpoint_url: str, account_id: str, credentials: dict[str, str] | None, spec: AccountSpec,
                     now: datetime) -> int:
    """The account's customer-managed policies and groups, then its users; returns how many keys it made."""
    references = {p for u in spec.users for p in u.policies} | {p for g in spec.groups for p in g.policies}
    seed_aws_managed_policies(account_id, {r.removeprefix("aws:") for r in references if r.startswith("aws:")})
    iam = client("iam", endpoint_url, credentials)
    for name, document in spec.policies:
        iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))
    for group in spec.groups:
        iam.create_group(GroupName=group.name)
        for reference in group.policies:
            iam.attach_group_policy(GroupName=group.name, PolicyArn=_policy_arn(account_id, reference))
    return seed_users(endpoint_url, account_id, credentials, spec.users, now)


def seed_users(endpoint_url: str, account_id: str, credentials: dict[str, str] | None, users: tuple[UserSpec, ...],
               now: datetime) -> int:
    iam = client("iam", endpoint_url, credentials)
    count = 0
    for user in users:
        iam.create_user(UserName=user.name)
        if user.tags:
            iam.tag_user(UserName=user.name, Tags=[{"Key": k, "Value": v} for k, v in user.tags])
        for reference in user.policies:
            iam.attach_user_policy(UserName=user.name, PolicyArn=_policy_arn(account_id, reference))
        for group in user.groups:
            iam.add_user_to_group(GroupName=group, UserName=user.name)
        if user.console:
            iam.create_login_profile(UserName=user.name, Password=DEMO_PASSWORD)
        if user.mfa:
            device = iam.create_virtual_mfa_device(VirtualMFADeviceName=user.name)["VirtualMFADevice"]
            iam.enable_mfa_device(UserName=user.name, SerialNumber=device["SerialNumber"],
                                  AuthenticationCode1="123456", AuthenticationCode2="654321")
        for spec in user.keys:
            key = iam.create_access_key(UserName=user.name)["AccessKey"]
            if spec.status != "Active":
                iam.update_access_key(UserName=user.name, AccessKeyId=key["AccessKeyId"], Status=spec.status)
            if spec.description:
                iam.tag_user(UserName=user.name, Tags=[{"Key": key["AccessKeyId"], "Value": spec.description}])
            backdate_key(account_id, key["AccessKeyId"], spec, now)
            count += 1
        oldest = max((spec.age_days for spec in user.keys), default=0)
        # made with its first key (backdate_key: age + 1 hour), or a month before its oldest key
        created = (now - timedelta(days=oldest, hours=1, minutes=2) if user.key_at_setup
                   else now - timedelta(days=oldest + 30))
        backdate_user(account_id, user.name, created)
    return count
