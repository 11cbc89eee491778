"""Owners and exceptions in the collector's own logic, against the in-memory IAM fake and a fake clock: the owner tags
from the users' GetAccountAuthorizationDetails items (no call per user), Owner and Excepted on the records, the run's
start as the instant exceptions are judged at."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.collection.collector import Collector, CollectorOptions
from shared.delivery.outbox import NoOutbox
from shared.delivery.reliable_sink import ReliableSink
from shared.findings.exceptions_file import parse_exceptions
from shared.records import KEYS_TABLE
from tests.support.iam_fake import START, FakeAccount, FakeKey, FakeUser, IamFake, key_id
from tests.support.sinks import ListSink

A = "111111111111"


def exceptions_expiring(days: int) -> str:
    return json.dumps({"version": 1, "exceptions": [
        {"userArn": f"arn:aws:iam::{A}:user/ci-*", "finding": "*", "reason": "CI keys are rebuilt weekly",
         "approvedBy": "sec@example.com", "expires": (START + timedelta(days=days)).date().isoformat()},
    ]})


def collect(fake: IamFake, text: str) -> list[dict[str, object]]:
    exceptions = parse_exceptions(text, source="exceptions.json", now=START)
    options = CollectorOptions("access_key", "file", 90, 45, 2, owner_tag_keys=("owner", "email"),
                               exceptions=exceptions)
    sink = ListSink()
    Collector(options, fake, ReliableSink(sink, NoOutbox(), max_rows=1000, max_age=timedelta(hours=48)),
              clock=fake.clock).run()
    return sink.rows(KEYS_TABLE)


def organization() -> IamFake:
    return IamFake([FakeAccount(A, users=[
        FakeUser("alice", [FakeKey(key_id(1), age_days=200)], tags={"CostCenter": "1", "email": "alice@example.com"}),
        FakeUser("ci-build", [FakeKey(key_id(2), age_days=200)]),
        FakeUser("no-keys", tags={"owner": "nobody@example.com"}),
    ])])


def test_owner_tags_come_with_the_users_listing_and_cost_no_call_per_user() -> None:
    fake = organization()
    rows = {r["UserName"]: r for r in collect(fake, exceptions_expiring(30))}
    assert sorted({action for _, action, _ in fake.calls}) == [
        "GetAccessKeyLastUsed", "GetAccountAuthorizationDetails", "GetCredentialReport", "ListAccessKeys",
        "ListServiceSpecificCredentials"]  # one per service, for the other long-lived credentials
    assert fake.actions(A).count("GetAccountAuthorizationDetails") == 1
    assert rows["alice"]["Owner"] == "alice@example.com" and rows["ci-build"]["Owner"] == ""
    assert not rows["alice"]["Excepted"] and rows["alice"]["RotationDue"]
    ci = rows["ci-build"]
    assert ci["Excepted"] and ci["ExceptionReason"] == "CI keys are rebuilt weekly"
    assert ci["ExceptionExpires"] == f"{(START + timedelta(days=30)).date().isoformat()}T00:00:00Z"


def test_an_exception_past_the_runs_start_no_longer_applies() -> None:
    fake = organization()
    fake.clock.advance(timedelta(days=31).total_seconds())  # the run starts a day after the exception's end
    rows = {r["UserName"]: r for r in collect(fake, exceptions_expiring(30))}
    assert (rows["ci-build"]["Excepted"], rows["ci-build"]["ExceptionReason"]) == (False, None)
