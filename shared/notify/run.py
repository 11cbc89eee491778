"""One owner-digest run: the rows (from Log Analytics in Azure, from the file sink's records locally), one digest per
recipient, delivered as NOTIFY_MODE says (dry_run: the log and, locally, a folder; send: e-mail), and one run record
(AwsIamOwnerDigestRuns_CL) saying what was built, sent and not sent, and why.

Knows ports, not SDKs: the rows, the mailer and the sink are passed in (shared/composition.py builds the real ones),
so the run is tested in memory as well as against the HTTPS fakes.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from shared import __version__
from shared.errors import SinkError, describe_error
from shared.findings.catalogue import Thresholds
from shared.insight.snapshot import latest_snapshot, read_jsonl
from shared.notify import render
from shared.notify.digest import Digest, DigestRow, Digests, build_digests, notice_rows, rows_from_query
from shared.ports import Sink
from shared.records import DIGEST_RUNS_TABLE, KEYS_TABLE, RUNS_TABLE, DigestRunRecord

log = logging.getLogger(__name__)

DRY_RUN, SEND = "dry_run", "send"


class DigestRunFailedError(RuntimeError):
    """The digest run's Status was Failed: raised so that the platform records a failed invocation."""


class DigestSource(Protocol):
    def rows(self) -> list[dict[str, Any]]: ...  # rows of queries/owner-digest.kql; raises CollectorError


class Mailer(Protocol):
    def send(self, digest: Digest, run_id: str) -> None: ...  # raises CollectorError (DigestNotSentError)


class QueryRows:
    """The digest rows from a query's answer (Log Analytics in Azure)."""

    def __init__(self, source: DigestSource) -> None:
        self._source = source

    def digest_rows(self, now: datetime) -> list[DigestRow]:
        return rows_from_query(self._source.rows())


class FileRows:
    """The digest rows from the file sink's records (the demo, ``python -m shared notify --in``): the latest snapshot
    as shared/insight/snapshot.py reads it, and the same rule as the query (shared/notify/digest.py)."""

    def __init__(self, directory: str | Path, limits: Thresholds) -> None:
        self.directory = Path(directory)
        self._limits = limits

    def digest_rows(self, now: datetime) -> list[DigestRow]:
        keys, runs = self.directory / KEYS_TABLE.file_name, self.directory / RUNS_TABLE.file_name
        if not keys.is_file() or not runs.is_file():
            raise FileNotFoundError(f"no records in {self.directory} (expected {keys.name} and {runs.name})")
        snapshot = latest_snapshot(read_jsonl(keys), read_jsonl(runs))
        return notice_rows(snapshot.keys, now, self._limits)


class DigestRowsSource(Protocol):
    def digest_rows(self, now: datetime) -> list[DigestRow]: ...


@dataclass(frozen=True)
class NotifyRun:
    mode: str  # dry_run or send (off never runs)
    fallback_recipient: str | None
    folder: Path | None = None  # dry_run, locally: <FILE_SINK_DIR>/digests/


def run_digests(
    run: NotifyRun,
    source: DigestRowsSource,
    sink: Sink,
    mailer: Mailer | None = None,
    *,
    now: datetime | None = None,
    run_id: str | None = None,
) -> DigestRunRecord:
    """One digest run; returns its record, which has been sent to ``sink`` (a SinkError is logged and raised)."""
    now = now or datetime.now(UTC)
    run_id = run_id or str(uuid.uuid4())
    started = time.monotonic()
    errors: list[dict[str, str]] = []
    digests = Digests(())
    sent = 0
    try:
        digests = build_digests(source.digest_rows(now), run.fallback_recipient)
    except Exception as exc:  # no rows, no digest: the record says why
        errors.append({"Recipient": "-", "Error": describe_error(exc)})
        log.error("Owner digests: no rows this run: %s", errors[-1]["Error"])
    if digests.unaddressed:
        log.warning("Owner digests: %d finding(s) of keys without an owner e-mail address go to nobody: set "
                    "NOTIFY_FALLBACK_RECIPIENT, or tag their users with their owner (OWNER_TAG_KEYS)",
                    len(digests.unaddressed))
    for digest in digests.digests:
        try:
            if run.mode == SEND:
                if mailer is None:
                    raise ValueError("NOTIFY_MODE is send but no mailer was built")
                mailer.send(digest, run_id)
            else:
                show(digest, run.folder, now)
            sent += 1
        except Exception as exc:
            errors.append({"Recipient": digest.recipient, "Error": describe_error(exc)})
            log.error("Owner digest for %s not sent: %s", digest.recipient, errors[-1]["Error"])
    built = len(digests.digests)
    record = DigestRunRecord(
        TimeGenerated=now, RunId=run_id, Status=status_of(errors, built, sent), Mode=run.mode, DigestsBuilt=built,
        DigestsSent=sent, DigestsNotSent=built - sent, RowsListed=sum(len(d.rows) for d in digests.digests),
        RowsWithoutRecipient=len(digests.unaddressed), Errors=errors_field(errors),
        DurationSeconds=round(time.monotonic() - started, 3), CollectorVersion=__version__,
    )
    log.info("Owner digests %s (%s): %d built, %d sent, %d not sent", record.Status, run.mode, built, sent,
             built - sent)
    try:
        sink.send(DIGEST_RUNS_TABLE, [record.to_row()])
    except SinkError as exc:
        log.error("Owner digests: the run record was not delivered: %s", describe_error(exc))
        raise
    return record


MAX_ERRORS = 50  # a run record stays small however many digests failed; the count is in DigestsNotSent


def errors_field(errors: Sequence[Mapping[str, str]]) -> str:
    kept = list(errors[:MAX_ERRORS])
    if len(errors) > MAX_ERRORS:
        kept.append({"Recipient": "...", "Error": f"{len(errors) - MAX_ERRORS} more error(s), not listed"})
    return json.dumps(kept)


def status_of(errors: Sequence[Mapping[str, str]], built: int, sent: int) -> str:
    if errors and sent == 0:
        return "Failed"
    return "PartiallySucceeded" if errors else "Succeeded"


def show(digest: Digest, folder: Path | None, now: datetime) -> None:
    """dry_run: the digest in the log, and in ``folder`` when given (locally): <date>/<recipient>.{txt,html,json}."""
    log.info("Owner digest (dry_run, not sent) to %s: %s\n%s", digest.recipient, render.subject(digest),
             render.plain_text(digest))
    if folder is None:
        return
    target = folder / now.date().isoformat()
    target.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9.@_+-]", "_", digest.recipient)
    (target / f"{name}.txt").write_text(render.plain_text(digest), encoding="utf-8")
    (target / f"{name}.html").write_text(render.html_text(digest), encoding="utf-8")
    (target / f"{name}.json").write_text(json.dumps(as_json(digest), indent=2) + "\n", encoding="utf-8")


def as_json(digest: Digest) -> dict[str, Any]:
    """What the digest says, as data (the tests and tools read it)."""
    return {
        "recipient": digest.recipient,
        "fallback": digest.fallback,
        "subject": render.subject(digest),
        "rows": [{"Owner": r.owner, "AccountId": r.account_id, "AccountName": r.account_name, "UserName": r.user_name,
                  "AccessKeyId": r.access_key_id, "Finding": r.finding, "DueDate": r.due_date.date().isoformat(),
                  "DaysToDue": r.days_to_due, "Action": r.action} for r in digest.rows],
    }
