"""``python -m shared report``: the demo's records rendered as one self-contained HTML page, parsed back with
html.parser to check every tile, chart and table; the snapshot's semantics on records of several runs; escaping;
and, where the machine has Chromium, a headless screenshot of the page."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from shared.findings.catalogue import FINDINGS, ROOT_KEY
from shared.insight.changes import (
    AGE_BANDS,
    CREATED,
    DEACTIVATED,
    DELETED,
    NO_FINDING,
    ROTATED,
    SEVERITY_ORDER,
    age_band,
)
from shared.insight.report import render_report, write_report
from shared.insight.snapshot import (
    TREND_DAYS,
    UNKNOWN_ROOT,
    key_creation_trend,
    latest_snapshot,
    parse_time,
    read_jsonl,
    runs_by_status,
)
from shared.tools.cli import main
from tests.support.rows import T0, key, run

ROOT = Path(__file__).resolve().parents[2]


class Page(HTMLParser):
    """What the tests look at: tiles, charts (their points and bars) and tables (their rows)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs_seen: list[dict[str, str | None]] = []
        self.tiles: dict[str, str] = {}
        self.charts: dict[str, dict[str, Any]] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.empty_tables: set[str] = set()
        self._tile: str | None = None
        self._tile_value = False
        self._chart: str | None = None
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_tbody = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.attrs_seen.append(a)
        if a.get("data-tile"):
            self._tile = a["data-tile"]
        elif self._tile and a.get("class") == "value":
            self._tile_value = True
        if tag == "svg":
            self._chart = a.get("data-chart") or "?"
            self.charts[self._chart] = {"attrs": a, "polyline": [], "circles": 0, "groups": [], "bars": []}
        elif self._chart:
            chart = self.charts[self._chart]
            if tag == "polyline":
                chart["polyline"] = (a.get("points") or "").split()
            elif tag == "circle":
                chart["circles"] += 1
            elif tag == "g" and "bar-group" in (a.get("class") or ""):
                chart["groups"].append(a.get("data-account"))
            elif tag == "g" and a.get("data-column") is not None:  # the stacked column charts (age, changes)
                chart["groups"].append(a.get("data-column"))
            elif tag == "rect" and a.get("class") == "bar":
                chart["bars"].append((chart["groups"][-1], a.get("data-finding") or a.get("data-series"),
                                      int(a.get("data-count") or 0)))
        if tag == "table":
            self._table = a.get("data-table")
            self.tables[self._table or "?"] = []
        elif tag == "p" and a.get("data-table"):
            self.empty_tables.add(a["data-table"] or "")
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None
        elif tag == "div" and self._tile_value:
            self._tile_value = False
            self._tile = None
        elif tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_tbody = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._tile_value and self._tile:
            self.tiles[self._tile] = self.tiles.get(self._tile, "") + data
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo, run as a person runs it (two runs, keys changed in between): it writes the records and the report,
    and prints the report's path."""
    out = tmp_path_factory.mktemp("demo") / "out"
    result = subprocess.run(
        [sys.executable, "-m", "shared", "demo", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FILE_SINK"))},
    )
    assert result.returncode == 0, result.stderr
    assert f"Report: {out / 'report.html'}" in result.stdout
    return out


@pytest.fixture(scope="module")
def demo_rows(demo_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The keys of the demo's second (newest) run, the snapshot, and the run records of both runs."""
    runs = read_jsonl(demo_dir / "AwsIamKeyCollectorRuns.jsonl")
    keys = [k for k in read_jsonl(demo_dir / "AwsIamAccessKeys.jsonl") if k["RunId"] == runs[-1]["RunId"]]
    return keys, runs


# --------------------------------------------------------------------------------------------------------------------
# The demo's report


def test_demo_report_has_every_tile_with_the_counts_of_the_records(demo_dir: Path, demo_rows: Any) -> None:
    keys, _ = demo_rows
    page = parse((demo_dir / "report.html").read_text(encoding="utf-8"))
    active = [k for k in keys if k["Status"] == "Active"]
    counted = [k for k in keys if not k["Excepted"]]  # an excepted key counts under no finding
    counted_active = [k for k in counted if k["Status"] == "Active"]
    expected = {
        "RootKeys": sum(k["IsRootKey"] for k in counted),
        "QuarantinedKeys": sum(k["Quarantined"] for k in counted_active),
        "RotationDueKeys": sum(k["RotationDue"] for k in counted),
        "UnusedKeys": sum(k["Unused"] for k in counted),
        "NeverUsedKeys": sum(k["NeverUsed"] for k in counted_active),
        "TwoActiveKeys": len({k["UserArn"] for k in counted_active
                              if k["UserActiveKeyCount"] > 1 and not k["IsRootKey"]}),
        "UnownedKeys": sum(not k["Owner"] and not k["IsRootKey"] for k in counted_active),
        "ActiveKeys": len(active),
    }
    assert {name: int(value) for name, value in page.tiles.items() if name in expected} == expected
    assert expected["RootKeys"] >= 1 and expected["RotationDueKeys"] >= 1 and expected["TwoActiveKeys"] >= 1
    assert expected["QuarantinedKeys"] == 1  # build-agent's active key (its inactive one counts under no finding)
    assert expected["UnownedKeys"] >= 1 and sum(k["RotationDue"] for k in keys) == expected["RotationDueKeys"] + 1


def test_demo_report_has_the_creation_trend_line_chart(demo_dir: Path, demo_rows: Any) -> None:
    keys, runs = demo_rows
    page = parse((demo_dir / "report.html").read_text(encoding="utf-8"))
    chart = page.charts["key-creation-trend"]
    assert "line" in (chart["attrs"]["class"] or "")
    assert len(chart["polyline"]) == TREND_DAYS + 1 == int(chart["attrs"]["data-points"])
    # one dot per day on which keys of the snapshot were created, within the last 365 days
    generated = parse_time(runs[-1]["TimeGenerated"])
    since = generated.date() - timedelta(days=TREND_DAYS)
    days = {parse_time(k["CreatedAt"]).date() for k in keys if parse_time(k["CreatedAt"]).date() >= since}
    assert chart["circles"] == len(days) > 5


def test_demo_report_has_the_findings_by_account_bar_chart(demo_dir: Path, demo_rows: Any) -> None:
    keys, _ = demo_rows
    page = parse((demo_dir / "report.html").read_text(encoding="utf-8"))
    chart = page.charts["findings-by-account"]
    accounts = {k["AccountId"] for k in keys}
    assert sorted(chart["groups"]) == sorted(accounts) and int(chart["attrs"]["data-bars"]) == len(accounts)
    bars = {(account, finding): count for account, finding, count in chart["bars"]}
    for account in accounts:
        mine = [k for k in keys if k["AccountId"] == account and not k["Excepted"]]
        assert bars.get((account, "RotationDueKeys"), 0) == sum(k["RotationDue"] for k in mine)
        assert bars.get((account, "RootKeys"), 0) == sum(k["IsRootKey"] for k in mine)
    assert {finding for _, finding, _ in chart["bars"]} == {f.column for f in FINDINGS}


def test_demo_report_has_the_drill_down_and_health_tables(demo_dir: Path, demo_rows: Any) -> None:
    all_keys, runs = demo_rows
    keys = [k for k in all_keys if not k["Excepted"]]  # the drill-downs list what counts: excepted keys have a table
    page = parse((demo_dir / "report.html").read_text(encoding="utf-8"))
    active = [k for k in keys if k["Status"] == "Active"]
    rows = {name: len(r) for name, r in page.tables.items()}
    assert rows["rotation-due"] == sum(k["RotationDue"] for k in keys)
    assert rows["unused-keys"] == sum(k["Unused"] or k["NeverUsed"] for k in active)
    assert rows["two-active-keys"] == len({k["UserArn"] for k in active
                                           if k["UserActiveKeyCount"] > 1 and not k["IsRootKey"]})
    assert rows["root-keys"] == sum(k["IsRootKey"] for k in keys)
    assert rows["findings-by-account"] == len({k["AccountId"] for k in keys})
    assert rows["latest-snapshot"] == len(all_keys)
    assert rows["runs"] == len(runs) == 2 and rows["runs-by-status"] == 1  # the demo runs twice, both Succeeded
    assert "failing-accounts" in page.empty_tables  # the demo's run succeeded everywhere
    oldest = page.tables["rotation-due"][0]
    oldest_key = max((k for k in keys if k["RotationDue"]), key=lambda k: k["AgeDays"])
    assert int(oldest[6]) == oldest_key["AgeDays"] and oldest[5] == ("yes" if oldest_key["IsRootKey"] else "no")
    # Owners, exceptions: the demo's one exception in force and its one expired exception.
    assert rows["unowned-keys"] == sum(not k["Owner"] and not k["IsRootKey"] for k in active) >= 1
    (excepted,) = page.tables["excepted-keys"]
    assert excepted[2] == "deploy-bot" and excepted[3] == "platform-team@example.com"
    assert "deploy pipeline" in excepted[6]
    (expired,) = page.tables["expired-exceptions"]
    assert expired[1].endswith(":user/ci-*") and expired[2] == "*" and expired[4] == "security-lead@example.com"
    owners = {r[0]: r for r in page.tables["findings-by-owner"]}
    assert {"(no owner)", "alice@example.com", "platform-team@example.com"} <= set(owners)
    assert owners["platform-team@example.com"][-1] == "1"  # its one key is excepted, and counted as such
    (root,) = page.tables["root-keys"]
    assert root[2] == "Active"


def test_demo_report_has_the_key_age_chart_stacked_by_finding(demo_dir: Path, demo_rows: Any) -> None:
    keys, _ = demo_rows
    chart = parse((demo_dir / "report.html").read_text(encoding="utf-8")).charts["key-age"]
    assert chart["groups"] == [band.label for band in AGE_BANDS]
    per_band: Counter[str] = Counter()
    for band, _, count in chart["bars"]:
        per_band[band] += count
    assert per_band == Counter(age_band(k["AgeDays"]).label for k in keys)  # every key once, in its band
    segments = {(band, series): count for band, series, count in chart["bars"]}
    assert segments[("365+ days", ROOT_KEY.chart_label)] == sum(k["IsRootKey"] for k in keys) == 1
    assert {series for _, series, _ in chart["bars"]} <= {name for name, _ in SEVERITY_ORDER} | {NO_FINDING}


def test_demo_report_shows_what_changed_between_its_two_runs(demo_dir: Path, demo_rows: Any) -> None:
    """The demo creates, deactivates, deletes and rotates one key between its runs: the timeline has one column (the
    second run) with those events, and the table lists them."""
    _, runs = demo_rows
    page = parse((demo_dir / "report.html").read_text(encoding="utf-8"))
    chart = page.charts["key-changes"]
    assert chart["groups"] == [runs[-1]["RunId"]]
    assert {series: count for _, series, count in chart["bars"]} == {
        CREATED: 2, ROTATED: 1, DEACTIVATED: 1, DELETED: 2}
    rows = {(r[1], r[4]) for r in page.tables["key-changes"]}
    assert rows == {(CREATED, "frank"), (CREATED, "alice"), (ROTATED, "alice"), (DELETED, "alice"),
                    (DEACTIVATED, "erin"), (DELETED, "legacy-app")}


def test_one_good_run_shows_a_note_instead_of_a_timeline(three_runs: Any) -> None:
    keys, runs = three_runs
    page = parse(render_report(keys, runs[:1], now=T0))
    assert "key-changes" not in page.charts and "key-changes" not in page.tables
    assert "One good run so far" in "".join(page.text)
    several = parse(render_report(keys, runs, now=T0 + timedelta(hours=13)))
    # r1 -> r2: account B failed in r2 (no snapshot of it), C succeeded with no keys, A gained ann
    assert sorted((r[1], r[4]) for r in several.tables["key-changes"]) == [(CREATED, "ann"), (DELETED, "carl")]


def test_demo_report_is_self_contained(demo_dir: Path) -> None:
    text = (demo_dir / "report.html").read_text(encoding="utf-8")
    page = parse(text)
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    for attrs in page.attrs_seen:
        assert not {"src", "href"} & set(attrs), attrs
    assert "http://" not in text and "https://" not in text and "url(" not in text and "@import" not in text
    assert page.tags.count("style") == 1 and page.tags.count("svg") == 4


def test_report_command_reads_file_sink_dir_and_writes_where_told(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FILE_SINK_DIR", str(demo_dir))
    target = tmp_path / "sub" / "keys.html"
    assert main(["report", "--out", str(target)]) == 0
    assert f"Report: {target}" in capsys.readouterr().out
    assert parse(target.read_text(encoding="utf-8")).charts.keys() == {
        "key-creation-trend", "findings-by-account", "key-age", "key-changes"}
    assert main(["report", "--in", str(tmp_path / "nothing")]) == 1
    assert "AwsIamKeyCollectorRuns.jsonl" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------------
# The snapshot: the same semantics as queries/latest-snapshot.kql


@pytest.fixture
def three_runs() -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """r1 all good; r2 partially: account B failed, C succeeded with no keys left, A's root report missing; r3 failed
    everywhere (no keys)."""
    t1, t2, t3 = T0, T0 + timedelta(hours=6), T0 + timedelta(hours=12)
    keys = [
        key("r1", t1, "111111111111", "alice"), key("r1", t1, "222222222222", "bob", RotationDue=True, AgeDays=400),
        key("r1", t1, "333333333333", "carl"),
        key("r2", t2, "111111111111", "alice"), key("r2", t2, "111111111111", "ann", NeverUsed=True),
    ]
    runs = [run("r1", t1, "Succeeded"), run("r2", t2, "PartiallySucceeded", ("222222222222",), ("111111111111",)),
            run("r3", t3, "Failed", ("111111111111", "222222222222", "333333333333"))]
    yield keys, runs


def test_snapshot_is_the_newest_good_run_with_a_fallback_for_failed_accounts(three_runs: Any) -> None:
    keys, runs = three_runs
    snap = latest_snapshot(keys, runs)
    assert snap.newest_run is not None and snap.newest_run["RunId"] == "r2"  # r3 failed: not a snapshot
    assert snap.latest_run is not None and snap.latest_run["RunId"] == "r3"
    got = {(k["AccountId"], k["UserName"], k["RunId"], k["Stale"]) for k in snap.keys}
    assert got == {
        ("111111111111", "alice", "r2", False), ("111111111111", "ann", "r2", False),
        ("222222222222", "bob", "r1", True),  # failed in r2: its keys from r1, stale
    }  # 333333333333 succeeded in r2 with no keys: none


def test_a_row_delivered_twice_counts_once(three_runs: Any) -> None:
    keys, runs = three_runs
    twice = latest_snapshot(keys + keys[-2:] + keys[1:2], runs + runs[1:2])  # r2's keys, r1's stale bob, r2's run
    once = latest_snapshot(keys, runs)
    assert sorted(k["AccessKeyFingerprint"] for k in twice.keys) == sorted(k["AccessKeyFingerprint"] for k in once.keys)
    assert len(twice.keys) == 3 and [r["RunId"] for r in twice.runs] == ["r3", "r2", "r1"]
    assert runs_by_status(twice.runs) == runs_by_status(once.runs)


def test_snapshot_lookback_ends_at_the_newest_run(three_runs: Any) -> None:
    keys, runs = three_runs
    late = run("r9", T0 + timedelta(days=30), "PartiallySucceeded", ("222222222222",))
    snap = latest_snapshot(keys, [*runs, late])
    assert snap.newest_run is not None and snap.newest_run["RunId"] == "r9"
    assert snap.keys == []  # the earlier runs are outside the 7 days: no fallback from them
    assert latest_snapshot([], []).keys == [] and latest_snapshot(keys, []).newest_run is None


def test_report_of_several_runs_shows_stale_unknown_root_and_failing_accounts(three_runs: Any) -> None:
    keys, runs = three_runs
    page = parse(render_report(keys, runs, now=T0 + timedelta(hours=13)))
    assert page.tiles["RotationDueKeys"] == "1" and page.tiles["NeverUsedKeys"] == "1"
    (stale,) = [r for r in page.tables["rotation-due"] if r[0] == "222222222222"]
    assert stale[-1] == "yes"
    (unknown,) = page.tables["root-keys"]
    assert unknown[0] == "111111111111" and unknown[2] == UNKNOWN_ROOT
    failing = {r[0]: r for r in page.tables["failing-accounts"]}
    assert set(failing) == {"111111111111", "222222222222", "333333333333"}
    assert failing["222222222222"][1] == "yes" and failing["222222222222"][2] == "2"
    assert failing["222222222222"][5] == "AccessDenied <222222222222>"
    assert sorted(r[0] for r in page.tables["runs-by-status"]) == ["Failed", "PartiallySucceeded", "Succeeded"]
    assert "1.0 h ago" in "".join(page.text)


def test_trend_is_zero_filled_per_day() -> None:
    now = datetime(2026, 3, 1, 15, tzinfo=UTC)
    keys = [{"CreatedAt": "2026-03-01T01:00:00Z"}, {"CreatedAt": "2026-03-01T02:00:00Z"},
            {"CreatedAt": "2026-02-01T00:00:00Z"}, {"CreatedAt": "2020-01-01T00:00:00Z"}]
    trend = key_creation_trend(keys, now)
    assert len(trend) == TREND_DAYS + 1
    assert trend[0][0] == datetime(2025, 3, 1, tzinfo=UTC) and trend[-1] == (datetime(2026, 3, 1, tzinfo=UTC), 2)
    assert sum(n for _, n in trend) == 3


def test_every_value_is_escaped(three_runs: Any) -> None:
    keys, runs = three_runs
    evil = '<script>alert("x")</script>'
    keys = [{**k, "UserName": evil, "AccountName": '"><img src=x onerror=alert(1)>'} for k in keys]
    runs = [{**r, "FailedAccounts": json.dumps([{"AccountId": "222222222222", "Error": evil}])} for r in runs]
    text = render_report(keys, runs, now=T0)
    page = parse(text)
    assert "script" not in page.tags and "img" not in page.tags
    assert evil in "".join(page.text)  # shown as text
    assert "&lt;script&gt;" in text


def test_write_report_needs_the_run_records(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"AwsIamKeyCollectorRuns\.jsonl"):
        write_report(tmp_path)
    (tmp_path / "AwsIamKeyCollectorRuns.jsonl").write_text('{"torn": \n', encoding="utf-8")  # a torn line only
    path = write_report(tmp_path)
    assert path == tmp_path / "report.html" and "No successful run yet" in path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------------------------------
# A screenshot (Chromium: `make test` installs Debian's package where it is missing)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG (enough to tell a blank page from a drawn one)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def test_screenshot_of_the_demo_report(demo_dir: Path, tmp_path: Path) -> None:
    chromium = find_chromium()
    assert chromium, "Chromium is missing: `make test` installs Debian's chromium (or: apt-get install chromium)"
    png = tmp_path / "report.png"
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={png}", "--window-size=1280,2000", (demo_dir / "report.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert png.exists(), result.stdout + result.stderr
    width, height, pixels = png_pixels(png)
    assert (width, height) == (1280, 2000)
    assert len(set(pixels[:: 101])) > 50, "the screenshot looks blank"
    if os.environ.get("REPORT_SCREENSHOT"):  # keep it to look at: REPORT_SCREENSHOT=/tmp/report.png
        shutil.copy(png, os.environ["REPORT_SCREENSHOT"])


def test_demo_report_shows_every_long_lived_credential(demo_dir: Path, demo_rows: Any) -> None:
    """The other credentials' tiles, every long-lived credential by kind, their findings and their changes."""
    _, runs = demo_rows
    credentials = [c for c in read_jsonl(demo_dir / "AwsIamCredentials.jsonl") if c["RunId"] == runs[-1]["RunId"]]
    page = parse((demo_dir / "report.html").read_text(encoding="utf-8"))
    tiles = {name: int(value) for name, value in page.tiles.items()}
    assert (tiles["ApiKeysWithoutExpiry"], tiles["RotationDueCredentials"], tiles["ExpiringSoonCredentials"],
            tiles["PrivilegedUserCredentials"], tiles["ActiveCredentials"]) == (2, 1, 1, 0, len(credentials))
    kinds = {(r[0], r[1]): r[2:] for r in page.tables["long-lived-by-type"]}
    assert kinds[("ServiceSpecificCredential", "bedrock.amazonaws.com")][:4] == ["3", "3", "0", "2"]
    assert kinds[("SigningCertificate", "—")][0] == "1" and ("AccessKey", "—") in kinds
    findings = page.tables["credential-findings"]
    assert [r[2] for r in findings[:2]] == ["ml-pipeline", "frank"]  # never-expiring API keys first, oldest first
    assert "API KEY WITHOUT EXPIRY" in findings[0][10]
    (created,) = page.tables["credential-changes"]
    assert (created[1], created[3], created[4]) == ("Created", "frank", "bedrock.amazonaws.com")
