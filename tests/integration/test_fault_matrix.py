"""The fault matrix: every dependency x every fault, one test per cell, over real HTTP, through the timer function.

Dependencies: the managed-identity endpoint, Key Vault, STS AssumeRole (home and member), STS
AssumeRoleWithWebIdentity, IAM, Organizations, the logs_ingestion and data_collector sinks (local HTTPS fakes in
tests/support/azure_fakes.py; AWS is moto behind the fault-injecting proxy in tests/support/aws_proxy.py), plus the
file sink
and the outbox. Faults:

- ``timeout``: the server answers nothing for longer than the client's read timeout (every attempt);
- ``refused``: the endpoint is a closed port (every attempt);
- ``429``: throttled twice (AWS) or once with ``Retry-After: 1`` (Azure), then served normally;
- ``500``: one 500, then served normally;
- ``503``: 503 on every attempt, so the retry bound is reached;
- ``403``: access denied (AccessDenied / Forbidden) on every attempt;
- ``malformed``: a complete answer whose body is cut mid-way (XML / JSON that does not parse); for the sinks, whose
  success has no body, an error answer (400) whose body is cut mid-way;
- ``truncated``: a Content-Length larger than the body, then the connection closes (every attempt).

Each test asserts the run record (Status, FailedAccounts naming the dependency and the resource), what landed in the
sink (all keys, all but the failed account's, none, or kept in the outbox), how often the dependency was called
(the retry bound), and that no secret value appears in any captured output. docs/failure-behaviour.md is the same
table in prose; its ids are these tests' ids.

Only the waits are shortened, through the test-only ``ClientOptions`` (``FAST``): read timeouts of 0.5 s, 3 botocore
attempts instead of 10, an azure-core backoff factor of 0.01 instead of 0.8. Retry counts of the Azure clients and of
the data_collector sink are production's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import function_app
from shared.delivery.outbox import FileOutbox, decode_rows
from shared.errors import DeliveryDeferredError, SinkError
from shared.tools.demo import MANAGEMENT_ACCOUNT_ID, AccountSpec, KeySpec, SeededOrganization, UserSpec, reset_moto
from shared.tools.demo import seed_organization as seed
from tests.support.aws_proxy import AwsProxy, Call, Fault, aws_error
from tests.support.azure_fakes import (  # noqa: F401 - fixtures
    DATA_COLLECTOR_DOMAIN,
    DATA_COLLECTOR_HOST,
    WORKSPACE_ID,
    AzureFakes,
    FakeServer,
    Request,
    Response,
    azure_fixture,
    azurite_url_fixture,
    fake_tls_fixture,
    route_host_to,
)
from tests.support.fault_cells import (
    AZURE_DEPENDENCIES,
    CELLS,
    DELIVERY_CELLS,
    OUTBOX_CELLS,
    RECOVERED,
    Cell,
    DeliveryCell,
    OutboxCell,
)
from tests.support.function_host import AUDIENCE, CONTRACT_SETTINGS, RULE_ID, run_function

FAST = {"aws_max_attempts": 3, "aws_read_timeout": 0.5, "azure_read_timeout": 0.5, "azure_retry_backoff_factor": 0.01}
CUT_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAULTMATRIX"  # in the cut STS answers; its first 30 chars are sent
HANG = 1.5  # seconds a "timeout" fault keeps the client waiting: well past the 0.5 s read timeouts
KEYS_STREAM, RUNS_STREAM = "Custom-AwsIamAccessKeys", "Custom-AwsIamKeyCollectorRuns"
# A small organization: one user with one key per account, so that every cell is fast; Sandbox is the account the
# per-account faults hit ("victim" lives only there).
ORGANIZATION = (
    AccountSpec("Management", (UserSpec("alice", (KeySpec(200, 2),)),)),
    AccountSpec("Production", (UserSpec("bob", (KeySpec(10),)),)),
    AccountSpec("Sandbox", (UserSpec("victim", (KeySpec(30, 1),)),)),
)
KEYS_PER_ACCOUNT = {"Management": 2, "Production": 1, "Sandbox": 1}  # Management: alice's and the collector's own


# --- fixtures: one seeded organization for the module (moto is reset once), a fresh proxy and fakes per test ---


@pytest.fixture(scope="module")
def org(moto_url: str) -> SeededOrganization:
    reset_moto(moto_url)
    return seed(moto_url, ORGANIZATION)


@pytest.fixture
def proxy(org: SeededOrganization, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsProxy]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with AwsProxy(org.endpoint_url) as aws:
        monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
        yield aws


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Ctx:
    org: SeededOrganization
    aws: AwsProxy
    azure: AzureFakes
    env: pytest.MonkeyPatch
    out: Path
    closed: int
    counts: dict[str, int] = field(default_factory=dict)

    def account(self, name: str) -> str:
        return next(a for a, n in self.org.accounts.items() if n == name)

    def names(self, ids: list[str]) -> list[str]:
        return sorted(self.org.accounts[i] for i in ids)


# --- injecting faults ---

AzurePredicate = Callable[[Request], bool]


def azure_fault(ctx: Ctx, server: FakeServer, fault: Response, times: int | None, when: AzurePredicate) -> None:
    """Serve ``fault`` instead of the normal answer to the first ``times`` matching requests (every one: None);
    ``ctx.counts["attempts"]`` counts every matching request."""
    normal = server.handle
    ctx.counts["attempts"] = 0

    def handle(request: Request) -> Response:
        if not when(request):
            return normal(request)
        with server.lock:
            ctx.counts["attempts"] += 1
            n = ctx.counts["attempts"]
        return fault if times is None or n <= times else normal(request)

    ctx.env.setattr(server, "handle", handle)


def aws_fault(ctx: Ctx, fault: Fault, times: int | None, when: Callable[[Call], bool]) -> None:
    served = [0]

    def rule(call: Call) -> Fault | None:
        if not when(call):
            return None
        served[0] += 1
        return fault if times is None or served[0] <= times else None

    ctx.aws.rules.append(rule)


# What each fault looks like from each kind of server.


def azure_response(fault: str, body: Any) -> tuple[Response, int | None]:
    """The fake's answer for ``fault`` and how many times it is served (None: every time)."""
    error = {"error": {"code": "Fault", "message": f"injected {fault}"}}
    text = json.dumps(body).encode()
    return {
        "timeout": (Response(200, delay=HANG, drop=True), None),
        "429": (Response.json(429, error, {"Retry-After": "1"}), 1),
        "500": (Response.json(500, error), 1),
        "503": (Response.json(503, error), None),
        "403": (Response.json(403, {"error": {"code": "Forbidden", "message": "Caller is not authorized"}}), None),
        "malformed": (Response(200, text[: len(text) // 2], {"Content-Type": "application/json"}), None),
        "truncated": (Response(200, text[: len(text) // 2], {"Content-Type": "application/json"},
                               declared_length=len(text) + 100), None),
    }[fault]


def sink_response(fault: str) -> tuple[Response, int | None]:
    """The sinks answer success with no body: "malformed" is an error answer whose JSON is cut mid-way."""
    if fault == "malformed":
        return Response(400, b'{"error": {"code": "InvalidPayload", "mess', {"Content-Type": "application/json"}), None
    if fault == "truncated":
        return Response(200, b'{"status": "acc', {"Content-Type": "application/json"}, declared_length=200), None
    return azure_response(fault, {})


def aws_response(fault: str, action: str, json_protocol: bool = False) -> tuple[Fault, int | None]:
    if json_protocol:  # Organizations

        def error(code: str, status: int) -> Fault:
            body = json.dumps({"__type": code, "Message": f"injected {code}"})
            return Fault(status, body, {"Content-Type": "application/x-amz-json-1.1"})

        whole = json.dumps({"Accounts": [{"Id": "111122223333", "Name": "cut", "Status": "ACTIVE"}]})
        throttled = error("TooManyRequestsException", 429)
        throttled.headers["Retry-After"] = "1"
        faults = {
            "429": (throttled, 1),
            "500": (error("ServiceException", 500), 1),
            "503": (error("ServiceException", 503), None),
            "403": (error("AccessDeniedException", 403), None),
        }
        ctype = {"Content-Type": "application/x-amz-json-1.1"}
    else:
        # cut inside the secret key: a parser error must not echo the partial secret
        head = (
            f'<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><{action}Result><Credentials>'
            f"<AccessKeyId>ASIAEXAMPLECUT000001</AccessKeyId><SecretAccessKey>{CUT_SECRET}"
        )
        whole = head + "</SecretAccessKey></Credentials></AssumeRoleResult></AssumeRoleResponse>"
        throttled = aws_error("Throttling", "Rate exceeded", 429)
        throttled.headers["Retry-After"] = "1"
        faults = {
            "429": (throttled, 1),
            "500": (aws_error("InternalFailure", "injected internal error", 500, "Receiver"), 1),
            "503": (aws_error("ServiceUnavailable", "injected unavailable", 503, "Receiver"), None),
            "403": (aws_error("AccessDenied", f"injected: not authorized to perform {action}"), None),
        }
        ctype = {"Content-Type": "text/xml"}
    faults["timeout"] = (Fault(delay=HANG, drop_connection=True), None)
    cut = len(head) - 10 if not json_protocol else len(whole) // 2
    faults["malformed"] = (Fault(200, whole[:cut], ctype), None)
    faults["truncated"] = (Fault(200, whole[:cut], ctype, declared_length=len(whole)), None)
    return faults[fault]


# --- the cells ---


# --- arranging one cell ---


def configure(ctx: Ctx, cell: Cell) -> None:
    auth, sink = cell.mode.split("+")
    env, azure, org = ctx.env, ctx.azure, ctx.org
    for name in CONTRACT_SETTINGS:
        env.delenv(name, raising=False)
    env.setenv("COLLECTOR_SCHEDULE", "0 0 */6 * * *")
    env.setenv("AWS_ROLE_ARN", org.home_role_arn)
    env.setenv("AWS_ACCOUNTS", cell.accounts)
    env.setenv("FILE_SINK_DIR", str(ctx.out))
    fast = dict(FAST)
    if cell.fault == "timeout":  # every attempt waits this long: shorter still (healthy calls answer in ms)
        if cell.dependency == "managed_identity":
            fast["azure_read_timeout"] = 0.1  # no other Azure call succeeds in this cell
        elif cell.dependency in AZURE_DEPENDENCIES:
            fast["azure_read_timeout"] = 0.2
        else:
            fast["aws_read_timeout"] = 0.3
    env.setattr(function_app, "CLIENT_OPTIONS", dataclasses.replace(azure.options(), **fast))
    secrets: dict[str, str] = {}
    if auth == "access_key":
        env.setenv("AWS_EXTERNAL_ID", org.external_id)
        secrets.update(org.secrets())
    else:
        env.setenv("AWS_AUTH_MODE", "web_identity")
        env.setenv("AWS_WEB_IDENTITY_AUDIENCE", AUDIENCE)
    env.setenv("LOG_SINK", sink)
    if sink == "logs_ingestion":
        env.setenv("LOGS_INGESTION_ENDPOINT", azure.ingestion.url)
        env.setenv("LOGS_INGESTION_RULE_ID", RULE_ID)
    elif sink == "data_collector":
        env.setenv("LOG_ANALYTICS_WORKSPACE_ID", WORKSPACE_ID)
        env.setenv("LOG_ANALYTICS_DOMAIN", DATA_COLLECTOR_DOMAIN)
        secrets["log-analytics-workspace-key"] = azure.collector.shared_key
    if secrets:
        azure.vault.secrets = secrets
        env.setenv("KEY_VAULT_URL", f"{azure.vault.url}/")


def closed_url(ctx: Ctx, scheme: str = "https", host: str = "localhost") -> str:
    return f"{scheme}://{host}:{ctx.closed}"


def count_refused_connections(ctx: Ctx) -> None:
    """Nothing listens on a closed port, so no server can count the attempts: count the connections the clients
    open to it instead (urllib3's, under botocore, azure-core and requests alike)."""
    import threading

    import urllib3.util.connection

    real = urllib3.util.connection.create_connection
    lock = threading.Lock()
    ctx.counts["attempts"] = 0

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if address[1] == ctx.closed or address[0] == DATA_COLLECTOR_HOST:  # that host is routed to the closed port
            with lock:
                ctx.counts["attempts"] += 1
        return real(address, *args, **kwargs)

    ctx.env.setattr(urllib3.util.connection, "create_connection", create_connection)


def inject(ctx: Ctx, cell: Cell) -> None:
    dep, fault, azure, org = cell.dependency, cell.fault, ctx.azure, ctx.org
    sandbox = ctx.account("Sandbox")
    aws_when: dict[str, Callable[[Call], bool]] = {
        "sts_home": lambda c: c.action == "AssumeRole" and c.params.get("RoleArn") == org.home_role_arn,
        "sts_member": lambda c: c.action == "AssumeRole" and sandbox in c.params.get("RoleArn", ""),
        "sts_web_identity": lambda c: c.action == "AssumeRoleWithWebIdentity",
        "iam": lambda c: c.action == "ListAccessKeys" and c.params.get("UserName") == "victim",
        "organizations": lambda c: c.action == "ListAccounts",
    }
    if fault == "refused":
        count_refused_connections(ctx)
        closed = closed_url(ctx, "http", "127.0.0.1")
        if dep == "managed_identity":
            ctx.env.setenv("IDENTITY_ENDPOINT", f"{closed_url(ctx)}/msi/token")
        elif dep == "key_vault":
            ctx.env.setenv("KEY_VAULT_URL", f"{closed_url(ctx)}/")
        elif dep == "logs_ingestion":
            ctx.env.setenv("LOGS_INGESTION_ENDPOINT", closed_url(ctx))
        elif dep == "data_collector":
            ctx.env.setattr(socket, "getaddrinfo", route_host_to(DATA_COLLECTOR_HOST, ctx.closed))
        elif dep in ("sts_home", "sts_web_identity"):
            ctx.env.setenv("AWS_ENDPOINT_URL_STS", closed)
        elif dep == "organizations":
            ctx.env.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", closed)
        elif dep == "iam":
            ctx.env.setenv("AWS_ENDPOINT_URL_IAM", closed)
        elif dep == "sts_member":
            # the home role is assumed normally; every STS client made after that (the member roles') is refused
            ctx.env.setenv("AWS_ENDPOINT_URL_STS", ctx.aws.url)

            def refuse_after_home(call: Call) -> Fault | None:
                if call.action == "AssumeRole" and call.params.get("RoleArn") == org.home_role_arn:
                    os.environ["AWS_ENDPOINT_URL_STS"] = closed  # restored by monkeypatch at teardown
                return None

            ctx.aws.rules.append(refuse_after_home)
        return
    if dep in aws_when:
        action = {"sts_home": "AssumeRole", "sts_member": "AssumeRole", "sts_web_identity": "AssumeRoleWithWebIdentity",
                  "iam": "ListAccessKeys", "organizations": "ListAccounts"}[dep]
        response, times = aws_response(fault, action, json_protocol=dep == "organizations")
        aws_fault(ctx, response, times, aws_when[dep])
        return
    if dep == "managed_identity":
        token = {"access_token": "eyJ0eXAiOiJKV1QifQ.cut.cut", "expires_on": "1", "resource": AUDIENCE}
        response, times = azure_response(fault, token)
        azure_fault(ctx, azure.identity, response, times, lambda r: True)
    elif dep == "key_vault":
        secret = {"value": "AKIA" + "X" * 16, "id": f"{azure.vault.url}/secrets/aws-access-key-id/0"}
        response, times = azure_response(fault, secret)
        azure_fault(ctx, azure.vault, response, times, lambda r: "authorization" in r.headers)
    elif dep == "logs_ingestion":
        response, times = sink_response(fault)
        azure_fault(ctx, azure.ingestion, response, times, lambda r: True)
    elif dep == "data_collector":
        response, times = sink_response(fault)
        azure_fault(ctx, azure.collector, response, times, lambda r: True)
    else:  # pragma: no cover - a cell without an injector
        raise AssertionError(cell.id)


# --- what landed ---


def delivered(ctx: Ctx, cell: Cell) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(key rows, run rows) the sink received."""
    if cell.mode.endswith("data_collector"):
        return ctx.azure.collector.rows("AwsIamAccessKeys"), ctx.azure.collector.rows("AwsIamKeyCollectorRuns")
    return ctx.azure.ingestion.rows(KEYS_STREAM), ctx.azure.ingestion.rows(RUNS_STREAM)


def outbox_rows(ctx: Ctx) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    outbox = FileOutbox(ctx.out / "outbox")
    keys: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for item in outbox.items():
        rows = decode_rows((outbox.directory / item.name).read_bytes())  # the outbox's own decoder
        (runs if item.table.table == "AwsIamKeyCollectorRuns_CL" else keys).extend(rows)
    return keys, runs


def secrets_of(ctx: Ctx) -> set[str]:
    """Every secret value of the test: the IAM user's key pair, every credential AWS handed out, every full key id
    in the emulated accounts, the managed identity's header and tokens, the workspace key."""
    from moto.iam.models import iam_backends

    found = {ctx.org.collector_key_id, ctx.org.collector_secret_key, ctx.azure.identity.identity_header,
             ctx.azure.collector.shared_key, *ctx.azure.identity.tokens()}
    for body in ctx.aws.response_bodies:
        text = body.decode("utf-8", "replace")
        found |= set(re.findall(r"<(?:SecretAccessKey|SessionToken|AccessKeyId)>([^<]+)<", text))
    for account in ctx.org.accounts:
        found |= set(iam_backends[account]["aws"].access_keys)
    return {s for s in found if len(s) >= 16} | {CUT_SECRET[:20]}


# --- the test ---


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_fault(
    cell: Cell, org: SeededOrganization, proxy: AwsProxy, azure: AzureFakes, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path, closed_port: int, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
    raw_log: list[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = Ctx(org, proxy, azure, monkeypatch, tmp_path / "out", closed_port)
    configure(ctx, cell)
    inject(ctx, cell)
    expect = cell.expect
    sandbox = ctx.account("Sandbox")

    started = time.monotonic()
    error: Exception | None = None
    try:
        run_function()
    except Exception as exc:
        error = exc
    elapsed = time.monotonic() - started

    # the invocation: fails exactly when the run delivered nothing (Failed, or the sink took nothing)
    if expect.raises is None:
        assert error is None, f"unexpected {type(error).__name__}: {error}"
    else:
        assert isinstance(error, expect.raises), f"expected {expect.raises.__name__}, got {error!r}"

    keys, runs = delivered(ctx, cell)
    kept_keys, kept_runs = outbox_rows(ctx)
    if expect.delivered == "outbox":  # nothing reached the sink; every record waits in the outbox
        assert keys == [] and runs == []
        (run,) = kept_runs
        assert len(kept_keys) == run["KeysCollected"] == run["RecordsDeferred"]
    else:
        assert kept_keys == [] and kept_runs == []
        (run,) = runs
    assert run["Status"] == expect.status

    failures = json.loads(run["FailedAccounts"])
    assert ctx.names([f["AccountId"] for f in failures]) == sorted(expect.failed)
    texts = [f["Error"] for f in failures] if failures else [str(error)]
    wanted = [m.format(sandbox=sandbox, vault=azure.vault.url) for m in expect.message]
    for text in texts:
        for part in wanted:
            assert part in text, f"{part!r} not in {text!r}"
    if error is not None:
        assert str(error), "the invocation's error says nothing"
    if cell.dependency == "managed_identity" and error is not None:  # the sink names the token, not its endpoint
        assert "no token for https://monitor.azure.com/.default from the Azure credential" in str(error)

    # which keys landed: all, all but the failed accounts', none, or (above) every one in the outbox
    landed = keys if expect.delivered != "outbox" else kept_keys
    by_account: dict[str, int] = {}
    for row in landed:
        by_account[ctx.org.accounts[row["AccountId"]]] = by_account.get(ctx.org.accounts[row["AccountId"]], 0) + 1
    in_scope = ["Management"] if cell.accounts == "home" else sorted(KEYS_PER_ACCOUNT)
    if expect.delivered == "outbox" and expect.status == "Failed":
        assert by_account == {}  # nothing was collected: only the run record waits in the outbox
    elif expect.delivered in ("all", "outbox"):
        assert by_account == {a: KEYS_PER_ACCOUNT[a] for a in in_scope}
    elif expect.delivered == "others":
        assert by_account == {a: KEYS_PER_ACCOUNT[a] for a in in_scope if a not in expect.failed}
    else:
        assert by_account == {}
    assert len({r["AccessKeyFingerprint"] for r in landed}) == len(landed)  # nothing twice
    assert run["KeysCollected"] == len(landed)

    # the retry bound: how often the faulted dependency was asked
    if cell.dependency in AZURE_DEPENDENCIES or cell.fault == "refused":
        attempts = ctx.counts.get("attempts")
    else:
        action = {"iam": "ListAccessKeys", "organizations": "ListAccounts",
                  "sts_web_identity": "AssumeRoleWithWebIdentity"}.get(cell.dependency, "AssumeRole")
        calls = [c for c in proxy.calls if c.action == action]
        if cell.dependency == "sts_home":
            calls = [c for c in calls if c.params.get("RoleArn") == org.home_role_arn]
        elif cell.dependency == "sts_member":
            calls = [c for c in calls if sandbox in c.params.get("RoleArn", "")]
        elif cell.dependency == "iam":
            calls = [c for c in calls if c.params.get("UserName") == "victim"]
        attempts = len(calls)
    if os.environ.get("FAULT_MATRIX_DEBUG"):
        with open(os.environ["FAULT_MATRIX_DEBUG"], "a") as debug:
            first = failures[0]["Error"] if failures else ""
            debug.write(f"{cell.id} attempts={attempts} elapsed={elapsed:.2f} error={error!s:.600} first={first}\n")
    if expect.attempts is not None:
        assert attempts == expect.attempts
    if cell.fault == "429" and cell.dependency in ("managed_identity", "key_vault", "logs_ingestion",
                                                   "data_collector"):
        assert elapsed >= 1.0  # Retry-After: 1 was honoured
    assert elapsed < 20, f"the cell took {elapsed:.1f} s: a retry bound or a timeout is not applied"

    # no secret anywhere: logs (raw and as the host shows them), stdout/stderr, the error, records, the outbox
    out = capsys.readouterr()
    kept = "".join(p.read_text() for p in (ctx.out / "outbox").glob("*")) if (ctx.out / "outbox").is_dir() else ""
    texts_to_check = [caplog.text, "\n".join(raw_log), out.out, out.err, str(error or ""), repr(error),
                      json.dumps(keys), json.dumps(runs), kept]
    for secret in secrets_of(ctx):
        for text in texts_to_check:
            assert secret not in text, f"a secret ({secret[:4]}...) leaked"


# --- the outbox itself: the blob outbox (the production path: AzureWebJobsStorage__blobServiceUri) on Azurite ---


@pytest.mark.parametrize("cell", OUTBOX_CELLS, ids=[c.id for c in OUTBOX_CELLS])
def test_outbox_fault(
    cell: OutboxCell, org: SeededOrganization, proxy: AwsProxy, azure: AzureFakes, azurite_url: str,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, closed_port: int, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import BlobLeaseClient, ContainerClient

    from shared.delivery.outbox import DEAD_LETTER, encode_rows, item_name
    from shared.records import KEYS_TABLE
    from tests.support.azure_fakes import BlobProxy
    from tests.support.azurite import StorageTokenCredential

    caplog.set_level(logging.INFO)
    ctx = Ctx(org, proxy, azure, monkeypatch, tmp_path / "out", closed_port)
    configure(ctx, Cell("outbox", cell.fault, "access_key+logs_ingestion", RECOVERED, "home"))
    storage = BlobProxy(azure.tls, azurite_url)
    container = f"outbox-{cell.fault.replace('_', '-')}-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
    monkeypatch.setenv("AzureWebJobsStorage__blobServiceUri", storage.url)
    monkeypatch.setenv("OUTBOX_CONTAINER", container)
    raw = ContainerClient(azurite_url, container, credential=StorageTokenCredential(),
                          connection_verify=azure.tls.ca_bundle)
    raw.create_container()
    earlier = [{"RunId": "earlier-run", "AccessKeyFingerprint": f"{n:016x}"} for n in range(2)]
    name = item_name(KEYS_TABLE, 2, datetime.now(UTC) - timedelta(hours=1))
    raw.upload_blob(name, b"\xff\xfe{not json\n" if cell.fault == "unreadable" else encode_rows(earlier))
    holder = None
    if cell.fault == "lease_conflict":
        holder = BlobLeaseClient(raw.get_blob_client(name))
        holder.acquire(lease_duration=60)
        storage.when = lambda r: r.query.get("comp") == "lease"
    elif cell.fault == "503":
        storage.fault = Response.json(503, {"error": {"code": "ServerBusy", "message": "injected 503"}})
    else:
        storage.when = lambda r: r.query.get("comp") == "lease"
    try:
        run_function()  # the outbox's fault never fails the invocation: this run's records are delivered
    finally:
        if holder is not None:
            holder.release()
        storage.close()

    keys, runs = ctx.azure.ingestion.rows(KEYS_STREAM), ctx.azure.ingestion.rows(RUNS_STREAM)
    (run,) = runs
    assert run["Status"] == "Succeeded" and json.loads(run["FailedAccounts"]) == []
    assert len(keys) == KEYS_PER_ACCOUNT["Management"] == run["KeysCollected"]
    assert run["RecordsReplayed"] == 0 and run["RecordsDropped"] == 0
    assert not (ctx.out / "outbox").exists()  # the blob outbox was used, not the local folder
    left = sorted(b.name for b in raw.list_blobs())
    if cell.fault == "unreadable":
        assert left == [f"{DEAD_LETTER}/{name}"]  # moved aside, kept
        assert "cannot be replayed (unreadable: not JSON lines of objects (line 1: not UTF-8" in caplog.text
        attempts = sum(1 for r in storage.requests if r.query.get("comp") == "lease")
    else:
        assert left == [name]  # still there, for its holder or a later run
        assert [r["RunId"] for r in keys] == [run["RunId"]] * len(keys)  # the earlier run's rows not delivered
        if cell.fault == "503":
            assert "cannot be listed" in caplog.text and "503" in caplog.text
            attempts = storage.faulted
        else:
            attempts = sum(1 for r in storage.requests if r.query.get("comp") == "lease")
    assert attempts == cell.attempts

    out = capsys.readouterr()
    for secret in secrets_of(ctx):
        for text in (caplog.text, out.out, out.err, json.dumps(keys), json.dumps(runs)):
            assert secret not in text, f"a secret ({secret[:4]}...) leaked"


# --- the file sink and the outbox: local disk faults ---


def test_file_sink_unwritable(
    org: SeededOrganization, proxy: AwsProxy, azure: AzureFakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    closed_port: int, caplog: pytest.LogCaptureFixture,
) -> None:
    """FILE_SINK_DIR cannot be created (a file is in the way): the sink and the outbox beside it both fail, so
    every account fails naming the folder, and the invocation fails with the run record's own delivery error."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    ctx = Ctx(org, proxy, azure, monkeypatch, blocker / "out", closed_port)
    configure(ctx, Cell("file", "unwritable", "access_key+file", RECOVERED, "home"))
    with pytest.raises(SinkError) as caught:
        run_function()
    message = str(caught.value)
    assert f"file sink: cannot write {blocker / 'out'}" in message and "check FILE_SINK_DIR" in message
    assert "could not keep them either" in message
    assert any("Account 123456789012 failed: records not delivered: file sink" in r.getMessage()
               for r in caplog.records)


def test_outbox_unwritable_while_the_sink_is_down(
    org: SeededOrganization, proxy: AwsProxy, azure: AzureFakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    closed_port: int, caplog: pytest.LogCaptureFixture,
) -> None:
    """logs_ingestion down (503 on every attempt) and the outbox folder unwritable: the only case where records are
    lost, and then never silently: the account fails naming both, and the invocation fails."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    ctx = Ctx(org, proxy, azure, monkeypatch, blocker / "out", closed_port)
    configure(ctx, Cell("outbox", "unwritable", "access_key+logs_ingestion", RECOVERED, "home"))
    response, _ = sink_response("503")
    azure_fault(ctx, azure.ingestion, response, None, lambda r: True)
    with pytest.raises(SinkError) as caught:
        run_function()
    message = str(caught.value)
    # the key records failed (after retries); the run record was then not sent again (the breaker)
    assert "1 AwsIamKeyCollectorRuns_CL row(s) not sent: the logs_ingestion sink already failed in this run" in message
    assert f"not delivered to stream {KEYS_STREAM} of data collection rule {RULE_ID}" in message
    assert "HTTP 503" in message
    assert f"the outbox at {blocker / 'out' / 'outbox'} could not keep them either" in message
    assert any(f"Account {MANAGEMENT_ACCOUNT_ID} failed: records not delivered" in r.getMessage()
               for r in caplog.records)
    assert azure.ingestion.uploads == []


# --- the bounds the matrix shortens are production's own when no test option is given ---


def test_production_retry_bounds_are_the_documented_ones() -> None:
    from shared.aws.clients import AwsClientFactory
    from shared.azure.identity import retry_options, transport_options
    from shared.composition import ClientOptions
    from shared.delivery.data_collector_sink import MAX_ATTEMPTS, TIMEOUT, DataCollectorSink

    production = ClientOptions()
    assert (production.aws_max_attempts, production.aws_read_timeout) == (None, None)
    assert (production.azure_read_timeout, production.azure_retry_backoff_factor) == (None, None)
    iam = AwsClientFactory("us-east-1").client("iam")
    assert iam.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 10}  # 10 calls in all, not 11
    assert (iam.meta.config.connect_timeout, iam.meta.config.read_timeout) == (10, 60)
    assert retry_options(production) == {"retry_total": 4, "retry_backoff_factor": 0.8, "retry_backoff_max": 30}
    assert transport_options(production) == {"connection_timeout": 10, "read_timeout": 60}  # not azure-core's 300 s
    sink = DataCollectorSink(WORKSPACE_ID, "c2hhcmVkLWtleS0wMTIzNDU2Nzg5", "ods.opinsights.azure.com", production)
    assert (MAX_ATTEMPTS, sink._first_wait, sink._timeout) == (5, 1.0, TIMEOUT) == (5, 1.0, (10, 120))


# --- delivery: what no fault of the sink or the outbox may cost (tests/support/fault_cells.py's DELIVERY_CELLS) ---

DELIVERY = {cell.id: cell for cell in DELIVERY_CELLS}


def deliver_cell(cell_id: str) -> DeliveryCell:
    return DELIVERY[cell_id]


@pytest.mark.parametrize("sink", ["logs_ingestion", "data_collector"])
def test_a_sink_that_hangs_costs_one_bounded_call_and_no_row(
    sink: str, org: SeededOrganization, proxy: AwsProxy, azure: AzureFakes, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path, closed_port: int,
) -> None:
    """``<sink>-hangs``: the sink accepts every request and never answers. Production's read timeouts (60 s, 120 s)
    and retry counts: the one upload is cut to its own bound (a quarter of the delivery window; shared/config/
    transport.py), the breaker opens, every record goes to the outbox, and no account is reported failed."""
    assert deliver_cell(f"{sink}-hangs").outcome.startswith("outbox within one bounded call")
    ctx = Ctx(org, proxy, azure, monkeypatch, tmp_path / "out", closed_port)
    mode = "access_key+logs_ingestion" if sink == "logs_ingestion" else "access_key+data_collector"
    configure(ctx, Cell(sink, "hangs", mode, RECOVERED, "organization"))  # three accounts wait for the sink
    production_waits = {**FAST, "azure_read_timeout": None, "azure_retry_backoff_factor": None}
    monkeypatch.setattr(function_app, "CLIENT_OPTIONS", dataclasses.replace(azure.options(), **production_waits))
    monkeypatch.setattr(function_app, "FUNCTION_TIMEOUT", timedelta(seconds=20))  # a 10 s run: an 8 s delivery window
    server = azure.ingestion if sink == "logs_ingestion" else azure.collector
    azure_fault(ctx, server, Response(204 if sink == "logs_ingestion" else 200, delay=120), None, lambda r: True)

    started = time.monotonic()
    with pytest.raises(DeliveryDeferredError, match=f"{sink} sink unavailable: 5 record"):
        run_function()
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"the run took {elapsed:.1f} s: the hung call was not cut to its bound (2 s)"
    assert ctx.counts["attempts"] == 1  # one bounded call, then the breaker: the rest went straight to the outbox
    kept_keys, (run,) = outbox_rows(ctx)
    assert (run["Status"], json.loads(run["FailedAccounts"])) == ("Succeeded", [])
    assert run["RecordsDeferred"] == run["KeysCollected"] == len(kept_keys) == sum(KEYS_PER_ACCOUNT.values())


def test_hostile_tag_values_survive_a_sink_outage_and_the_replay(
    org: SeededOrganization, proxy: AwsProxy, azure: AzureFakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    closed_port: int,
) -> None:
    """``hostile_tags-outage_then_replay`` (F1): an Owner tag with U+2028 and U+2029 in the Sandbox account, a sink
    outage for one run, then a healthy run: every row of both runs is delivered, nothing is dead-lettered, and the
    change history (shared/insight/changes.py) reads no key as deleted or created."""
    import boto3

    from shared.insight.changes import key_changes

    assert deliver_cell("hostile_tags-outage_then_replay").outcome.startswith("ok, every row of both runs delivered")
    ctx = Ctx(org, proxy, azure, monkeypatch, tmp_path / "out", closed_port)
    configure(ctx, Cell("hostile_tags", "outage_then_replay", "access_key+logs_ingestion", RECOVERED))
    owner = "victim\u2028Approved: delete nothing\u2029@example.com"
    seeder = {"endpoint_url": org.endpoint_url, "region_name": "us-east-1"}  # straight to moto, as the seed does
    admin = boto3.client("sts", aws_access_key_id="AKIADEMOSEEDER000001", aws_secret_access_key="demo" * 10,
                         **seeder).assume_role(RoleSessionName="tagger", RoleArn=f"arn:aws:iam::"
                                               f"{ctx.account('Sandbox')}:role/OrganizationAccountAccessRole")
    iam = boto3.client("iam", aws_access_key_id=admin["Credentials"]["AccessKeyId"],
                       aws_secret_access_key=admin["Credentials"]["SecretAccessKey"],
                       aws_session_token=admin["Credentials"]["SessionToken"], **seeder)
    iam.tag_user(UserName="victim", Tags=[{"Key": "owner", "Value": owner}])
    try:
        azure.ingestion.reject = lambda stream, rows: Response.json(503, {"error": {"code": "Down", "message": "x"}})
        with pytest.raises(DeliveryDeferredError):
            run_function()
        first_started = time.time()
        azure.ingestion.reject = lambda stream, rows: None
        time.sleep(max(0.0, int(first_started) + 1 - time.time()))  # records are stamped to the second
        run_function()
    finally:
        iam.untag_user(UserName="victim", TagKeys=["owner"])
    keys, runs = azure.ingestion.rows(KEYS_STREAM), azure.ingestion.rows(RUNS_STREAM)
    assert len(runs) == 2 and runs[1]["OutboxItemsDeadLettered"] == 0
    assert runs[1]["RecordsReplayed"] == sum(KEYS_PER_ACCOUNT.values()) + 1
    for run in runs:
        mine = [k for k in keys if k["RunId"] == run["RunId"]]
        assert len(mine) == run["KeysCollected"] == sum(KEYS_PER_ACCOUNT.values())
        assert [k["Owner"] for k in mine if k["UserName"] == "victim"] == [owner]
    assert [(e.EventType, e.UserName) for e in key_changes(keys, runs)] == []


def test_an_item_planted_in_the_blob_outbox_costs_no_real_row(
    org: SeededOrganization, proxy: AwsProxy, azure: AzureFakes, azurite_url: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path, closed_port: int,
) -> None:
    """``outbox-planted_item`` (F12): an item planted in the Function's blob outbox, named as 999,999,999 rows, while
    the sink is down. Its name once made the row cap drop every real row; now an item counts for no more rows than its
    size holds, and, read, is moved aside because its content disagrees with its name."""
    from datetime import UTC, datetime

    from azure.storage.blob import ContainerClient

    from shared.delivery.outbox import DEAD_LETTER, encode_rows, item_name
    from shared.records import KEYS_TABLE
    from tests.support.azurite import StorageTokenCredential

    assert deliver_cell("outbox-planted_item").outcome.startswith("ok, no real row dropped")
    ctx = Ctx(org, proxy, azure, monkeypatch, tmp_path / "out", closed_port)
    configure(ctx, Cell("outbox", "planted_item", "access_key+logs_ingestion", RECOVERED, "home"))
    container = f"outbox-planted-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
    monkeypatch.setenv("AzureWebJobsStorage__blobServiceUri", azurite_url)
    monkeypatch.setenv("OUTBOX_CONTAINER", container)
    monkeypatch.setenv("OUTBOX_MAX_RECORDS", "1000")
    raw = ContainerClient(azurite_url, container, credential=StorageTokenCredential(),
                          connection_verify=azure.tls.ca_bundle)
    raw.create_container()
    now = datetime.now(UTC)
    for hours, first in ((3, 0), (2, 400)):  # 800 real rows of an earlier run: under the cap
        earlier = [{"RunId": "earlier-run", "AccessKeyFingerprint": f"{n:016x}"} for n in range(first, first + 400)]
        raw.upload_blob(item_name(KEYS_TABLE, 400, now - timedelta(hours=hours)), encode_rows(earlier))
    planted = item_name(KEYS_TABLE, 999_999_999, now - timedelta(hours=1))
    raw.upload_blob(planted, encode_rows([{"RunId": "planted", "AccessKeyFingerprint": "f" * 16}]))

    azure.ingestion.reject = lambda stream, rows: Response.json(503, {"error": {"code": "Down", "message": "x"}})
    with pytest.raises(DeliveryDeferredError):
        run_function()
    azure.ingestion.reject = lambda stream, rows: None
    run_function()
    keys, runs = azure.ingestion.rows(KEYS_STREAM), azure.ingestion.rows(RUNS_STREAM)
    assert len([k for k in keys if k["RunId"] == "earlier-run"]) == 800  # every real row delivered
    assert [r["RecordsDropped"] for r in runs] == [0, 0]  # both runs: the one the sink was down in, and the next
    assert not [k for k in keys if k["RunId"] == "planted"]
    assert [r["OutboxItemsDeadLettered"] for r in runs] == [0, 1]
    assert sorted(b.name for b in raw.list_blobs()) == [f"{DEAD_LETTER}/{planted}"]
