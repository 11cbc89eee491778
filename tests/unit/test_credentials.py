"""Long-lived credentials other than access keys (shared/collection/credentials.py) in the collector's own logic,
against the in-memory IAM fake: service-specific credentials (API keys, Git and Keyspaces credentials) from one
listing call per service, signing certificates from the credential report, their findings, owners and exceptions,
their holders' privilege and quarantine from the same GetAccountAuthorizationDetails directory as the keys, and what
a run says when they cannot be read (unknown, not zero)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest

from shared.collection.collector import Collector, CollectorOptions
from shared.collection.credentials import certificate_slots
from shared.delivery.outbox import NoOutbox
from shared.delivery.reliable_sink import ReliableSink
from shared.domain import CREDENTIAL_SERVICES, RunResult
from shared.errors import IamCallError, MalformedResponseError
from shared.findings.catalogue import (
    API_KEY_NO_EXPIRY,
    CREDENTIAL_EXPIRING_SOON,
    PRIVILEGED_USER_CREDENTIAL,
    CredentialFacts,
    Thresholds,
    credential_findings_of,
)
from shared.findings.exceptions_file import parse_exceptions
from shared.findings.privilege import ROOT_REASON
from shared.records import CREDENTIALS_TABLE, KEYS_TABLE, RUNS_TABLE
from tests.support.iam_fake import (
    START,
    FakeAccount,
    FakeCertificate,
    FakeGroup,
    FakeKey,
    FakeServiceCredential,
    FakeUser,
    IamFake,
    key_id,
)
from tests.support.sinks import ListSink

A = "111111111111"
DENIED = ("IAM in account 111111111111: ListServiceSpecificCredentials: AccessDenied: not authorized (the account's "
          "collector role needs iam:ListServiceSpecificCredentials: update its stack from "
          "infra/aws/member-account.yaml (member accounts) or infra/aws/home-account.yaml (the home account); its "
          "access keys are collected all the same)")
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
QUARANTINE = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"
BEDROCK, LOGS, CODECOMMIT = "bedrock.amazonaws.com", "logs.amazonaws.com", "codecommit.amazonaws.com"


def credential_id(n: int) -> str:
    return f"ACCA{n:017d}"


def organization(**knobs: Any) -> IamFake:
    return IamFake([FakeAccount(A, "Sandbox", users=[
        FakeUser("alice", [FakeKey(key_id(1))], tags={"owner": "alice@example.com"},
                 service_credentials=[FakeServiceCredential(credential_id(1), BEDROCK, age_days=20)]),
        FakeUser("ml-bot", tags={"owner": "ml-team@example.com"}, service_credentials=[
            FakeServiceCredential(credential_id(2), BEDROCK, age_days=30, expires_in_days=3),
            FakeServiceCredential(credential_id(3), LOGS, age_days=5, expires_in_days=60),
            FakeServiceCredential(credential_id(4), LOGS, status="Expired", age_days=100, expires_in_days=-1),
        ]),
        FakeUser("git-user", service_credentials=[FakeServiceCredential(credential_id(5), CODECOMMIT, age_days=200)]),
        FakeUser("signer", certificates=[FakeCertificate("Active", 400), FakeCertificate("Inactive", 10)],
                 tags={"email": "signer@example.com"}),
        FakeUser("dave", [FakeKey(key_id(2))]),
    ], **knobs)])


def collect(fake: IamFake, exceptions: str | None = None) -> tuple[RunResult, ListSink]:
    parsed = None if exceptions is None else parse_exceptions(exceptions, source="exceptions.json", now=START)
    options = CollectorOptions("access_key", "file", 90, 45, 2, owner_tag_keys=("owner", "email"),
                               **({} if parsed is None else {"exceptions": parsed}))
    sink = ListSink()
    result = Collector(options, fake, ReliableSink(sink, NoOutbox(), max_rows=1000, max_age=timedelta(hours=48)),
                       clock=fake.clock).run()
    (run_row,) = sink.rows(RUNS_TABLE)
    assert run_row == result.to_record().to_row()
    return result, sink


def by_user(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["UserName"], r["Service"], r["CreatedAt"]): r for r in rows}


def test_every_kind_of_credential_is_a_record_with_its_findings() -> None:
    fake = organization()
    result, sink = collect(fake)
    rows = sink.rows(CREDENTIALS_TABLE)
    assert result.status == "Succeeded" and len(rows) == result.credentials_collected == 7
    assert result.to_record().CredentialsCollected == 7 and result.to_record().CredentialsUnknownAccounts == "[]"
    assert len(sink.rows(KEYS_TABLE)) == result.keys_collected == 2  # the key table is not touched
    flags = sorted((r["UserName"], r["CredentialType"], r["Service"], r["Status"], r["AgeDays"], r["NoExpiry"],
                    r["RotationDue"], r["ExpiringSoon"]) for r in rows)
    assert flags == [
        ("alice", "ServiceSpecificCredential", BEDROCK, "Active", 20, True, False, False),  # an API key for ever
        ("git-user", "ServiceSpecificCredential", CODECOMMIT, "Active", 200, False, True, False),  # Git: no expiry
        ("ml-bot", "ServiceSpecificCredential", BEDROCK, "Active", 30, False, False, True),  # 3 days left
        ("ml-bot", "ServiceSpecificCredential", LOGS, "Active", 5, False, False, False),
        ("ml-bot", "ServiceSpecificCredential", LOGS, "Expired", 100, False, False, False),
        ("signer", "SigningCertificate", "", "Active", 400, False, True, False),
        ("signer", "SigningCertificate", "", "Inactive", 10, False, False, False),
    ]
    alice = next(r for r in rows if r["UserName"] == "alice")
    assert alice["CredentialId"] == "ACCA...0001" and credential_id(1) not in json.dumps(rows)
    assert alice["CredentialFingerprint"] == hashlib.sha256(credential_id(1).encode()).hexdigest()[:16]
    assert alice["UserArn"] == f"arn:aws:iam::{A}:user/alice" and alice["AccountName"] == "Sandbox"
    assert alice["ExpiresAt"] is None and alice["TimeGenerated"] == result.to_record().to_row()["TimeGenerated"]
    assert (alice["Privileged"], alice["PrivilegeReasons"], alice["Quarantined"]) == (False, "", False)
    expiring = next(r for r in rows if r["ExpiringSoon"])
    assert expiring["ExpiresAt"] == (START + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    certs = [r for r in rows if r["CredentialType"] == "SigningCertificate"]
    assert all(r["CredentialId"] is None for r in certs) and len({r["CredentialFingerprint"] for r in certs}) == 2
    assert {r["UserName"]: r["Owner"] for r in rows} == {
        "alice": "alice@example.com", "ml-bot": "ml-team@example.com", "git-user": "", "signer": "signer@example.com"}


def test_one_listing_call_per_service_and_no_call_per_holder() -> None:
    fake = organization()
    collect(fake)
    calls = [(action, arg) for _, action, arg in fake.calls if action == "ListServiceSpecificCredentials"]
    assert sorted(calls) == sorted(("ListServiceSpecificCredentials", s.name) for s in CREDENTIAL_SERVICES)
    # the holders' ARNs, owners and privilege come from the one directory the keys' users come from
    assert sorted({action for _, action, _ in fake.calls}) == [
        "GetAccessKeyLastUsed", "GetAccountAuthorizationDetails", "GetCredentialReport", "ListAccessKeys",
        "ListServiceSpecificCredentials"]
    assert [action for _, action, _ in fake.calls].count("GetAccountAuthorizationDetails") == 1


def test_a_role_without_the_permission_keeps_the_keys_and_names_what_is_missing() -> None:
    fake = organization(service_credentials_error=IamCallError(DENIED))
    result, sink = collect(fake)
    assert result.status == "Succeeded" and result.failures == ()
    assert len(sink.rows(KEYS_TABLE)) == 2  # the keys are collected all the same
    rows = sink.rows(CREDENTIALS_TABLE)
    assert {r["CredentialType"] for r in rows} == {"SigningCertificate"}  # the report's part is known
    (unknown,) = json.loads(result.to_record().CredentialsUnknownAccounts)
    assert unknown["AccountId"] == A and unknown["CredentialType"] == "ServiceSpecificCredential"
    assert "iam:ListServiceSpecificCredentials" in unknown["Error"]
    assert [a for _, a, _ in fake.calls].count("ListServiceSpecificCredentials") == 1  # the first denial ends it


def test_a_credential_report_that_cannot_be_had_leaves_certificates_unknown() -> None:
    result, sink = collect(organization(report_unavailable=True))
    assert {r["CredentialType"] for r in sink.rows(CREDENTIALS_TABLE)} == {"ServiceSpecificCredential"}
    (unknown,) = result.credentials_unknown
    assert (unknown.account_id, unknown.credential_type) == (A, "SigningCertificate")
    assert "signing certificates unknown" in unknown.error


def test_a_malformed_listing_is_unknown_not_an_account_failure() -> None:
    fake = organization()
    fake.organization[0].users[0].service_credentials[0].credential_id = "not an id"
    result, sink = collect(fake)
    assert result.failures == () and len(sink.rows(KEYS_TABLE)) == 2
    assert [u.credential_type for u in result.credentials_unknown] == ["ServiceSpecificCredential"]
    assert "ServiceSpecificCredentialId" in result.credentials_unknown[0].error


def test_a_service_not_offered_has_none() -> None:
    result, sink = collect(organization(service_credentials_unsupported=frozenset({CODECOMMIT})))
    assert result.credentials_unknown == ()
    assert CODECOMMIT not in {r["Service"] for r in sink.rows(CREDENTIALS_TABLE)}


def test_a_failed_account_sends_no_credentials() -> None:
    fake = organization(fail_with=IamCallError("IAM in account 111111111111: GetAccountAuthorizationDetails: "
                                               "AccessDenied"), fail_after=1)
    result, sink = collect(fake)
    assert result.status == "Failed" and sink.rows(CREDENTIALS_TABLE) == [] and result.credentials_collected == 0


def test_exceptions_accept_credential_findings_as_they_accept_key_findings() -> None:
    alice_fp = hashlib.sha256(credential_id(1).encode()).hexdigest()[:16]
    until = (START + timedelta(days=30)).date().isoformat()
    entry = {"reason": "pilot, replaced by a role in March", "approvedBy": "sec@example.com", "expires": until}
    text = json.dumps({"version": 1, "exceptions": [
        {"fingerprint": alice_fp, "finding": "api_key_no_expiry", **entry},
        {"userArn": f"arn:aws:iam::{A}:user/git-*", "finding": "*", **entry},
        # a key's finding is not the credential's: rotation_due does not accept credential_rotation_due
        {"userArn": f"arn:aws:iam::{A}:user/signer", "finding": "rotation_due", **entry},
    ]})
    _, sink = collect(organization(), text)
    excepted = {r["UserName"] for r in sink.rows(CREDENTIALS_TABLE) if r["Excepted"]}
    assert excepted == {"alice", "git-user"}
    alice = next(r for r in sink.rows(CREDENTIALS_TABLE) if r["UserName"] == "alice")
    assert alice["ExceptionReason"] == entry["reason"] and alice["ExceptionExpires"].startswith(until)


@pytest.mark.parametrize(("active", "api_key", "days_left", "no_expiry", "soon"), [
    (True, True, None, True, False),
    (False, True, None, False, False),  # an inactive key cannot be used
    (True, False, None, False, False),  # a Git credential is no API key: it never had an expiry to set
    (True, True, 7.0, False, True),  # 7 days left: still soon
    (True, True, 7.01, False, False),
    (True, True, 0.0, False, True),
    (True, True, -0.5, False, False),  # expired already: nothing to renew in time
    (False, True, 2.0, False, False),
])
def test_expiry_findings(active: bool, api_key: bool, days_left: float | None, no_expiry: bool, soon: bool) -> None:
    facts = CredentialFacts(active=active, age_days=1, api_key=api_key, days_to_expiry=days_left)
    limits = Thresholds(rotation_days=90, unused_days=45)
    assert API_KEY_NO_EXPIRY.sets is not None and CREDENTIAL_EXPIRING_SOON.sets is not None
    assert (API_KEY_NO_EXPIRY.sets(facts, limits), CREDENTIAL_EXPIRING_SOON.sets(facts, limits)) == (no_expiry, soon)


def test_a_credential_of_a_privileged_or_quarantined_user_is_a_finding() -> None:
    row = {"Status": "Active", "Privileged": None, "Quarantined": None}
    assert PRIVILEGED_USER_CREDENTIAL not in credential_findings_of(row)  # a row from before the fields: no finding
    assert PRIVILEGED_USER_CREDENTIAL not in credential_findings_of({**row, "Privileged": False, "Quarantined": False})
    assert PRIVILEGED_USER_CREDENTIAL in credential_findings_of({**row, "Privileged": True})
    assert PRIVILEGED_USER_CREDENTIAL in credential_findings_of({**row, "Quarantined": True})
    assert PRIVILEGED_USER_CREDENTIAL not in credential_findings_of({**row, "Status": "Inactive", "Privileged": True})


def test_the_holders_privilege_and_quarantine_are_their_keys_from_the_same_directory() -> None:
    """PrivilegeLookup wired: an admin's API key, a quarantined user's certificate and the root user's certificate
    carry the privilege their keys carry, and are the finding "credential of a privileged or quarantined user"."""
    fake = IamFake([FakeAccount(A, "Sandbox", root_certificate_age_days=30, users=[
        FakeUser("admin", [FakeKey(key_id(1))], attached=[ADMIN], tags={"owner": "ops@example.com"},
                 service_credentials=[FakeServiceCredential(credential_id(1), BEDROCK, expires_in_days=60)]),
        FakeUser("via-group", groups=["Admins"],
                 service_credentials=[FakeServiceCredential(credential_id(2), CODECOMMIT)]),
        FakeUser("leaked", attached=[QUARANTINE], certificates=[FakeCertificate("Active", 10)]),
        FakeUser("plain", service_credentials=[FakeServiceCredential(credential_id(3), LOGS, expires_in_days=60)]),
    ], groups={"Admins": FakeGroup(attached=[ADMIN])})])
    _, sink = collect(fake)
    rows = {r["UserName"]: r for r in sink.rows(CREDENTIALS_TABLE)}
    assert {name: (r["Privileged"], r["PrivilegeReasons"], r["Quarantined"]) for name, r in rows.items()} == {
        "admin": (True, "AdministratorAccess attached", False),
        "via-group": (True, "AdministratorAccess via group Admins", False),
        "leaked": (False, "", True),
        "plain": (False, "", False),
        "<root_account>": (True, ROOT_REASON, False),
    }
    (admin_key,) = sink.rows(KEYS_TABLE)
    assert (admin_key["Privileged"], admin_key["PrivilegeReasons"]) == (True, rows["admin"]["PrivilegeReasons"])
    assert rows["admin"]["Owner"] == "ops@example.com" and rows["<root_account>"]["Owner"] == ""
    assert rows["<root_account>"]["UserArn"] == f"arn:aws:iam::{A}:root"
    flagged = {name for name, r in rows.items() if PRIVILEGED_USER_CREDENTIAL in credential_findings_of(r)}
    assert flagged == {"admin", "via-group", "leaked", "<root_account>"}


def test_a_holder_the_directory_does_not_show_yet_is_left_for_the_next_run() -> None:
    fake = IamFake([FakeAccount(A, created_after_directory={"newcomer"}, users=[
        FakeUser("alice", [FakeKey(key_id(1))], service_credentials=[FakeServiceCredential(credential_id(1))]),
        FakeUser("newcomer", service_credentials=[FakeServiceCredential(credential_id(2))],
                 certificates=[FakeCertificate("Active", 1)]),
    ])])
    result, sink = collect(fake)
    assert [r["UserName"] for r in sink.rows(CREDENTIALS_TABLE)] == ["alice"]
    assert result.credentials_unknown == () and result.failures == ()  # known next run, not unknown now
    assert "ListUserTags" not in {action for _, action, _ in fake.calls}


def test_an_active_certificate_without_its_date_is_malformed_not_absent() -> None:
    assert certificate_slots({"cert_1_active": "false", "cert_1_last_rotated": "N/A"}) == []
    with pytest.raises(MalformedResponseError, match="cert_1_last_rotated"):
        certificate_slots({"cert_1_active": "true", "cert_1_last_rotated": "N/A"})


def test_a_wildcard_exception_never_accepts_the_credential_of_a_quarantined_user() -> None:
    """As for a key (``quarantined`` is named-only): ``*`` accepts the admin's credential and not the quarantined
    user's; only an exception that names ``quarantined`` (and the rest) does."""
    fake = IamFake([FakeAccount(A, "Sandbox", users=[
        FakeUser("admin", attached=[ADMIN], certificates=[FakeCertificate("Active", 10)]),
        FakeUser("leaked", attached=[QUARANTINE], certificates=[FakeCertificate("Active", 10)]),
    ])])
    until = (START + timedelta(days=30)).date().isoformat()
    entry = {"reason": "migration", "approvedBy": "sec@example.com", "expires": until}
    wildcard = json.dumps({"version": 1, "exceptions": [{"accountId": A, "finding": "*", **entry}]})
    _, sink = collect(fake, wildcard)
    assert {r["UserName"] for r in sink.rows(CREDENTIALS_TABLE) if r["Excepted"]} == {"admin"}
    named = json.dumps({"version": 1, "exceptions": [{"accountId": A, "finding": "*", **entry},
                                                     {"accountId": A, "finding": "quarantined", **entry}]})
    _, sink = collect(fake, named)
    assert {r["UserName"] for r in sink.rows(CREDENTIALS_TABLE) if r["Excepted"]} == {"admin", "leaked"}
