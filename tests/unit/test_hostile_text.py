"""AWS-supplied text (user names, Owner tags, account names, AWS error messages) is shown without control or
bidirectional characters in the CLI summary, the CLI progress and the HTML report: one function (printable) for all."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

from shared.domain import Account, AccountFailure, RunContext, RunResult
from shared.insight.report import render_report
from shared.insight.snapshot import printable
from shared.insight.summary import summarize
from shared.tools.cli import TerminalProgress
from tests.unit.test_report_owners import RUN
from tests.unit.test_summary_owners import row

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
UNSHOWABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# "admin" written backwards behind a right-to-left override, a terminal escape that recolours and clears the line,
# a carriage return that rewrites it, a bell, an isolate, a C1 control (CSI) and an Arabic letter mark.
USER = "\u202enimda\u202c\x1b[2K\x1b[31mroot\rok\x07"
OWNER = "\u2066evil@example.com\u2069\u200f\x9b31m\u061c"
ACCOUNT = "Prod\x1b]0;pwned\x07\u2028\u2029"


def hostile_rows() -> list[dict[str, object]]:
    common = {"TimeGenerated": RUN["TimeGenerated"], "RunId": "r-1", "CreatedAt": "2026-08-01T00:00:00Z",
              "AccessKeyFingerprint": "a" * 16, "UserArn": "arn:aws:iam::123456789012:user/x"}
    return [{**row(USER, Owner=OWNER, AccountName=ACCOUNT), **common},
            {**row("bob\nFAKE LINE", AccountName=ACCOUNT, Excepted=True, ExceptionReason="r",
                   ExceptionExpires="2027-01-15T12:00:00Z"), **common, "AccessKeyFingerprint": "b" * 16}]


def test_printable_strips_controls_and_bidi_only() -> None:
    assert printable(USER) == "nimda[2K[31mrootok"
    assert printable(OWNER) == "evil@example.com31m"
    assert printable("Zoë Ärger — 東京 \u05d0\u05d1") == "Zoë Ärger — 東京 \u05d0\u05d1"  # letters of any script stay
    assert printable("a\nb\tc", keep="\n") == "a\nbc"


def test_the_cli_summary_shows_no_control_or_bidi_character() -> None:
    failure = AccountFailure("210987654321", "AccessDenied: user \u202eresu\u202c is not \x1b[8mauthorized")
    result = RunResult(RunContext("r-1", NOW, 90, 45), "access_key", "file", 2, (failure,), 2, 1.0, "t")
    text = summarize(result, hostile_rows())
    assert UNSHOWABLE.search(text) is None
    assert "nimda[2K[31mrootok" in text and "evil@example.com31m" in text and "Prod]0;pwned" in text
    assert "bobFAKE LINE" in text and "\nFAKE LINE" not in text  # a newline in a name forges no line
    assert "210987654321: AccessDenied: user resu is not [8mauthorized" in text
    header, _, first = text.split("Findings (active keys):")[1].splitlines()[1:4]
    assert first.index("evil@example.com31m") == header.index("Owner")  # cleaned before measured: columns align


def test_the_cli_progress_shows_no_control_or_bidi_character() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.started(1)
    progress.account_done(Account("123456789012", ACCOUNT), 0, "boom \u202eesrever\x1b[0m")
    assert UNSHOWABLE.search(stream.getvalue()) is None and "Prod]0;pwned" in stream.getvalue()


def test_the_html_report_shows_no_control_or_bidi_character() -> None:
    page = render_report(hostile_rows(), [RUN], now=NOW)
    assert UNSHOWABLE.search(page) is None
    assert "nimda[2K[31mrootok" in page and "evil@example.com31m" in page
