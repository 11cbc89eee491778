"""Keeping secrets out of every log line, exception message, record and CLI output.

Two layers: known secret values registered at run time (the AWS secret key, session tokens, the workspace key,
bearer tokens) are replaced wherever they appear, and anything shaped like an AWS access key id is masked to
``AKIA...WXYZ`` even if nobody registered it (AWS error messages quote key ids, e.g. NoSuchEntity).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

# AWS access key ids: a 4-letter prefix (AKIA long-term, ASIA temporary, ...) and 16 more characters.
_ACCESS_KEY_ID = re.compile(
    r"(?<![A-Z0-9])((?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{4})[A-Z0-9]{8}([A-Z0-9]{4})"
    r"(?![A-Z0-9])"
)
# Authorization headers and bearer tokens that a third-party DEBUG log may print.
_BEARER = re.compile(r"(?i)(bearer\s+|sharedkey\s+[^:\s]+:)[A-Za-z0-9._~+/=-]{8,}", re.UNICODE)
_SECRET_PARAMS = re.compile(
    r"(?i)([\"']?(?:SecretAccessKey|SessionToken|WebIdentityToken|access_token|client_secret|aws_secret_access_key|"
    r"aws_session_token)[\"']?\s*[:=]\s*[\"']?)[^\"'&,\s<}]{8,}",
    re.UNICODE,
)
# A bare JWT (an Entra ID token, a web identity token) wherever it appears: header.payload.signature, base64url.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*", re.ASCII)
# A SAS signature (sig=) and a storage account key (AccountKey= in a connection string).
_SAS_SIG = re.compile(r"(?i)([?&;\s\"']sig=)[^&\s\"'<;]+", re.UNICODE)
_ACCOUNT_KEY = re.compile(r"(?i)(AccountKey=)[^;\s\"'<]+", re.UNICODE)
# The managed identity endpoint's header (App Service / Functions: X-IDENTITY-HEADER; older: secret), as a header
# dump or a dict repr prints it; the header value is a credential for the identity endpoint.
_IDENTITY_HEADER = re.compile(
    r"(?i)([\"']?(?:x-identity-header|identity_header|msi_secret)[\"']?\s*[:=]\s*[\"']?)[^\"',\s}]+", re.UNICODE
)
# STS answers (XML) and JSON bodies that carry credentials, as botocore's DEBUG log prints them.
_SECRET_XML = re.compile(r"(<(SecretAccessKey|SessionToken|WebIdentityToken)>)[^<]+(</)")
_SECRET_JSON = re.compile(
    r'(?i)("(?:value|access_token|refresh_token|SecretAccessKey|SessionToken)"\s*:\s*")[^"]{8,}"', re.UNICODE
)

_lock = threading.Lock()
_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that ``redact`` removes it wherever it appears, also URL-encoded (in a query string
    or form body) and JSON-escaped (in a JSON body or repr). Short values are ignored."""
    if value and len(value) >= 8:
        forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1],
                 json.dumps(value, ensure_ascii=False)[1:-1]}
        with _lock:
            _known_secrets.update(forms)


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
    text = _JWT.sub("[REDACTED-JWT]", text)
    text = _SAS_SIG.sub(lambda m: m.group(1) + "[REDACTED]", text)
    text = _ACCOUNT_KEY.sub(lambda m: m.group(1) + "[REDACTED]", text)
    text = _IDENTITY_HEADER.sub(lambda m: m.group(1) + "[REDACTED]", text)
    text = _SECRET_XML.sub(lambda m: m.group(1) + "[REDACTED]" + m.group(3), text)
    text = _SECRET_JSON.sub(lambda m: m.group(1) + '[REDACTED]"', text)
    return _SECRET_PARAMS.sub(lambda m: m.group(1) + "[REDACTED]", text)


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Rewrite a record's message, exception and stack text through ``redact``, in place."""
    if getattr(record, "_redacted", False):
        return record
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
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._redacted = True  # redact once, however many filters see it
    return record


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and exception text) through ``redact`` before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


class _RedactingFactory:
    """A log record factory that redacts every record as it is made, whatever logger made it and wherever it goes:
    loggers that do not propagate to the root (their own handlers), and handlers added after start-up."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(self.inner(*args, **kwargs))


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
    """Redact every record (a record factory: every logger, propagating or not) and every handler's output, and
    quieten third-party loggers. Idempotent."""
    root = root or logging.getLogger()
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(factory))
    handlers = list(root.handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers += logger.handlers  # a logger with propagate=False writes only through its own handlers
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
