"""The command line's end-of-run summary: run status, findings per account and by owner, the worst keys, the
excepted keys and the expired exceptions, every long-lived credential by kind and the other credentials' findings, as
plain-text tables."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from shared.domain import RunResult
from shared.findings.catalogue import FINDINGS, ROOT_KEY, Finding, findings_of, is_active, is_excepted, open_findings_of
from shared.findings.exceptions import ExceptionSet, describe_expired
from shared.insight.credentials import BY_TYPE_COLUMNS, credential_findings, long_lived, long_lived_by_type

NO_OWNER = "(no owner)"


def summarize(
    result: RunResult, key_rows: Iterable[dict[str, Any]], exceptions: ExceptionSet | None = None,
    credential_rows: Sequence[dict[str, Any]] = (),
) -> str:
    """A readable summary: run status, then findings per account (named as the records name them), findings by owner,
    the worst keys, the excepted keys and the expired exceptions, then every long-lived credential by kind (keys and
    ``credential_rows``, the run's AwsIamCredentials_CL rows) and the other credentials' findings. The findings, their
    columns and tags come from the catalogue (shared/findings.py); only active keys count, and excepted keys (every
    finding accepted) count under none: they are listed on their own."""
    key_rows = list(key_rows)
    run = result.to_record()
    per_account: dict[str, Counter[str]] = {}
    per_owner: dict[str, Counter[str]] = {}
    names: dict[str, str] = {}
    worst: list[tuple[dict[str, Any], list[Finding]]] = []
    excepted: list[dict[str, Any]] = []
    for row in key_rows:
        names[row["AccountId"]] = row["AccountName"] or ""
        counts = per_account.setdefault(row["AccountId"], Counter())
        counts["Keys"] += 1
        counts["Excepted"] += is_excepted(row)  # as findings-by-account.kql: every excepted key, active or not
        if is_excepted(row):
            excepted.append(row)
        if not is_active(row):
            continue
        counts["Active"] += 1
        found = open_findings_of(row)
        counts.update(f.name for f in found)
        if not row.get("IsRootKey"):
            of_owner = per_owner.setdefault(row.get("Owner") or NO_OWNER, Counter())
            of_owner["Active"] += 1
            of_owner.update(f.name for f in found)
            of_owner["Findings"] += len(found)
            of_owner["Excepted"] += is_excepted(row)
        if found:
            worst.append((row, found))

    lines = [
        f"Run {run.RunId}: {run.Status} - {run.AccountsSucceeded} of {run.AccountsTotal} account(s), "
        f"{run.KeysCollected} key(s) in {run.DurationSeconds:.1f} s",
        "",
    ]
    header = ["Account", "Name", "Keys", "Active", *(f.cli_column for f in FINDINGS), "Excepted"]
    table = [header]
    for account_id in sorted(per_account):
        c = per_account[account_id]
        table.append([account_id, names.get(account_id, ""), *(str(c[k]) for k in
                      ("Keys", "Active", *(f.name for f in FINDINGS), "Excepted"))])
    if len(table) > 1:
        totals = ["Total", "", *(str(sum(int(r[i]) for r in table[1:])) for i in range(2, len(header)))]
        table.append(totals)
        lines += _format_table(table)
    if per_owner:
        lines += ["", "Findings by owner (active keys of IAM users):"]
        owner_findings = [f for f in FINDINGS if f is not ROOT_KEY]
        by_owner = [["Owner", "Active", *(f.cli_column for f in owner_findings), "Excepted"]]
        ranked = sorted(per_owner.items(), key=lambda item: (-item[1]["Findings"], item[0]))
        for owner, c in ranked[:15]:
            by_owner.append([owner, str(c["Active"]), *(str(c[f.name]) for f in owner_findings), str(c["Excepted"])])
        lines += _format_table(by_owner)
        if len(ranked) > 15:
            lines.append(f"... and {len(ranked) - 15} more owners")
    if worst:
        lines += ["", "Findings (active keys):"]
        detail = [["Account", "User", "Owner", "Key", "Age (days)", "Last used (days ago)", "Findings"]]
        worst.sort(key=lambda w: (not w[0]["IsRootKey"], -w[0]["AgeDays"], w[0]["AccountId"], w[0]["UserName"]))
        for r, found in worst[:25]:
            tags = [f.cli_tag for f in found]
            used = "never" if r["DaysSinceLastUse"] is None else str(r["DaysSinceLastUse"])
            detail.append([r["AccountId"], r["UserName"], r.get("Owner") or "-", r["AccessKeyId"] or "(root)",
                           str(r["AgeDays"]), used, ", ".join(tags)])
        lines += _format_table(detail)
        if len(worst) > 25:
            lines.append(f"... and {len(worst) - 25} more")
    if excepted:
        lines += ["", "Excepted (accepted risk, left out of the counts above):"]
        rows = [["Account", "User", "Owner", "Key", "Findings", "Until", "Reason"]]
        for r in sorted(excepted, key=lambda r: (str(r.get("ExceptionExpires")), r["AccountId"], r["UserName"])):
            rows.append([r["AccountId"], r["UserName"], r.get("Owner") or "-", r["AccessKeyId"] or "(root)",
                         ", ".join(f.cli_tag for f in findings_of(r)), str(r.get("ExceptionExpires") or "")[:10],
                         str(r.get("ExceptionReason") or "")])
        lines += _format_table(rows)
    expired = [] if exceptions is None else exceptions.expired(result.run.started_at)
    if expired:
        lines += ["", f"Expired exceptions in {exceptions.source if exceptions else ''} (no longer applied: their keys "
                      "count again; renew them through review, or remove them):"]
        lines += [f"  {line}" for line in describe_expired(expired)]
    lines += _credential_lines(result, key_rows, credential_rows)
    if result.failures:
        lines += ["", "Failed accounts:"] + [f"  {f.account_id}: {f.error}" for f in result.failures]
    return "\n".join(lines)


BY_TYPE_HEADER = ("Kind", "Service", "Credentials", "Active", "Rotation due", "No expiry", "Expiring soon", "Excepted")


def _credential_lines(
    result: RunResult, key_rows: list[dict[str, Any]], credential_rows: Sequence[dict[str, Any]]
) -> list[str]:
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
        for r in found[:25]:
            kind = r.get("Service") or r["CredentialType"]
            detail.append([r["AccountId"], r["UserName"], r.get("Owner") or "-", kind, r.get("CredentialId") or "-",
                           str(r["AgeDays"]), str(r.get("ExpiresAt") or "never")[:10], r["Findings"]])
        lines += _format_table(detail)
        if len(found) > 25:
            lines.append(f"... and {len(found) - 25} more")
    unknown = json.loads(result.to_record().CredentialsUnknownAccounts)
    if unknown:
        lines += ["", "Credentials unknown this run (not none; the keys were collected):"]
        lines += [f"  {u['AccountId']} {u['CredentialType']}: {u['Error']}" for u in unknown]
    return lines


def _format_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out
