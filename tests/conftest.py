"""Shared fixtures: an emulated AWS (moto in server mode on 127.0.0.1) that real boto3 clients talk to over HTTP,
reached through boto3's own AWS_ENDPOINT_URL convention."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.demo import moto_server, reset_moto
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
