"""A bad exceptions file stops `collect` before any AWS call (the proxy in front of moto records none)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from shared.tools.cli import main
from tests.support.aws_proxy import AwsProxy

DATA = Path(__file__).parents[1] / "data" / "exceptions"


def test_a_bad_exceptions_file_stops_collect_before_any_network_call(
    aws: AwsProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "exceptions.json"
    shutil.copy(DATA / "malformed.json", bad)
    for name in list(os.environ):
        if name.startswith(("LOG", "KEY_", "AZURE_", "EXCEPTIONS_")) or (name.startswith("AWS_") and \
                name != "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name)
    env = {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/Home", "AWS_AUTH_MODE": "web_identity",
           "AWS_WEB_IDENTITY_AUDIENCE": "api://AzureADTokenExchange", "LOG_SINK": "file",
           "FILE_SINK_DIR": str(tmp_path / "out"), "EXCEPTIONS_FILE": str(bad)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["collect"]) == 2
    err = capsys.readouterr().err
    assert f"EXCEPTIONS_FILE {bad}: entry 2 (userArn arn:aws:iam::123456789012:user/ci-*): finding:" in err
    assert aws.calls == [] and not (tmp_path / "out").exists()
    bad.write_text(json.dumps({"version": 1, "exceptions": []}))
    assert main(["exceptions", "check", str(bad)]) == 0
