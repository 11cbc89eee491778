"""shared/insight/changes.py's credential_changes on canned records: the lifecycle events of the long-lived credentials
other than access keys (queries/credential-changes.kql) between consecutive good snapshots of each account and kind,
where a run that failed the account, or could not read that kind there, is no snapshot."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.insight.changes import credential_changes
from shared.insight.credentials import latest_credentials
from shared.records import CredentialRecord, RunRecord

T0 = datetime(2026, 11, 1, tzinfo=UTC)
A = "111111111111"
API, CERT = "ServiceSpecificCredential", "SigningCertificate"


def run(n: int, *, failed: tuple[str, ...] = (), unknown: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    return RunRecord(
        TimeGenerated=T0 + timedelta(hours=6 * n), RunId=f"run-{n}", Status="Succeeded", AuthMode="access_key",
        Sink="file", AccountsTotal=1, AccountsSucceeded=1, AccountsFailed=len(failed),
        FailedAccounts=json.dumps([{"AccountId": a, "Error": "x"} for a in failed]), KeysCollected=0,
        DurationSeconds=1.0, CollectorVersion="test",
        CredentialsUnknownAccounts=json.dumps([{"AccountId": a, "CredentialType": k, "Error": "AccessDenied"}
                                               for a, k in unknown]),
    ).to_row()


def cred(n: int, fp: str, *, kind: str = API, status: str = "Active", user: str = "ml") -> dict[str, Any]:
    return CredentialRecord(
        TimeGenerated=T0 + timedelta(hours=6 * n), RunId=f"run-{n}", AccountId=A, AccountName="Prod", UserName=user,
        UserArn=f"arn:aws:iam::{A}:user/{user}", Owner="", Privileged=None, PrivilegeReasons=None, Quarantined=None,
        CredentialType=kind, Service="bedrock.amazonaws.com" if kind == API else "",
        CredentialId="ACCA...0001" if kind == API else None, CredentialFingerprint=fp, Status=status,
        CreatedAt=T0 - timedelta(days=3), ExpiresAt=None, AgeDays=3, NoExpiry=kind == API, RotationDue=False,
        ExpiringSoon=False,
    ).to_row()


def events(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((e.RunId, e.EventType, e.CredentialFingerprint) for e in credential_changes(rows, runs))


def test_created_deactivated_reactivated_expired_and_deleted() -> None:
    runs = [run(0), run(1), run(2), run(3)]
    rows = [cred(0, "a"), cred(0, "b"),
            cred(1, "a", status="Inactive"), cred(1, "b"), cred(1, "c"),
            cred(2, "a"), cred(2, "b", status="Expired"),
            cred(3, "a")]
    assert events(rows, runs) == [
        ("run-1", "Created", "c"), ("run-1", "Deactivated", "a"),
        ("run-2", "Deleted", "c"), ("run-2", "Expired", "b"), ("run-2", "Reactivated", "a"),
        ("run-3", "Deleted", "b"),
    ]


def test_the_first_snapshot_is_the_baseline() -> None:
    assert events([cred(0, "a")], [run(0)]) == []


def test_a_kind_that_could_not_be_read_is_no_snapshot_of_it() -> None:
    """Run 1 could not list the API keys (AccessDenied): they are not deleted there and created again in run 2; the
    certificates, read from the credential report in run 1, are compared as usual."""
    runs = [run(0), run(1, unknown=((A, API),)), run(2)]
    rows = [cred(0, "a"), cred(0, "cert-1", kind=CERT),
            cred(1, "cert-1", kind=CERT), cred(1, "cert-2", kind=CERT),
            cred(2, "a"), cred(2, "cert-2", kind=CERT)]
    assert events(rows, runs) == [("run-1", "Created", "cert-2"), ("run-2", "Deleted", "cert-1")]
    # the snapshot shows run 0's API key (stale) while run 2 is not there yet
    latest = latest_credentials([r for r in rows if r["RunId"] != "run-2"], runs[:2])
    assert sorted((c["CredentialFingerprint"], c["Stale"]) for c in latest) == [
        ("a", True), ("cert-1", False), ("cert-2", False)]


def test_a_failed_account_is_no_snapshot_of_any_kind() -> None:
    runs = [run(0), run(1, failed=(A,)), run(2)]
    rows = [cred(0, "a"), cred(0, "cert-1", kind=CERT), cred(2, "a"), cred(2, "cert-1", kind=CERT)]
    assert events(rows, runs) == []


def test_a_credential_row_delivered_twice_counts_once() -> None:
    runs = [run(0), run(1), run(1)]
    rows = [cred(0, "a"), cred(1, "a"), cred(1, "b"), cred(1, "b")]
    assert events(rows, runs) == [("run-1", "Created", "b")]
