"""Benchmark: the cost of redaction with many known secrets (audit finding F3), the product against the previous
algorithm (every registered form tried on every text, after sorting them all).

A benchmark, not a test: ``.venv/bin/python benchmarks/bench_redaction.py [--sessions 1000 4000]``. Each account
session registers what sign-in registers (its secret access key and its session token); the texts redacted are an
owner tag value (what the owner lookup redacts for every user with keys), a log line, and a 10 KB traceback carrying
a base64 blob. Prints microseconds per redaction, median of several rounds: the known-secret matching alone (the part
F3 is about) for the product and the previous algorithm, and the product's whole ``redact`` (which also runs the
shape patterns: key ids, bearer tokens, SAS signatures..., whose cost does not depend on the registry).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared import redaction


class PreviousRegistry:
    """The algorithm before issue 24: five forms per secret in a set, sorted by length and each tried on every text."""

    def __init__(self) -> None:
        self.known: set[str] = set()

    def register(self, value: str) -> None:
        self.known.update({value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1],
                           json.dumps(value, ensure_ascii=False)[1:-1]})

    def redact(self, text: str) -> str:
        for secret in sorted(self.known, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, "[REDACTED]")
        return text


def session_secrets(chance: random.Random) -> tuple[str, str]:
    """A secret access key (40 characters) and a session token (about 800, with STS's shared prefix)."""
    secret_key = base64.b64encode(chance.randbytes(30)).decode()
    token = "IQoJb3JpZ2luX2VjE" + base64.b64encode(chance.randbytes(585)).decode()
    return secret_key, token


TEXTS = {
    "owner tag value (25 chars)": "platform-team@example.com",
    "log line (300 chars)": ("Account 123456789012 (Production): 42 key(s) in 1.2 s; ListUsers, ListAccessKeys and "
                             "GetAccessKeyLastUsed answered; owner tag owner=platform-team@example.com; no finding "
                             "excepted; credential report generated 2026-12-04T10:00:00Z, read in 0.3 s; "
                             "next account 210987654321 (Sandbox) starts now"),
    "traceback (10 KB, base64 blob)": ("Traceback (most recent call last):\n  File \"shared/aws/iam.py\", line 50, "
                                       "in last_used\n" * 60 + "body=" + base64.b64encode(bytes(range(256)) * 12)
                                       .decode()),
}


def per_call_us(redact: Callable[[str], str], text: str, rounds: int = 7, budget: int = 20_000) -> float:
    calls = max(3, int(budget / max(1, len(text) // 50)))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            redact(text)
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--no-previous", action="store_true", help="the product only")
    args = parser.parse_args()
    rows = []
    for sessions in args.sessions:
        chance = random.Random(sessions)
        values = [v for _ in range(sessions) for v in session_secrets(chance)]
        redaction.forget_run_secrets()
        start = time.perf_counter()
        for value in values:
            redaction.register_secret(value)
        register_ms = (time.perf_counter() - start) * 1000
        previous = PreviousRegistry()
        for value in values:
            previous.register(value)
        for name, text in TEXTS.items():
            assert redaction.redact(text + values[-1]).endswith("[REDACTED]")
            product = per_call_us(redaction._redact_known, text)
            before = None if args.no_previous else per_call_us(previous.redact, text, rounds=3, budget=200)
            rows.append((sessions, name, product, before, per_call_us(redaction.redact, text)))
        print(f"{sessions} sessions: {len(values)} secrets, {redaction.known_secret_count()} forms, registered in "
              f"{register_ms:.0f} ms", file=sys.stderr)
        redaction.forget_run_secrets()
    print("| Sessions | Text | Known secrets: product (us) | Known secrets: previous (us) | Whole redact() (us) |")
    print("|---:|---|---:|---:|---:|")
    for sessions, name, product, before, whole in rows:
        shown = "-" if before is None else f"{before:,.0f}"
        print(f"| {sessions:,} | {name} | {product:,.1f} | {shown} | {whole:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
