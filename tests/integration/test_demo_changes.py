"""The demo's key changes between its two runs, made through IAM's own API on the emulated organization (moto in
server mode, real boto3 over HTTP) and read back the same way."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from shared.tools.demo import (
    DEMO_CHANGES,
    MANAGEMENT_ACCOUNT_ID,
    KeyChangeSpec,
    SeededOrganization,
    change_keys,
    seed_organization,
)
from tests.support.aws_proxy import AwsProxy

SEED = {"aws_access_key_id": "AKIADEMOSEEDER000001", "aws_secret_access_key": "demo" * 10}


def iam_of(org: SeededOrganization, account_name: str) -> Any:
    account_id = next(i for i, name in org.accounts.items() if name == account_name)
    if account_id == MANAGEMENT_ACCOUNT_ID:
        return boto3.client("iam", endpoint_url=org.endpoint_url, region_name="us-east-1", **SEED)
    sts = boto3.client("sts", endpoint_url=org.endpoint_url, region_name="us-east-1", **SEED)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
                            RoleSessionName="test")["Credentials"]
    return boto3.client("iam", endpoint_url=org.endpoint_url, region_name="us-east-1",
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def keys_of(org: SeededOrganization, account: str, user: str) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = iam_of(org, account).list_access_keys(UserName=user)["AccessKeyMetadata"]
    return keys


def test_the_demo_changes_create_deactivate_delete_and_rotate(aws: AwsProxy, moto_url: str) -> None:
    org = seed_organization(moto_url)
    assert {c.action for c in DEMO_CHANGES} == {"create", "deactivate", "delete", "rotate"}
    alice_before = {k["AccessKeyId"] for k in keys_of(org, "Management", "alice")}
    assert keys_of(org, "Production", "frank") == [] and len(keys_of(org, "Sandbox", "legacy-app")) == 1
    assert [k["Status"] for k in keys_of(org, "Management", "erin")] == ["Active"]

    done = change_keys(org)

    assert len(keys_of(org, "Production", "frank")) == 1
    assert [k["Status"] for k in keys_of(org, "Management", "erin")] == ["Inactive"]
    assert keys_of(org, "Sandbox", "legacy-app") == []
    alice_after = {k["AccessKeyId"] for k in keys_of(org, "Management", "alice")}
    assert len(alice_after) == 1 and not alice_after & alice_before
    assert done == ["Production/frank: new access key created", "Management/erin: oldest access key deactivated",
                    "Sandbox/legacy-app: oldest access key deleted",
                    "Management/alice: access key rotated (new key created, oldest deleted)"]
    assert not any(k in line for line in done for k in alice_before | alice_after)  # no key id printed


def test_a_bad_change_names_what_is_wrong(aws: AwsProxy, moto_url: str) -> None:
    org = seed_organization(moto_url)
    with pytest.raises(ValueError, match="unknown action 'shred'"):
        change_keys(org, (KeyChangeSpec("shred", "Production", "frank"),))
    with pytest.raises(ValueError, match="no account named 'Staging'"):
        change_keys(org, (KeyChangeSpec("create", "Staging", "frank"),))
    with pytest.raises(ValueError, match="Production/frank has no key to delete"):
        change_keys(org, (KeyChangeSpec("delete", "Production", "frank"),))
