"""Known secrets: found in every encoding the audit found leaking (F13), by one index whatever their number, and
forgotten when the run ends (F3)."""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from shared.composition import compose
from shared.config.settings import load_settings
from shared.delivery.file_sink import FileSink
from shared.redaction import (
    forget_run_secrets,
    install_log_safety,
    known_secret_count,
    redact,
    register_secret,
    run_secrets,
)
from shared.tools.cli import InMemorySecrets
from tests.support.settings_env import ROLE

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY/EXAMPLEKEY"  # an AWS secret access key: / and + in it


@pytest.fixture(autouse=True)
def empty_registry() -> Iterator[None]:
    forget_run_secrets()
    yield
    forget_run_secrets()


def hidden(text: str, secret: str = SECRET) -> bool:
    out = redact(text)
    return "[REDACTED]" in out and secret[10:22] not in out and "XUtnFEMI" not in out


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("quote() default, / kept", quote(SECRET)),
        ("lower-case percent escapes", quote(SECRET, safe="").replace("%2F", "%2f").replace("%2B", "%2b")),
        ("JSON escaped slashes", json.dumps({"k": SECRET}).replace("/", "\\/")),
        ("double percent encoding", quote(quote(SECRET, safe=""), safe="")),
        ("triple, lower-case", re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(quote(quote(SECRET))))),
        ("base64", base64.b64encode(SECRET.encode()).decode()),
        ("base64 url-safe", base64.urlsafe_b64encode(SECRET.encode()).decode()),
        ("base64 inside Basic auth", "Basic " + base64.b64encode(b"AKIAIOSFODNN7EXAMPLE:" + SECRET.encode()).decode()),
        ("plain", SECRET),
    ],
)
def test_a_registered_secret_is_found_in_every_encoding(name: str, shown: str) -> None:
    register_secret(SECRET)
    assert hidden(f"POST body: x={shown}&y=1"), name


def test_base64_at_any_alignment_with_any_bytes_around() -> None:
    register_secret(SECRET)
    chance = random.Random(24)
    for _ in range(60):
        before, after = chance.randbytes(chance.randrange(0, 7)), chance.randbytes(chance.randrange(0, 7))
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            blob = encode(before + SECRET.encode() + after).decode()
            assert "[REDACTED]" in redact(f"blob {blob} end"), (before, after)


def test_only_the_secret_is_cut_the_rest_of_the_text_stays_as_written() -> None:
    register_secret(SECRET)
    text = f"GET /a%2Fb?q=%41 then {quote(quote(SECRET, safe=''), safe='')} and \\/ done"
    assert redact(text) == "GET /a%2Fb?q=%41 then [REDACTED] and \\/ done"
    assert redact(f"{SECRET}{SECRET}") == "[REDACTED][REDACTED]"
    assert redact(f"{SECRET[:-4]}{quote(SECRET)}") == f"{SECRET[:-4]}[REDACTED]"


def test_sig_at_the_start_of_the_text_or_a_line() -> None:
    assert redact("sig=AbCdEf0123456789xyz&se=2026") == "sig=[REDACTED]&se=2026"
    assert "AbCdEf" not in redact("first line\nsig=AbCdEf0123456789xyz")


def test_a_record_built_by_make_log_record_is_redacted() -> None:
    """makeLogRecord calls the record factory on an empty record and sets the message after: a mere "redacted" mark
    let the message through every filter."""
    register_secret(SECRET)
    install_log_safety()
    stream = io.StringIO()
    logger = logging.getLogger("test.make_log_record")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    install_log_safety()  # the handler gets its filter, as every handler present at start-up does
    try:
        logger.handle(logging.makeLogRecord({"name": logger.name, "msg": "token %s", "args": (SECRET,),
                                             "levelno": logging.WARNING, "levelname": "WARNING"}))
        logger.handle(logging.makeLogRecord({"name": logger.name, "msg": f"key {SECRET}", "levelno": logging.WARNING,
                                             "levelname": "WARNING"}))
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "token [REDACTED]\nkey [REDACTED]\n"


def test_the_registry_is_a_runs_and_is_empty_when_it_ends() -> None:
    with run_secrets():
        register_secret(SECRET)
        with run_secrets():  # an overlapping run keeps it until the last one ends
            register_secret("another-secret-value-of-run-two")
        assert known_secret_count() > 0 and redact(SECRET) == "[REDACTED]"
    assert known_secret_count() == 0 and redact(SECRET) == SECRET


def test_the_composition_root_forgets_the_runs_secrets(tmp_path: Path) -> None:
    settings = load_settings({"AWS_ROLE_ARN": ROLE, "LOG_SINK": "file", "FILE_SINK_DIR": str(tmp_path),
                              "KEY_VAULT_URL": "https://unused.vault.azure.net/"})
    with compose(settings, secrets=InMemorySecrets({}), sink=FileSink(str(tmp_path)), use_outbox=False):
        register_secret(SECRET)  # as sign-in does with the session's keys
        assert known_secret_count() > 0
    assert known_secret_count() == 0


def test_many_secrets_are_one_index_not_a_list_scanned_per_redaction() -> None:
    """4,000 account sessions: each redaction looks up anchors in the text, it does not try every secret (the cost at
    scale is measured by benchmarks/bench_redaction.py, not timed here)."""
    chance = random.Random(3)
    values = [base64.b64encode(chance.randbytes(30)).decode() for _ in range(4000)]
    for value in values:
        register_secret(value)
    assert redact(f"owner {values[1234]} here") == "owner [REDACTED] here"
    assert redact("platform-team@example.com") == "platform-team@example.com"
