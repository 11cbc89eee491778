"""A bad exceptions file stops `collect` before any AWS call (the proxy in front of moto records none)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shared.tools.cli import main
from tests.support.aws_proxy import AwsProxy

DATA = Path(__file__).parents[1] / "data" / "exceptions"


def test_a_bad_exceptions_file_stops_collect_before_any_network_call(
    aws: AwsProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    bad = DATA / "malformed.json"  # under the app's folder, as EXCEPTIONS_FILE must be
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
    # Outside the app's folder, or not a regular file: refused, named, before any read (was an uncaught MemoryError).
    for outside in ("/dev/zero", str(tmp_path / "exceptions.json"), "../exceptions.json"):
        monkeypatch.setenv("EXCEPTIONS_FILE", outside)
        assert main(["collect"]) == 2
        err = capsys.readouterr().err
        assert f"EXCEPTIONS_FILE {outside}: not under the app's folder " in err and "Traceback" not in err
    assert aws.calls == [] and not (tmp_path / "out").exists()
    # The check command takes any path an operator names, with the same bounds on what it reads.
    fine = tmp_path / "exceptions.json"
    fine.write_text(json.dumps({"version": 1, "exceptions": []}))
    assert main(["exceptions", "check", str(fine)]) == 0
    assert main(["exceptions", "check", "/dev/zero"]) == 2
    assert "not a regular file" in capsys.readouterr().err
