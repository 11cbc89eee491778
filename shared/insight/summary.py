"""The command line's end-of-run summary: run status, findings per account and by owner, the keys to kill first, the
worst keys, the excepted keys and the expired exceptions, then every long-lived credential by kind and the other
credentials' findings, as plain-text tables.

What counts is the findings catalogue's answer (shared/findings/catalogue.py: ``open_findings_of``), as in the HTML
report and queries/findings-by-account.kql: the summary never re-checks ``Status`` for a finding (an inactive root
key is a root key). ``Active`` is a column of its own, and the by-owner table is about active keys of IAM users, as
queries/findings-by-owner.kql is.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from shared.domain import AccountFailure, RunResult
from shared.findings.catalogue import (
    FINDINGS,
    ROOT_KEY,
    Finding,
    findings_of,
    is_active,
    is_excepted,
    kill_first,
    open_findings_of,
)
from shared.findings.exceptions import ExceptionSet, describe_expired
from shared.insight.credentials import BY_TYPE_COLUMNS, credential_findings, long_lived, long_lived_by_type
from shared.insight.snapshot import printable

Row = dict[str, Any]

NO_OWNER = "(no owner)"
OWNERS_SHOWN = 15
WORST_SHOWN = 25
OWNER_FINDINGS = tuple(f for f in FINDINGS if f is not ROOT_KEY)  # a root key has no owner: it is its own finding
KILL_FIRST_SHOWN = 25  # the first of the kill-first order (queries/kill-first.kql lists 50, the report too)


def summarize(
    result: RunResult, key_rows: Iterable[Row], exceptions: ExceptionSet | None = None,
    credential_rows: Sequence[Row] = (),
) -> str:
    """A readable summary: run status, then findings per account (named as the records name them), findings by owner,
    the worst keys, the excepted keys, the expired exceptions, every long-lived credential by kind (keys and
    ``credential_rows``, the run's AwsIamCredentials_CL rows) with the other credentials' findings, and the failed
    accounts. Each part is empty when it has nothing to show; excepted keys (every finding accepted) count under no
    finding: they are listed on their own."""
    rows = list(key_rows)
    lines = [
        *_run_line(result),
        *_per_account_table(rows),
        *_by_owner_table(rows),
        *_kill_first_table(rows),
        *_worst_keys(rows),
        *_excepted_keys(rows),
        *_expired_exceptions(exceptions, result.run.started_at),
        *_credential_lines(result, rows, credential_rows),
        *_failed_accounts(result.failures),
    ]
    return "\n".join(printable(line) for line in lines)  # no line may hold a control or bidi character from AWS


def _run_line(result: RunResult) -> list[str]:
    run = result.to_record()
    return [
        f"Run {run.RunId}: {run.Status} - {run.AccountsSucceeded} of {run.AccountsTotal} account(s), "
        f"{run.KeysCollected} key(s) in {run.DurationSeconds:.1f} s",
        "",
    ]


# --- per account: keys, active keys, each finding, excepted keys; and a total row ----------------------------------


def _per_account_table(rows: Sequence[Row]) -> list[str]:
    counts, names = _account_counts(rows)
    if not counts:
        return []
    columns = ("Keys", "Active", *(f.name for f in FINDINGS), "Excepted")
    table = [["Account", "Name", "Keys", "Active", *(f.cli_column for f in FINDINGS), "Excepted"]]
    table += [[account, names[account], *(str(counts[account][c]) for c in columns)] for account in sorted(counts)]
    table.append(["Total", "", *(str(sum(counts[account][c] for account in counts)) for c in columns)])
    return _format_table(table)


def _account_counts(rows: Sequence[Row]) -> tuple[dict[str, Counter[str]], dict[str, str]]:
    """Per account id: its keys, active keys, each open finding (by name) and excepted keys (active or not, as
    findings-by-account.kql); and each account's name as the records give it."""
    counts: dict[str, Counter[str]] = {}
    names: dict[str, str] = {}
    for row in rows:
        names[row["AccountId"]] = row["AccountName"] or ""
        c = counts.setdefault(row["AccountId"], Counter())
        c["Keys"] += 1
        c["Active"] += is_active(row)
        c.update(f.name for f in open_findings_of(row))
        c["Excepted"] += is_excepted(row)
    return counts, names


# --- by owner: the active keys of IAM users, the owners with most findings first -----------------------------------


def _by_owner_table(rows: Sequence[Row]) -> list[str]:
    ranked = sorted(_owner_counts(rows).items(), key=lambda item: (-item[1]["Findings"], item[0]))
    if not ranked:
        return []
    table = [["Owner", "Active", *(f.cli_column for f in OWNER_FINDINGS), "Excepted"]]
    table += [[owner, str(c["Active"]), *(str(c[f.name]) for f in OWNER_FINDINGS), str(c["Excepted"])]
              for owner, c in ranked[:OWNERS_SHOWN]]
    more = [f"... and {len(ranked) - OWNERS_SHOWN} more owners"] if len(ranked) > OWNERS_SHOWN else []
    return ["", "Findings by owner (active keys of IAM users):", *_format_table(table), *more]


def _owner_counts(rows: Sequence[Row]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for row in rows:
        if not is_active(row) or row.get("IsRootKey"):
            continue  # the table is about active keys of IAM users (findings-by-owner.kql)
        found = open_findings_of(row)
        c = counts.setdefault(row.get("Owner") or NO_OWNER, Counter())
        c["Active"] += 1
        c.update(f.name for f in found)
        c["Findings"] += len(found)
        c["Excepted"] += is_excepted(row)
    return counts


# --- kill first: active keys by RiskScore, highest first (the catalogue's order, as queries/kill-first.kql) -------


def _kill_first_table(rows: Sequence[Row]) -> list[str]:
    to_kill = kill_first(rows, limit=len(rows))
    if not to_kill:
        return []
    table = [["Score", "Account", "User", "Owner", "Key", "Why", "Excepted"]]
    table += [[str(k["RiskScore"]), k["AccountId"], k["UserName"], k.get("Owner") or "-", _key_label(k),
               str(k.get("RiskReasons") or ""), "yes" if is_excepted(k) else ""] for k in to_kill[:KILL_FIRST_SHOWN]]
    more = ([f"... and {len(to_kill) - KILL_FIRST_SHOWN} more (queries/kill-first.kql, the report)"]
            if len(to_kill) > KILL_FIRST_SHOWN else [])
    return ["", "Kill first (active keys by RiskScore, highest first; an exception lowers nothing):",
            *_format_table(table), *more]


# --- the worst keys: root keys first, then the oldest ----------------------------------------------------------------


def _worst_keys(rows: Sequence[Row]) -> list[str]:
    worst = [(row, found) for row in rows if (found := open_findings_of(row))]
    if not worst:
        return []
    worst.sort(key=lambda w: (not w[0]["IsRootKey"], -w[0]["AgeDays"], w[0]["AccountId"], w[0]["UserName"]))
    table = [["Account", "User", "Owner", "Key", "Age (days)", "Last used (days ago)", "Findings"]]
    table += [_worst_row(row, found) for row, found in worst[:WORST_SHOWN]]
    more = [f"... and {len(worst) - WORST_SHOWN} more"] if len(worst) > WORST_SHOWN else []
    # Every finding but a root key's needs an active key: an inactive key listed here is a root key (marked so).
    title = ("Findings (active keys):" if all(is_active(row) for row, _ in worst)
             else "Findings (active keys, and inactive keys that still count):")
    return ["", title, *_format_table(table), *more]


def _worst_row(row: Row, found: list[Finding]) -> list[str]:
    used = "never" if row["DaysSinceLastUse"] is None else str(row["DaysSinceLastUse"])
    return [row["AccountId"], row["UserName"], row.get("Owner") or "-", _key_label(row, mark_inactive=True),
            str(row["AgeDays"]), used, ", ".join(f.cli_tag for f in found)]


def _key_label(row: Row, *, mark_inactive: bool = False) -> str:
    """The masked key id, or "(root)" for a root key (the report shows no id); "(root, inactive)" when marked."""
    inactive = mark_inactive and not is_active(row)
    if row["AccessKeyId"]:
        return f"{row['AccessKeyId']} (inactive)" if inactive else str(row["AccessKeyId"])
    return "(root, inactive)" if inactive else "(root)"


# --- accepted risk: the excepted keys, and the exceptions that expired ----------------------------------------------


def _excepted_keys(rows: Sequence[Row]) -> list[str]:
    excepted = sorted((r for r in rows if is_excepted(r)),
                      key=lambda r: (str(r.get("ExceptionExpires")), r["AccountId"], r["UserName"]))
    if not excepted:
        return []
    table = [["Account", "User", "Owner", "Key", "Findings", "Until", "Reason"]]
    table += [[r["AccountId"], r["UserName"], r.get("Owner") or "-", _key_label(r),
               ", ".join(f.cli_tag for f in findings_of(r)), str(r.get("ExceptionExpires") or "")[:10],
               str(r.get("ExceptionReason") or "")] for r in excepted]
    return ["", "Excepted (accepted risk, left out of the counts above):", *_format_table(table)]


def _expired_exceptions(exceptions: ExceptionSet | None, now: datetime) -> list[str]:
    expired = [] if exceptions is None else exceptions.expired(now)
    if not expired or exceptions is None:
        return []
    return ["", f"Expired exceptions in {exceptions.source} (no longer applied: their keys count again; renew them "
                "through review, or remove them):", *(f"  {line}" for line in describe_expired(expired))]


def _failed_accounts(failures: Sequence[AccountFailure]) -> list[str]:
    if not failures:
        return []
    return ["", "Failed accounts:", *(f"  {f.account_id}: {f.error}" for f in failures)]


BY_TYPE_HEADER = ("Kind", "Service", "Credentials", "Active", "Rotation due", "No expiry", "Expiring soon", "Excepted")


def _credential_lines(result: RunResult, key_rows: Sequence[Row], credential_rows: Sequence[Row]) -> list[str]:
    """Every long-lived credential of the run by kind (queries/long-lived-by-type.kql), the other credentials with a
    finding (credential-findings.kql), and the kinds that could not be read (unknown, not none)."""
    lines = ["", "Long-lived credentials by kind (access keys and the others):"]
    table = [list(BY_TYPE_HEADER)]
    for row in long_lived_by_type(long_lived(key_rows, credential_rows)):
        table.append([row["CredentialType"], row["Service"] or "-", *(str(row[c]) for c in BY_TYPE_COLUMNS)])
    lines += _format_table(table)
    found = credential_findings(credential_rows)
    if found:
        lines += ["", "Findings (long-lived credentials other than access keys):"]
        detail = [["Account", "User", "Owner", "Kind", "Id", "Age (days)", "Expires", "Findings"]]
        for r in found[:WORST_SHOWN]:
            kind = r.get("Service") or r["CredentialType"]
            detail.append([r["AccountId"], r["UserName"], r.get("Owner") or "-", kind, r.get("CredentialId") or "-",
                           str(r["AgeDays"]), str(r.get("ExpiresAt") or "never")[:10], r["Findings"]])
        lines += _format_table(detail)
        if len(found) > WORST_SHOWN:
            lines.append(f"... and {len(found) - WORST_SHOWN} more")
    unknown = json.loads(result.to_record().CredentialsUnknownAccounts)
    if unknown:
        lines += ["", "Credentials unknown this run (not none; the keys were collected):"]
        lines += [f"  {u['AccountId']} {u['CredentialType']}: {u['Error']}" for u in unknown]
    return lines


def _format_table(rows: list[list[str]]) -> list[str]:
    rows = [[printable(cell) for cell in row] for row in rows]  # before measuring: what is shown is what aligns
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out
