"""``python -m shared report``: the ``file`` sink's records as one self-contained HTML page.

The page shows what the Azure Monitor workbook shows (infra/workbook/, built from queries/*.kql): tiles of the finding
counts, the key-creation trend as a line chart, findings by account as a bar chart, the keys by age stacked by their
most severe finding, what changed between runs (a timeline per run and the events, as queries/key-changes.kql; when
the folder holds several runs), drill-down tables and the collector's health. Everything is inline (CSS and SVG
generated here; no script, no network), and every value from the records is escaped.

The snapshot follows queries/latest-snapshot.kql: the keys of the newest Succeeded or PartiallySucceeded run; for an
account that failed in that run, its keys from its own newest earlier good run, marked stale. The 7-day windows of the
queries end at the newest run here (not at the current time), so that an old folder still renders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from shared.domain import GOOD_RUN_STATUSES, RUN_PARTIALLY_SUCCEEDED, RUN_SUCCEEDED
from shared.findings.catalogue import CREDENTIAL_FINDINGS, FINDINGS, ROOT_KEY
from shared.findings.exceptions import ExceptionSet
from shared.insight.changes import CredentialChange, KeyChange, credential_changes, key_age_distribution, key_changes
from shared.insight.charts import age_chart, bar_chart, line_chart, timeline_chart
from shared.insight.credentials import (
    BY_TYPE_COLUMNS,
    credential_findings,
    credentials_summary,
    latest_credentials,
    long_lived,
    long_lived_by_type,
)
from shared.insight.snapshot import (
    CHANGES_LOOKBACK,
    TREND_DAYS,
    Row,
    Snapshot,
    _json_list,
    excepted_keys,
    expired_exceptions,
    failing_accounts,
    findings_by_account,
    findings_by_owner,
    findings_summary,
    key_creation_trend,
    kill_first_keys,
    latest_snapshot,
    parse_time,
    printable,
    quarantined_keys,
    read_jsonl,
    root_keys,
    rotation_due,
    runs_by_status,
    two_active_keys,
    unowned_keys,
    unused_keys,
)
from shared.records import CREDENTIALS_TABLE, KEYS_TABLE, RUNS_TABLE, iso_utc

# --------------------------------------------------------------------------------------------------------------------
# HTML


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, str) and len(value) == 20 and value[10:11] == "T" and value.endswith("Z"):
        return value[:10] + " " + value[11:16]
    return str(value)


def table(
    title: str, rows: Sequence[Row], columns: Sequence[tuple[str, str]], *, key: str, empty: str = "None.",
    row_class: Callable[[Row], str] | None = None, open_: bool = True,
) -> str:
    head = "".join(f"<th>{escape(label)}</th>" for _, label in columns)
    body = []
    for row in rows:
        cls = row_class(row) if row_class else ""
        cells = "".join(
            f'<td class="num">{escape(_fmt(row.get(c)))}</td>' if isinstance(row.get(c), int | float)
            and not isinstance(row.get(c), bool) else f"<td>{escape(_fmt(row.get(c)))}</td>"
            for c, _ in columns
        )
        body.append(f'<tr{f" class={chr(34)}{escape(cls)}{chr(34)}" if cls else ""}>{cells}</tr>')
    content = (f'<table data-table="{escape(key)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
               if rows else f'<p class="empty" data-table="{escape(key)}">{escape(empty)}</p>')
    return (f'<details class="card"{" open" if open_ else ""}><summary><h2>{escape(title)} '
            f'<span class="count">{len(rows)}</span></h2></summary>{content}</details>')


def tiles_html(tiles: Sequence[tuple[str, str, int]]) -> str:
    colours = {f.column: f.colour for f in (*FINDINGS, *CREDENTIAL_FINDINGS)}
    out = []
    for name, label, count in tiles:
        colour = colours.get(name, "#475467")
        state = "alert" if count and name in colours else "ok"
        out.append(f'<div class="tile {state}" data-tile="{escape(name)}" style="--c:{colour}">'
                   f'<div class="value">{count}</div><div class="label">{escape(label)}</div></div>')
    return f'<section class="tiles">{"".join(out)}</section>'


CSS = """
:root{--fg:#101828;--muted:#667085;--line:#eaecf0;--bg:#f6f7f9;--card:#fff}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,
sans-serif}
header{background:#0f1d35;color:#fff;padding:22px 32px}
header h1{margin:0 0 4px;font-size:22px;font-weight:600}
header p{margin:0;color:#c7d0e0}
main{max-width:1240px;margin:0 auto;padding:20px 32px 40px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:12px;margin-bottom:16px}
.tile{background:var(--card);border-radius:10px;padding:14px 16px;border-left:5px solid #98a2b3;
box-shadow:0 1px 2px rgba(16,24,40,.06)}
.tile.alert{border-left-color:var(--c)}
.tile .value{font-size:30px;font-weight:650;line-height:1.1}
.tile.alert .value{color:var(--c)}
.tile .label{color:var(--muted);font-size:13px;margin-top:2px}
.card{background:var(--card);border-radius:10px;padding:14px 18px;margin-bottom:16px;
box-shadow:0 1px 2px rgba(16,24,40,.06)}
.card h2{display:inline;font-size:16px;font-weight:600;margin:0}
summary{cursor:pointer;padding:2px 0 8px}
.count{display:inline-block;min-width:22px;padding:0 7px;margin-left:6px;border-radius:11px;background:#eef2f6;
color:#344054;font-size:12px;text-align:center;vertical-align:2px}
.note{color:var(--muted);font-size:13px;margin:2px 0 8px}
table{width:100%;border-collapse:collapse;font-size:13px}
th{text-align:left;font-weight:600;color:#475467;background:#f9fafb;border-bottom:1px solid var(--line);padding:7px 8px}
td{border-bottom:1px solid var(--line);padding:6px 8px;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.root td{background:#fef3f2}
tr.stale td{color:var(--muted);font-style:italic}
tr.failing td{background:#fffaeb}
.empty{color:#067647;margin:4px 0}
svg .grid{stroke:var(--line)} svg .tick{stroke:#98a2b3}
svg .axis,svg .legend{fill:var(--muted);font-size:11px}
svg .label{fill:#344054;font-size:13px} svg .total{fill:#344054;font-size:12px;font-weight:600}
svg .series{fill:none;stroke:#1570ef;stroke-width:1.6;stroke-linejoin:round}
svg .area{fill:#1570ef;fill-opacity:.08;stroke:none}
svg .dot{fill:#1570ef;stroke:#fff;stroke-width:1}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.health{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin-bottom:12px}
.health div{background:#f9fafb;border-radius:8px;padding:10px 12px}
.health b{display:block;font-size:18px}
.health span{color:var(--muted);font-size:12px}
.bad{color:#b42318} .warn{color:#b54708} .good{color:#067647}
footer{color:var(--muted);font-size:12px;text-align:center;padding:10px}
"""

KEY_COLUMNS = (("AccountId", "Account"), ("AccountName", "Name"), ("UserName", "User"), ("Owner", "Owner"),
               ("AccessKeyId", "Key"))


def _key_row_class(row: Row) -> str:
    return " ".join(c for c, on in (("root", row.get("IsRootKey")), ("stale", row.get("Stale"))) if on)


def health_html(snapshot: Snapshot, now: datetime) -> str:
    run = snapshot.latest_run
    if run is None:
        return '<section class="card"><h2>Collector health</h2><p class="note">No run record.</p></section>'
    hours = (now - parse_time(run["TimeGenerated"])).total_seconds() / 3600
    status = str(run.get("Status"))
    status_cls = {RUN_SUCCEEDED: "good", RUN_PARTIALLY_SUCCEEDED: "warn"}.get(status, "bad")
    failing = [a for a in failing_accounts(snapshot.runs) if a["FailingNow"]]
    unknown = _json_list(run.get("RootKeysUnknownAccounts"))
    credentials_unknown = {str(u.get("AccountId")) for u in _json_list(run.get("CredentialsUnknownAccounts"))
                           if isinstance(u, dict)}
    facts = [
        (f"{hours:.1f} h ago", f"last run {_fmt(run['TimeGenerated'])} UTC", "bad" if hours > 12 else "good"),
        (status, f"{run.get('AccountsSucceeded')} of {run.get('AccountsTotal')} account(s), "
         f"{run.get('KeysCollected')} key(s)", status_cls),
        (str(len(failing)), "account(s) failing in the newest run", "bad" if failing else "good"),
        (str(len(unknown)), "account(s) with root keys unknown", "warn" if unknown else "good"),
        (str(len(credentials_unknown)), "account(s) with other credentials unknown",
         "warn" if credentials_unknown else "good"),
    ]
    cells = "".join(f'<div data-health="{i}"><b class="{c}">{escape(v)}</b><span>{escape(t)}</span></div>'
                    for i, (v, t, c) in enumerate(facts))
    return f'<section class="health">{cells}</section>'


def _change_row(change: KeyChange) -> Row:
    return {**{f: getattr(change, f) for f in change.__dataclass_fields__},
            "TimeGenerated": iso_utc(change.TimeGenerated), "PreviousRun": iso_utc(change.PreviousRun)}


def changes_html(keys_rows: Sequence[Row], runs_rows: Sequence[Row]) -> str:
    """What changed between runs: the timeline (events per run, by type) and the events, newest first; a note instead
    while the folder holds fewer than two good runs."""
    good_runs = {r.get("RunId") for r in runs_rows if r.get("Status") in GOOD_RUN_STATUSES}
    head = '<section class="card"><h2>What changed between runs</h2>'
    if len(good_runs) < 2:
        return (head + '<p class="note" data-note="changes">One good run so far: the changes compare consecutive '
                "runs. Collect again (the demo runs twice, changing keys in between).</p></section>")
    changes = key_changes(keys_rows, runs_rows, window=CHANGES_LOOKBACK)
    return (
        head + '<p class="note">Key lifecycle events between consecutive good snapshots of each account, last '
        f"{CHANGES_LOOKBACK.days} days (a run an account failed in is no snapshot of it).</p>"
        + timeline_chart(changes) + "</section>"
        + table("Key changes", [_change_row(c) for c in changes],
                (("TimeGenerated", "Seen in run"), ("EventType", "Change"), ("AccountId", "Account"),
                 ("AccountName", "Name"), ("UserName", "User"), ("AccessKeyId", "Key"), ("Detail", "Detail"),
                 ("PreviousRun", "Previous run")),
                key="key-changes", empty="No change between runs.",
                row_class=lambda r: "root" if r.get("IsRootKey") else "")
    )


def _credential_change_row(change: CredentialChange) -> Row:
    return {**{f: getattr(change, f) for f in change.__dataclass_fields__},
            "TimeGenerated": iso_utc(change.TimeGenerated), "PreviousRun": iso_utc(change.PreviousRun)}


def long_lived_html(keys: Sequence[Row], credential_rows: Sequence[Row], runs_rows: Sequence[Row]) -> str:
    """Every long-lived credential (the workspace function AwsIamLongLivedCredentials): counts by kind, the other
    credentials' tiles and findings, and their changes between runs."""
    credentials = latest_credentials(credential_rows, runs_rows)
    changes = credential_changes(credential_rows, runs_rows, window=CHANGES_LOOKBACK)
    return (
        '<section class="card"><h2>Every long-lived credential</h2><p class="note">Access keys and the other '
        "long-lived credentials of IAM users: long-term API keys (Amazon Bedrock, CloudWatch Logs), Git and Keyspaces "
        "credentials, X.509 signing certificates (queries/long-lived-credentials.kql).</p>"
        + tiles_html(credentials_summary(credentials)) + "</section>"
        + table("Long-lived credentials by kind", long_lived_by_type(long_lived(keys, credentials)),
                (("CredentialType", "Kind"), ("Service", "Service"), *((c, c) for c in BY_TYPE_COLUMNS)),
                key="long-lived-by-type")
        + table("Credentials other than access keys with findings", credential_findings(credentials),
                (("AccountId", "Account"), ("AccountName", "Name"), ("UserName", "User"), ("Owner", "Owner"),
                 ("Service", "Service"), ("CredentialType", "Kind"), ("CredentialId", "Id"), ("Status", "Status"),
                 ("AgeDays", "Age (days)"), ("ExpiresAt", "Expires"), ("Findings", "Findings"), ("Stale", "Stale")),
                key="credential-findings", empty="No finding on the other credentials. Good.",
                row_class=_key_row_class)
        + table("Changes of the other credentials", [_credential_change_row(c) for c in changes],
                (("TimeGenerated", "Seen in run"), ("EventType", "Change"), ("AccountId", "Account"),
                 ("UserName", "User"), ("Service", "Service"), ("CredentialType", "Kind"), ("CredentialId", "Id"),
                 ("Detail", "Detail")),
                key="credential-changes", empty="No change between runs.")
    )


def render_report(
    keys_rows: Sequence[Row], runs_rows: Sequence[Row], *, now: datetime | None = None,
    exceptions: ExceptionSet | None = None, credential_rows: Sequence[Row] = (),
) -> str:
    """The HTML page of the records (rows as the file sink writes them); ``exceptions``, the exceptions file in use,
    adds the table of those past their date."""
    now = now or datetime.now(UTC)
    snap = latest_snapshot(keys_rows, runs_rows)
    keys = snap.keys
    by_account = findings_by_account(keys)
    base = snap.newest_run
    stale_accounts = sorted({k["AccountId"] for k in keys if k.get("Stale")})
    subtitle = (f"Snapshot of run {base['RunId']} ({_fmt(base['TimeGenerated'])} UTC, {base['Status']}): "
                f"{len(keys)} key(s) in {len(by_account)} account(s)" if base else "No successful run yet")
    if stale_accounts:
        subtitle += f"; {len(stale_accounts)} account(s) from an earlier run (stale): {', '.join(stale_accounts)}"
    trend = key_creation_trend(keys, now)
    sections = [
        tiles_html(findings_summary(keys)),
        table("Kill first: active keys by risk (RiskScore, highest first)", kill_first_keys(keys),
              (("RiskScore", "Score"), ("RiskReasons", "Why"), *KEY_COLUMNS, ("Description", "Description"),
               ("AgeDays", "Age (days)"), ("PrivilegeReasons", "Privilege"), ("Excepted", "Excepted"),
               ("Stale", "Stale")),
              key="kill-first", empty="No active key scores: nothing to kill first.", row_class=_key_row_class),
        f'<section class="card"><h2>Keys created per day</h2><p class="note">Creation date of the keys in the '
        f'snapshot, last {TREND_DAYS} days; a spike is worth a look.</p>{line_chart(trend)}</section>',
        f'<section class="card"><h2>Findings by account</h2>{bar_chart(by_account)}</section>'
        if by_account else '<section class="card"><h2>Findings by account</h2><p class="empty">No keys.</p></section>',
        '<section class="card"><h2>Keys by age</h2><p class="note">Keys of the snapshot per age band, each under its '
        f"most severe finding.</p>{age_chart(key_age_distribution(keys))}</section>",
        changes_html(keys_rows, runs_rows),
        long_lived_html(keys, credential_rows, runs_rows),
        table(f"Root-account access keys ({ROOT_KEY.benchmark})", root_keys(keys, base),
              (("AccountId", "Account"), ("AccountName", "Name"), ("Status", "Status"), ("AgeDays", "Age (days)"),
               ("CreatedAt", "Created"), ("LastUsedAt", "Last used"), ("DaysSinceLastUse", "Days since use"),
               ("LastUsedService", "Service"), ("Stale", "Stale")),
              key="root-keys", empty="No root access key. Good.", row_class=lambda r: "root"),
        table("Keys of users AWS quarantined (a key of theirs was found in public)", quarantined_keys(keys),
              (*KEY_COLUMNS, ("Description", "Description"), ("PrivilegeReasons", "Privilege"),
               ("AgeDays", "Age (days)"), ("DaysSinceLastUse", "Days since use"), ("RiskScore", "Score"),
               ("Stale", "Stale")),
              key="quarantined-keys", empty="No quarantined user. Good.", row_class=lambda r: "root"),
        table("Keys due for rotation", rotation_due(keys),
              (*KEY_COLUMNS, ("IsRootKey", "Root"), ("AgeDays", "Age (days)"), ("CreatedAt", "Created"),
               ("DaysSinceLastUse", "Days since use"), ("LastUsedService", "Service"), ("Stale", "Stale")),
              key="rotation-due", row_class=_key_row_class),
        table("Unused and never-used active keys", unused_keys(keys),
              (*KEY_COLUMNS, ("Finding", "Finding"), ("AgeDays", "Age (days)"), ("DaysSinceLastUse", "Days since use"),
               ("LastUsedAt", "Last used"), ("LastUsedService", "Service"), ("Stale", "Stale")),
              key="unused-keys", row_class=_key_row_class),
        table("Users with two active keys", two_active_keys(keys),
              (("AccountId", "Account"), ("AccountName", "Name"), ("UserName", "User"), ("Keys", "Keys"),
               ("OldestKeyDays", "Oldest (days)"), ("NewestKeyDays", "Newest (days)")), key="two-active-keys"),
        table("Unowned active keys", unowned_keys(keys),
              (*KEY_COLUMNS, ("AgeDays", "Age (days)"), ("DaysSinceLastUse", "Days since use"),
               ("UserArn", "User ARN"), ("Stale", "Stale")),
              key="unowned-keys", empty="Every active key has an owner. Good.", row_class=_key_row_class),
        table("Keys and findings per account", by_account,
              (("Account", "Account"), ("Keys", "Keys"), ("ActiveKeys", "Active"),
               *((f.column, f.cli_column) for f in FINDINGS), ("Findings", "Findings"),
               ("ExceptedKeys", "Excepted"), ("Stale", "Stale")),
              key="findings-by-account"),
        table("Findings by owner", findings_by_owner(keys),
              (("Owner", "Owner"), ("Accounts", "Accounts"), ("ActiveKeys", "Active keys"),
               *((f.column, f.cli_column) for f in FINDINGS if f is not ROOT_KEY), ("Findings", "Findings"),
               ("ExceptedKeys", "Excepted")),
              key="findings-by-owner"),
        table("Excepted keys (accepted risk, left out of the counts)", excepted_keys(keys),
              (*KEY_COLUMNS, ("Findings", "Findings"), ("ExceptionReason", "Reason"),
               ("ExceptionExpires", "Until"), ("Stale", "Stale")),
              key="excepted-keys", empty="No key is excepted.", row_class=_key_row_class),
        table("Expired exceptions (no longer applied: their keys count again)", expired_exceptions(exceptions, now),
              (("Entry", "Entry"), ("Selector", "Selects"), ("Finding", "Finding"), ("Reason", "Reason"),
               ("ApprovedBy", "Approved by"), ("Expired", "Expired")),
              key="expired-exceptions",
              empty="No exception has expired." if exceptions is not None else
              "No exceptions file given: set EXCEPTIONS_FILE to list the exceptions past their date.",
              row_class=lambda r: "failing"),
        '<section class="card"><h2>Collector health</h2>' + health_html(snap, now) + '<div class="grid2">'
        + table("Runs by status (7 days)", runs_by_status(snap.runs),
                (("Status", "Status"), ("Runs", "Runs"), ("LastSeen", "Last seen")), key="runs-by-status")
        + table("Accounts failing (7 days)", failing_accounts(snap.runs),
                (("AccountId", "Account"), ("FailingNow", "Failing now"), ("Failures", "Failures"),
                 ("FirstFailure", "First"), ("LastFailure", "Last"), ("LastError", "Last error")),
                key="failing-accounts", empty="No account failed. Good.",
                row_class=lambda r: "failing" if r["FailingNow"] else "")
        + "</div>"
        + table("Runs (7 days)", snap.runs[:50],
                (("TimeGenerated", "Started"), ("Status", "Status"), ("AccountsTotal", "Accounts"),
                 ("AccountsFailed", "Failed"), ("KeysCollected", "Keys"), ("DurationSeconds", "Seconds"),
                 ("RecordsDeferred", "Deferred"), ("RecordsReplayed", "Replayed"), ("RecordsDropped", "Dropped"),
                 ("AuthMode", "Auth"), ("Sink", "Sink")), key="runs")
        + "</section>",
        table("All keys (latest snapshot)", sorted(keys, key=lambda k: (k["AccountId"], k["UserName"], k["CreatedAt"])),
              (*KEY_COLUMNS, ("Status", "Status"), ("AgeDays", "Age (days)"), ("DaysSinceLastUse", "Days since use"),
               ("NeverUsed", "Never used"), ("RotationDue", "Rotation due"), ("Unused", "Unused"),
               ("UserActiveKeyCount", "Active keys of user"), ("Privileged", "Privileged"),
               ("Quarantined", "Quarantined"), ("ConsoleWithoutMfa", "Console without MFA"),
               ("KeyAtUserSetup", "Made at user setup"), ("RiskScore", "Score"), ("Stale", "Stale")),
              key="latest-snapshot", row_class=_key_row_class, open_=False),
    ]
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>AWS IAM access keys</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>AWS IAM access keys</h1><p>{escape(subtitle)}</p></header>"
        f'<main>{"".join(sections)}</main>'
        f"<footer>Generated {escape(now.strftime('%Y-%m-%d %H:%M'))} UTC by python -m shared report; the same "
        "questions as the queries in queries/ and the Azure Monitor workbook.</footer></body></html>\n"
    )
    # AWS-supplied names and tags are escaped for HTML above; here no control or bidi character of theirs remains.
    return printable(document, keep="\n")


def write_report(
    in_dir: str | Path, out_path: str | Path | None = None, exceptions: ExceptionSet | None = None
) -> Path:
    """Render the file sink's records in ``in_dir`` into ``out_path`` (default ``<in_dir>/report.html``)."""
    folder = Path(in_dir)
    runs_path, keys_path = folder / RUNS_TABLE.file_name, folder / KEYS_TABLE.file_name
    if not runs_path.is_file():
        raise FileNotFoundError(f"no {RUNS_TABLE.file_name} in {folder}: run python -m shared demo, or collect with "
                                "LOG_SINK=file, first")
    keys = read_jsonl(keys_path) if keys_path.is_file() else []
    credentials_path = folder / CREDENTIALS_TABLE.file_name
    credentials = read_jsonl(credentials_path) if credentials_path.is_file() else []
    target = Path(out_path) if out_path else folder / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(keys, read_jsonl(runs_path), exceptions=exceptions, credential_rows=credentials),
                      encoding="utf-8")
    return target
