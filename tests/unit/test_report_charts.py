"""The report's key age distribution and change timeline charts (shared/insight/charts.py), read back from the SVG:
every segment's series and count, in stacking order, escaping, and the empty case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from shared.insight.changes import AGE_BANDS, CREATED, DELETED, ROTATED, AgeBucket, KeyChange, key_age_distribution
from shared.insight.charts import age_chart, change_columns, timeline_chart

T0 = datetime(2026, 11, 1, tzinfo=UTC)


class Svg(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chart: dict[str, str | None] = {}
        self.columns: list[str] = []
        self.segments: list[tuple[str, str, int]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.chart = a
        elif tag == "g" and a.get("data-column") is not None:
            self.columns.append(a["data-column"] or "")
        elif tag == "rect" and a.get("class") == "bar":
            self.segments.append((self.columns[-1], a["data-series"] or "", int(a["data-count"] or 0)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(svg: str) -> Svg:
    parser = Svg()
    parser.feed(svg)
    return parser


def test_age_chart_has_a_column_per_band_and_a_segment_per_finding() -> None:
    owned = {"Owner": "team@example.com"}  # a key without an owner is a finding of its own
    keys = [{"AgeDays": 5, "Status": "Active", **owned},
            {"AgeDays": 100, "Status": "Active", "RotationDue": True, **owned},
            {"AgeDays": 120, "Status": "Active", "RotationDue": True, "Unused": True, **owned},
            {"AgeDays": 700, "Status": "Active", "IsRootKey": True}, {"AgeDays": 400, "Status": "Inactive"}]
    page = parse(age_chart(key_age_distribution(keys)))
    assert page.chart["data-chart"] == "key-age"
    assert page.columns == [band.label for band in AGE_BANDS]
    assert page.segments == [("0-30 days", "No finding", 1), ("90-180 days", "Due for rotation", 2),
                             ("365+ days", "Root account keys", 1), ("365+ days", "Inactive", 1)]
    assert sum(n for _, _, n in page.segments) == len(keys)


def test_an_empty_snapshot_says_so() -> None:
    page = parse(age_chart(key_age_distribution([])))
    assert page.segments == [] and "No keys." in page.text


def change(run: int, event: str, user: str = "alice") -> KeyChange:
    return KeyChange(TimeGenerated=T0 + timedelta(hours=6 * run), PreviousRun=T0, RunId=f"run-{run}",
                     AccountId="111111111111", AccountName="Prod", UserName=user,
                     UserArn=f"arn:aws:iam::111111111111:user/{user}", AccessKeyId="AKIA...AAAA",
                     AccessKeyFingerprint="fp", IsRootKey=False, EventType=event, Detail="")


def test_timeline_has_a_column_per_run_oldest_first_stacked_by_event() -> None:
    changes = [change(2, DELETED), change(1, CREATED), change(2, CREATED, "bob"), change(2, ROTATED)]
    assert [c[0] for c in change_columns(changes)] == ["run-1", "run-2"]
    page = parse(timeline_chart(changes))
    assert page.chart["data-chart"] == "key-changes" and page.chart["data-columns"] == "2"
    assert page.segments == [("run-1", CREATED, 1), ("run-2", CREATED, 1), ("run-2", ROTATED, 1),
                             ("run-2", DELETED, 1)]


def test_no_change_says_so_and_text_is_escaped() -> None:
    assert "No change between runs." in parse(timeline_chart([])).text
    bucket = AgeBucket(AGE_BANDS[0], (("<script>", 1),))
    svg = age_chart([bucket])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
