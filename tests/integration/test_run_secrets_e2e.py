"""The known-secret registry is a run's (audit finding F3): a real run on the emulated AWS registers the keys and
tokens it is handed, redacts them while it runs, and leaves the registry empty when it ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import redaction
from shared.tools.demo import seed_organization
from tests.support.aws_proxy import AwsProxy
from tests.support.collect import collect, env_for


def test_a_run_leaves_the_registry_empty(aws: AwsProxy, moto_url: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    org = seed_organization(moto_url)
    redaction.forget_run_secrets()
    seen: list[tuple[int, str]] = []
    original = redaction.register_secret

    def spy(value: str | None) -> None:
        original(value)
        if value and value == org.collector_secret_key:  # while the run holds it, it is redacted
            seen.append((redaction.known_secret_count(), redaction.redact(f"key {value}")))

    monkeypatch.setattr("shared.aws.signin.register_secret", spy)
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    assert run.status == "Succeeded" and len(rows) == org.expected_keys
    assert seen and seen[0][0] > 0 and seen[0][1] == "key [REDACTED]"
    assert redaction.known_secret_count() == 0
