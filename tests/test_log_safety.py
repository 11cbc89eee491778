"""No secret, token or full access key id in any log line, exception, record or CLI output — at DEBUG too."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.demo import SeededOrganization, seed_organization
from shared.redaction import install_log_safety, redact
from tests.support.aws_proxy import AwsProxy
from tests.support.collect import WEB_TOKEN, FixedToken, collect, env_for


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed_organization(moto_url)


@pytest.fixture
def everything_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """A host that turns every logger up to DEBUG, third-party ones included, after the product set them up."""
    with caplog.at_level(logging.DEBUG):
        install_log_safety()
        for name in ("botocore", "urllib3", "azure"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        yield caplog
    install_log_safety()  # back to the product's defaults for the next tests


def issued_secrets(proxy: AwsProxy, org: SeededOrganization) -> set[str]:
    """Every credential value AWS handed out in this test, plus every full access key id in the emulated accounts."""
    from moto.iam.models import iam_backends

    found = {org.collector_key_id, org.collector_secret_key}
    for body in proxy.response_bodies:
        text = body.decode("utf-8", "replace")
        found |= set(re.findall(r"<(?:SecretAccessKey|SessionToken|AccessKeyId)>([^<]+)<", text))
    for account in org.accounts:
        found |= set(iam_backends[account]["aws"].access_keys)
    return {s for s in found if len(s) >= 16}


def assert_nowhere(secrets: set[str], *texts: str) -> None:
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"a secret ({secret[:4]}...) leaked"


def test_access_key_mode_at_debug(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path, everything_at_debug: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, rows = collect(env_for(org, tmp_path, AWS_ACCOUNTS="organization"), org)
    secrets = issued_secrets(aws, org)
    assert len(secrets) > 20  # session keys and tokens of three roles, and every user's key id
    logs = everything_at_debug.text
    assert "botocore" in logs and "AssumeRole" in logs  # third-party DEBUG output really was captured
    out = capsys.readouterr()
    files = "".join(p.read_text() for p in tmp_path.glob("*.jsonl"))
    assert_nowhere(secrets, logs, out.out, out.err, files, json.dumps(rows), json.dumps(run.to_record().to_row()))


def test_web_identity_token_never_logged(
    aws: AwsProxy, org: SeededOrganization, tmp_path: Path, everything_at_debug: pytest.LogCaptureFixture
) -> None:
    env = env_for(org, tmp_path, AWS_AUTH_MODE="web_identity", AWS_WEB_IDENTITY_AUDIENCE="api://AzureADTokenExchange")
    collect(env, org, tokens=FixedToken())
    logs = everything_at_debug.text
    assert "AssumeRoleWithWebIdentity" in logs
    assert WEB_TOKEN not in logs and WEB_TOKEN[:40] not in logs
    assert_nowhere(issued_secrets(aws, org), logs)


def test_failure_messages_carry_no_key_id(aws: AwsProxy, org: SeededOrganization, tmp_path: Path) -> None:
    from tests.support.aws_proxy import aws_error

    aws.rules.append(
        lambda c: aws_error("InvalidClientTokenId", f"The security token {c.access_key_id} is invalid", 403)
        if c.action == "ListUsers" else None
    )
    run, _ = collect(env_for(org, tmp_path), org)
    (failure,) = run.failures
    assert "InvalidClientTokenId" in failure.error and "ASIA..." in failure.error
    assert_nowhere(issued_secrets(aws, org), run.to_record().FailedAccounts)


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("key AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
        ("temp ASIAQWERTYUIOPASDFGH.", "ASIAQWERTYUIOPASDFGH"),
        ("<SessionToken>FwoGZXIvYXdzEBYaDAbc123456</SessionToken>", "FwoGZXIvYXdzEBYaDAbc123456"),
        ("'SecretAccessKey': 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi.payload.sig", "eyJ0eXAiOiJKV1QiLCJhbGciOi"),
        ("Authorization: SharedKey 0b9d0f6e:c2lnbmF0dXJlc2lnbmF0dXJl", "c2lnbmF0dXJlc2lnbmF0dXJl"),
        ('{"access_token": "eyJhbGciOiJSUzI1NiJ9.e30.sig", "expires_in": 3600}', "eyJhbGciOiJSUzI1NiJ9"),
        ("WebIdentityToken=eyJhbGciOiJSUzI1NiJ9.e30.sig&RoleArn=x", "eyJhbGciOiJSUzI1NiJ9"),
    ],
)
def test_redact_patterns(text: str, hidden: str) -> None:
    assert hidden not in redact(text)


def test_registered_secrets_are_redacted_wherever_they_appear() -> None:
    from shared.redaction import register_secret

    register_secret("a-workspace-key-value-0123456789==")
    assert redact("sig over a-workspace-key-value-0123456789== failed") == "sig over [REDACTED] failed"
