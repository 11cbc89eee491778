"""Collecting end to end, as the command line does (real boto3 on moto behind the proxy, the file sink), and what
the tests of that share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.composition import compose
from shared.config.settings import load_settings
from shared.delivery.file_sink import FileSink
from shared.domain import RunResult
from shared.records import KEYS_TABLE, RUNS_TABLE
from shared.tools.cli import InMemorySecrets
from shared.tools.demo import SeededOrganization

WEB_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvYmplY3QtaWQifQ.c2lnbmF0dXJlLXZhbHVlLWZvci10ZXN0cw"


class FixedToken:
    def __init__(self) -> None:
        self.calls = 0

    def get_token(self) -> str:
        self.calls += 1
        return WEB_TOKEN


def env_for(org: SeededOrganization, out: Path, **extra: str) -> dict[str, str]:
    env = {
        "AWS_ROLE_ARN": org.home_role_arn,
        "AWS_EXTERNAL_ID": org.external_id,
        "LOG_SINK": "file",
        "FILE_SINK_DIR": str(out),
        "KEY_VAULT_URL": "https://unused.vault.azure.net/",
    }
    env.update(extra)
    return env


def collect(
    env: dict[str, str], org: SeededOrganization, *, tokens: Any = None, exceptions_root: Path | None = None
) -> tuple[RunResult, list[dict[str, Any]]]:
    """One run composed as the command line composes it, into the file sink: its result and its key rows.
    ``exceptions_root``: the test's folder where its EXCEPTIONS_FILE is (production: the app's folder only)."""
    settings = load_settings(env, exceptions_root=exceptions_root)
    sink = FileSink(settings.file_sink_dir)
    secrets = None if tokens else InMemorySecrets(org.secrets())
    with compose(settings, secrets=secrets, tokens=tokens, sink=sink) as collector:
        result = collector.run()
    rows = read(sink.path(KEYS_TABLE))
    assert read(sink.path(RUNS_TABLE))[-1] == result.to_record().to_row()  # the run record says what run() returned
    return result, [r for r in rows if r["RunId"] == result.run.run_id]


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
