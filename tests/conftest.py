"""Shared fixtures: an emulated AWS (moto in server mode on 127.0.0.1) that real boto3 clients talk to over HTTP,
reached through boto3's own AWS_ENDPOINT_URL convention."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from shared.tools.demo import moto_server, reset_moto
from tests.support.aws_proxy import AwsProxy


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsProxy]:
    """A clean emulated AWS for one test, behind a recording/fault-injecting proxy that boto3 is pointed at."""
    reset_moto(moto_url)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with AwsProxy(moto_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        yield proxy


@pytest.fixture
def raw_log() -> Iterator[list[str]]:
    """Every message our own loggers emit, formatted BEFORE any redaction filter (a handler below the root)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("shared", "function_app")]
    for logger in loggers:
        logger.addHandler(handler)
    yield lines
    for logger in loggers:
        logger.removeHandler(handler)
