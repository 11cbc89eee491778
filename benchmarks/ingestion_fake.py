"""The benchmark's own Azure side: a managed-identity endpoint and a Logs Ingestion endpoint, HTTPS on 127.0.0.1 with
a trustme CA (the product's clients trust it through the test-only ``ClientOptions.ca_bundle``; TLS verification
stays on). Rows are counted, not kept, so the benchmark's process stays small. Imports nothing from the project.
"""

from __future__ import annotations

import gzip
import json
import secrets
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import trustme

MONITOR_RESOURCE = "https://monitor.azure.com"


class _Server:
    def __init__(self, context: ssl.SSLContext, handle: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handle)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://localhost:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class IngestionFakes:
    """``identity`` answers the App Service managed-identity protocol (api-version 2019-08-01) with random tokens;
    ``ingestion`` takes gzip JSON arrays with one of those tokens, answers 204 and counts rows per stream."""

    def __init__(self, directory: Path) -> None:
        ca = trustme.CA()
        self.ca_bundle = str(directory / "bench-azure-ca.pem")
        ca.cert_pem.write_to_path(self.ca_bundle)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)

        self.identity_header = secrets.token_urlsafe(24)
        self.received: Counter[str] = Counter()
        self.posts = 0
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        fakes = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, payload: object = None) -> None:
                body = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # the managed-identity endpoint
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                if self.headers.get("X-IDENTITY-HEADER") != fakes.identity_header or not query.get("resource"):
                    self._answer(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER or resource missing"})
                    return
                token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(48)
                with fakes._lock:
                    fakes._tokens.add(token)
                self._answer(200, {"access_token": token, "expires_on": str(int(time.time()) + 3600),
                                   "resource": query["resource"], "token_type": "Bearer"})

            def do_POST(self) -> None:  # the Logs Ingestion endpoint: /dataCollectionRules/<rule>/streams/<stream>
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                parts = [p for p in urlsplit(self.path).path.split("/") if p]
                with fakes._lock:
                    known = token in fakes._tokens
                if not known or len(parts) != 4 or parts[0] != "dataCollectionRules":
                    self._answer(401 if not known else 404, {"error": {"code": "Rejected", "message": self.path}})
                    return
                rows = json.loads(gzip.decompress(body))
                with fakes._lock:
                    fakes.received[parts[3]] += len(rows)
                    fakes.posts += 1
                self._answer(204)

        self._identity = _Server(context, Handler)
        self._ingestion = _Server(context, Handler)
        self.ingestion_url = self._ingestion.url

    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": f"{self._identity.url}/msi/token", "IDENTITY_HEADER": self.identity_header}

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self.posts = 0

    def close(self) -> None:
        self._ingestion.close()
        self._identity.close()
