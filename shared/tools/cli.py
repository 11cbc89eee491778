"""Command line: ``python -m shared collect [--dry-run]``, ``demo``, ``report``, ``notify`` and ``exceptions check``.

On a terminal, a run shows progress (accounts done of total) and ends with a readable summary of findings.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from shared import jsonl
from shared.config.modes import FileSinkSettings
from shared.config.settings import load_settings
from shared.config.transport import ClientOptions
from shared.domain import RUN_FAILED, RUN_SUCCEEDED, Account, RunResult
from shared.errors import CollectorError, SecretError, SettingsError
from shared.findings.exceptions_file import DEFAULT_MAX_DAYS as DEFAULT_EXCEPTIONS_MAX_DAYS
from shared.insight.snapshot import printable
from shared.insight.summary import summarize
from shared.records import CREDENTIALS_TABLE, KEYS_TABLE, DigestRunRecord, Table
from shared.redaction import install_log_safety, redact

# Production's client options (TLS verification on, the clouds' own domains only). Tests replace this object with
# monkeypatch to trust their local fakes' CA, as they do function_app.CLIENT_OPTIONS: a CA bundle variable in the
# environment (REQUESTS_CA_BUNDLE and the like) is refused by the settings check.
CLIENT_OPTIONS = ClientOptions()


class TerminalProgress:
    """``[ 3/10] accounts  123456789012  42 keys`` on one refreshed line on a terminal; a line per account elsewhere."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._total = 0
        self._done = 0

    def started(self, total: int) -> None:
        self._total = total
        self._stream.write(f"Collecting IAM access keys from {total} AWS account(s)...\n")
        self._stream.flush()

    def account_done(self, account: Account, keys: int, error: str | None) -> None:
        self._done += 1
        label = f"{account.id}{' (' + account.name + ')' if account.name else ''}"
        status = f"{keys} key(s)" if error is None else f"FAILED: {error}"
        # The account name (Organizations) and the error (AWS's message) are AWS-supplied: no control or bidi character
        line = printable(f"[{self._done:>{len(str(self._total))}}/{self._total}] {label}: {status}")
        if self._tty and error is None:
            self._stream.write("\r\033[K" + line)
            if self._done == self._total:
                self._stream.write("\n")
        else:
            self._stream.write(("\r\033[K" if self._tty else "") + line + "\n")
        self._stream.flush()

    def finished(self, result: RunResult) -> None:
        pass


class PrintSink:
    """``--dry-run``: prints each record as JSON Lines on stdout, tagged with its table, instead of sending it."""

    name = "dry-run"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self._stream.write(jsonl.encode_line({"Table": table.table, **row}))

    def close(self) -> None:
        self._stream.flush()


class InMemorySecrets:
    """Secrets handed over directly (the demo's stand-in for Key Vault)."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def get_secret(self, name: str) -> str:
        if name not in self._values:
            raise SecretError(f"secret {name!r} is not set")
        return self._values[name]


def read_run_rows(path: Path, run_id: str) -> list[dict[str, Any]]:
    """One run's rows of a file sink's file, by the package's one decoder (a torn last line is skipped)."""
    return [row for row in jsonl.read_rows(path) if row.get("RunId") == run_id] if path.exists() else []


def cmd_collect(args: argparse.Namespace) -> int:
    from shared.composition import compose

    settings = load_settings(os.environ, CLIENT_OPTIONS.endpoints)
    sink = PrintSink() if args.dry_run else None
    # A dry run neither replays nor fills the outbox: it only shows what this run would send.
    with compose(settings, CLIENT_OPTIONS, progress=TerminalProgress(), sink=sink,
                 use_outbox=not args.dry_run) as collector:
        result = collector.run()
    if not args.dry_run and isinstance(settings.sink, FileSinkSettings):
        folder = Path(settings.sink.directory)
        print(summarize(result, read_run_rows(folder / KEYS_TABLE.file_name, result.run.run_id), settings.exceptions,
                        read_run_rows(folder / CREDENTIALS_TABLE.file_name, result.run.run_id)))
    else:
        print(summarize(result, [], settings.exceptions), file=sys.stderr)
    return 0 if result.status != RUN_FAILED else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Two runs with key changes in between (one key created, deactivated, deleted and rotated), so that the report's
    change timeline has something to show; the summary is the second run's."""
    from shared.composition import compose
    from shared.insight.report import write_report
    from shared.tools.demo import (
        change_credentials,
        change_keys,
        demo_environment,
        endpoint_env,
        moto_server,
        seed_organization,
    )

    out_dir = args.out
    print("Starting an emulated AWS organization (moto) on 127.0.0.1...", file=sys.stderr)
    with moto_server() as endpoint, endpoint_env(endpoint):
        seeded = seed_organization(endpoint)
        print(f"Seeded {len(seeded.accounts)} accounts with {seeded.expected_keys} access keys and "
              f"{seeded.expected_credentials} other long-lived credentials at {endpoint}", file=sys.stderr)
        # The demo's exceptions file is written into its output folder: that folder is where EXCEPTIONS_FILE may be.
        demo_environment_values = demo_environment(seeded, out_dir)
        settings = load_settings(demo_environment_values, exceptions_root=Path(out_dir))
        results: list[RunResult] = []
        changes: list[str] = []
        for n in (1, 2):
            if n == 2:
                # Records are stamped to the second and the queries take the newest run by TimeGenerated: the
                # second run must start in a later second than the first (a fast first run can take under one).
                first_started = results[0].run.started_at.timestamp()
                time.sleep(max(0.0, math.floor(first_started) + 1 - time.time()))
                changes = change_keys(seeded) + change_credentials(seeded)
                print("Between the two runs:", file=sys.stderr)
                for line in changes:
                    print(f"  {line}", file=sys.stderr)
            print(f"Run {n} of 2", file=sys.stderr)
            with compose(settings, progress=TerminalProgress(),
                         secrets=InMemorySecrets(seeded.secrets())) as collector:
                results.append(collector.run())
    result = results[-1]
    keys_path = Path(out_dir) / KEYS_TABLE.file_name
    print()
    print(summarize(result, read_run_rows(keys_path, result.run.run_id), settings.exceptions,
                    read_run_rows(Path(out_dir) / CREDENTIALS_TABLE.file_name, result.run.run_id)))
    print()
    print("Changed between the two runs (the report's timeline): " + "; ".join(changes))
    print(f"Records written to {keys_path}, {Path(out_dir) / CREDENTIALS_TABLE.file_name} and "
          f"{Path(out_dir) / 'AwsIamKeyCollectorRuns.jsonl'}")
    print(f"Exceptions: {settings.exceptions_file} (the demo's own: one in force, one expired)")
    print(f"Report: {write_report(out_dir, exceptions=settings.exceptions)}")
    digests = notify_from_files(demo_environment_values, out_dir)
    digests_ok = digests is None or digests.Status != "Failed"
    return 0 if all(r.status == RUN_SUCCEEDED for r in results) and digests_ok else 1


def notify_from_files(environ: Mapping[str, str], in_dir: str) -> DigestRunRecord | None:
    """One owner-digest run over the file sink's records in ``in_dir`` (the same rule as the query in Azure), its
    digests written to <FILE_SINK_DIR>/digests/ in dry_run, its record to the sink LOG_SINK names; prints what it
    did."""
    from shared.composition import compose_notify
    from shared.config.notify import NotifyMode, load_notify_settings

    settings = load_notify_settings(environ, CLIENT_OPTIONS.endpoints, from_files=True)
    if settings.mode is NotifyMode.OFF:
        print("NOTIFY_MODE is off: no owner digest")
        return None
    with compose_notify(settings, CLIENT_OPTIONS, files=in_dir) as runner:
        record = runner.run()
    _print_digest_run(record, runner.settings.folder)
    return record


def _print_digest_run(record: DigestRunRecord, folder: Path | None) -> None:
    done = "written" if record.Mode == "dry_run" else "sent"
    where = f" to {folder}" if folder is not None and record.Mode == "dry_run" else ""
    print(f"Owner digests ({record.Mode}): {record.DigestsBuilt} digest(s) for keys due or overdue, "
          f"{record.DigestsSent} {done}{where}" + (f", {record.DigestsNotSent} not sent" if record.DigestsNotSent
                                                  else "")
          + (f"; {record.RowsWithoutRecipient} finding(s) of keys without an owner went to nobody "
             "(NOTIFY_FALLBACK_RECIPIENT is empty)" if record.RowsWithoutRecipient else ""))
    for error in json.loads(record.Errors):
        print(f"  not sent to {error['Recipient']}: {error['Error']}", file=sys.stderr)


def cmd_notify(args: argparse.Namespace) -> int:
    """One owner-digest run with the current settings: the rows from Log Analytics (NOTIFY_WORKSPACE_ID, your
    sign-in), or with --in from the file sink's records there (whose run record then goes to that folder too)."""
    from shared.composition import compose_notify
    from shared.config.notify import NotifyMode, load_notify_settings

    if args.in_dir:
        environ = {**os.environ, "LOG_SINK": "file", "FILE_SINK_DIR": args.in_dir}
        found = notify_from_files(environ, args.in_dir)
        return 0 if found is None or found.Status != "Failed" else 1
    settings = load_notify_settings(os.environ, CLIENT_OPTIONS.endpoints)
    if settings.mode is NotifyMode.OFF:
        print("NOTIFY_MODE is off: no owner digest")
        return 0
    with compose_notify(settings, CLIENT_OPTIONS) as runner:
        record = runner.run()
    _print_digest_run(record, runner.settings.folder)
    return 0 if record.Status != "Failed" else 1


def cmd_report(args: argparse.Namespace) -> int:
    from shared.config.settings import exceptions_setting
    from shared.insight.report import write_report

    try:
        path = write_report(args.in_dir, args.out, exceptions_setting(os.environ))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Report: {path}")
    return 0


def _exceptions_blob_text(max_days: int) -> tuple[str, str]:
    """(where, text) of the exceptions blob the settings name (EXCEPTIONS_SOURCE=blob): the app's storage
    (AzureWebJobsStorage__blobServiceUri), EXCEPTIONS_CONTAINER, EXCEPTIONS_BLOB, read with the Azure credential a run
    uses (your sign-in locally, the managed identity in Azure). Raises ExceptionsFileError naming the blob."""
    from contextlib import ExitStack

    from shared.azure.exceptions_blob import BlobExceptionsSource
    from shared.composition import RunCredential
    from shared.config.defaults import DEFAULTS
    from shared.config.settings import BLOB_SERVICE_URI_SETTING
    from shared.findings.exceptions_file import ExceptionsFileError

    uri = os.environ.get(BLOB_SERVICE_URI_SETTING)
    if not uri:
        raise ExceptionsFileError("blob", [f"{BLOB_SERVICE_URI_SETTING} is not set: name the app's storage "
                                           "(https://<account>.blob.core.windows.net), or give a file to check"])
    with ExitStack() as stack:
        credential = RunCredential(os.environ.get("AZURE_CLIENT_ID") or None, CLIENT_OPTIONS, stack)
        source = BlobExceptionsSource(uri, os.environ.get("EXCEPTIONS_CONTAINER") or DEFAULTS["EXCEPTIONS_CONTAINER"],
                                      os.environ.get("EXCEPTIONS_BLOB") or DEFAULTS["EXCEPTIONS_BLOB"],
                                      credential(), CLIENT_OPTIONS, max_days=max_days)
        stack.callback(source.close)
        return source.location, source.read_text()


def cmd_exceptions_check(args: argparse.Namespace) -> int:
    """Validates one exceptions file (or, without a file and with EXCEPTIONS_SOURCE=blob, the blob the settings name)
    exactly as a run does, and lists what is in force and what expired."""
    from datetime import UTC, datetime

    from shared.config.settings import exceptions_max_days
    from shared.findings.exceptions import describe
    from shared.findings.exceptions_file import (
        ExceptionsFileError,
        check_max_days,
        load_exceptions,
        parse_exceptions,
    )

    now = datetime.now(UTC)
    where = args.file
    try:
        max_days = exceptions_max_days(os.environ) if args.max_days is None else check_max_days(args.max_days)
        if args.file:
            exceptions = load_exceptions(args.file, now=now, max_days=max_days)
        elif os.environ.get("EXCEPTIONS_SOURCE") == "blob":
            where, text = _exceptions_blob_text(max_days)
            exceptions = parse_exceptions(text, source=where, now=now, max_days=max_days)
        else:
            print("give the exceptions file to check, or set EXCEPTIONS_SOURCE=blob to check the blob",
                  file=sys.stderr)
            return 2
    except (ExceptionsFileError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    expired = exceptions.expired(now)
    print(f"{where}: valid - {len(exceptions)} exception(s), {len(exceptions) - len(expired)} in force, "
          f"{len(expired)} expired" + (" (expired ones no longer apply: renew them through review, or remove them)"
                                        if expired else ""))
    for line in describe(exceptions, now):
        print(f"  {line}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared", description="AWS IAM access-key collector")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG (secrets stay redacted)")
    sub = parser.add_subparsers(dest="command", required=True)
    collect = sub.add_parser("collect", help="run one collection with the current settings (environment)")
    collect.add_argument("--dry-run", action="store_true", help="print the records instead of sending them")
    collect.set_defaults(func=cmd_collect)
    demo = sub.add_parser("demo", help="collect from a local emulated AWS organization into the file sink")
    demo.add_argument("--out", default="out", help="folder for the JSON Lines files (default: out)")
    demo.set_defaults(func=cmd_demo)
    report = sub.add_parser("report", help="render the file sink's records as one self-contained HTML page")
    default_in = os.environ.get("FILE_SINK_DIR") or "out"
    report.add_argument("--in", dest="in_dir", default=default_in,
                        help=f"folder of the JSON Lines files (default: FILE_SINK_DIR or out; now {default_in})")
    report.add_argument("--out", default=None, help="HTML file to write (default: <in>/report.html)")
    report.set_defaults(func=cmd_report)
    notify = sub.add_parser("notify", help="build the owner digests and send them as NOTIFY_MODE says "
                            "(dry_run: written to FILE_SINK_DIR/digests/)")
    notify.add_argument("--in", dest="in_dir", default=None,
                        help="read the file sink's records in this folder instead of Log Analytics")
    notify.set_defaults(func=cmd_notify)
    exceptions = sub.add_parser("exceptions", help="work with the reviewed exceptions file (accepted findings)")
    exceptions_sub = exceptions.add_subparsers(dest="exceptions_command", required=True)
    check = exceptions_sub.add_parser("check", help="validate one exceptions file: exit 0 valid, 2 invalid")
    check.add_argument("file", nargs="?", default=None,
                       help="the exceptions file (JSON), e.g. exceptions.json; omitted with EXCEPTIONS_SOURCE=blob: "
                            "the blob (AzureWebJobsStorage__blobServiceUri, EXCEPTIONS_CONTAINER, EXCEPTIONS_BLOB)")
    check.add_argument("--max-days", type=int, default=None,
                       help="furthest an exception may expire ahead of today (default: EXCEPTIONS_MAX_DAYS, "
                            f"else {DEFAULT_EXCEPTIONS_MAX_DAYS})")
    check.set_defaults(func=cmd_exceptions_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    install_log_safety()
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except CollectorError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except jsonl.JsonLinesError as exc:  # a file sink's file with a line in its middle that is not a row
        print(f"error: {exc}", file=sys.stderr)
        return 1
