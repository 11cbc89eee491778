"""Root-account access keys (CIS AWS Foundations Benchmark v7.0.0 2.4) from the IAM credential report."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from shared.aws.credential_report import read_credential_report
from shared.collection.transform import root_key_records
from shared.domain import Account, CredentialReport, RunContext, parse_credential_report
from shared.errors import CredentialReportUnavailableError, MalformedResponseError
from shared.tools.demo import SeededOrganization, seed_organization
from tests.support.aws_proxy import AwsProxy, Fault, aws_error
from tests.support.collect import collect, env_for
from tests.support.credential_report import HEADER

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
RUN = RunContext("run-1", NOW, rotation_days=90, unused_days=45)
ACCOUNT = Account("111122223333", "Prod")
ROOT_PREFIX = (
    "<root_account>,arn:aws:iam::111122223333:root,2019-01-01T00:00:00+00:00,not_supported,2026-11-01T00:00:00+00:00,"
    "not_supported,not_supported,true"
)
USER = "bob,arn:aws:iam::111122223333:user/bob,2020-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false," + ",".join(
    ["true", "2026-01-01T00:00:00+00:00", "N/A", "N/A", "N/A", "false", "N/A", "N/A", "N/A", "N/A"]
) + ",false,N/A,false,N/A"


def report(key1: str, key2: str = "false,N/A,N/A,N/A,N/A") -> CredentialReport:
    """A credential report whose root row has these two key slots (active,last_rotated,used,region,service)."""
    return parse_credential_report("\n".join([HEADER, f"{ROOT_PREFIX},{key1},{key2},false,N/A,false,N/A", USER]), NOW)


def test_no_root_keys_gives_no_record() -> None:
    assert root_key_records(report("false,N/A,N/A,N/A,N/A"), ACCOUNT, RUN) == []


def test_active_root_key_is_one_marked_record() -> None:
    csv = report("true,2025-01-01T10:00:00+00:00,2026-11-20T08:00:00+00:00,us-east-1,ec2")
    (record,) = root_key_records(csv, ACCOUNT, RUN)
    assert record.IsRootKey is True and record.UserName == "<root_account>" and record.AccessKeyId is None
    assert record.UserArn == "arn:aws:iam::111122223333:root"
    assert (record.Status, record.AgeDays, record.DaysSinceLastUse, record.RotationDue) == ("Active", 696, 8, True)
    assert (record.LastUsedService, record.LastUsedRegion, record.UserActiveKeyCount) == ("ec2", "us-east-1", 1)
    assert len(record.AccessKeyFingerprint) == 16
    again = root_key_records(csv, ACCOUNT, RUN)[0]
    assert again.AccessKeyFingerprint == record.AccessKeyFingerprint  # stable across runs


def test_two_root_slots_inactive_and_never_used() -> None:
    csv = report("true,2026-11-01T00:00:00+00:00,N/A,N/A,N/A", "false,2024-01-01T00:00:00+00:00,N/A,N/A,N/A")
    first, second = root_key_records(csv, ACCOUNT, RUN)
    assert (first.Status, first.NeverUsed, first.UserActiveKeyCount) == ("Active", True, 1)
    assert (second.Status, second.RotationDue, second.Unused) == ("Inactive", False, False)
    assert first.AccessKeyFingerprint != second.AccessKeyFingerprint


def test_a_malformed_report_date_is_an_error() -> None:
    with pytest.raises(MalformedResponseError, match="access_key_1_last_rotated is not a date"):
        root_key_records(report("true,yesterday,N/A,N/A,N/A"), ACCOUNT, RUN)


class FakeReportIam:
    """Pure-logic fake of the two report calls (the real client is exercised end to end below)."""

    def __init__(self, generated: datetime | None, in_progress_polls: int = 0) -> None:
        self.generated = generated
        self.in_progress_polls = in_progress_polls
        self.generate_calls = 0

    def get_credential_report(self) -> dict[str, object]:
        from botocore.exceptions import ClientError

        if self.generated is None or self.in_progress_polls > 0:
            self.in_progress_polls -= 1
            code = "ReportNotPresent" if self.generated is None else "ReportInProgress"
            raise ClientError({"Error": {"Code": code, "Message": "x"}}, "GetCredentialReport")
        return {"Content": b"user,arn\n", "GeneratedTime": self.generated}

    def generate_credential_report(self) -> dict[str, str]:
        self.generate_calls += 1
        self.generated = NOW
        return {"State": "STARTED"}


def test_a_fresh_report_is_used_without_generating() -> None:
    iam = FakeReportIam(NOW - timedelta(hours=3, minutes=59))
    assert read_credential_report(iam, NOW, sleep=lambda s: None) == "user,arn\n"
    assert iam.generate_calls == 0


@pytest.mark.parametrize("generated", [None, NOW - timedelta(hours=4, minutes=1)])
def test_a_missing_or_stale_report_is_generated_once_and_awaited(generated: datetime | None) -> None:
    iam = FakeReportIam(generated, in_progress_polls=2)
    waits: list[float] = []
    assert read_credential_report(iam, NOW, sleep=waits.append) == "user,arn\n"
    assert iam.generate_calls == 1 and waits == [0.0, 1.0]  # polled until ready, backing off


def test_a_report_that_never_comes_is_unavailable() -> None:
    iam = FakeReportIam(None, in_progress_polls=100)
    with pytest.raises(CredentialReportUnavailableError, match="root keys are read next run"):
        read_credential_report(iam, NOW, sleep=lambda s: None, waits=(0.0, 0.0))
    assert iam.generate_calls == 1


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed_organization(moto_url)


def test_root_keys_appear_from_the_credential_report_in_moto(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    roots = [r for r in rows if r["IsRootKey"]]
    (root,) = roots
    sandbox = next(a for a, n in org.accounts.items() if n == "Sandbox")
    assert root["AccountId"] == sandbox and root["UserName"] == "<root_account>" and root["AccessKeyId"] is None
    assert (root["Status"], root["AgeDays"], root["RotationDue"]) == ("Active", 700, True)
    assert root["LastUsedService"] == "ec2"
    assert list(run.root_keys_unknown) == []
    assert aws.actions().count("GenerateCredentialReport") == 3  # moto's report is "from 2015": stale, regenerated


def test_an_unavailable_report_leaves_root_keys_unknown_without_failing_the_account(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    aws.rules.append(lambda c: aws_error("AccessDenied", "no iam:GetCredentialReport")
                     if c.action in ("GetCredentialReport", "GenerateCredentialReport") else None)
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    assert run.status == "Succeeded" and not any(r["IsRootKey"] for r in rows)
    assert sorted(run.root_keys_unknown) == sorted(org.accounts)
    assert len(rows) == org.expected_keys - 1


def test_a_fresh_report_is_read_without_generating_through_the_real_client(aws: AwsProxy, moto_url: str) -> None:
    fresh = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    content = base64.b64encode(f"{HEADER}\n".encode()).decode()
    body = (
        '<GetCredentialReportResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><GetCredentialReportResult>'
        f"<Content>{content}</Content><ReportFormat>text/csv</ReportFormat><GeneratedTime>{fresh}</GeneratedTime>"
        "</GetCredentialReportResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>"
        "</GetCredentialReportResponse>"
    )
    aws.rules.append(
        lambda c: Fault(200, body, {"Content-Type": "text/xml"}) if c.action == "GetCredentialReport" else None
    )
    iam = boto3.client("iam", endpoint_url=aws.url, region_name="us-east-1",
                       aws_access_key_id="AKIAEXAMPLEREPORT001", aws_secret_access_key="x" * 40)
    assert read_credential_report(iam, datetime.now(UTC)).startswith("user,arn")
    assert aws.actions() == ["GetCredentialReport"]
