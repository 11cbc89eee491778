"""Command line: ``python -m shared collect [--dry-run]`` and ``python -m shared demo``.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from shared.config.modes import FileSinkSettings
from shared.config.settings import load_settings
from shared.domain import RUN_FAILED, RUN_SUCCEEDED, Account, RunResult
from shared.errors import CollectorError, SecretError, SettingsError
from shared.findings.exceptions_file import DEFAULT_MAX_DAYS as DEFAULT_EXCEPTIONS_MAX_DAYS
from shared.insight.summary import summarize
from shared.records import CREDENTIALS_TABLE, KEYS_TABLE, Table
from shared.redaction import install_log_safety, redact


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
        line = f"[{self._done:>{len(str(self._total))}}/{self._total}] {label}: {status}"
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
            self._stream.write(json.dumps({"Table": table.table, **row}) + "\n")

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
    rows = []
    if path.exists():
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                if row.get("RunId") == run_id:
                    rows.append(row)
    return rows


def cmd_collect(args: argparse.Namespace) -> int:
    from shared.composition import compose

    settings = load_settings(os.environ)
    sink = PrintSink() if args.dry_run else None
    # A dry run neither replays nor fills the outbox: it only shows what this run would send.
    with compose(settings, progress=TerminalProgress(), sink=sink, use_outbox=not args.dry_run) as collector:
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
        settings = load_settings(demo_environment(seeded, out_dir))
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
    return 0 if all(r.status == RUN_SUCCEEDED for r in results) else 1


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


def cmd_exceptions_check(args: argparse.Namespace) -> int:
    """Validates one exceptions file as the settings check does, and lists what is in force and what expired."""
    from datetime import UTC, datetime

    from shared.config.settings import exceptions_max_days
    from shared.findings.exceptions import describe
    from shared.findings.exceptions_file import ExceptionsFileError, check_max_days, load_exceptions

    now = datetime.now(UTC)
    try:
        max_days = exceptions_max_days(os.environ) if args.max_days is None else check_max_days(args.max_days)
        exceptions = load_exceptions(args.file, now=now, max_days=max_days)
    except (ExceptionsFileError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    expired = exceptions.expired(now)
    print(f"{args.file}: valid - {len(exceptions)} exception(s), {len(exceptions) - len(expired)} in force, "
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
    exceptions = sub.add_parser("exceptions", help="work with the reviewed exceptions file (accepted findings)")
    exceptions_sub = exceptions.add_subparsers(dest="exceptions_command", required=True)
    check = exceptions_sub.add_parser("check", help="validate one exceptions file: exit 0 valid, 2 invalid")
    check.add_argument("file", help="the exceptions file (JSON), e.g. exceptions.json")
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
