"""No secret, token or full access key id in any log line, exception, record or CLI output — at DEBUG too."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.redaction import install_log_safety, redact
from shared.tools.demo import SeededOrganization, seed_organization
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
        if c.action == "GetAccountAuthorizationDetails" else None
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


# ---------------------------------------------------------------------------------------------- redaction forms


def test_a_registered_secret_is_redacted_url_encoded_and_json_escaped_too() -> None:
    from urllib.parse import quote, quote_plus

    from shared.redaction import register_secret

    secret = 'wJalr/XUtnFEMI+K7MDENG/bPx"RfiCY=EXAMPLE\\key'
    register_secret(secret)
    for shown in (secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret), json.dumps({"k": secret})):
        out = redact(f"POST body: {shown}")
        assert "[REDACTED]" in out and "XUtnFEMI" not in out, out


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("token=eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJhcGk6Ly9BenVyZUFEVG9rZW5FeGNoYW5nZSJ9.c2lnbmF0dXJl",
         "c2lnbmF0dXJl"),
        ("eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ4eXoifQ.QUJDREVGR0hJSktMTU5PUA", "QUJDREVGR0hJSktMTU5PUA"),
        ("GET https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig=AbC%2Bdef123456%3D&se=2026", "AbC%2Bdef"),
        ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0a2V5c2VjcmV0a2V5==;EndpointSuffix=x",
         "c2VjcmV0a2V5"),
        ("headers: {'X-IDENTITY-HEADER': 'f7a1b2c3d4e5f6a7b8c9', 'User-Agent': 'azsdk'}", "f7a1b2c3d4e5"),
        ('{"x-identity-header": "f7a1b2c3d4e5f6a7b8c9"}', "f7a1b2c3d4e5"),
    ],
)
def test_bare_tokens_sas_signatures_account_keys_and_the_identity_header_are_redacted(text: str, leak: str) -> None:
    assert leak not in redact(text)


def test_a_logger_with_its_own_handler_that_does_not_propagate_is_redacted_too() -> None:
    import io

    from shared.redaction import register_secret

    install_log_safety()
    secret = "zz-secret-value-of-a-non-propagating-logger"
    register_secret(secret)
    stream = io.StringIO()
    own = logging.getLogger("thirdparty.own_handler")
    own.propagate = False
    own.setLevel(logging.INFO)
    handler = logging.StreamHandler(stream)
    own.addHandler(handler)
    try:
        own.info("connecting with %s", secret)
        try:
            raise RuntimeError(f"failed with {secret}")
        except RuntimeError:
            own.exception("boom")
    finally:
        own.removeHandler(handler)
    output = stream.getvalue()
    assert "connecting with [REDACTED]" in output and "failed with [REDACTED]" in output
    assert secret not in output
