"""Command line: ``python -m shared collect [--dry-run]`` and ``python -m shared demo``.

On a terminal, a run shows progress (accounts done of total) and ends with a readable summary of findings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from shared.domain import RUN_FAILED, RUN_SUCCEEDED, Account, RunResult
from shared.errors import CollectorError, SecretError, SettingsError
from shared.findings import FINDINGS, Finding, findings_of, is_active
from shared.records import KEYS_TABLE, Table
from shared.redaction import install_log_safety, redact
from shared.settings import FileSinkSettings, load_settings


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


def summarize(result: RunResult, key_rows: Iterable[dict[str, Any]]) -> str:
    """A readable summary: run status, then findings per account (named as the records name them), then the worst
    keys. The findings, their columns and tags come from the catalogue (shared/findings.py); only active keys count."""
    run = result.to_record()
    per_account: dict[str, Counter[str]] = {}
    names: dict[str, str] = {}
    worst: list[tuple[dict[str, Any], list[Finding]]] = []
    for row in key_rows:
        names[row["AccountId"]] = row["AccountName"] or ""
        counts = per_account.setdefault(row["AccountId"], Counter())
        counts["Keys"] += 1
        if not is_active(row):
            continue
        counts["Active"] += 1
        found = findings_of(row)
        counts.update(f.name for f in found)
        if found:
            worst.append((row, found))

    lines = [
        f"Run {run.RunId}: {run.Status} - {run.AccountsSucceeded} of {run.AccountsTotal} account(s), "
        f"{run.KeysCollected} key(s) in {run.DurationSeconds:.1f} s",
        "",
    ]
    header = ["Account", "Name", "Keys", "Active", *(f.cli_column for f in FINDINGS)]
    table = [header]
    for account_id in sorted(per_account):
        c = per_account[account_id]
        table.append([account_id, names.get(account_id, ""), *(str(c[k]) for k in
                      ("Keys", "Active", *(f.name for f in FINDINGS)))])
    if len(table) > 1:
        totals = ["Total", "", *(str(sum(int(r[i]) for r in table[1:])) for i in range(2, len(header)))]
        table.append(totals)
        lines += _format_table(table)
    if worst:
        lines += ["", "Findings (active keys):"]
        detail = [["Account", "User", "Key", "Age (days)", "Last used (days ago)", "Findings"]]
        worst.sort(key=lambda w: (not w[0]["IsRootKey"], -w[0]["AgeDays"], w[0]["AccountId"], w[0]["UserName"]))
        for r, found in worst[:25]:
            tags = [f.cli_tag for f in found]
            used = "never" if r["DaysSinceLastUse"] is None else str(r["DaysSinceLastUse"])
            detail.append([r["AccountId"], r["UserName"], r["AccessKeyId"] or "(root)", str(r["AgeDays"]), used,
                           ", ".join(tags)])
        lines += _format_table(detail)
        if len(worst) > 25:
            lines.append(f"... and {len(worst) - 25} more")
    if result.failures:
        lines += ["", "Failed accounts:"] + [f"  {f.account_id}: {f.error}" for f in result.failures]
    return "\n".join(lines)


def _format_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


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
        rows = read_run_rows(Path(settings.sink.directory) / KEYS_TABLE.file_name, result.run.run_id)
        print(summarize(result, rows))
    else:
        print(summarize(result, []), file=sys.stderr)
    return 0 if result.status != RUN_FAILED else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from shared.composition import compose
    from shared.demo import demo_environment, endpoint_env, moto_server, seed_organization
    from shared.report import write_report

    out_dir = args.out
    print("Starting an emulated AWS organization (moto) on 127.0.0.1...", file=sys.stderr)
    with moto_server() as endpoint, endpoint_env(endpoint):
        seeded = seed_organization(endpoint)
        print(f"Seeded {len(seeded.accounts)} accounts with {seeded.expected_keys} access keys at {endpoint}",
              file=sys.stderr)
        settings = load_settings(demo_environment(seeded, out_dir))
        with compose(settings, progress=TerminalProgress(), secrets=InMemorySecrets(seeded.secrets())) as collector:
            result = collector.run()
    keys_path = Path(out_dir) / KEYS_TABLE.file_name
    print()
    print(summarize(result, read_run_rows(keys_path, result.run.run_id)))
    print()
    print(f"Records written to {keys_path} and {Path(out_dir) / 'AwsIamKeyCollectorRuns.jsonl'}")
    print(f"Report: {write_report(out_dir)}")
    return 0 if result.status == RUN_SUCCEEDED else 1


def cmd_report(args: argparse.Namespace) -> int:
    from shared.report import write_report

    try:
        path = write_report(args.in_dir, args.out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Report: {path}")
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


