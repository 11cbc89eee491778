"""Benchmark: the product's collection against the naive serial walk (the 2019 algorithm), on a local AWS responder.

    python benchmarks/bench_collect.py [--workload W1|W2|W3|many-small|all] [--report fresh|absent]

For each workload this starts ``aws_responder.py`` (its own process, fixed latency per call), then runs, each in its
own subprocess so that peak RSS is that run's alone:

- the product: ``shared.composition.compose(...)`` exactly as the CLI composes it (real botocore clients, pointed at
  the responder through ``AWS_ENDPOINT_URL``; the IAM user's key pair from ``InMemorySecrets``), into the ``file``
  sink in a temporary folder; for W3 also into the ``logs_ingestion`` sink against the HTTPS fakes of
  ``ingestion_fake.py`` (managed identity + Logs Ingestion, trustme CA), hosted in this process;
- the naive serial walk (``naive_serial.py``).

It prints wall time, AWS calls (counted by the responder, by action) and peak RSS (VmHWM of the run's process) for
both, the ratios, and PASS/FAIL against the issue's targets. A benchmark, not a test: it takes several minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as a script: this folder is on sys.path (its own modules); the product is imported only by the measured child
# process, whose PYTHONPATH is the repository. Nothing here comes from tests/.
from generated_org import (
    HOME_ACCOUNT_ID,
    HOME_ROLE_NAME,
    USER_ACCESS_KEY_ID,
    USER_SECRET_ACCESS_KEY,
    WORKLOADS,
    Generated,
    Workload,
)
from ingestion_fake import IngestionFakes

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent

RULE_ID = "dcr-0123456789abcdef0123456789abcdef"
RSS_LIMIT_MB = 250.0
# The product's wall time must be at most this fraction of the naive walk's (issue 14).
WALL_TARGETS = {"W1": 1 / 25, "W2": 1 / 40, "many-small": 1 / 30, "W3": 0.6}
# The product's AWS calls must be at most this fraction of the naive walk's ("below": strictly fewer).
CALL_TARGETS: dict[str, tuple[float, bool]] = {"W1": (0.45, False), "W2": (1.0, True), "many-small": (1.0, True)}


def peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --- the product, in a child process ---


class ChildProgress:
    """Progress on stderr: one line per account (the orchestrator passes it through)."""

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.total = 0
        self.done = 0

    def started(self, total: int) -> None:
        self.total = total

    def account_done(self, account: Any, keys: int, error: str | None) -> None:
        self.done += 1
        state = f"{keys} keys" if error is None else f"FAILED: {error}"
        elapsed = time.monotonic() - self.started_at
        print(f"    product: [{self.done}/{self.total}] {account.id} {state} ({elapsed:.1f} s)", file=sys.stderr,
              flush=True)

    def finished(self, run: Any) -> None:
        pass


def run_product(workload: Workload, sink: str, out: str, ca_bundle: str | None, endpoint: str | None) -> None:
    from shared.composition import ClientOptions, compose
    from shared.config.endpoints import EndpointPolicy
    from shared.config.settings import load_settings
    from shared.tools.cli import InMemorySecrets

    env = {
        "AWS_ROLE_ARN": f"arn:aws:iam::{HOME_ACCOUNT_ID}:role/{HOME_ROLE_NAME}",
        "AWS_ACCOUNTS": workload.scope,
        "LOG_SINK": sink,
        "FILE_SINK_DIR": out,
        "KEY_VAULT_URL": "https://unused.vault.azure.net/",  # access_key mode: the key pair comes from InMemorySecrets
    }
    for name in ("COLLECTOR_ACCOUNT_CONCURRENCY", "COLLECTOR_IAM_CONCURRENCY"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if sink == "logs_ingestion":
        env.update({"LOGS_INGESTION_ENDPOINT": endpoint or "", "LOGS_INGESTION_RULE_ID": RULE_ID})
    # The local Logs Ingestion fake is on 127.0.0.1: opted in through the client options, as tests do.
    local = EndpointPolicy(frozenset({"127.0.0.1", "localhost"}))
    settings = load_settings(env, local)
    secrets = InMemorySecrets(
        {"aws-access-key-id": USER_ACCESS_KEY_ID, "aws-secret-access-key": USER_SECRET_ACCESS_KEY}
    )
    options = ClientOptions(ca_bundle=ca_bundle, endpoints=local)
    started, cpu_started = time.monotonic(), time.process_time()
    with compose(settings, options, progress=ChildProgress(), secrets=secrets) as collector:
        result = collector.run()
    wall, cpu = time.monotonic() - started, time.process_time() - cpu_started
    rows = 0
    flags: Counter[str] = Counter()  # after the measured run: what the records say, to check against the truth
    keys_file = Path(out) / "AwsIamAccessKeys.jsonl"
    if keys_file.exists():
        with keys_file.open(encoding="utf-8") as handle:
            for line in handle:
                rows += 1
                record = json.loads(line)
                flags.update(name for name, on in (
                    ("privileged", record["Privileged"] and not record["IsRootKey"]),
                    ("quarantined", record["Quarantined"]), ("owned", bool(record["Owner"])),
                    ("described", bool(record["Description"]))) if on)
    measured = {
        "wall": wall,
        "cpu": cpu,  # CPU seconds of every thread of the process, user and system
        "keys": result.keys_collected,
        "credentials": result.credentials_collected,  # the long-lived credentials other than keys
        "credentials_unknown": len(result.credentials_unknown),
        "status": result.status,
        "file_rows": rows,
        "flags": dict(flags),
        "peak_rss_mb": peak_rss_mb(),
        "account_concurrency": settings.account_concurrency,
        "iam_concurrency": settings.iam_concurrency,
    }
    print("RESULT " + json.dumps(measured), flush=True)


# --- the orchestrator ---


@dataclass
class Measured:
    label: str
    wall: float
    calls: Counter[str]
    peak_rss_mb: float
    keys: int
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def cpu(self) -> float:
        return float(self.detail.get("cpu", 0.0))


class Responder:
    """``aws_responder.py`` in its own process."""

    def __init__(self, workload: Workload, report: str = "fresh") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "aws_responder.py"), "--workload", workload.name, "--report", report],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"the AWS responder did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.url + "/__reset", data=b"", method="POST")).close()  # noqa: S310

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/__stats") as response:  # noqa: S310 - our own local responder
            return json.loads(response.read())  # type: ignore[no-any-return]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _child(command: list[str], env: dict[str, str], label: str) -> dict[str, Any]:
    """Run one measured process; pass its progress (stderr) through; return its RESULT line."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    out, _ = proc.communicate()
    result = next((line[len("RESULT "):] for line in out.splitlines() if line.startswith("RESULT ")), None)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"{label} failed (exit {proc.returncode}): {out[-2000:]}")
    return json.loads(result)  # type: ignore[no-any-return]


def _base_env(responder: Responder) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_", "IDENTITY_", "MSI_"))}
    env.update({
        "AWS_ENDPOINT_URL": responder.url,
        "AWS_CONFIG_FILE": os.devnull,  # no profile, no retry or endpoint configuration of this machine
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPATH": str(ROOT),
    })
    return env


def measure_product(
    responder: Responder, workload: Workload, sink: str, fakes: IngestionFakes | None = None
) -> Measured:
    label = f"product ({sink} sink)"
    print(f"  {label}: running...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-product-") as out:
        command = [sys.executable, str(BENCH / "bench_collect.py"), "--child", "product", "--workload", workload.name,
                   "--sink", sink, "--out", out]
        env = _base_env(responder)
        if fakes is not None:
            command += ["--ca-bundle", fakes.ca_bundle, "--ingestion-endpoint", fakes.ingestion_url]
            env.update(fakes.env())
            fakes.reset()
        responder.reset()
        result = _child(command, env, label)
        stats = responder.stats()
    if fakes is not None:
        result["ingested_rows"] = fakes.received.get("Custom-AwsIamAccessKeys", 0)
        result["ingestion_posts"] = fakes.posts
    measured = Measured(label, result["wall"], Counter(stats["calls"]), result["peak_rss_mb"], result["keys"], result)
    measured.detail["peak_in_flight"] = stats["peak_in_flight"]
    print(f"  {label}: {measured.wall:.2f} s, {measured.total_calls} AWS calls, {measured.keys} keys, "
          f"peak RSS {measured.peak_rss_mb:.0f} MB", file=sys.stderr, flush=True)
    return measured


def measure_naive(responder: Responder, workload: Workload) -> Measured:
    print(f"  naive serial walk: running (about {_naive_estimate(workload):.0f} s)...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-naive-") as out:
        every = 100 if workload.latency else 2500
        command = [sys.executable, str(BENCH / "naive_serial.py"), "--scope", workload.scope,
                   "--out", str(Path(out) / "keys.jsonl"), "--progress-every", str(every)]
        responder.reset()
        result = _child(command, _base_env(responder), "naive serial walk")
        stats = responder.stats()
    measured = Measured("naive serial walk", result["wall"], Counter(stats["calls"]), result["peak_rss_mb"],
                        result["keys"], result)
    print(f"  naive serial walk: {measured.wall:.2f} s, {measured.total_calls} AWS calls, {measured.keys} keys, "
          f"peak RSS {measured.peak_rss_mb:.0f} MB", file=sys.stderr, flush=True)
    return measured


def _naive_estimate(workload: Workload) -> float:
    pages = -(-workload.users_per_account // 100)
    calls = workload.accounts * (pages + workload.users_per_account + workload.keys_per_account + 1)
    return calls * (workload.latency + (0.003 if workload.latency else 0.0015))


def expected_flags(workload: Workload) -> dict[str, int]:
    """What the records must say, from the generated organization's truth (generated_org.py): keys of privileged,
    quarantined and owned users, and keys with a console description (a user's first key, every fifth user)."""
    gen = Generated(workload, datetime.now(UTC))
    truth: Counter[str] = Counter()
    for user in range(workload.users_per_account):
        keys = gen.key_count(user)
        truth["privileged"] += keys * gen.privileged(user)
        truth["quarantined"] += keys * gen.quarantined(user)
        truth["owned"] += keys * bool(gen.owner(user))
        truth["described"] += user % 5 == 0
    return {name: truth[name] * workload.accounts for name in ("privileged", "quarantined", "owned", "described")}


@dataclass
class Verdict:
    ok: bool
    text: str


def judge(workload: Workload, naive: Measured | None, products: list[Measured]) -> list[Verdict]:
    verdicts = []
    for product in products:
        complete = product.keys == workload.total_keys and product.detail.get("status") == "Succeeded"
        verdicts.append(Verdict(complete, f"{product.label}: {product.keys} of {workload.total_keys} keys collected, "
                                          f"run {product.detail.get('status')}"))
        if "ingested_rows" in product.detail:
            rows = product.detail["ingested_rows"]
            posts = product.detail["ingestion_posts"]
            verdicts.append(Verdict(rows == product.keys, f"{product.label}: {rows} key rows received by the fake "
                                                          f"Logs Ingestion endpoint in {posts} POSTs"))
        elif product.detail.get("file_rows") is not None and "file" in product.label:
            rows = product.detail["file_rows"]
            verdicts.append(Verdict(rows == product.keys, f"{product.label}: {rows} key rows in the file sink"))
            truth = expected_flags(workload)
            found = {name: product.detail.get("flags", {}).get(name, 0) for name in truth}
            verdicts.append(Verdict(found == truth, f"{product.label}: keys flagged (privileged, quarantined, with an "
                                                    f"owner, with a description) {found}, as the responder's IAM says "
                                                    f"{truth}"))
    if naive is not None and workload.name in WALL_TARGETS:
        fraction = WALL_TARGETS[workload.name]
        limit = naive.wall * fraction
        shown = f"{fraction:.1f}" if fraction >= 0.1 else f"1/{round(1 / fraction)}"
        for product in products:
            verdicts.append(Verdict(product.wall <= limit, f"{product.label}: wall {product.wall:.2f} s <= naive "
                                                           f"{naive.wall:.2f} s x {shown} = {limit:.2f} s"))
    if naive is not None and workload.name in CALL_TARGETS:
        fraction, strictly = CALL_TARGETS[workload.name]
        limit = naive.total_calls * fraction
        for product in products:
            ok = product.total_calls < limit if strictly else product.total_calls <= limit
            verdicts.append(Verdict(ok, f"{product.label}: AWS calls {product.total_calls} "
                                        f"{'<' if strictly else '<='} naive {naive.total_calls} x {fraction:.2f} "
                                        f"= {limit:.0f}"))
    verdicts += judge_credentials(workload, products)
    if workload.name == "W3":
        for product in products:
            verdicts.append(Verdict(product.peak_rss_mb <= RSS_LIMIT_MB, f"{product.label}: peak RSS "
                                    f"{product.peak_rss_mb:.0f} MB <= {RSS_LIMIT_MB:.0f} MB"))
    return verdicts


LISTING_PAGE = 1000  # the product's MaxItems for ListServiceSpecificCredentials


def expected_credentials(workload: Workload) -> tuple[int, int]:
    """(credentials the responder serves in all, pages the listing needs in all): certificates come from the report."""
    gen = Generated(workload, datetime.now(UTC))
    total = pages = 0
    for account in range(workload.accounts):
        users = range(workload.users_per_account)
        total += sum(gen.certificate(account, u) is not None for u in users)
        for service in Generated.SERVICES:
            held = sum(gen.service_credential(account, u, service) is not None for u in users)
            total += held
            pages += max(1, -(-held // LISTING_PAGE))
    return total, pages


def judge_credentials(workload: Workload, products: list[Measured]) -> list[Verdict]:
    """The other long-lived credentials: all collected, at most one listing call per service (plus pages) per
    account, and no call per holder (their ARNs, owners and privilege come from GetAccountAuthorizationDetails)."""
    total, pages = expected_credentials(workload)
    verdicts = []
    for product in products:
        got, unknown = product.detail.get("credentials"), product.detail.get("credentials_unknown")
        verdicts.append(Verdict(got == total and unknown == 0, f"{product.label}: {got} of {total} other long-lived "
                                                               f"credentials collected, {unknown} kind(s) unknown"))
        listing = product.calls.get("ListServiceSpecificCredentials", 0)
        verdicts.append(Verdict(listing <= pages, f"{product.label}: ListServiceSpecificCredentials {listing} <= "
                                                  f"{pages} ({workload.accounts} account(s) x "
                                                  f"{len(Generated.SERVICES)} services, plus pages)"))
        per_user = {a: n for a, n in product.calls.items() if a in ("ListUsers", "ListUserTags")}
        verdicts.append(Verdict(not per_user, f"{product.label}: no ListUsers or ListUserTags ({per_user or 'none'})"))
    return verdicts


def _calls_text(calls: Counter[str]) -> str:
    return ", ".join(f"{action} {n}" for action, n in sorted(calls.items()))


def calls_by_api(runs: list[Measured]) -> list[str]:
    """The AWS calls by API, one column per run (the naive walk first), with the totals."""
    actions = sorted({action for m in runs for action in m.calls})
    width = max(14, *(len(m.label) for m in runs))
    first = max(24, *(len(a) for a in actions)) if actions else 24
    lines = [f"  {'AWS calls by API':<{first}}" + "".join(f" {m.label:>{width}}" for m in runs)]
    for action in actions:
        lines.append(f"  {action:<{first}}" + "".join(f" {m.calls.get(action, 0):>{width}}" for m in runs))
    lines.append(f"  {'total':<{first}}" + "".join(f" {m.total_calls:>{width}}" for m in runs))
    return lines


def load_text() -> str:
    """The machine's load when measuring: other processes compete for the same cores."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPU(s)"


def bench(
    workload: Workload, with_naive: bool, report: str = "fresh", ingestion: bool = True
) -> tuple[list[Measured], list[Verdict]]:
    print(f"\n=== {workload.name}: {workload.description} (credential reports {report}; {load_text()}) ===",
          file=sys.stderr, flush=True)
    responder = Responder(workload, report)
    fakes_dir = tempfile.TemporaryDirectory(prefix="bench-azure-fakes-")
    fakes: IngestionFakes | None = None
    try:
        products = [measure_product(responder, workload, "file")]
        if workload.name == "W3" and ingestion:
            fakes = IngestionFakes(Path(fakes_dir.name))
            products.append(measure_product(responder, workload, "logs_ingestion", fakes))
        naive = measure_naive(responder, workload) if with_naive else None
    finally:
        responder.close()
        if fakes is not None:
            fakes.close()
        fakes_dir.cleanup()
    runs = ([naive] if naive else []) + products
    verdicts = judge(workload, naive, products)

    print(f"\n{workload.name}: {workload.description} (credential reports {report}; {load_text()})")
    print(f"  {'run':<26} {'wall s':>9} {'CPU s':>8} {'AWS calls':>10} {'peak RSS MB':>12} {'keys':>8}")
    for m in runs:
        print(f"  {m.label:<26} {m.wall:>9.2f} {m.cpu:>8.2f} {m.total_calls:>10} {m.peak_rss_mb:>12.0f} {m.keys:>8}")
    for m in runs:
        print(f"  {m.label}: CPU {1000 * m.cpu / workload.accounts:.1f} ms per account, "
              f"{1000 * m.cpu / max(1, m.total_calls):.2f} ms per AWS call, {1000 * m.cpu / max(1, m.keys):.2f} ms "
              "per key")
    if naive is not None:
        for product in products:
            print(f"  ratio naive/{product.label}: wall {naive.wall / product.wall:.1f}x, "
                  f"calls {naive.total_calls / max(1, product.total_calls):.2f}x, "
                  f"peak RSS {naive.peak_rss_mb / product.peak_rss_mb:.2f}x")
    for line in calls_by_api(runs):
        print(line)
    product = products[0]
    print(f"  product settings: account concurrency {product.detail['account_concurrency']}, IAM concurrency "
          f"{product.detail['iam_concurrency']}; most AWS calls in flight at once: {product.detail['peak_in_flight']}")
    for verdict in verdicts:
        print(f"  {'PASS' if verdict.ok else 'FAIL'}  {verdict.text}")
    sys.stdout.flush()
    return runs, verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the product's collection against the naive serial walk")
    parser.add_argument("--workload", choices=[*sorted(WORKLOADS), "all"], default="all")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive walk (no ratios, no wall targets)")
    parser.add_argument("--no-ingestion", action="store_true",
                        help="W3: the file sink only (skip the logs_ingestion run)")
    parser.add_argument("--report", choices=["fresh", "absent"], default="fresh",
                        help="credential reports when a run starts: fresh (under 4 hours old) or none yet")
    parser.add_argument("--child", choices=["product"], help=argparse.SUPPRESS)
    parser.add_argument("--sink", default="file", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--ca-bundle", help=argparse.SUPPRESS)
    parser.add_argument("--ingestion-endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "product":
        run_product(WORKLOADS[args.workload], args.sink, args.out, args.ca_bundle, args.ingestion_endpoint)
        return 0

    names = sorted(WORKLOADS) if args.workload == "all" else [args.workload]
    print(f"Benchmark on {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}: {', '.join(names)}",
          file=sys.stderr, flush=True)
    table: list[tuple[Workload, list[Measured]]] = []
    failed = 0
    for name in names:
        runs, verdicts = bench(WORKLOADS[name], with_naive=not args.no_naive, report=args.report,
                               ingestion=not args.no_ingestion)
        table.append((WORKLOADS[name], runs))
        failed += sum(1 for v in verdicts if not v.ok)

    print("\n| Workload | Run | Wall time | CPU | AWS calls | Peak RSS | Calls by API |")
    print("|---|---|---:|---:|---:|---:|---|")
    for workload, runs in table:
        for m in runs:
            print(f"| {workload.name} | {m.label} | {m.wall:.1f} s | {m.cpu:.1f} s | {m.total_calls:,} | "
                  f"{m.peak_rss_mb:.0f} MB | {_calls_text(m.calls)} |")
    print(f"\n{'ALL PASS' if failed == 0 else f'{failed} FAIL(S)'}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
