"""Small local HTTPS fakes of the Azure services the collector calls, for the real SDK clients to talk to.

Each fake is an ``http.server`` in a thread on 127.0.0.1 with a certificate from a trustme CA; clients trust that CA
through ``ClientOptions.ca_bundle`` (test-only) and nothing else changes: TLS verification stays on.

- ``ManagedIdentityFake``: the App Service / Functions managed identity endpoint (``IDENTITY_ENDPOINT`` +
  ``IDENTITY_HEADER``, api-version 2019-08-01): checks ``X-IDENTITY-HEADER``, issues one random token per resource.
- ``KeyVaultFake``: ``GET /secrets/<name>``; an unauthenticated request gets Key Vault's 401 challenge; a bearer
  token must be one the identity fake issued for ``https://vault.azure.net``; 404 ``SecretNotFound``; 403 mode.
- ``LogsIngestionFake``: ``POST /dataCollectionRules/<rule>/streams/<stream>`` at a data collection rule's own Logs
  Ingestion endpoint (``https://<rule name>-<suffix>.<region>-1.ingest.monitor.azure.com``, the form the deployment
  gives LOGS_INGESTION_ENDPOINT; tests route that host to the fake): gzip JSON, bearer token for
  ``https://monitor.azure.com``, 204; as strict as the service about the data collection rule declared in infra/
  (tests/support/dcr.py): 400 for an unknown rule id or stream, an undeclared column or a value of the wrong type,
  413 ``ContentLengthLimitExceeded`` for a body over 1 MiB; scripted faults (429 + Retry-After, ...).
- ``DataCollectorFake``: ``POST /api/logs``: recomputes the SharedKey signature from the raw body bytes and the
  headers, 200; scripted faults.

The owner digests' two services (Log Analytics query, Communication Services e-mail) are in
tests/support/notify_fakes.py, on the same TLS and managed identity fakes.

Test modules use the fixtures by importing them: ``from tests.support.azure_fakes import azure_fixture,
fake_tls_fixture``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import trustme

from shared.composition import ClientOptions
from shared.config.endpoints import EndpointPolicy
from tests.support.dcr import DataCollectionRule, declared_rule

VAULT_RESOURCE = "https://vault.azure.net"
MONITOR_RESOURCE = "https://monitor.azure.com"
STORAGE_RESOURCE = "https://storage.azure.com"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
WORKSPACE_ID = "0b6a8f5e-3c1d-4e2f-9a7b-6c5d4e3f2a1b"
DATA_COLLECTOR_DOMAIN = "ods.localhost"  # a valid LOG_ANALYTICS_DOMAIN; tests route its hosts to 127.0.0.1
DATA_COLLECTOR_HOST = f"{WORKSPACE_ID}.{DATA_COLLECTOR_DOMAIN}"
# The Logs Ingestion endpoint of a data collection rule of kind Direct (infra/modules/monitoring.bicep), in the form
# Azure gives it: <rule name>-<suffix>.<region>-1.ingest.monitor.azure.com. On the production allow-list
# (shared/config/endpoints.py): the sink takes it without any test-only opt-in; tests route the name to the fake.
DCR_INGESTION_HOST = "dcr-k7x2q9m4abcde-a1b2.swedencentral-1.ingest.monitor.azure.com"
# The immutable ids the deployed rule has in the tests and benchmarks (Azure assigns one at deployment).
RULE_ID = "dcr-00112233445566778899aabbccddeeff"
RULE_IDS = frozenset({RULE_ID, "dcr-0123456789abcdef0123456789abcdef"})
# The owner digests' services (tests/support/notify_fakes.py), under the names the certificate below covers.
LOG_ANALYTICS_QUERY_HOST = "api.loganalytics.io"  # azure-monitor-query's own endpoint
# A Communication Services endpoint in the form Azure gives it (NOTIFY_EMAIL_ENDPOINT); tests route it to the fake.
COMMUNICATION_HOST = "acs-digests.unitedstates.communication.azure.com"
MAX_BODY_BYTES = 1024 * 1024  # the Logs Ingestion API's limit on one call's body, as sent (gzip)
# The fakes' hosts, allowed to receive tokens in tests only (shared/config/endpoints.py), via ClientOptions.endpoints.
FAKE_HOSTS = EndpointPolicy(frozenset({"127.0.0.1", "localhost", DATA_COLLECTOR_DOMAIN}))


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # transport faults: wait this long first (a client with a shorter read timeout gives up); then, if ``drop``,
    # close the connection without answering; ``declared_length`` announces more bytes than ``body`` (truncated)
    delay: float = 0.0
    drop: bool = False
    declared_length: int | None = None

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


@dataclass
class Request:
    method: str
    path: str  # without the query
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes


class Tls:
    """One CA and one server certificate for every fake (localhost, 127.0.0.1, the data collector host, the rule's
    Logs Ingestion host)."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.server_cert = self.ca.issue_cert("localhost", "127.0.0.1", DATA_COLLECTOR_HOST, DCR_INGESTION_HOST,
                                              LOG_ANALYTICS_QUERY_HOST, COMMUNICATION_HOST)
        self.ca_bundle = str(directory / "fake-azure-ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_bundle)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(context)
        return context


class FakeServer:
    """An HTTPS server on 127.0.0.1 that hands every request to ``handle`` and records it."""

    def __init__(self, tls: Tls) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                request = Request(self.command, unquote(parts.path), query,
                                  {k.lower(): v for k, v in self.headers.items()}, body)
                with fake.lock:
                    fake.requests.append(request)
                try:
                    response = fake.handle(request)
                except Exception as exc:  # a bug in a fake must show as a 500, not hang the client
                    response = Response.json(500, {"error": {"code": "FakeError", "message": repr(exc)}})
                if response.delay:
                    time.sleep(response.delay)
                if response.drop:
                    self.close_connection = True
                    return
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(response.declared_length or len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)
                if response.declared_length is not None:
                    self.close_connection = True  # the rest of the announced body never comes

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = tls.server_context().wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"https://localhost:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Faults:
    """Scripted responses served before the normal ones, e.g. one 429 with Retry-After then success."""

    def __init__(self) -> None:
        self._queue: list[Response] = []
        self._lock = threading.Lock()

    def add(self, *responses: Response) -> None:
        with self._lock:
            self._queue.extend(responses)

    def next(self) -> Response | None:
        with self._lock:
            return self._queue.pop(0) if self._queue else None


class ManagedIdentityFake(FakeServer):
    """The App Service managed identity endpoint (api-version 2019-08-01)."""

    def __init__(self, tls: Tls) -> None:
        super().__init__(tls)
        self.identity_header = secrets.token_urlsafe(24)
        self.endpoint = f"{self.url}/msi/token"
        self.issued: dict[str, list[str]] = {}  # resource -> tokens issued for it

    def tokens(self) -> list[str]:
        with self.lock:
            return [t for tokens in self.issued.values() for t in tokens]

    def is_valid(self, token: str, resource: str) -> bool:
        with self.lock:
            return token in self.issued.get(resource, [])

    def handle(self, request: Request) -> Response:
        if request.path != "/msi/token" or request.method != "GET":
            return Response.json(404, {"statusCode": 404, "message": "not found"})
        if request.headers.get("x-identity-header") != self.identity_header:
            return Response.json(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER missing or wrong"})
        if request.query.get("api-version") != "2019-08-01" or not request.query.get("resource"):
            return Response.json(400, {"statusCode": 400, "message": "api-version 2019-08-01 and resource required"})
        resource = request.query["resource"]
        if resource == STORAGE_RESOURCE:  # Azurite ("basic" OAuth) reads the claims: a decodable, unsigned JWT
            token = storage_token()
        else:  # JWT-shaped, random: easy to spot if it ever leaks into a log line
            token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(48) + "." + secrets.token_urlsafe(32)
        with self.lock:
            self.issued.setdefault(resource, []).append(token)
        return Response.json(200, {
            "access_token": token,
            "expires_on": str(int(time.time()) + 3600),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": request.query.get("client_id", "00000000-0000-0000-0000-000000000001"),
        })


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    return value[len("Bearer "):] if value.startswith("Bearer ") else None


class KeyVaultFake(FakeServer):
    def __init__(self, tls: Tls, identity: ManagedIdentityFake) -> None:
        super().__init__(tls)
        self.identity = identity
        self.secrets: dict[str, str] = {}
        self.forbidden = False
        self.challenges = 0
        self.reads: list[str] = []  # secret names served, in order

    def handle(self, request: Request) -> Response:
        token = _bearer(request)
        if token is None:
            self.challenges += 1
            challenge = (f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}", '
                         f'resource="{VAULT_RESOURCE}"')
            return Response.json(401, {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a "
                                                 "Bearer or PoP token."}}, {"WWW-Authenticate": challenge})
        if not self.identity.is_valid(token, VAULT_RESOURCE):
            return Response.json(401, {"error": {"code": "Unauthorized", "message": "AKV10032: Invalid issuer."}})
        parts = [p for p in request.path.split("/") if p]
        if request.method != "GET" or len(parts) not in (2, 3) or parts[0] != "secrets":
            return Response.json(400, {"error": {"code": "BadParameter", "message": "unsupported request"}})
        if not request.query.get("api-version"):
            return Response.json(400, {"error": {"code": "BadParameter", "message": "api-version missing"}})
        if self.forbidden:
            return Response.json(403, {"error": {
                "code": "Forbidden",
                "message": "Caller is not authorized to perform action on resource. Action: "
                           "'Microsoft.KeyVault/vaults/secrets/getSecret/action'",
                "innererror": {"code": "ForbiddenByRbac"},
            }})
        name = parts[1]
        if name not in self.secrets:
            return Response.json(404, {"error": {
                "code": "SecretNotFound",
                "message": f"A secret with (name/id) {name} was not found in this key vault.",
            }})
        with self.lock:
            self.reads.append(name)
        version = "0123456789abcdef0123456789abcdef"
        now = int(time.time())
        return Response.json(200, {
            "value": self.secrets[name],
            "id": f"{self.url}/secrets/{name}/{version}",
            "attributes": {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable"},
            "tags": {},
        })


@dataclass
class Upload:
    rule_id: str
    stream: str
    rows: list[dict[str, Any]]
    gzip_bytes: int


def _ingestion_error(status: int, code: str, message: str) -> Response:
    """The Logs Ingestion API's error shape: {"error": {"code", "message"}}, the code also in x-ms-error-code."""
    return Response.json(status, {"error": {"code": code, "message": message}}, {"x-ms-error-code": code})


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


# Whether a JSON value fits a declared column type (null fits every column).
_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and -(2**31) <= v < 2**31,
    "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "real": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "datetime": lambda v: isinstance(v, str) and _is_datetime(v),
    "dynamic": lambda v: True,
}


def schema_problem(rule: DataCollectionRule, stream: str, rows: list[Any]) -> str | None:
    """Why the rule's stream does not accept these rows, or None."""
    declared = rule.streams[stream].columns
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"Record {index} is not a JSON object."
        for column, value in row.items():
            if column not in declared:
                return f"Record {index}: column '{column}' is not declared in stream '{stream}'."
            if value is not None and not _TYPE_CHECKS[declared[column]](value):
                return (f"Record {index}: value {json.dumps(value)[:60]} of column '{column}' is not of the declared "
                        f"type '{declared[column]}'.")
    return None


class LogsIngestionFake(FakeServer):
    """The Logs Ingestion API of the data collection rule in infra/. Only the content-length error's code and message
    are the service's own words (seen in the wild: 413 ContentLengthLimitExceeded); the 400 codes name the fault."""

    def __init__(
        self, tls: Tls, identity: ManagedIdentityFake, rule_ids: frozenset[str] = RULE_IDS,
        rule: DataCollectionRule | None = None,
    ) -> None:
        super().__init__(tls)
        self.identity = identity
        self.faults = Faults()
        self.uploads: list[Upload] = []
        self.reject: Callable[[str, list[dict[str, Any]]], Response | None] = lambda stream, rows: None
        self.rule_ids = rule_ids
        self.rule = rule or declared_rule()
        self.local_url = self.url  # https://localhost:<port>, the fake itself
        self.url = f"https://{DCR_INGESTION_HOST}"  # what LOGS_INGESTION_ENDPOINT is in Azure: the rule's own endpoint

    def rows(self, stream: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for u in self.uploads if u.stream == stream for r in u.rows]

    def handle(self, request: Request) -> Response:
        token = _bearer(request)
        if token is None or not self.identity.is_valid(token, MONITOR_RESOURCE):
            return Response.json(401, {"error": {"code": "InvalidToken", "message": "bearer token missing or wrong"}})
        parts = [p for p in request.path.split("/") if p]
        if request.method != "POST" or len(parts) != 4 or parts[0] != "dataCollectionRules" or parts[2] != "streams":
            return Response.json(404, {"error": {"code": "NotFound", "message": "unknown path"}})
        if not request.query.get("api-version"):
            return Response.json(400, {"error": {"code": "MissingApiVersion", "message": "api-version"}})
        if len(request.body) > MAX_BODY_BYTES:
            size = len(request.body)
            return _ingestion_error(413, "ContentLengthLimitExceeded", f"Maximum allowed content length: "
                                    f"{MAX_BODY_BYTES} bytes (1 MB). Provided content length: {size} bytes.")
        rule_id, stream = parts[1], unquote(parts[3])
        if rule_id not in self.rule_ids:
            return _ingestion_error(400, "InvalidDataCollectionRuleId",
                                    f"Data collection rule with immutable Id '{rule_id}' not found.")
        if stream not in self.rule.streams:
            return _ingestion_error(400, "InvalidStream", f"Stream '{stream}' is not declared in data collection "
                                    f"rule '{rule_id}' (streams: {', '.join(sorted(self.rule.streams))}).")
        if request.headers.get("content-encoding") != "gzip":
            return Response.json(400, {"error": {"code": "InvalidContentEncoding", "message": "expected gzip"}})
        rows = json.loads(gzip.decompress(request.body))
        if not isinstance(rows, list):
            return Response.json(400, {"error": {"code": "InvalidPayload", "message": "expected a JSON array"}})
        problem = schema_problem(self.rule, stream, rows)
        if problem is not None:
            return _ingestion_error(400, "InvalidPayload", problem)
        fault = self.faults.next() or self.reject(stream, rows)
        if fault is not None:
            return fault
        with self.lock:
            self.uploads.append(Upload(rule_id, stream, rows, len(request.body)))
        return Response(204)


@dataclass
class Post:
    log_type: str
    rows: list[dict[str, Any]]
    body_bytes: int


class DataCollectorFake(FakeServer):
    MAX_BODY = 30 * 1024 * 1024  # the service's documented per-post limit (generous reading)

    def __init__(self, tls: Tls, workspace_id: str = WORKSPACE_ID, shared_key: str | None = None) -> None:
        super().__init__(tls)
        self.workspace_id = workspace_id
        self.shared_key = shared_key or base64.b64encode(secrets.token_bytes(64)).decode()
        self.faults = Faults()
        self.posts: list[Post] = []
        self.bad_signatures = 0

    def rows(self, log_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for p in self.posts if p.log_type == log_type for r in p.rows]

    def expected_signature(self, request: Request) -> str:
        to_sign = (f"POST\n{len(request.body)}\n{request.headers.get('content-type', '')}\n"
                   f"x-ms-date:{request.headers.get('x-ms-date', '')}\n/api/logs")
        digest = hmac.new(base64.b64decode(self.shared_key), to_sign.encode("utf-8"), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def handle(self, request: Request) -> Response:
        host = request.headers.get("host", "")
        if host != DATA_COLLECTOR_HOST or request.method != "POST" or request.path != "/api/logs":
            return Response.json(404, {"Error": "NotFound", "Message": f"no such endpoint {host}{request.path}"})
        if request.query.get("api-version") != "2016-04-01":
            return Response.json(400, {"Error": "InvalidApiVersion", "Message": "api-version must be 2016-04-01"})
        if int(request.headers.get("content-length", "-1")) != len(request.body):
            return Response.json(400, {"Error": "InvalidContentLength", "Message": "length mismatch"})
        expected = f"SharedKey {self.workspace_id}:{self.expected_signature(request)}"
        if not hmac.compare_digest(request.headers.get("authorization", ""), expected):
            self.bad_signatures += 1
            return Response.json(403, {"Error": "InvalidAuthorization", "Message": "An invalid scheme was specified"})
        if request.headers.get("content-type") != "application/json":
            return Response.json(400, {"Error": "InvalidContentType", "Message": "application/json expected"})
        log_type = request.headers.get("log-type", "")
        if not log_type.replace("_", "").isalnum() or len(log_type) > 100:
            return Response.json(400, {"Error": "InvalidLogType", "Message": "bad Log-Type"})
        if request.headers.get("time-generated-field") != "TimeGenerated":
            return Response.json(400, {"Error": "InvalidTimeGeneratedField", "Message": "expected TimeGenerated"})
        if len(request.body) > self.MAX_BODY:
            return Response.json(413, {"Error": "InvalidDataSize", "Message": "more than 30 MB"})
        fault = self.faults.next()
        if fault is not None:
            return fault
        rows = json.loads(request.body.decode("utf-8"))
        with self.lock:
            self.posts.append(Post(log_type, rows, len(request.body)))
        return Response(200)


def route_host_to(host: str, port: int) -> Callable[..., Any]:
    """A ``socket.getaddrinfo`` that resolves ``host`` (any port) to 127.0.0.1:``port``, like a hosts-file entry plus
    a port forward; every other name resolves as the ``getaddrinfo`` in place when this is made (so routes chain).
    TLS still checks the certificate against ``host``."""
    real = socket.getaddrinfo

    def getaddrinfo(name: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
        if name == host:
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]
        return real(name, service, *args, **kwargs)

    return getaddrinfo


@dataclass
class AzureFakes:
    tls: Tls
    identity: ManagedIdentityFake
    vault: KeyVaultFake
    ingestion: LogsIngestionFake
    collector: DataCollectorFake

    def close(self) -> None:
        for server in (self.identity, self.vault, self.ingestion, self.collector):
            server.close()


    def options(self, *, verify_challenge_resource: bool = False) -> ClientOptions:
        """The test-only client options: trust the fakes' CA; the vault on localhost is not *.vault.azure.net; tokens
        may go to the fakes' hosts (opted in here, through the composition root, never through a setting)."""
        return ClientOptions(ca_bundle=self.tls.ca_bundle, verify_challenge_resource=verify_challenge_resource,
                             endpoints=FAKE_HOSTS)


# Environment variables that would make azure-identity pick another managed identity flavour or another account.
_IDENTITY_ENV = ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "AZURE_CLIENT_ID",
                 "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
                 "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "https_proxy")


@pytest.fixture(scope="session", name="fake_tls")
def fake_tls_fixture(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return Tls(tmp_path_factory.mktemp("fake-azure-tls"))


@pytest.fixture(name="azure")
def azure_fixture(fake_tls: Tls, monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureFakes]:
    """Fresh fakes for one test, with the managed identity environment of App Service / Functions pointing at the
    identity fake, and the data collector host and the rule's Logs Ingestion host routed to their fakes."""
    identity = ManagedIdentityFake(fake_tls)
    fakes = AzureFakes(fake_tls, identity, KeyVaultFake(fake_tls, identity), LogsIngestionFake(fake_tls, identity),
                       DataCollectorFake(fake_tls))
    for name in _IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", identity.identity_header)
    monkeypatch.setattr(socket, "getaddrinfo", route_host_to(DATA_COLLECTOR_HOST, fakes.collector.port))
    monkeypatch.setattr(socket, "getaddrinfo", route_host_to(DCR_INGESTION_HOST, fakes.ingestion.port))
    try:
        yield fakes
    finally:
        fakes.close()


def storage_token() -> str:
    """A token Azurite's basic OAuth accepts (issuer, audience, expiry; no signature check), unique per call."""
    from tests.support.azurite import StorageTokenCredential

    token = StorageTokenCredential().get_token(f"{STORAGE_RESOURCE}/.default").token
    return token.rsplit(".", 1)[0] + "." + secrets.token_urlsafe(24)


class BlobProxy(FakeServer):
    """HTTPS in front of Azurite: forwards every request, and serves ``fault`` instead to the requests it matches
    (a 503 from the storage account, a lease conflict), counting them. Trusted through the same test-only CA."""

    def __init__(self, tls: Tls, upstream: str) -> None:
        super().__init__(tls)
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 443
        self.account_path = parts.path.rstrip("/")
        self.url = f"https://127.0.0.1:{self.port}{self.account_path}"
        self._context = ssl.create_default_context(cafile=tls.ca_bundle)
        self.fault: Response | None = None
        self.when: Callable[[Request], bool] = lambda request: True
        self.faulted = 0

    def handle(self, request: Request) -> Response:
        if self.fault is not None and self.when(request):
            with self.lock:
                self.faulted += 1
            return self.fault
        import http.client
        from urllib.parse import quote, urlencode

        connection = http.client.HTTPSConnection(self.upstream_host, self.upstream_port, context=self._context,
                                                 timeout=30)
        target = quote(request.path) + (f"?{urlencode(request.query)}" if request.query else "")
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "connection")}
        headers["host"] = f"{self.upstream_host}:{self.upstream_port}"
        try:
            connection.request(request.method, target, body=request.body or None, headers=headers)
            answer = connection.getresponse()
            body = answer.read()
            kept = {k: v for k, v in answer.getheaders()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "keep-alive")}
            length = int(answer.getheader("content-length") or 0) if request.method == "HEAD" else None
            return Response(answer.status, body, kept, declared_length=length or None)
        finally:
            connection.close()


@pytest.fixture(scope="session", name="azurite_url")
def azurite_url_fixture(fake_tls: Tls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite (blob) over HTTPS with the fakes' certificate, so the same test-only CA trusts it; its URL."""
    from tests.support.azurite import azurite_blob

    folder = tmp_path_factory.mktemp("azurite-fakes")
    fake_tls.server_cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    fake_tls.server_cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    with azurite_blob(folder / "cert.pem", folder / "key.pem", folder / "data") as url:
        yield url
