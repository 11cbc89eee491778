"""Keeping secrets out of every log line, exception message, record and CLI output.

Two layers: known secret values registered at run time (the AWS secret key, session tokens, the workspace key,
bearer tokens) are replaced wherever they appear, and anything shaped like an AWS access key id is masked to
``AKIA...WXYZ`` even if nobody registered it (AWS error messages quote key ids, e.g. NoSuchEntity).

Known secrets are found in one pass whatever their number (audit finding F3: scanning every registered value cost
10 ms per redaction at ~4,000 account sessions): each registered form is indexed by one 8-character window (its
anchor), and a text is scanned once for anchors, inside the runs of characters a token is made of. The registry is a
run's: ``run_secrets()`` (entered by the composition root) forgets it when the run ends, so a warm worker does not
grow it run after run. benchmarks/bench_redaction.py measures it.

Encodings (audit finding F13): the text is also matched once normalised, percent escapes decoded (either case,
repeatedly: double encoding) and JSON's ``\\/`` unescaped, and each secret's base64 (standard and URL-safe, at any
alignment inside a longer encoding) is registered with it; what matched is cut from the original text.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote_plus

# AWS access key ids: a 4-letter prefix (AKIA long-term, ASIA temporary, ...) and 16 more characters.
_ACCESS_KEY_ID = re.compile(
    r"(?<![A-Z0-9])((?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{4})[A-Z0-9]{8}([A-Z0-9]{4})"
    r"(?![A-Z0-9])"
)
# Authorization headers and bearer tokens that a third-party DEBUG log may print. re.UNICODE where a wider \s only
# redacts more.
_BEARER = re.compile(r"(?i)(bearer\s+|sharedkey\s+[^:\s]+:)[A-Za-z0-9._~+/=-]{8,}", re.UNICODE)
_SECRET_PARAMS = re.compile(
    r"(?i)([\"']?(?:SecretAccessKey|SessionToken|WebIdentityToken|access_token|client_secret|aws_secret_access_key|"
    r"aws_session_token)[\"']?\s*[:=]\s*[\"']?)[^\"'&,\s<}]{8,}",
    re.UNICODE,
)
# A bare JWT (an Entra ID token, a web identity token) wherever it appears: header.payload.signature, base64url.
# re.ASCII: a letter of another script before it is a word boundary too.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*", re.ASCII)
# A SAS signature (sig=, at the text's or a line's start too) and a storage account key (AccountKey= in a connection
# string).
_SAS_SIG = re.compile(r"(?im)((?:^|[?&;\s\"'])sig=)[^&\s\"'<;]+", re.UNICODE)
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

# --- known secrets ---------------------------------------------------------------------------------------------------

_MIN_SECRET = 8  # shorter values are not registered (they would match ordinary text)
_ANCHOR = 8  # every form is found by one window of this many characters
# The characters tokens are made of (base64, base64url, JWT, hex, GUIDs): anchors are windows of these only, so a text
# is scanned only inside its runs of them (ordinary words are shorter than an anchor and are skipped at C speed).
_RUN = re.compile(r"[A-Za-z0-9+/=_.~-]{8,}", re.ASCII)  # {_ANCHOR,}
# One escape of the normalisation: an ASCII percent escape (either case) or JSON's escaped slash.
_ESCAPE = re.compile(r"%([0-7][0-9A-Fa-f])|\\/", re.ASCII)
_DECODE_ROUNDS = 4  # %25252F is decoded three times; a bound, so a hostile text cannot make it loop long


class _SecretIndex:
    """Every registered form, indexed by its anchor: the last window of ``_ANCHOR`` token characters in it (the end
    of a token is its random part; session tokens share long prefixes). Forms with no such window (rare: a secret
    of spaces and punctuation) are searched for one by one."""

    def __init__(self) -> None:
        self.forms: set[str] = set()
        self.anchors: dict[str, list[tuple[str, int]]] = {}
        self.odd: list[str] = []

    def add(self, form: str) -> None:
        if form in self.forms:
            return
        self.forms.add(form)
        window = None
        for run in _RUN.finditer(form):
            window = run.end() - _ANCHOR
        if window is None:
            self.odd.append(form)
        else:
            self.anchors.setdefault(form[window:window + _ANCHOR], []).append((form, window))

    def spans(self, text: str) -> list[tuple[int, int]]:
        found = []
        anchors = self.anchors
        if anchors:
            for run in _RUN.finditer(text):
                for i in range(run.start(), run.end() - _ANCHOR + 1):
                    hits = anchors.get(text[i:i + _ANCHOR])
                    if hits:
                        found += [(i - k, i - k + len(f)) for f, k in hits if i >= k and text.startswith(f, i - k)]
        for form in self.odd:
            at = text.find(form)
            while at != -1:
                found.append((at, at + len(form)))
                at = text.find(form, at + 1)
        return found


_lock = threading.Lock()
_index = _SecretIndex()
_runs = 0  # runs in progress in this process (run_secrets): the registry is forgotten when the last one ends


def _forms(value: str) -> set[str]:
    """The forms a secret is registered in: itself, form-encoded (a space as +), JSON-escaped, and the part of its
    base64 (standard and URL-safe) that any encoding containing it has, whatever the bytes around it. Percent and
    JSON slash escapes need no form: the text is normalised before matching."""
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    if " " in value:  # form encoding writes a space as +, which the normalisation does not undo
        forms.add(quote_plus(value))
    raw = value.encode("utf-8")
    for offset in range(3):  # the secret's first byte at each position of a 3-byte base64 group
        first = -(-8 * offset // 6)  # the first character made of the secret's bits only
        last = 8 * (offset + len(raw)) // 6  # and the end of the last one
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(b"\0" * offset + raw).decode("ascii")[first:last]
            if len(core) >= _MIN_SECRET:
                forms.add(core)
    return {f for f in forms if len(f) >= _MIN_SECRET}


def register_secret(value: str | None) -> None:
    """Remember a secret value so that ``redact`` removes it wherever it appears, in the forms ``_forms`` lists and
    percent- or JSON-escaped. Short values are ignored. Forgotten when the run ends (``run_secrets``)."""
    if value and len(value) >= _MIN_SECRET:
        forms = _forms(value)
        with _lock:
            for form in forms:
                _index.add(form)


def forget_run_secrets() -> None:
    """Forget every registered secret (the run that registered them has ended)."""
    global _index
    with _lock:
        _index = _SecretIndex()


@contextmanager
def run_secrets() -> Iterator[None]:
    """One run's registry: what the run registers is forgotten when it ends (when the last of overlapping runs in the
    process ends), so the registry stays the size of one run in a warm worker."""
    global _runs
    with _lock:
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            last = _runs == 0
        if last:
            forget_run_secrets()


def known_secret_count() -> int:
    """How many forms are registered (for tests and the benchmark)."""
    return len(_index.forms)


def _normalised(text: str) -> tuple[str, list[int] | None]:
    """The text with ASCII percent escapes decoded (up to ``_DECODE_ROUNDS`` times) and ``\\/`` unescaped, and for
    each of its positions (and its end) the position in ``text`` it came from; (text, None) when nothing changes."""
    if "%" not in text and "\\/" not in text:
        return text, None
    current, origin = text, None
    for _ in range(_DECODE_ROUNDS):
        pieces: list[str] = []
        position: list[int] = []
        last = 0
        for match in _ESCAPE.finditer(current):
            start, end = match.span()
            pieces += (current[last:start], chr(int(match.group(1), 16)) if match.group(1) else "/")
            position += range(last, start)
            position.append(start)
            last = end
        if not pieces:
            break
        pieces.append(current[last:])
        position += range(last, len(current) + 1)
        origin = position if origin is None else [origin[p] for p in position]
        current = "".join(pieces)
    return current, origin


def _redact_known(text: str) -> str:
    index = _index
    if not index.forms:
        return text
    spans = index.spans(text)
    normalised, origin = _normalised(text)
    if origin is not None:
        spans += [(origin[start], origin[end]) for start, end in index.spans(normalised)]
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end in sorted(spans):
        if end <= last:
            continue
        out += (text[last:max(start, last)], "" if start < last else "[REDACTED]")
        last = end
    out.append(text[last:])
    return "".join(out)


def mask_access_key_id(key_id: str) -> str:
    """``AKIAIOSFODNN7EXAMPLE`` -> ``AKIA...MPLE``: enough to recognise a key, not enough to use it."""
    return f"{key_id[:4]}...{key_id[-4:]}" if len(key_id) >= 12 else "****"


def redact(text: str) -> str:
    text = _redact_known(text)
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
    """Rewrite a record's message, exception and stack text through ``redact``, in place.

    Done once per message: the record keeps the message it was redacted to, and is redacted again when its message,
    arguments or exception changed since. ``logging.makeLogRecord`` calls the record factory on an empty record and
    then sets the message: a plain "already redacted" mark let that message through every filter."""
    if (getattr(record, "_redacted", None) is record.msg and record.args is None and record.exc_info is None
            and isinstance(record.msg, str)):
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
    record._redacted = record.msg  # the message as redacted: a filter seeing the same message skips it
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
