"""Owners and exceptions end to end on an emulated AWS (real boto3 over HTTP to moto, through the recording proxy,
composed as the Function composes them, into the file sink): ListUserTags only for users with keys, in parallel
like the other per-user calls; Owner and Excepted on the records; an exception past its date no longer applies."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.tools.demo import SeededOrganization, demo_exceptions, seed_organization
from tests.support.aws_proxy import AwsProxy, Call, Fault, aws_error
from tests.support.collect import collect, env_for


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed_organization(moto_url)


def exceptions_file(org: SeededOrganization, tmp_path: Path) -> str:
    path = tmp_path / "exceptions.json"
    path.write_text(json.dumps(demo_exceptions(org, datetime.now(UTC))))
    return str(path)


def test_owner_and_exceptions_on_the_records(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shared")
    env = env_for(org, tmp_path / "out", AWS_ACCOUNTS="organization", EXCEPTIONS_FILE=exceptions_file(org, tmp_path))
    run, rows = collect(env, org)
    (expired,) = [r.getMessage() for r in caplog.records if "expired" in r.getMessage()]  # once per run
    assert expired.startswith("1 exception(s) of ") and "entry 2 (userArn " in expired and "Renew them" in expired
    assert run.status == "Succeeded" and len(rows) == org.expected_keys
    owners = {r["UserName"]: r["Owner"] for r in rows}
    assert owners["alice"] == "alice@example.com"  # owner
    assert owners["carol"] == "carol@example.com"  # email, past a CostCenter tag
    assert owners["deploy-bot"] == "platform-team@example.com"  # Owner
    assert owners["ci-runner"] == "ci-team@example.com"  # contact, past a blank owner tag
    assert owners["legacy-app"] == "legacy-team@example.com"
    assert owners["bob"] == owners["erin"] == owners["<root_account>"] == ""

    excepted = [r for r in rows if r["Excepted"]]
    (deploy_bot,) = excepted  # the one exception in force
    assert deploy_bot["UserName"] == "deploy-bot" and deploy_bot["RotationDue"]
    assert deploy_bot["ExceptionReason"].startswith("deploy pipeline key")
    assert deploy_bot["ExceptionExpires"].endswith("T00:00:00Z")
    # The expired exception (ci-*, every finding) applies no more: ci-runner's keys count again.
    ci_runner = [r for r in rows if r["UserName"] == "ci-runner"]
    assert len(ci_runner) == 2 and any(r["RotationDue"] for r in ci_runner)
    assert {(r["Excepted"], r["ExceptionReason"], r["ExceptionExpires"]) for r in ci_runner} == {(False, None, None)}


def test_list_user_tags_once_per_user_with_keys_and_in_parallel(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    in_flight, most = 0, 0
    lock = threading.Lock()

    def slow_tags(call: Call) -> None:
        nonlocal in_flight, most
        if call.action == "ListUserTags":
            with lock:
                in_flight += 1
                most = max(most, in_flight)
            time.sleep(0.2)
            with lock:
                in_flight -= 1

    aws.rules.append(slow_tags)
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    assert run.status == "Succeeded"
    tagged = Counter((c.host, c.params["UserName"]) for c in aws.calls if c.action == "ListUserTags")
    users = {(r["AccountId"], r["UserName"]) for r in rows if not r["IsRootKey"]}
    # one call per user with keys, and one per holder of another long-lived credential without keys (ml-pipeline's
    # API keys: shared/collection/credentials.py), whose tags the inventory does not read
    assert len(tagged) == len(users) + 1 and set(tagged.values()) == {1}
    assert "ml-pipeline" in {user for _, user in tagged}
    assert "frank" not in {user for _, user in tagged}  # a user without keys is not asked
    assert most > 1  # in parallel, like the other per-user calls


def test_a_user_deleted_before_its_tags_are_read_has_no_record(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    def gone(call: Call) -> Fault | None:
        if call.action == "ListUserTags" and call.params.get("UserName") == "alice":
            return aws_error("NoSuchEntity", "The user with name alice cannot be found.", 404)
        return None

    aws.rules.append(gone)
    run, rows = collect(env_for(org, tmp_path), org)
    assert run.status == "Succeeded" and "alice" not in {r["UserName"] for r in rows}


def test_tags_denied_fail_the_account_naming_the_permission(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path
) -> None:
    def denied(call: Call) -> Fault | None:
        if call.action == "ListUserTags":
            return aws_error("AccessDenied", "not authorized to perform: iam:ListUserTags")
        return None

    aws.rules.append(denied)
    run, rows = collect(env_for(org, tmp_path), org)
    assert run.status == "Failed" and rows == []
    (failure,) = run.failures
    assert "ListUserTags" in failure.error and "iam:ListUserTags" in failure.error
