"""Every error type of the collector, and the one secret-free, one-line description of any error.

Messages name the dependency and the resource and say what to check; they never carry a secret, a token or a full
access key id (``redact`` runs over anything that came from outside). Adapters turn their SDK's exceptions into
these types (``shared.aws`` for botocore, ``shared.azure`` and the sinks for the Azure SDKs), so the collector and the
inventory handle errors without knowing any SDK.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.redaction import redact

MAX_DETAIL_CHARS = 300  # an SDK's or a service's own text, as quoted in one of our messages


def shorten(text: str) -> str:
    """``text`` cut to ``MAX_DETAIL_CHARS``, marked with "..." when cut."""
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."


def first_line(text: str | None) -> str:
    """The first line of an SDK's or a service's message (they append long troubleshooting text or a raw body),
    secret-free and bounded; "no detail" when there is none."""
    stripped = (text or "").strip()
    return shorten(redact(stripped.splitlines()[0])) if stripped else "no detail"


class SettingsError(ValueError):
    """One or more settings are missing or invalid. The message names every one and what is expected."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "Invalid collector settings (fix these app settings or environment variables):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


class CollectorError(Exception):
    """Base class of the collector's own errors. Messages name the dependency and resource, never a secret."""


class SecretError(CollectorError):
    """A secret could not be read (missing, denied, vault unreachable)."""


class SinkError(CollectorError):
    """Rows could not be delivered after the sink's retries. ``undelivered`` says how many; ``rows``, when the sink
    knows which ones (a partially failed upload), holds exactly those, so that only they are kept for a retry."""

    def __init__(self, message: str, undelivered: int, rows: Sequence[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.undelivered = undelivered
        self.rows = rows


class DeliveryDeferredError(SinkError):
    """The sink took nothing this run; everything is in the outbox for the next run."""

    def __init__(self, message: str) -> None:
        super().__init__(message, undelivered=0)


class AwsSignInError(CollectorError):
    """The collector could not sign in to AWS (home role or a member role)."""


class MalformedResponseError(CollectorError):
    """An AWS response lacks a field or carries a value of the wrong shape."""


class IamCallError(CollectorError):
    """An IAM call failed after the SDK's retries. The message is complete: the account, the call, AWS's error code
    and what to check."""


class NoSuchEntityError(IamCallError):
    """The user or key was deleted between listing and reading it: it no longer exists, so it has no record."""


class CredentialReportUnavailableError(CollectorError):
    """The credential report could not be had this run; root keys stay unknown for the account."""


class RunStoppedError(CollectorError):
    """The run stopped at its deadline (shared/deadline.py): no AWS call starts after it."""


class CollectionFailedError(RuntimeError):
    """The run's Status was Failed: raised so that the platform records a failed invocation."""


def describe_error(exc: BaseException) -> str:
    """A clear, secret-free, one-line error for logs and the run record.

    Our own errors are already written to be read (adapters describe the SDK error they replace); anything else is
    a surprise, described by its type and the first line of its message."""
    if isinstance(exc, CollectorError):
        return redact(str(exc))
    return f"{type(exc).__name__}: {first_line(str(exc))}" if str(exc).strip() else type(exc).__name__
