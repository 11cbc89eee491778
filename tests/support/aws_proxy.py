"""A recording, fault-injecting HTTP proxy in front of moto (server mode), on 127.0.0.1.

It lets end-to-end tests see exactly which AWS calls were made, with which credentials, and make chosen calls fail
the way AWS fails (AccessDenied, Throttling, 5xx, dropped connections, malformed bodies).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Call:
    action: str
    params: dict[str, Any]
    access_key_id: str  # the key id that signed the request ("" if unsigned)
    host: str
    at: float = field(default_factory=time.monotonic)  # when the proxy received it


@dataclass
class Fault:
    status: int = 400
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    drop_connection: bool = False
    delay: float = 0.0  # seconds before answering (or dropping): longer than the client's read timeout = a timeout
    declared_length: int | None = None  # a Content-Length larger than the body, then close: a truncated answer


Rule = Callable[[Call], Fault | None]


def aws_error(code: str, message: str, status: int = 403, sender: str = "Sender") -> Fault:
    body = (
        f'<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>{sender}</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-1</RequestId></ErrorResponse>"
    )
    return Fault(status=status, body=body, headers={"Content-Type": "text/xml"})


_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")


class AwsProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.calls: list[Call] = []
        self.response_bodies: list[bytes] = []  # what AWS answered, to find every secret it handed out
        self.rules: list[Rule] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                target = self.headers.get("X-Amz-Target", "")
                if target:  # JSON protocol (Organizations): the action is in a header, the parameters in JSON
                    action, params = target.rsplit(".", 1)[-1], json.loads(body or b"{}")
                else:  # query protocol (IAM, STS): form-encoded Action and parameters
                    params = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
                    action = params.get("Action", "")
                match = _CREDENTIAL.search(self.headers.get("Authorization", ""))
                call = Call(action, params, match.group(1) if match else "", self.headers["Host"])
                with proxy._lock:
                    proxy.calls.append(call)
                    rules = list(proxy.rules)
                for rule in rules:
                    fault = rule(call)
                    if fault is not None:
                        if fault.delay:
                            time.sleep(fault.delay)
                        if fault.drop_connection:
                            self.close_connection = True
                            with contextlib.suppress(OSError):  # the client may have given up already
                                self.connection.shutdown(2)
                            return
                        payload = fault.body.encode()
                        self.send_response(fault.status)
                        for k, v in fault.headers.items():
                            self.send_header(k, v)
                        self.send_header("Content-Length", str(fault.declared_length or len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        if fault.declared_length is not None:
                            self.close_connection = True
                        return
                conn = http.client.HTTPConnection(*proxy._upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request("POST", self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                with proxy._lock:
                    proxy.response_bodies.append(data)
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> AwsProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def actions(self) -> list[str]:
        with self._lock:
            return [c.action for c in self.calls]
