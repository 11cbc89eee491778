"""Keeping secrets out of every log line, exception message, record and CLI output.

Two layers: known secret values registered at run time (the AWS secret key, session tokens, the workspace key,
bearer tokens) are replaced wherever they appear, and anything shaped like an AWS access key id is masked to
``AKIA...WXYZ`` even if nobody registered it (AWS error messages quote key ids, e.g. NoSuchEntity).
"""

from __future__ import annotations

import logging
import re
import threading

# AWS access key ids: a 4-letter prefix (AKIA long-term, ASIA temporary, ...) and 16 more characters.
_ACCESS_KEY_ID = re.compile(
    r"(?<![A-Z0-9])((?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{4})[A-Z0-9]{8}([A-Z0-9]{4})"
    r"(?![A-Z0-9])"
)
# Authorization headers and bearer tokens that a third-party DEBUG log may print.
_BEARER = re.compile(r"(?i)(bearer\s+|sharedkey\s+[^:\s]+:)[A-Za-z0-9._~+/=-]{8,}")
_SECRET_PARAMS = re.compile(
    r"(?i)([\"']?(?:SecretAccessKey|SessionToken|WebIdentityToken|access_token|client_secret|aws_secret_access_key|"
    r"aws_session_token)[\"']?\s*[:=]\s*[\"']?)[^\"'&,\s<}]{8,}"
)
# STS answers (XML) and JSON bodies that carry credentials, as botocore's DEBUG log prints them.
_SECRET_XML = re.compile(r"(<(SecretAccessKey|SessionToken|WebIdentityToken)>)[^<]+(</)")
_SECRET_JSON = re.compile(r'(?i)("(?:value|access_token|refresh_token|SecretAccessKey|SessionToken)"\s*:\s*")[^"]{8,}"')

_lock = threading.Lock()
_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that ``redact`` removes it wherever it appears. Short values are ignored."""
    if value and len(value) >= 8:
        with _lock:
            _known_secrets.add(value)


def mask_access_key_id(key_id: str) -> str:
    """``AKIAIOSFODNN7EXAMPLE`` -> ``AKIA...MPLE``: enough to recognise a key, not enough to use it."""
    return f"{key_id[:4]}...{key_id[-4:]}" if len(key_id) >= 12 else "****"


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    text = _ACCESS_KEY_ID.sub(lambda m: f"{m.group(1)[:4]}...{m.group(2)}", text)
    text = _BEARER.sub(lambda m: m.group(1) + "[REDACTED]", text)
    text = _SECRET_XML.sub(lambda m: m.group(1) + "[REDACTED]" + m.group(3), text)
    text = _SECRET_JSON.sub(lambda m: m.group(1) + '[REDACTED]"', text)
    return _SECRET_PARAMS.sub(lambda m: m.group(1) + "[REDACTED]", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and exception text) through ``redact`` before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string in a third-party log call must not break logging
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True


# Loggers that print request or response bodies or headers at DEBUG or INFO. They stay at WARNING whatever level
# the host is set to: botocore's DEBUG output includes STS responses (session tokens), azure-core's INFO output
# includes request headers.
NOISY_LOGGERS = (
    "botocore",
    "boto3",
    "urllib3",
    "s3transfer",
    "azure",
    "azure.core.pipeline.policies.http_logging_policy",
    "msal",
)


def install_log_safety(root: logging.Logger | None = None) -> None:
    """Redact every handler's output and quieten third-party loggers. Idempotent."""
    root = root or logging.getLogger()
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
