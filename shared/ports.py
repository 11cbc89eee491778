"""The small interfaces (ports) the collector is built from. Real adapters are chosen in the composition root
(``shared.composition``); tests pass fakes. Nothing here reads the environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from shared.records import Table


class SecretProvider(Protocol):
    """Returns secret values by name (Key Vault in production)."""

    def get_secret(self, name: str) -> str: ...


class WebIdentityTokenProvider(Protocol):
    """Returns an OIDC token for AWS AssumeRoleWithWebIdentity (the managed identity's token in production)."""

    def get_token(self) -> str: ...


class Sink(Protocol):
    """Delivers rows (JSON-ready dicts, as ``Record.to_row()`` makes them) to one table.

    ``send`` either delivers every row or raises ``SinkError``; it never drops rows silently.
    """

    name: str

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


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
