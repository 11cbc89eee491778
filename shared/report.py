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

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

from shared.changes import KeyChange, key_age_distribution, key_changes
from shared.findings import (
    FINDINGS,
    NEVER_USED,
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
    open_findings_of,
)
from shared.records import KEYS_TABLE, RUNS_TABLE, iso_utc
from shared.report_charts import age_chart, timeline_chart
from shared.risk_exceptions import ExceptionSet, mapping_of

Row = dict[str, Any]

LOOKBACK = timedelta(days=7)
CHANGES_LOOKBACK = timedelta(days=30)  # queries/key-changes.kql
TREND_DAYS = 365
GOOD_STATUSES = ("Succeeded", "PartiallySucceeded")

# The tiles and the bar chart's series are the findings catalogue's (shared/findings.py), in its order. A key whose
# every finding is accepted by an exception (Excepted) counts under none of them: it has a table of its own.
NO_OWNER = "(no owner)"


# --------------------------------------------------------------------------------------------------------------------
# Data: the same questions as queries/*.kql


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def read_jsonl(path: Path) -> list[Row]:
    """Rows of a JSON Lines file; a torn last line (a crash mid-write) is skipped."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:  # a line torn mid-character reads too
        for line in handle:
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows


def newest(rows: Iterable[Row]) -> Row | None:
    return max(rows, key=lambda r: parse_time(r["TimeGenerated"]), default=None)


@dataclass
class Snapshot:
    keys: list[Row]  # latest-snapshot.kql: each row with Stale
    newest_run: Row | None  # the newest good run, the snapshot's base
    runs: list[Row]  # run records within the lookback, newest first
    latest_run: Row | None  # the newest run of any status


def once(rows: Iterable[Row], *fields: str) -> list[Row]:
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
    ok_runs = [r for r in runs if r.get("Status") in GOOD_STATUSES]
    base = ok_runs[0] if ok_runs else None
    if base is None:
        return Snapshot([], None, runs, latest_run)
    ok_ids = {r["RunId"] for r in ok_runs}
    in_range = once((k for k in keys_rows if k.get("RunId") in ok_ids and parse_time(k["TimeGenerated"]) > since),
                    "RunId", "AccessKeyFingerprint")
    failed_now = {str(f.get("AccountId")) for f in _json_list(base.get("FailedAccounts"))
                  if isinstance(f, dict) and f.get("AccountId")}
    keys = [{**k, "Stale": False} for k in in_range if k["RunId"] == base["RunId"]]
    for account in sorted(failed_now):
        rows = [k for k in in_range if k.get("AccountId") == account]
        fallback = newest(rows)
        if fallback is not None:
            keys += [{**k, "Stale": True} for k in rows if k["RunId"] == fallback["RunId"]]
    return Snapshot(keys, base, runs, latest_run)


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


UNKNOWN_ROOT = "Unknown (no credential report)"


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
    colours = {f.column: f.colour for f in FINDINGS}
    out = []
    for name, label, count in tiles:
        colour = colours.get(name, "#475467")
        state = "alert" if count and name in colours else "ok"
        out.append(f'<div class="tile {state}" data-tile="{escape(name)}" style="--c:{colour}">'
                   f'<div class="value">{count}</div><div class="label">{escape(label)}</div></div>')
    return f'<section class="tiles">{"".join(out)}</section>'


def line_chart(points: Sequence[tuple[datetime, int]], *, width: int = 1160, height: int = 240) -> str:
    """Keys created per day: a polyline with one point per day, month ticks, and a dot (with a tooltip) per day with
    keys."""
    left, right, top, bottom = 40, 12, 14, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((n for _, n in points), default=0)
    y_max = max(peak, 1)
    step = plot_w / max(len(points) - 1, 1)

    def xy(i: int, n: int) -> tuple[float, float]:
        return left + i * step, top + plot_h - n / y_max * plot_h

    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, n) for i, (_, n) in enumerate(points)))
    parts = [f'<svg class="chart line" role="img" data-chart="key-creation-trend" data-points="{len(points)}" '
             f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet">',
             f"<title>Keys created per day, {escape(_day(points[0][0]))} to {escape(_day(points[-1][0]))}</title>"
             if points else "<title>Keys created per day</title>"]
    for value in sorted({0, y_max // 2, y_max}):
        _, y = xy(0, value)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>')
    for i, (day, _) in enumerate(points):
        if day.day == 1:
            x, _ = xy(i, 0)
            parts.append(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}"/>'
                         f'<text class="axis" x="{x:.1f}" y="{height - 8}" text-anchor="middle">'
                         f'{escape(day.strftime("%b %y"))}</text>')
    if points:
        parts.append(f'<polygon class="area" points="{left},{top + plot_h} {coords} '
                     f'{xy(len(points) - 1, 0)[0]:.1f},{top + plot_h}"/>')
    parts.append(f'<polyline class="series" points="{coords}"/>')
    for i, (day, n) in enumerate(points):
        if n:
            x, y = xy(i, n)
            parts.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
                         f"<title>{escape(_day(day))}: {n} key(s) created</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def _day(value: datetime) -> str:
    return value.strftime("%Y-%m-%d")


def bar_chart(rows: Sequence[Row], *, width: int = 1160) -> str:
    """Findings by account: one horizontal stacked bar per account, one segment per finding with a count."""
    label_w, right, bar_h, gap, top = 260, 50, 22, 12, 34
    height = top + len(rows) * (bar_h + gap) + 8
    peak = max((r["Findings"] for r in rows), default=0)
    scale = (width - label_w - right) / max(peak, 1)
    parts = [f'<svg class="chart bar" role="img" data-chart="findings-by-account" data-bars="{len(rows)}" '
             f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet">',
             "<title>Findings by account</title>"]
    x = label_w
    for finding in FINDINGS:  # legend: the bar chart counts keys (a tile may count users)
        label = finding.chart_label
        parts.append(f'<rect class="swatch" x="{x}" y="6" width="12" height="12" rx="2" style="fill:{finding.colour}"/>'
                     f'<text class="legend" x="{x + 17}" y="16">{escape(label)}</text>')
        x += 34 + 6 * len(label)
    for i, row in enumerate(rows):
        y = top + i * (bar_h + gap)
        parts.append(f'<g class="bar-group" data-account="{escape(row["AccountId"])}">'
                     f'<text class="label" x="{label_w - 10}" y="{y + bar_h / 2 + 4:.1f}" text-anchor="end">'
                     f'{escape(row["Account"])}</text>')
        x0 = float(label_w)
        for finding in FINDINGS:
            n = row[finding.column]
            if n:
                w = n * scale
                parts.append(f'<rect class="bar" data-finding="{finding.column}" data-count="{n}" x="{x0:.1f}" '
                             f'y="{y}" width="{w:.1f}" height="{bar_h}" style="fill:{finding.colour}"><title>'
                             f"{escape(row['Account'])}: {n} {escape(finding.chart_label.lower())}"
                             "</title></rect>")
                x0 += w
        parts.append(f'<text class="total" x="{x0 + 6:.1f}" y="{y + bar_h / 2 + 4:.1f}">{row["Findings"]}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


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
.health{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin-bottom:12px}
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
    status_cls = {"Succeeded": "good", "PartiallySucceeded": "warn"}.get(status, "bad")
    failing = [a for a in failing_accounts(snapshot.runs) if a["FailingNow"]]
    unknown = _json_list(run.get("RootKeysUnknownAccounts"))
    facts = [
        (f"{hours:.1f} h ago", f"last run {_fmt(run['TimeGenerated'])} UTC", "bad" if hours > 12 else "good"),
        (status, f"{run.get('AccountsSucceeded')} of {run.get('AccountsTotal')} account(s), "
         f"{run.get('KeysCollected')} key(s)", status_cls),
        (str(len(failing)), "account(s) failing in the newest run", "bad" if failing else "good"),
        (str(len(unknown)), "account(s) with root keys unknown", "warn" if unknown else "good"),
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
    good_runs = {r.get("RunId") for r in runs_rows if r.get("Status") in GOOD_STATUSES}
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


def render_report(
    keys_rows: Sequence[Row], runs_rows: Sequence[Row], *, now: datetime | None = None,
    exceptions: ExceptionSet | None = None,
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
        f'<section class="card"><h2>Keys created per day</h2><p class="note">Creation date of the keys in the '
        f'snapshot, last {TREND_DAYS} days; a spike is worth a look.</p>{line_chart(trend)}</section>',
        f'<section class="card"><h2>Findings by account</h2>{bar_chart(by_account)}</section>'
        if by_account else '<section class="card"><h2>Findings by account</h2><p class="empty">No keys.</p></section>',
        '<section class="card"><h2>Keys by age</h2><p class="note">Keys of the snapshot per age band, each under its '
        f"most severe finding.</p>{age_chart(key_age_distribution(keys))}</section>",
        changes_html(keys_rows, runs_rows),
        table(f"Root-account access keys ({ROOT_KEY.benchmark})", root_keys(keys, base),
              (("AccountId", "Account"), ("AccountName", "Name"), ("Status", "Status"), ("AgeDays", "Age (days)"),
               ("CreatedAt", "Created"), ("LastUsedAt", "Last used"), ("DaysSinceLastUse", "Days since use"),
               ("LastUsedService", "Service"), ("Stale", "Stale")),
              key="root-keys", empty="No root access key. Good.", row_class=lambda r: "root"),
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
               ("UserActiveKeyCount", "Active keys of user"), ("Stale", "Stale")),
              key="latest-snapshot", row_class=_key_row_class, open_=False),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>AWS IAM access keys</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>AWS IAM access keys</h1><p>{escape(subtitle)}</p></header>"
        f'<main>{"".join(sections)}</main>'
        f"<footer>Generated {escape(now.strftime('%Y-%m-%d %H:%M'))} UTC by python -m shared report; the same "
        "questions as the queries in queries/ and the Azure Monitor workbook.</footer></body></html>\n"
    )


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
    target = Path(out_path) if out_path else folder / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(keys, read_jsonl(runs_path), exceptions=exceptions), encoding="utf-8")
    return target
