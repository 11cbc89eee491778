"""Local HTTPS fakes of the two services the owner digests call, for the real SDK clients (azure-monitor-query,
azure-communication-email) to talk to, on the TLS and managed identity fakes of tests/support/azure_fakes.py:

- ``LogAnalyticsQueryFake``: the Log Analytics query API (``POST /v1/workspaces/<id>/query`` at api.loganalytics.io,
  the SDK's own endpoint, routed to the fake): a bearer token for ``https://api.loganalytics.io``, the query executed
  over the fake's records by duckdb-kql (tests/support/kql_engine.py), answered in the API's table shape.
- ``CommunicationEmailFake``: Azure Communication Services e-mail (``POST /emails:send``, then the operation's status
  at ``GET /emails/operations/<id>``) at ``<name>.<geo>.communication.azure.com``: a bearer token for
  ``https://communication.azure.com``, 202 with Operation-Location, each message recorded; scripted faults (served
  instead of the 202) and recipients whose send ends Failed.

Test modules use the fixture by importing it with the ``azure`` fixtures: ``from tests.support.notify_fakes import
notify_fakes_fixture``.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from tests.support.azure_fakes import (
    COMMUNICATION_HOST,
    LOG_ANALYTICS_QUERY_HOST,
    WORKSPACE_ID,
    AzureFakes,
    FakeServer,
    Faults,
    ManagedIdentityFake,
    Request,
    Response,
    Tls,
    _bearer,
    route_host_to,
)

LOG_ANALYTICS_RESOURCE = "https://api.loganalytics.io"
COMMUNICATION_RESOURCE = "https://communication.azure.com"


def _query_type(values: list[Any]) -> str:
    """The Log Analytics column type of a result column, from its values."""
    kinds = {type(v) for v in values if v is not None}
    for kind, name in ((bool, "bool"), (datetime, "datetime"), (int, "long"), (float, "real")):
        if kinds == {kind}:
            return name
    return "string"


def _query_value(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


class LogAnalyticsQueryFake(FakeServer):
    """The Log Analytics query API over ``keys`` and ``runs`` (rows as the file sink writes them)."""

    def __init__(self, tls: Tls, identity: ManagedIdentityFake, workspace_id: str = WORKSPACE_ID) -> None:
        super().__init__(tls)
        self.identity = identity
        self.workspace_id = workspace_id
        self.keys: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.faults = Faults()
        self.queries: list[str] = []

    def handle(self, request: Request) -> Response:
        token = _bearer(request)
        if token is None or not self.identity.is_valid(token, LOG_ANALYTICS_RESOURCE):
            return Response.json(401, {"error": {"code": "InvalidAuthenticationToken", "message": "bad token"}})
        parts = [p for p in request.path.split("/") if p]
        if request.method != "POST" or parts[:2] != ["v1", "workspaces"] or parts[3:] != ["query"]:
            return Response.json(404, {"error": {"code": "PathNotFoundError", "message": "unknown path"}})
        if parts[2] != self.workspace_id:
            return Response.json(404, {"error": {"code": "WorkspaceNotFoundError",
                                                 "message": f"Workspace {parts[2]} not found"}})
        fault = self.faults.next()
        if fault is not None:
            return fault
        from tests.support.kql_engine import Workspace

        text = json.loads(request.body)["query"]
        with self.lock:
            self.queries.append(text)
        workspace = Workspace(self.keys, self.runs)
        try:
            rows = workspace.query(text)
        finally:
            workspace.close()
        names = list(rows[0]) if rows else []
        columns = [{"name": n, "type": _query_type([r[n] for r in rows])} for n in names]
        return Response.json(200, {"tables": [{"name": "PrimaryResult", "columns": columns,
                                               "rows": [[_query_value(r[n]) for n in names] for r in rows]}]})


@dataclass
class Email:
    operation_id: str
    sender: str
    to: list[str]
    subject: str
    plain_text: str
    html: str
    token: str


class CommunicationEmailFake(FakeServer):
    """Azure Communication Services e-mail: send, then the operation's status."""

    def __init__(self, tls: Tls, identity: ManagedIdentityFake) -> None:
        super().__init__(tls)
        self.identity = identity
        self.faults = Faults()  # served instead of the send's 202 (e.g. 500 until the retries are spent)
        self.fail_for: set[str] = set()  # recipients whose operation ends Failed
        self.sent: list[Email] = []
        self.url = f"https://{COMMUNICATION_HOST}"
        self._status: dict[str, str] = {}

    def handle(self, request: Request) -> Response:
        token = _bearer(request)
        resource_ok = token is not None and any(self.identity.is_valid(token, r)
                                                for r in (COMMUNICATION_RESOURCE, COMMUNICATION_RESOURCE + "/"))
        if not resource_ok:
            return Response.json(401, {"error": {"code": "Unauthorized", "message": "bearer token missing or wrong"}})
        if not request.query.get("api-version"):
            return Response.json(400, {"error": {"code": "MissingApiVersion", "message": "api-version"}})
        if request.method == "GET" and request.path.startswith("/emails/operations/"):
            operation = request.path.rsplit("/", 1)[1]
            status = self._status.get(operation)
            if status is None:
                return Response.json(404, {"error": {"code": "NotFound", "message": "no such operation"}})
            body: dict[str, Any] = {"id": operation, "status": status}
            if status == "Failed":
                body["error"] = {"code": "EmailDroppedAllRecipientsSuppressed", "message": "recipient suppressed"}
            return Response.json(200, body)
        if request.method != "POST" or request.path != "/emails:send":
            return Response.json(404, {"error": {"code": "NotFound", "message": "unknown path"}})
        fault = self.faults.next()
        if fault is not None:
            return fault
        message = json.loads(request.body)
        operation = request.headers.get("operation-id") or secrets.token_hex(8)
        to = [r["address"] for r in message["recipients"]["to"]]
        with self.lock:
            if operation in self._status:  # the same Operation-Id again: the service says it exists
                return Response.json(409, {"error": {"code": "Conflict", "message": "operation exists"}})
            self.sent.append(Email(operation, message["senderAddress"], to, message["content"]["subject"],
                                   message["content"].get("plainText", ""), message["content"].get("html", ""),
                                   token or ""))
            self._status[operation] = "Failed" if set(to) & self.fail_for else "Succeeded"
        location = f"{self.url}/emails/operations/{operation}?api-version={request.query['api-version']}"
        return Response.json(202, {"id": operation, "status": "Running"},
                             {"Operation-Location": location, "Retry-After": "0"})


@dataclass
class NotifyFakes:
    query: LogAnalyticsQueryFake
    email: CommunicationEmailFake


@pytest.fixture(name="notify_fakes")
def notify_fakes_fixture(azure: AzureFakes, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyFakes]:
    """The owner digests' two services, with the same managed identity fake as ``azure`` and their production host
    names routed to them."""
    fakes = NotifyFakes(LogAnalyticsQueryFake(azure.tls, azure.identity),
                        CommunicationEmailFake(azure.tls, azure.identity))
    monkeypatch.setattr(socket, "getaddrinfo", route_host_to(LOG_ANALYTICS_QUERY_HOST, fakes.query.port))
    monkeypatch.setattr(socket, "getaddrinfo", route_host_to(COMMUNICATION_HOST, fakes.email.port))
    try:
        yield fakes
    finally:
        fakes.query.close()
        fakes.email.close()
