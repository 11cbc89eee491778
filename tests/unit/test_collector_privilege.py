"""Privilege, quarantine and console facts through the collector, against the in-memory IAM fake: the account read with
GetAccountAuthorizationDetails (paged), its records carrying the flags, reasons and kill-first score."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.collection.collector import Collector, CollectorOptions
from shared.delivery.outbox import NoOutbox
from shared.delivery.reliable_sink import ReliableSink
from shared.errors import IamCallError
from shared.findings.catalogue import kill_first
from shared.records import KEYS_TABLE
from tests.support.iam_fake import FakeAccount, FakeGroup, FakeKey, FakeUser, IamFake, key_id
from tests.support.sinks import ListSink

A = "111111111111"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
QUARANTINE = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
ALLOW_IAM = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]}


def organization(page_size: int = 1000) -> IamFake:
    policy = f"arn:aws:iam::{A}:policy/deploy-all"
    return IamFake([FakeAccount(A, page_size=page_size, report_lists_users=True, users=[
        FakeUser("admin", [FakeKey(key_id(1))], attached=[ADMIN]),
        FakeUser("group-admin", [FakeKey(key_id(2))], groups=["Admins"]),
        FakeUser("leaked", [FakeKey(key_id(3)), FakeKey(key_id(4), status="Inactive")], attached=[QUARANTINE]),
        FakeUser("deployer", [FakeKey(key_id(5))], attached=[policy]),
        FakeUser("bounded", [FakeKey(key_id(6))], attached=[ADMIN],
                 boundary="arn:aws:iam::aws:policy/ReadOnlyAccess"),
        FakeUser("console", [FakeKey(key_id(7), age_days=1000)], console=True, mfa=False,
                 tags={"AKIA" + "0" * 15 + "7": "the console user's laptop key"}),
        FakeUser("plain", [FakeKey(key_id(8))], inline={"reads": {"Statement": [
            {"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}]}}),
    ], groups={"Admins": FakeGroup(inline={"everything": ALLOW_ALL})}, policies={policy: ALLOW_IAM})])


def collect(fake: IamFake) -> dict[str, dict[str, Any]]:
    sink = ListSink()
    options = CollectorOptions("access_key", "file", 90, 45, 2)
    Collector(options, fake, ReliableSink(sink, NoOutbox(), max_rows=1000, max_age=timedelta(hours=48)),
              clock=fake.clock).run()
    return {f'{r["UserName"]}/{r["Status"]}': r for r in sink.rows(KEYS_TABLE)}


def test_each_keys_user_privilege_quarantine_and_console_are_on_its_record() -> None:
    rows = collect(organization())
    flags = {name: (r["Privileged"], r["Quarantined"], r["ConsoleWithoutMfa"], r["KeyAtUserSetup"])
             for name, r in rows.items() if not r["IsRootKey"]}
    assert flags == {
        "admin/Active": (True, False, False, False),
        "group-admin/Active": (True, False, False, False),
        "leaked/Active": (False, True, False, False),
        "leaked/Inactive": (False, True, False, False),
        "deployer/Active": (True, False, False, False),
        "bounded/Active": (False, False, False, False),
        "console/Active": (False, False, True, True),  # its key is as old as the user (the fake's users: 1000 days)
        "plain/Active": (False, False, False, False),
    }
    assert rows["admin/Active"]["PrivilegeReasons"] == "AdministratorAccess attached"
    assert rows["group-admin/Active"]["PrivilegeReasons"] == "inline policy everything of group Admins allows *"
    assert rows["deployer/Active"]["PrivilegeReasons"] == "iam:* via policy deploy-all"
    assert rows["console/Active"]["Description"] == "the console user's laptop key"
    assert rows["leaked/Active"]["RiskScore"] == 40 and rows["leaked/Inactive"]["RiskScore"] == 0
    assert rows["console/Active"]["RiskReasons"] == (
        "console password without MFA +10; due for rotation +10; made at user setup +5")
    ranked = [f'{r["UserName"]}' for r in kill_first(rows.values())]
    # 40; then 25 each, the oldest key first (console: 1000 days), then by user name
    assert ranked == ["leaked", "console", "admin", "deployer", "group-admin"]


def test_the_listing_is_paged_and_privilege_settled_after_the_last_page() -> None:
    """Two entities a page: users on the first pages, the group and the policy on the last ones."""
    paged = organization(page_size=2)
    rows = collect(paged)
    assert paged.actions(A).count("GetAccountAuthorizationDetails") == 5  # 7 users + 1 group + 1 policy, 2 a page
    fields = ("Privileged", "PrivilegeReasons", "Quarantined", "ConsoleWithoutMfa", "Description", "RiskScore")
    one_page = collect(organization())
    assert {n: [r[f] for f in fields] for n, r in rows.items()} == {
        n: [r[f] for f in fields] for n, r in one_page.items()}
    assert rows["group-admin/Active"]["Privileged"] and rows["deployer/Active"]["Privileged"]


def test_an_account_whose_role_lacks_the_permission_fails_naming_it_and_the_stack() -> None:
    denied = IamCallError(f"IAM in account {A}: GetAccountAuthorizationDetails: AccessDenied: not authorized (the "
                          "account's collector role needs iam:GetAccountAuthorizationDetails: update its stack from "
                          "infra/aws/member-account.yaml)")
    fake = IamFake([FakeAccount(A, users=[FakeUser("u", [FakeKey(key_id(1))])], fail_with=denied, fail_after=0)])
    sink = ListSink()
    result = Collector(CollectorOptions("access_key", "file", 90, 45, 2), fake,
                       ReliableSink(sink, NoOutbox(), max_rows=1000, max_age=timedelta(hours=48)),
                       clock=fake.clock).run()
    (failure,) = result.failures
    assert "iam:GetAccountAuthorizationDetails" in failure.error and "infra/aws/member-account.yaml" in failure.error
    assert sink.rows(KEYS_TABLE) == [] and "ListAccessKeys" not in fake.actions(A)
