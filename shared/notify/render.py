"""A digest as an e-mail: subject, plain text and HTML, pure. Every cell is text from AWS (user names, tags) and is
treated as hostile: control characters dropped, length bounded, HTML-escaped; key ids are the records' masked ones
(a full id that slipped into a row is masked again by shared.notify.digest.masked_key)."""

from __future__ import annotations

import html
import re
from typing import Any

from shared.notify.digest import Digest, DigestRow

MAX_CELL = 120
MAX_ROWS = 500  # a digest lists at most this many rows (most urgent first) and says how many more there are
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

COLUMNS = ("Account", "User", "Access key", "Finding", "Due date", "Days left", "What to do")


def clean(value: Any) -> str:
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def when(row: DigestRow) -> str:
    if row.days_to_due < 0:
        return f"{-row.days_to_due} day(s) overdue"
    return "due today" if row.days_to_due == 0 else f"in {row.days_to_due} day(s)"


def cells(row: DigestRow, with_owner: bool) -> list[str]:
    account = f"{row.account_id} ({row.account_name})" if row.account_name else row.account_id
    found = [account, row.user_name, row.access_key_id, row.finding, row.due_date.date().isoformat(), when(row),
             row.action]
    if with_owner:
        found.insert(0, row.owner or "(no owner tag)")
    return [clean(c) for c in found]


def subject(digest: Digest) -> str:
    total, overdue = len(digest.rows), digest.overdue
    who = "keys without a usable owner" if digest.fallback else "your AWS access keys"
    return f"AWS IAM access keys: {total} action(s) for {who}" + (f", {overdue} overdue" if overdue else "")


def _intro(digest: Digest) -> str:
    if digest.fallback:
        return ("These AWS IAM access keys have no owner tag naming an e-mail address, so they come to you: act on "
                "them, or tag their users with their owner (OWNER_TAG_KEYS) so that the owner is told next time.")
    return ("You are the owner of these AWS IAM access keys (a tag on their IAM user names you). Each needs the "
            "action shown by its due date; you are reminded 15, 7 and 1 day(s) before it, then every day.")


def plain_text(digest: Digest) -> str:
    header = ("Owner", *COLUMNS) if digest.fallback else COLUMNS
    shown = digest.rows[:MAX_ROWS]
    lines = [subject(digest), "", _intro(digest), ""]
    for row in shown:
        lines.append(" | ".join(f"{h}: {c}" for h, c in zip(header, cells(row, digest.fallback), strict=True)))
    if len(digest.rows) > len(shown):
        lines.append(f"... and {len(digest.rows) - len(shown)} more (the workbook lists them all)")
    lines += ["", "Key ids are masked (first 4 and last 4 characters). Sent by the AWS IAM access-key collector."]
    return "\n".join(lines) + "\n"


def html_text(digest: Digest) -> str:
    header = ("Owner", *COLUMNS) if digest.fallback else COLUMNS
    shown = digest.rows[:MAX_ROWS]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells(row, digest.fallback)) + "</tr>" for row in shown)
    more = (f"<p>... and {len(digest.rows) - len(shown)} more (the workbook lists them all)</p>"
            if len(digest.rows) > len(shown) else "")
    return (f"<html><body><h2>{html.escape(subject(digest))}</h2><p>{html.escape(_intro(digest))}</p>"
            f"<table border=\"1\" cellpadding=\"4\" cellspacing=\"0\"><tr>{head}</tr>{body}</table>{more}"
            "<p>Key ids are masked (first 4 and last 4 characters). Sent by the AWS IAM access-key collector.</p>"
            "</body></html>")
