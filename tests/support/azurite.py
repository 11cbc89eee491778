"""Azurite (the Azure Storage emulator, from the npm registry) over HTTPS with OAuth, for identity-based blob tests.

Azurite's "basic" OAuth checks a bearer token's issuer, audience and expiry, not its signature: enough to prove
the code sends an Entra ID token and never a shared key or connection string.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trustme
from azure.core.credentials import AccessToken

ROOT = Path(__file__).resolve().parents[2]
AZURITE_BLOB = ROOT / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"  # Azurite's built-in account


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def azurite_blob(cert_pem: Path, key_pem: Path, workdir: Path) -> Iterator[str]:
    """Start azurite-blob on 127.0.0.1 (HTTPS, OAuth); yield the blob service URL."""
    if not AZURITE_BLOB.exists():
        raise RuntimeError(
            f"Azurite is not installed at {AZURITE_BLOB}: run `make test` (or `npm install`) in {ROOT} first"
        )
    port = _free_port()
    process = subprocess.Popen(
        [str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--oauth", "basic",
         "--cert", str(cert_pem), "--key", str(key_pem), "--location", str(workdir), "--silent",
         "--skipApiVersionCheck"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    err = process.stderr.read().decode() if process.stderr else ""
                    raise RuntimeError(f"Azurite did not start: {err}") from None
                time.sleep(0.2)
        yield f"https://127.0.0.1:{port}/{ACCOUNT}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


class StorageTokenCredential:
    """Issues Entra-ID-shaped tokens for Azure Storage, as the managed identity would (unsigned: Azurite does not
    check signatures)."""

    def __init__(self, audience: str = "https://storage.azure.com") -> None:
        self.requests: list[tuple[str, ...]] = []
        self.audience = audience

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.requests.append(scopes)
        now = int(time.time())
        claims = {"aud": self.audience, "iss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
                  "iat": now - 60, "nbf": now - 60, "exp": now + 3600, "oid": "00000000-0000-0000-0000-000000000001",
                  "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47"}
        token = f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{_b64(claims)}.c2lnbmF0dXJl"
        return AccessToken(token, now + 3600)

    def close(self) -> None:
        pass


@contextmanager
def azurite_blob_with_own_ca(folder: Path) -> Iterator[tuple[str, str]]:
    """Azurite over HTTPS with a certificate from a CA of its own (trustme) kept in ``folder``; yields
    (blob service URL, CA bundle path) for the clients' test-only CA option."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    with azurite_blob(folder / "cert.pem", folder / "key.pem", folder / "data") as url:
        yield url, str(folder / "ca.pem")
