"""The long-lived credentials other than access keys, and the one view of everything long-lived, over the ``file``
sink's rows: the same questions as queries/long-lived-credentials.kql (the workspace function
AwsIamLongLivedCredentials), long-lived-by-type.kql, credentials-summary.kql and credential-findings.kql, for the
HTML report and the CLI summary (and the query-execution tests, which compare the two).

The credentials' snapshot follows the keys' (shared/insight/snapshot.py): the rows of the newest Succeeded or
PartiallySucceeded run; for an account that failed in that run, or a kind of credential the run could not read in an
account (the run record's ``CredentialsUnknownAccounts``), the rows of that account and kind from its own newest
earlier run, marked stale.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from shared.domain import GOOD_RUN_STATUSES
from shared.findings.catalogue import CREDENTIAL_FINDINGS, counts, is_active, is_excepted, open_credential_findings_of
from shared.insight.snapshot import (
    LOOKBACK,
    Row,
    _json_list,
    latest_snapshot,
    newest,
    once,
    parse_time,
)

ACCESS_KEY = "AccessKey"  # the CredentialType of access keys in the one view
CREDENTIAL_KINDS = ("ServiceSpecificCredential", "SigningCertificate")
# The common columns of the one view, in the order of queries/long-lived-credentials.kql.
LONG_LIVED_COLUMNS = (
    "TimeGenerated", "Stale", "AccountId", "AccountName", "UserName", "UserArn", "Owner", "CredentialType", "Service",
    "CredentialId", "CredentialFingerprint", "Status", "IsRootKey", "CreatedAt", "ExpiresAt", "AgeDays", "RotationDue",
    "NoExpiry", "ExpiringSoon", "Excepted", "ExceptionReason", "ExceptionExpires",
)


def unknown_kinds(run: Row | None) -> list[tuple[str, str]]:
    """(account id, credential type) a run could not read: its failed accounts (every kind) and its
    ``CredentialsUnknownAccounts``."""
    if run is None:
        return []
    failed = [str(f["AccountId"]) for f in _json_list(run.get("FailedAccounts"))
              if isinstance(f, dict) and f.get("AccountId")]
    unknown = [(str(u["AccountId"]), str(u.get("CredentialType") or ""))
               for u in _json_list(run.get("CredentialsUnknownAccounts")) if isinstance(u, dict) and u.get("AccountId")]
    return sorted({*((a, kind) for a in failed for kind in CREDENTIAL_KINDS), *unknown})


def latest_credentials(credential_rows: Sequence[Row], runs_rows: Sequence[Row]) -> list[Row]:
    """The credentials of the latest snapshot, each with ``Stale`` (queries' LatestCredentials)."""
    snapshot = latest_snapshot([], runs_rows)
    base, latest = snapshot.newest_run, snapshot.latest_run
    if base is None or latest is None:
        return []
    since = parse_time(latest["TimeGenerated"]) - LOOKBACK
    ok_ids = {r["RunId"] for r in snapshot.runs if r.get("Status") in GOOD_RUN_STATUSES}
    in_range = once((c for c in credential_rows if c.get("RunId") in ok_ids and parse_time(c["TimeGenerated"]) > since),
                    "RunId", "CredentialFingerprint")
    rows = [{**c, "Stale": False} for c in in_range if c["RunId"] == base["RunId"]]
    for account, kind in unknown_kinds(base):
        mine = [c for c in in_range if c.get("AccountId") == account and c.get("CredentialType") == kind]
        fallback = newest(mine)
        if fallback is not None:
            rows += [{**c, "Stale": True} for c in mine if c["RunId"] == fallback["RunId"]]
    return rows


def long_lived(keys: Iterable[Row], credentials: Iterable[Row]) -> list[Row]:
    """Keys and the other credentials in the common columns of the one view (queries' LongLived)."""
    rows = [{
        **{name: key.get(name) for name in LONG_LIVED_COLUMNS}, "Stale": bool(key.get("Stale")),
        "CredentialType": ACCESS_KEY, "Service": "", "CredentialId": key.get("AccessKeyId"),
        "CredentialFingerprint": key.get("AccessKeyFingerprint"), "ExpiresAt": None, "NoExpiry": False,
        "ExpiringSoon": False,
    } for key in keys]
    rows += [{**{name: c.get(name) for name in LONG_LIVED_COLUMNS}, "Stale": bool(c.get("Stale")), "IsRootKey": False}
             for c in credentials]
    rows.sort(key=lambda r: (str(r["AccountId"]), str(r["UserName"]), str(r["CredentialType"]), str(r["CreatedAt"])))
    return rows


BY_TYPE_COLUMNS = ("Credentials", "Active", "RotationDue", "NoExpiry", "ExpiringSoon", "Excepted")


def long_lived_by_type(rows: Iterable[Row]) -> list[Row]:
    """long-lived-by-type.kql: per (CredentialType, Service), how many, how many active, and the open findings."""
    kinds: dict[tuple[str, str], Counter[str]] = {}
    for row in rows:
        c = kinds.setdefault((str(row.get("CredentialType")), str(row.get("Service") or "")), Counter())
        c["Credentials"] += 1
        c["Active"] += is_active(row)
        for flag in ("RotationDue", "NoExpiry", "ExpiringSoon"):
            c[flag] += bool(row.get(flag)) and not is_excepted(row)
        c["Excepted"] += is_excepted(row)
    return [{"CredentialType": kind, "Service": service, **{n: c[n] for n in BY_TYPE_COLUMNS}}
            for (kind, service), c in sorted(kinds.items())]


def credentials_summary(credentials: Sequence[Row]) -> list[tuple[str, str, int]]:
    """credentials-summary.kql: (finding column, label, count), then the active credentials."""
    tiles = [(f.column, f.label, sum(counts(f, c) for c in credentials)) for f in CREDENTIAL_FINDINGS]
    tiles.append(("ActiveCredentials", "Active credentials other than keys", sum(is_active(c) for c in credentials)))
    return tiles


def credential_findings(credentials: Sequence[Row]) -> list[Row]:
    """credential-findings.kql: the credentials with a finding no exception accepts, never-expiring API keys first,
    then the oldest."""
    rows: list[Row] = []
    for c in credentials:
        found = open_credential_findings_of(c)
        if found:
            privileged = is_active(c) and (c.get("Privileged") is True or c.get("Quarantined") is True)
            rows.append({**c, "PrivilegedUser": privileged, "Findings": ", ".join(f.cli_tag for f in found)})
    rows.sort(key=lambda r: (str(r.get("AccountId")), str(r.get("UserName"))))
    rows.sort(key=lambda r: int(r.get("AgeDays") or 0), reverse=True)
    rows.sort(key=lambda r: bool(r.get("NoExpiry")), reverse=True)
    return rows

