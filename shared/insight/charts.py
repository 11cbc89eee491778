"""Two more charts of the local report (``python -m shared report``), as inline SVG with no script: the key age
distribution (keys per age band, stacked by each key's most severe finding) and the change timeline (key lifecycle
events per run, stacked by event type). Pure functions of shared/insight/changes.py's results; every text is escaped.

Each chart carries data- attributes (its name, and per segment the series and count) so that tests read the numbers
back from the page instead of trusting the picture.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from html import escape

from shared.findings.catalogue import FINDINGS
from shared.insight.changes import (
    CREATED,
    DEACTIVATED,
    DELETED,
    EVENT_TYPES,
    EXCEPTED,
    INACTIVE,
    NO_FINDING,
    REACTIVATED,
    ROOT_KEY_APPEARED,
    ROOT_KEY_REMOVED,
    ROTATED,
    SEVERITY_ORDER,
    AgeBucket,
    KeyChange,
)
from shared.insight.snapshot import Row

# The age chart's series colours: the catalogue's (shared/findings/catalogue.py), then the keys without a finding.
AGE_COLOURS = {
    **{f.chart_label: f.colour for f in FINDINGS},
    INACTIVE: "#98a2b3",
    EXCEPTED: "#d0d5dd",
    NO_FINDING: "#12b76a",
}
EVENT_COLOURS = {
    CREATED: "#1570ef",
    ROTATED: "#7a5af8",
    DEACTIVATED: "#ca8a04",
    REACTIVATED: "#dc6803",
    DELETED: "#667085",
    ROOT_KEY_APPEARED: "#b42318",
    ROOT_KEY_REMOVED: "#067647",
}
FALLBACK_COLOUR = "#475467"
# The timeline's stacking order (bottom up) and legend: new keys first, then what retired old ones.
EVENT_ORDER = [*EVENT_COLOURS, *(e for e in EVENT_TYPES if e not in EVENT_COLOURS)]


def _legend(series: Sequence[tuple[str, str]], x: float, y: float) -> list[str]:
    parts = []
    for name, colour in series:
        parts.append(f'<rect class="swatch" x="{x:.0f}" y="{y}" width="12" height="12" rx="2" style="fill:{colour}"/>'
                     f'<text class="legend" x="{x + 17:.0f}" y="{y + 10}">{escape(name)}</text>')
        x += 34 + 6.5 * len(name)
    return parts


def stacked_columns(
    chart: str, title: str, columns: Sequence[tuple[str, str, Sequence[tuple[str, int]]]],
    colours: dict[str, str], *, width: int = 1160, height: int = 280, empty: str = "Nothing to show.",
) -> str:
    """Vertical stacked columns: ``columns`` is (key, label, [(series, count), ...]); the series stack bottom up in
    the order given, a legend names the series that occur. One <g> per column (data-column) and one <rect> per non-zero
    segment (data-series, data-count), each with a tooltip."""
    left, right, top, bottom = 44, 12, 34, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(n for _, n in segments) for _, _, segments in columns]
    peak = max(totals, default=0)
    y_max = max(peak, 1)
    present = [s for s in colours if any(n for _, _, segs in columns for name, n in segs if name == s)]
    present += sorted({name for _, _, segs in columns for name, n in segs if n and name not in colours})
    parts = [f'<svg class="chart columns" role="img" data-chart="{escape(chart)}" data-columns="{len(columns)}" '
             f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet">',
             f"<title>{escape(title)}</title>"]
    parts += _legend([(s, colours.get(s, FALLBACK_COLOUR)) for s in present], left, 6)
    for value in sorted({0, y_max // 2, y_max}):
        y = top + plot_h - value / y_max * plot_h
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>')
    if not columns or peak == 0:
        parts.append(f'<text class="axis" x="{width / 2:.0f}" y="{top + plot_h / 2:.0f}" text-anchor="middle">'
                     f"{escape(empty)}</text>")
    slot = plot_w / max(len(columns), 1)
    bar_w = min(slot * 0.7, 90)
    for i, (key, label, segments) in enumerate(columns):
        x = left + i * slot + (slot - bar_w) / 2
        y = float(top + plot_h)
        parts.append(f'<g class="column" data-column="{escape(key)}">')
        for series, n in segments:
            if not n:
                continue
            h = n / y_max * plot_h
            y -= h
            parts.append(f'<rect class="bar" data-series="{escape(series)}" data-count="{n}" x="{x:.1f}" y="{y:.1f}" '
                         f'width="{bar_w:.1f}" height="{h:.1f}" style="fill:{colours.get(series, FALLBACK_COLOUR)}">'
                         f"<title>{escape(label)}: {n} {escape(series)}</title></rect>")
        total = totals[i]
        if total:
            parts.append(f'<text class="total" x="{x + bar_w / 2:.1f}" y="{y - 5:.1f}" text-anchor="middle">{total}'
                         "</text>")
        parts.append(f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{height - 18}" text-anchor="middle">'
                     f"{escape(label)}</text></g>")
    parts.append("</svg>")
    return "".join(parts)


def age_chart(buckets: Sequence[AgeBucket]) -> str:
    """Keys per age band, stacked by finding (shared.changes.key_age_distribution)."""
    columns = [(b.band.label, b.band.label, b.counts) for b in buckets]
    # the legend in stacking order (most severe at the bottom), whatever order the colours were declared in
    colours = {name: AGE_COLOURS.get(name, FALLBACK_COLOUR) for name, _ in SEVERITY_ORDER}
    colours[NO_FINDING] = AGE_COLOURS[NO_FINDING]
    return stacked_columns("key-age", "Keys by age, stacked by their most severe finding", columns, colours,
                           empty="No keys.")


def change_columns(changes: Sequence[KeyChange]) -> list[tuple[str, str, list[tuple[str, int]]]]:
    """One column per run that saw changes, oldest first: (run id, its start time, counts per event type)."""
    runs: dict[str, tuple[datetime, Counter[str]]] = {}
    for change in changes:
        runs.setdefault(change.RunId, (change.TimeGenerated, Counter()))[1][change.EventType] += 1
    ordered = sorted(runs.items(), key=lambda item: item[1][0])
    return [(run_id, when.strftime("%m-%d %H:%M"), [(e, counts[e]) for e in EVENT_ORDER])
            for run_id, (when, counts) in ordered]


def timeline_chart(changes: Sequence[KeyChange]) -> str:
    """Key lifecycle events per run, stacked by event type (shared.changes.key_changes)."""
    return stacked_columns("key-changes", "Key changes per run, by event type", change_columns(changes),
                           EVENT_COLOURS, empty="No change between runs.")

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
