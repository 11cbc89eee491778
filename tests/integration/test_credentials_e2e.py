"""Long-lived credentials other than access keys, end to end: the collector's real botocore IAM client calls
ListServiceSpecificCredentials over HTTP on 127.0.0.1 (moto, taught the action by the demo, behind the recording
proxy), pages through it, and reads signing certificates from the credential report; a role without the new
permission still delivers its keys and the run record names what is missing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from shared.aws.iam import BotocoreIamReader, list_service_specific_credentials
from shared.domain import CREDENTIAL_SERVICES
from shared.records import CREDENTIALS_TABLE
from shared.tools.demo import MANAGEMENT_ACCOUNT_ID, SeededOrganization, seed_organization
from shared.tools.demo_credentials import DEMO_CREDENTIALS
from tests.support.aws_proxy import AwsProxy, Call, Fault, aws_error
from tests.support.collect import collect, env_for, read

DENIED = "User: arn:aws:sts::123456789012:assumed-role/AwsIamKeyCollector/x is not authorized to perform: " \
         "iam:ListServiceSpecificCredentials"


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed_organization(moto_url)


def credential_rows(out: Path, run_id: str) -> list[dict[str, Any]]:
    return [r for r in read(out / CREDENTIALS_TABLE.file_name) if r["RunId"] == run_id]


def listing_calls(proxy: AwsProxy) -> list[Call]:
    return [c for c in proxy.calls if c.action == "ListServiceSpecificCredentials"]


def test_every_seeded_credential_is_read_through_botocore_one_call_per_service(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    run, keys = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    rows = credential_rows(tmp_path, run.run.run_id)
    assert run.status == "Succeeded" and len(keys) == org.expected_keys
    assert len(rows) == run.credentials_collected == org.expected_credentials == len(DEMO_CREDENTIALS)
    assert run.credentials_unknown == ()
    kinds = sorted((r["AccountName"], r["UserName"], r["Service"] or r["CredentialType"], r["NoExpiry"],
                    r["RotationDue"], r["ExpiringSoon"]) for r in rows)
    assert kinds == [
        ("Management", "carol", "codecommit.amazonaws.com", False, True, False),
        ("Production", "ml-pipeline", "bedrock.amazonaws.com", False, False, True),
        ("Production", "ml-pipeline", "bedrock.amazonaws.com", True, False, False),
        ("Sandbox", "judy", "SigningCertificate", False, False, False),
    ]
    calls = listing_calls(aws)
    # per account: one call per service, AllUsers, the biggest page; no call per user
    assert len(calls) == len(org.accounts) * len(CREDENTIAL_SERVICES)
    assert {c.params["ServiceName"] for c in calls} == {s.name for s in CREDENTIAL_SERVICES}
    assert all(c.params["AllUsers"] == "true" and c.params["MaxItems"] == "1000" and "UserName" not in c.params
               for c in calls)
    assert len({c.access_key_id for c in calls}) == len(org.accounts)  # each account on its own role
    served = b"".join(aws.response_bodies).decode("utf-8", "replace")
    for row in rows:  # the masked id is what a record keeps; the id itself stays in AWS's answer
        if row["CredentialId"] is not None:
            assert row["CredentialId"][:4] == "ACCA" and row["CredentialId"][4:7] == "..."
    assert "ServicePassword" not in json.dumps(rows) and "ServiceCredentialSecret" not in served  # a list has none
    # the holders come from the one GetAccountAuthorizationDetails directory the keys' users come from: no call per
    # holder, and a holder's owner and privilege are its keys'
    assert not {"ListUsers", "ListUserTags"} & set(aws.actions())
    users = {(k["AccountId"], k["UserName"]): k for k in keys}
    held = [(row, users[(row["AccountId"], row["UserName"])]) for row in rows
            if (row["AccountId"], row["UserName"]) in users]
    assert held, "no credential holder with keys in the demo: the comparison below would prove nothing"
    for row, key in held:
        fields = ("UserArn", "Owner", "Privileged", "PrivilegeReasons", "Quarantined")
        assert [row[f] for f in fields] == [key[f] for f in fields], row["UserName"]
    assert all(isinstance(r["Privileged"], bool) and isinstance(r["Quarantined"], bool) for r in rows)


def test_a_role_without_the_permission_still_delivers_its_keys_and_names_what_is_missing(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    def deny(call: Call) -> Fault | None:
        return aws_error("AccessDenied", DENIED) if call.action == "ListServiceSpecificCredentials" else None

    aws.rules.append(deny)
    run, keys = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    assert run.status == "Succeeded" and run.failures == () and len(keys) == org.expected_keys
    rows = credential_rows(tmp_path, run.run.run_id)
    assert {r["CredentialType"] for r in rows} == {"SigningCertificate"}  # from the credential report: known
    unknown = json.loads(run.to_record().CredentialsUnknownAccounts)
    assert sorted(u["AccountId"] for u in unknown) == sorted(org.accounts)  # every account: unknown, not none
    for u in unknown:
        assert u["CredentialType"] == "ServiceSpecificCredential"
        assert "AccessDenied" in u["Error"] and "needs iam:ListServiceSpecificCredentials" in u["Error"]
        assert f"account {u['AccountId']}" in u["Error"]
    # the denial is not retried service after service: one call per account
    assert len(listing_calls(aws)) == len(org.accounts)


def org_iam_of(org: SeededOrganization, name: str) -> Any:
    from shared.tools.demo import account_iam

    return account_iam(org, next(a for a, n in org.accounts.items() if n == name))


def iam_client(org: SeededOrganization) -> Any:
    return boto3.client("iam", region_name="us-east-1", aws_access_key_id=org.collector_key_id,
                        aws_secret_access_key=org.collector_secret_key)


def reader(org: SeededOrganization) -> BotocoreIamReader:
    return BotocoreIamReader(iam_client(org), MANAGEMENT_ACCOUNT_ID, 1)


def test_the_listing_follows_every_page(aws: AwsProxy, moto_url: str) -> None:
    org = seed_organization(moto_url, credentials=())
    iam = iam_client(org)
    for user in ("u1", "u2", "u3"):
        iam.create_user(UserName=user)
        iam.create_service_specific_credential(UserName=user, ServiceName="bedrock.amazonaws.com")
    found = list_service_specific_credentials(iam, "bedrock.amazonaws.com", page_size=2)
    assert sorted(c["UserName"] for c in found) == ["u1", "u2", "u3"]
    calls = listing_calls(aws)
    assert [c.params.get("Marker") for c in calls] == [None, "2"]
    assert all(isinstance(c["CreateDate"], datetime) and c["CreateDate"].tzinfo for c in found)


def test_a_service_iam_does_not_offer_has_none(aws: AwsProxy, moto_url: str) -> None:
    org = seed_organization(moto_url, credentials=())
    assert reader(org).service_specific_credentials("nosuch.amazonaws.com") == []
    (call,) = listing_calls(aws)
    assert call.params["ServiceName"] == "nosuch.amazonaws.com"


def test_a_truncated_answer_without_a_marker_is_malformed_not_a_loop(aws: AwsProxy, moto_url: str) -> None:
    from shared.errors import MalformedResponseError

    org = seed_organization(moto_url, credentials=())
    body = ('<ListServiceSpecificCredentialsResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
            "<ListServiceSpecificCredentialsResult><ServiceSpecificCredentials/><IsTruncated>true</IsTruncated>"
            "</ListServiceSpecificCredentialsResult><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata>"
            "</ListServiceSpecificCredentialsResponse>")
    served: list[Call] = []

    def truncated(call: Call) -> Fault | None:
        if call.action != "ListServiceSpecificCredentials":
            return None
        served.append(call)  # a reader that loops meets an error it does not expect after a few pages
        return Fault(200, body, {"Content-Type": "text/xml"}) if len(served) <= 3 else aws_error("Loop", "looping")

    aws.rules.append(truncated)
    with pytest.raises(MalformedResponseError, match="truncated without a new Marker"):
        reader(org).service_specific_credentials("bedrock.amazonaws.com")
    assert len(listing_calls(aws)) == 1


def test_demo_dates_are_what_the_specs_say(aws: AwsProxy, org: SeededOrganization) -> None:
    """The seeding itself: moto's report gives the certificate's upload time, the listing the backdated creation."""
    iam = iam_client(org)
    iam.generate_credential_report()
    lines = iam.get_credential_report()["Content"].decode().splitlines()
    (carol_row,) = [line for line in lines if line.startswith("carol,")]
    assert carol_row.split(",")[-3] == "N/A"  # carol has no certificate: nothing invented
    judy = org_iam_of(org, "Sandbox")
    judy.generate_credential_report()
    (judy_row,) = [line for line in judy.get_credential_report()["Content"].decode().splitlines()
                   if line.startswith("judy,")]
    uploaded = datetime.fromisoformat(judy_row.split(",")[-3])
    assert judy_row.split(",")[-4] == "true" and (datetime.now(UTC) - uploaded).days == 30
    listed = iam.list_service_specific_credentials(UserName="carol")["ServiceSpecificCredentials"]
    (carol,) = listed
    assert (datetime.now(UTC) - carol["CreateDate"]).days == 150
