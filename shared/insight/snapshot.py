"""The readers' data: the latest good snapshot and the same questions as queries/*.kql, answered over the ``file``
sink's rows (the HTML report, the CLI summary and the query-execution tests read these).

The snapshot follows queries/latest-snapshot.kql: the keys of the newest Succeeded or PartiallySucceeded run; for an
account that failed in that run, its keys from its own newest earlier good run, marked stale. The 7-day windows of the
queries end at the newest run here (not at the current time), so that an old folder still renders.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from shared import jsonl
from shared.domain import GOOD_RUN_STATUSES
from shared.findings.catalogue import (
    FINDINGS,
    NEVER_USED,
    QUARANTINED,
    ROOT_KEY,
    ROTATION_DUE,
    TWO_ACTIVE_KEYS,
    UNOWNED_ACTIVE_KEY,
    UNUSED,
    Finding,
    counts,
    findings_of,
    is_active,
    is_excepted,
    kill_first,
    open_findings_of,
)
from shared.findings.exceptions import ExceptionSet, mapping_of

Row = dict[str, Any]
R = TypeVar("R", bound=Mapping[str, Any])

LOOKBACK = timedelta(days=7)
CHANGES_LOOKBACK = timedelta(days=30)  # queries/key-changes.kql
TREND_DAYS = 365

# The tiles and the bar chart's series are the findings catalogue's (shared/findings/catalogue.py), in its order. A key
# whose every finding is accepted by an exception (Excepted) counts under none of them: it has a table of its own.
UNKNOWN_ROOT = "Unknown (no credential report)"
NO_OWNER = "(no owner)"


# Characters that change how the text around them is shown, never part of a name worth showing: C0 and C1 controls
# (an ESC starts a terminal escape sequence, CR rewrites a line), the line and paragraph separators, and the
# bidirectional marks, embeddings, overrides and isolates (U+061C, U+200E/F, U+202A-U+202E, U+2066-U+2069) that can
# make "nimda" read as "admin". User names, tags (Owner) and account names come from AWS: anyone who can tag a user
# writes them.
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str, keep: str = "") -> str:
    """``text`` without the characters above (but those in ``keep``, e.g. the newlines of a whole document): how the
    CLI summary and the HTML report show AWS-supplied text."""
    if keep:
        return _UNSHOWABLE.sub(lambda m: m.group() if m.group() in keep else "", text)
    return _UNSHOWABLE.sub("", text)


# --------------------------------------------------------------------------------------------------------------------
# Data: the same questions as queries/*.kql


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def read_jsonl(path: Path) -> list[Row]:
    """Rows of a file sink's JSON Lines file, by the package's one decoder (shared/jsonl.py): a torn last line (a
    crash mid-write) is skipped; a line that does not parse anywhere else fails, naming the file and the line."""
    return jsonl.read_rows(path)


def newest(rows: Iterable[Row]) -> Row | None:
    return max(rows, key=lambda r: parse_time(r["TimeGenerated"]), default=None)


@dataclass
class Snapshot:
    keys: list[Row]  # latest-snapshot.kql: each row with Stale
    newest_run: Row | None  # the newest good run, the snapshot's base
    runs: list[Row]  # run records within the lookback, newest first
    latest_run: Row | None  # the newest run of any status


def once(rows: Iterable[R], *fields: str) -> list[R]:
    """Each row once by ``fields``: a row delivered twice (a sink's retry after an ambiguous failure) counts once,
    as the queries' ``summarize arg_max(TimeGenerated, *) by ...`` does."""
    return list({tuple(row.get(f) for f in fields): row for row in rows}.values())


def latest_snapshot(keys_rows: Sequence[Row], runs_rows: Sequence[Row]) -> Snapshot:
    runs_rows = once(runs_rows, "RunId")
    latest_run = newest(runs_rows)
    if latest_run is None:
        return Snapshot([], None, [], None)
    since = parse_time(latest_run["TimeGenerated"]) - LOOKBACK
    runs = sorted((r for r in runs_rows if parse_time(r["TimeGenerated"]) > since),
                  key=lambda r: parse_time(r["TimeGenerated"]), reverse=True)
    ok_runs = [r for r in runs if r.get("Status") in GOOD_RUN_STATUSES]
    base = ok_runs[0] if ok_runs else None
    if base is None:
        return Snapshot([], None, runs, latest_run)
    ok_ids = {r["RunId"] for r in ok_runs}
    in_range = once((k for k in keys_rows if k.get("RunId") in ok_ids and parse_time(k["TimeGenerated"]) > since),
                    "RunId", "AccessKeyFingerprint")
    failed_now = failed_accounts(base)
    keys = [{**k, "Stale": False} for k in in_range if k["RunId"] == base["RunId"]]
    for account in sorted(failed_now):
        rows = [k for k in in_range if k.get("AccountId") == account]
        fallback = newest(rows)
        if fallback is not None:
            keys += [{**k, "Stale": True} for k in rows if k["RunId"] == fallback["RunId"]]
    return Snapshot(keys, base, runs, latest_run)


def failed_accounts(run: Mapping[str, Any]) -> set[str]:
    """Account ids listed in a run record's FailedAccounts (a JSON array of {"AccountId", "Error"})."""
    failures = _json_list(run.get("FailedAccounts"))
    return {str(f["AccountId"]) for f in failures if isinstance(f, dict) and f.get("AccountId")}


def _json_list(text: Any) -> list[Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


def findings_summary(keys: Sequence[Row]) -> list[tuple[str, str, int]]:
    """findings-summary.kql: (finding, label, count)."""
    tiles = [(f.column, f.label, _tile_count(f, keys)) for f in FINDINGS]
    tiles.append(("ActiveKeys", "Active keys", sum(is_active(k) for k in keys)))
    return tiles


def _tile_count(finding: Finding, keys: Sequence[Row]) -> int:
    """Keys with the finding, or the distinct users (``distinct_by``) they belong to."""
    if finding.distinct_by is None:
        return sum(counts(finding, k) for k in keys)
    return len({k.get(finding.distinct_by) for k in keys if counts(finding, k)})


def findings_by_account(keys: Sequence[Row]) -> list[Row]:
    """findings-by-account.kql: one row per account, most findings first."""
    accounts: dict[tuple[str, str], Counter[str]] = {}
    for k in keys:
        c = accounts.setdefault((str(k.get("AccountId", "")), str(k.get("AccountName") or "")), Counter())
        c["Keys"] += 1
        c["ActiveKeys"] += is_active(k)
        c.update(f.column for f in open_findings_of(k))
        c["ExceptedKeys"] += is_excepted(k)
        c["StaleRows"] += bool(k.get("Stale"))
    rows = []
    for (account_id, name), c in accounts.items():
        row: Row = {
            "Account": f"{name} ({account_id})" if name else account_id,
            "AccountId": account_id,
            "AccountName": name,
            **{name: c[name] for name in ("Keys", "ActiveKeys", *(f.column for f in FINDINGS), "ExceptedKeys")},
        }
        row["Findings"] = sum(row[f.column] for f in FINDINGS)
        row["Stale"] = c["StaleRows"] > 0
        rows.append(row)
    rows.sort(key=lambda r: (-r["Findings"], r["Account"]))
    return rows


def findings_by_owner(keys: Sequence[Row]) -> list[Row]:
    """findings-by-owner.kql: the active keys of each owner and their findings (excepted keys left out of the
    counts), the owners with most findings first; keys without an owner under "(no owner)"."""
    owners: dict[str, Counter[str]] = {}
    accounts: dict[str, set[str]] = {}
    for k in keys:
        if not is_active(k) or k.get("IsRootKey"):
            continue  # a root key has no owner: it is a finding of its own, per account
        owner = str(k.get("Owner") or "") or NO_OWNER
        c = owners.setdefault(owner, Counter())
        accounts.setdefault(owner, set()).add(str(k.get("AccountId", "")))
        c["ActiveKeys"] += 1
        c.update(f.column for f in open_findings_of(k))
        c["ExceptedKeys"] += is_excepted(k)
    rows = []
    for owner, c in owners.items():
        row: Row = {"Owner": owner, "Accounts": len(accounts[owner]),
                    **{n: c[n] for n in ("ActiveKeys", *(f.column for f in FINDINGS), "ExceptedKeys")}}
        row["Findings"] = sum(row[f.column] for f in FINDINGS)
        rows.append(row)
    rows.sort(key=lambda r: (-r["Findings"], r["Owner"]))
    return rows


def unowned_keys(keys: Sequence[Row]) -> list[Row]:
    """unowned-keys.kql: active keys of IAM users with no owner tag (not excepted)."""
    return sorted((k for k in keys if counts(UNOWNED_ACTIVE_KEY, k)),
                  key=lambda k: (k.get("AccountId", ""), k.get("UserName", "")))


def excepted_keys(keys: Sequence[Row]) -> list[Row]:
    """excepted-keys.kql: keys left out of the counts because exceptions accept every finding they have."""
    rows = [{**k, "Findings": ", ".join(f.label for f in findings_of(k))} for k in keys if is_excepted(k)]
    return sorted(rows, key=lambda k: (str(k.get("ExceptionExpires") or ""), k.get("AccountId", ""),
                                       k.get("UserName", "")))


def expired_exceptions(exceptions: ExceptionSet | None, now: datetime) -> list[Row]:
    """The exceptions file's entries past their date: they no longer apply (renew them through review, or remove
    them)."""
    if exceptions is None:
        return []
    return [{"Entry": e.entry, "Selector": f"{e.selector} {e.pattern}", "Finding": e.finding, "Reason": e.reason,
             "ApprovedBy": e.approved_by, "Expired": mapping_of(e)["expires"]} for e in exceptions.expired(now)]


def key_creation_trend(keys: Sequence[Row], now: datetime) -> list[tuple[datetime, int]]:
    """key-creation-trend.kql: keys created per day, zero-filled, from startofday(now - 365d) to startofday(now)."""
    end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=TREND_DAYS)
    per_day = Counter(parse_time(k["CreatedAt"]).date() for k in keys if k.get("CreatedAt"))
    return [(day, per_day[day.date()]) for day in (start + timedelta(days=i) for i in range(TREND_DAYS + 1))]


def kill_first_keys(keys: Sequence[Row]) -> list[Row]:
    """kill-first.kql: the keys that score, highest RiskScore first (the catalogue's order), excepted ones included."""
    return kill_first(keys)


def quarantined_keys(keys: Sequence[Row]) -> list[Row]:
    """quarantined-keys.kql: active keys of users AWS quarantined (not excepted), highest score first."""
    rows = [k for k in keys if counts(QUARANTINED, k)]
    return sorted(rows, key=lambda k: (-int(k.get("RiskScore") or 0), k.get("AccountId", ""), k.get("UserName", "")))


def rotation_due(keys: Sequence[Row]) -> list[Row]:
    rows = [k for k in keys if counts(ROTATION_DUE, k)]
    return sorted(rows, key=lambda k: (-int(k.get("AgeDays") or 0), k.get("AccountId", ""), k.get("UserName", "")))


def unused_keys(keys: Sequence[Row]) -> list[Row]:
    rows = [{**k, "Finding": NEVER_USED.label if NEVER_USED.matches(k) else UNUSED.label}
            for k in keys if counts(UNUSED, k) or counts(NEVER_USED, k)]
    rows.sort(key=lambda k: (k.get("AccountId", ""), k.get("UserName", "")))
    rows.sort(key=lambda k: int(k.get("AgeDays") or 0), reverse=True)
    rows.sort(key=lambda k: k["Finding"], reverse=True)  # Unused first, then Never used (as the query)
    return rows


def two_active_keys(keys: Sequence[Row]) -> list[Row]:
    users: dict[tuple[str, str, str], list[Row]] = {}
    for k in keys:
        if counts(TWO_ACTIVE_KEYS, k):
            users.setdefault((k.get("AccountId", ""), k.get("AccountName") or "", k.get("UserName", "")), []).append(k)
    rows = [
        {"AccountId": a, "AccountName": n, "UserName": u, "Keys": ", ".join(str(k.get("AccessKeyId")) for k in ks),
         "OldestKeyDays": max(int(k.get("AgeDays") or 0) for k in ks),
         "NewestKeyDays": min(int(k.get("AgeDays") or 0) for k in ks)}
        for (a, n, u), ks in users.items()
    ]
    return sorted(rows, key=lambda r: (-r["OldestKeyDays"], r["AccountId"], r["UserName"]))


def root_keys(keys: Sequence[Row], newest_run: Row | None) -> list[Row]:
    rows: list[Row] = [k for k in keys if counts(ROOT_KEY, k)]
    if newest_run is not None:
        rows += [{"AccountId": str(a), "Status": UNKNOWN_ROOT}
                 for a in _json_list(newest_run.get("RootKeysUnknownAccounts")) if a]
    rows.sort(key=lambda r: (r.get("Status", ""), -int(r.get("AgeDays") or 0), r.get("AccountId", "")))
    return rows


def runs_by_status(runs: Sequence[Row]) -> list[Row]:
    statuses: dict[str, list[Row]] = {}
    for r in runs:
        statuses.setdefault(str(r.get("Status")), []).append(r)
    return [{"Status": s, "Runs": len(rs), "LastSeen": max(r["TimeGenerated"] for r in rs)}
            for s, rs in sorted(statuses.items())]


def failing_accounts(runs: Sequence[Row]) -> list[Row]:
    """failing-accounts.kql over the runs of the lookback (newest first)."""
    newest_time = runs[0]["TimeGenerated"] if runs else None
    accounts: dict[str, Row] = {}
    for run in runs:  # newest first: the first failure seen is the last one
        for failure in _json_list(run.get("FailedAccounts")):
            if not isinstance(failure, dict) or not failure.get("AccountId"):
                continue
            account = str(failure["AccountId"])
            entry = accounts.setdefault(account, {
                "AccountId": account, "FailingNow": run["TimeGenerated"] == newest_time, "Failures": 0,
                "FirstFailure": run["TimeGenerated"], "LastFailure": run["TimeGenerated"],
                "LastError": str(failure.get("Error", "")),
            })
            entry["Failures"] += 1
            entry["FirstFailure"] = run["TimeGenerated"]
    return sorted(accounts.values(), key=lambda r: (not r["FailingNow"], -r["Failures"], r["AccountId"]))
