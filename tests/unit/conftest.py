"""The fast tier: pure logic and in-memory fakes. A unit test that opens a network connection or starts a process
fails here, so `make test-fast` stays fast and needs nothing but Python (tests that need moto, Azurite, the HTTPS fakes,
node or a subprocess belong in tests/integration/ or tests/contract/)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


class TierError(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _no_network_no_subprocess(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse_connect(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        raise TierError("a unit test connected to the network: move it to tests/integration/")

    def refuse_process(*args: Any, **kwargs: Any) -> None:
        raise TierError("a unit test started a process: move it to tests/integration/ or tests/contract/")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_connect)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse_process)
    yield
