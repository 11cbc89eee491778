"""A light local AWS for the benchmark: canned, generated IAM, STS and Organizations answers on 127.0.0.1, with a
fixed added latency per call and a count of calls by action.

moto is the project's emulator for correctness, but it spends about 5 ms of CPU per call on these 2-core machines,
which would hide what the collector itself costs. This responder keeps nothing per key: every user, key and
last-use date is derived from (seed, account, user index, slot), so 100,000 keys cost it no memory, and key ids
carry their own coordinates (account index, user index, slot) so GetAccessKeyLastUsed needs no lookup table.

Which account a call is for: STS issues session keys ``ASIA<12-digit account><4 hex>``; IAM and Organizations calls
are attributed to the account found in the SigV4 ``Authorization: ... Credential=<AKID>/...`` header.

Served (query protocol, XML): STS AssumeRole, AssumeRoleWithWebIdentity; IAM ListUsers (Marker/MaxItems,
default 100 per page like IAM; the serial walk's), GetAccountAuthorizationDetails (the product's: Marker/MaxItems,
default 100 entities a page like IAM, users then groups then customer-managed policies, policy documents URL-encoded
as IAM sends them), ListAccessKeys, GetAccessKeyLastUsed, ListServiceSpecificCredentials (AllUsers and ServiceName,
Marker/MaxItems, 100 per page by default), GenerateCredentialReport and GetCredentialReport. JSON protocol:
Organizations ListAccounts (20 per page at most, like Organizations). Control (no
latency, not counted): ``GET /__stats`` (calls by action), ``POST /__reset``.

Users' tags, groups and policies are derived from the user index too (``Generated.user_detail``), and what the
product must conclude from them is derived alongside (``Generated.privileged``, ``quarantined``, ``owner``), so the
benchmark can check the product's flags against the truth: every other user has an owner tag, every fifth a console
description on its first key, some are in the Admins group (AdministratorAccess) or the Developers group (a customer
policy and an inline one, not admin-equivalent), some have AdministratorAccess, a customer policy whose default
version allows iam:*, or an inline Allow of ``*`` of their own, some a ReadOnlyAccess boundary that caps all of it,
and some are quarantined (AWSCompromisedKeyQuarantineV2).

The credential report agrees with the other answers, as IAM's does: one row per user (``user_creation_time`` = the
user's ``CreateDate``), key slot N holding the user's N-th key (``access_key_N_active`` from its status,
``access_key_N_last_rotated`` = its ``CreateDate`` to the second, ``_last_used_date``/``_region``/``_service`` = what
GetAccessKeyLastUsed answers, ``N/A`` for a key never used), signing certificates (``cert_1_*``) of the users that
hold one, and the root row without keys. About one user in ten holds an Amazon Bedrock API key (half of them without
expiry), one in 25 a CodeCommit credential, one in 50 a signing certificate: all of them also hold access keys. Its
flow is IAM's (``--report``): ``fresh`` (the default) has a report generated 30 minutes ago in every account, so
GetCredentialReport answers at once and GenerateCredentialReport says ``COMPLETE``; ``absent`` has none until
GenerateCredentialReport (``STARTED``), after which GetCredentialReport says ``ReportInProgress`` for
``--report-delay`` seconds, then serves a report generated at that moment; before any GenerateCredentialReport it says
``ReportNotPresent``.

Run alone: ``python benchmarks/aws_responder.py --workload W1 --latency 0.1`` prints ``READY <port>``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from generated_org import (
    HOME_ACCOUNT_ID,
    IAM_NS,
    REPORT_AGE_WHEN_FRESH,
    REPORT_MAX_AGE,
    STS_NS,
    USER_ACCESS_KEY_ID,
    WORKLOADS,
    Generated,
    Workload,
    _digest,
)


def _xml(action: str, namespace: str, result: str) -> bytes:
    request_id = f"{_digest(time.monotonic_ns()):016x}-bench"
    return (
        f'<{action}Response xmlns="{namespace}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    ).encode()


def _xml_error(code: str, message: str, status: int = 400) -> tuple[int, str, bytes]:
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>bench</RequestId></ErrorResponse>"
    ).encode()
    return status, "text/xml", body


class Responder:
    def __init__(
        self, workload: Workload, latency: float | None = None, report: str = "fresh", report_delay: float = 1.0
    ) -> None:
        self.workload = workload
        self.latency = workload.latency if latency is None else latency
        self.gen = Generated(workload, datetime.now(UTC))
        self.report_mode = report
        self.report_delay = report_delay
        # per account: (GeneratedTime, monotonic time from which GetCredentialReport serves it)
        self._reports: dict[int, tuple[datetime, float]] = {}
        self._reset_reports()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._issued = 0
        self.in_flight = 0
        self.peak_in_flight = 0

    # --- accounting ---

    def count(self, action: str) -> None:
        with self._lock:
            self.calls[action] += 1

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.peak_in_flight = self.in_flight
            self._reset_reports()

    def _reset_reports(self) -> None:
        """Every measured run starts from the same state: reports fresh in every account, or none anywhere."""
        self._reports.clear()
        if self.report_mode == "fresh":
            generated = (datetime.now(UTC) - REPORT_AGE_WHEN_FRESH).replace(microsecond=0)
            for account in range(self.workload.accounts):
                self._reports[account] = (generated, 0.0)

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {"calls": dict(self.calls), "peak_in_flight": self.peak_in_flight}

    # --- dispatch ---

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        target = headers.get("x-amz-target", "")
        if target:
            action = target.rsplit(".", 1)[-1]
            self.count(action)
            self._wait()
            if action == "ListAccounts":
                return self.list_accounts(json.loads(body or b"{}"))
            return 400, "application/x-amz-json-1.1", json.dumps(
                {"__type": "UnsupportedOperation", "message": action}
            ).encode()
        params = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        action = params.get("Action", "")
        self.count(action or "Unknown")
        self._wait()
        handler = getattr(self, f"q_{action}", None)
        if handler is None:
            return _xml_error("InvalidAction", f"unsupported action {action!r}")
        account = self._account_of(headers)
        return handler(params, account)  # type: ignore[no-any-return]

    def _wait(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency > 0:
                time.sleep(self.latency)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _account_of(self, headers: dict[str, str]) -> int | None:
        auth = headers.get("authorization", "")
        start = auth.find("Credential=")
        if start < 0:
            return None
        key_id = auth[start + len("Credential=") :].split("/", 1)[0]
        if key_id.startswith("ASIA") and len(key_id) >= 16:
            return self.gen.index_of.get(key_id[4:16])
        if key_id == USER_ACCESS_KEY_ID:
            return 0
        return None

    # --- STS ---

    def _credentials(self, role_arn: str) -> tuple[str, str] | None:
        parts = role_arn.split(":")
        if len(parts) < 6 or parts[4] not in self.gen.index_of:
            return None
        with self._lock:
            self._issued += 1
            serial = self._issued
        akid = f"ASIA{parts[4]}{serial % 0x10000:04X}"
        expiration = self.gen.iso(datetime.now(UTC) + timedelta(minutes=15))
        secret = base64.b64encode(hashlib.sha256(f"secret{serial}".encode()).digest()).decode()[:40]
        token = base64.b64encode(hashlib.sha512(f"token{serial}".encode()).digest()).decode() * 3
        session = role_arn.split("/")[-1]
        credentials = (
            f"<Credentials><AccessKeyId>{akid}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
            f"<SessionToken>{token}</SessionToken><Expiration>{expiration}</Expiration></Credentials>"
            f"<AssumedRoleUser><AssumedRoleId>AROABENCH{parts[4]}:{session}</AssumedRoleId>"
            f"<Arn>arn:aws:sts::{parts[4]}:assumed-role/{session}/bench</Arn></AssumedRoleUser>"
        )
        return akid, credentials

    def q_AssumeRole(self, params: dict[str, str], account: int | None) -> tuple[int, str, bytes]:  # noqa: N802
        issued = self._credentials(params.get("RoleArn", ""))
        if issued is None or account is None:
            return _xml_error("AccessDenied", "not authorized to perform sts:AssumeRole", 403)
        return 200, "text/xml", _xml("AssumeRole", STS_NS, issued[1] + "<PackedPolicySize>6</PackedPolicySize>")

    def q_AssumeRoleWithWebIdentity(  # noqa: N802
        self, params: dict[str, str], account: int | None
    ) -> tuple[int, str, bytes]:
        issued = self._credentials(params.get("RoleArn", ""))
        if issued is None or not params.get("WebIdentityToken"):
            return _xml_error("AccessDenied", "not authorized to perform sts:AssumeRoleWithWebIdentity", 403)
        extra = (
            "<SubjectFromWebIdentityToken>bench</SubjectFromWebIdentityToken><Audience>bench</Audience>"
            "<Provider>bench</Provider>"
        )
        return 200, "text/xml", _xml("AssumeRoleWithWebIdentity", STS_NS, issued[1] + extra)

    # --- IAM ---

    def q_ListUsers(self, params: dict[str, str], account: int | None) -> tuple[int, str, bytes]:  # noqa: N802
        if account is None:
            return _xml_error("InvalidClientTokenId", "unknown session", 403)
        gen, acct_id = self.gen, self.gen.account_ids[account]
        start = int(params["Marker"]) if params.get("Marker", "").isdigit() else 0
        size = max(1, min(1000, int(params.get("MaxItems") or 100)))
        end = min(start + size, self.workload.users_per_account)
        members = []
        for user in range(start, end):
            name = gen.user_name(user)
            created = gen.iso(gen.user_created(account, user))
            members.append(
                f"<member><Path>/</Path><UserName>{name}</UserName><UserId>AIDA{account:03d}{user:09d}BENCH</UserId>"
                f"<Arn>arn:aws:iam::{acct_id}:user/{name}</Arn><CreateDate>{created}</CreateDate></member>"
            )
        more = end < self.workload.users_per_account
        tail = f"<IsTruncated>true</IsTruncated><Marker>{end}</Marker>" if more else "<IsTruncated>false</IsTruncated>"
        return 200, "text/xml", _xml("ListUsers", IAM_NS, f"<Users>{''.join(members)}</Users>{tail}")

    def q_GetAccountAuthorizationDetails(  # noqa: N802
        self, params: dict[str, str], account: int | None
    ) -> tuple[int, str, bytes]:
        """Users, then groups, then customer-managed policies (the product's Filter), MaxItems entities a page."""
        if account is None:
            return _xml_error("InvalidClientTokenId", "unknown session", 403)
        wanted = {v for k, v in params.items() if k.startswith("Filter.member.")}
        if wanted != {"User", "Group", "LocalManagedPolicy"}:
            return _xml_error("ValidationError", f"the benchmark serves Filter User, Group, LocalManagedPolicy only, "
                                                 f"not {sorted(wanted)}")
        gen, users = self.gen, self.workload.users_per_account
        groups, policies = gen.group_details(account), gen.policy_details(account)
        total = users + len(groups) + len(policies)
        start = int(params["Marker"]) if params.get("Marker", "").isdigit() else 0
        size = max(1, min(1000, int(params.get("MaxItems") or 100)))
        end = min(start + size, total)
        page_users = [gen.user_detail(account, u) for u in range(start, min(end, users))]
        page_groups = groups[max(0, start - users):max(0, end - users)]
        page_policies = policies[max(0, start - users - len(groups)):max(0, end - users - len(groups))]
        more = end < total
        tail = f"<IsTruncated>true</IsTruncated><Marker>{end}</Marker>" if more else "<IsTruncated>false</IsTruncated>"
        result = (f"<UserDetailList>{''.join(page_users)}</UserDetailList><GroupDetailList>{''.join(page_groups)}"
                  f"</GroupDetailList><RoleDetailList/><Policies>{''.join(page_policies)}</Policies>{tail}")
        return 200, "text/xml", _xml("GetAccountAuthorizationDetails", IAM_NS, result)

    def _user_index(self, name: str) -> int | None:
        prefix = "svc-user-"
        if not name.startswith(prefix) or not name[len(prefix) :].isdigit():
            return None
        user = int(name[len(prefix) :])
        return user if user < self.workload.users_per_account else None

    def q_ListAccessKeys(self, params: dict[str, str], account: int | None) -> tuple[int, str, bytes]:  # noqa: N802
        name = params.get("UserName", "")
        user = self._user_index(name)
        if account is None or user is None:
            return _xml_error("NoSuchEntity", f"The user with name {name} cannot be found.", 404)
        gen = self.gen
        members = []
        for slot in range(gen.key_count(user)):
            status = gen.key_status(account, user, slot)
            created = gen.iso(gen.key_created(account, user, slot))
            members.append(
                f"<member><UserName>{name}</UserName><AccessKeyId>{gen.key_id(account, user, slot)}</AccessKeyId>"
                f"<Status>{status}</Status><CreateDate>{created}</CreateDate></member>"
            )
        result = f"<UserName>{name}</UserName><AccessKeyMetadata>{''.join(members)}</AccessKeyMetadata>"
        return 200, "text/xml", _xml("ListAccessKeys", IAM_NS, result + "<IsTruncated>false</IsTruncated>")

    def q_GetAccessKeyLastUsed(  # noqa: N802
        self, params: dict[str, str], account: int | None
    ) -> tuple[int, str, bytes]:
        key_id = params.get("AccessKeyId", "")
        parsed = Generated.parse_key_id(key_id)
        if account is None or parsed is None or parsed[0] != account or parsed[1] >= self.workload.users_per_account:
            return _xml_error("NoSuchEntity", "The Access Key with id cannot be found", 404)
        gen = self.gen
        _, user, slot = parsed
        last = gen.key_last_used(account, user, slot)
        if last is None:
            used = "<Region>N/A</Region><ServiceName>N/A</ServiceName>"
        else:
            when, region, service = last
            used = (f"<LastUsedDate>{gen.iso(when)}</LastUsedDate><Region>{region}</Region>"
                    f"<ServiceName>{service}</ServiceName>")
        result = f"<UserName>{gen.user_name(user)}</UserName><AccessKeyLastUsed>{used}</AccessKeyLastUsed>"
        return 200, "text/xml", _xml("GetAccessKeyLastUsed", IAM_NS, result)

    def q_ListServiceSpecificCredentials(  # noqa: N802
        self, params: dict[str, str], account: int | None
    ) -> tuple[int, str, bytes]:
        """AllUsers: every user's credentials for ServiceName, in pages (Marker/MaxItems) like ListUsers."""
        if account is None:
            return _xml_error("InvalidClientTokenId", "unknown session", 403)
        service = params.get("ServiceName", "")
        if params.get("AllUsers") != "true" or service not in Generated.SERVICES:
            return _xml_error("ValidationError", "the responder serves AllUsers with a known ServiceName", 400)
        gen = self.gen
        held = [(user, found) for user in range(self.workload.users_per_account)
                if (found := gen.service_credential(account, user, service)) is not None]
        start = int(params["Marker"]) if params.get("Marker", "").isdigit() else 0
        size = max(1, min(1000, int(params.get("MaxItems") or 100)))
        members = []
        for user, (created, expires) in held[start:start + size]:
            name = gen.user_name(user)
            check = f"{_digest(self.workload.seed, account, user, service) % 0x10000:04X}"
            expiry = "" if expires is None else f"<ExpirationDate>{gen.iso(expires)}</ExpirationDate>"
            members.append(
                f"<member><UserName>{name}</UserName><Status>Active</Status><ServiceUserName>{name}-at-bench"
                f"</ServiceUserName><CreateDate>{gen.iso(created)}</CreateDate><ServiceSpecificCredentialId>ACCA"
                f"{account:03d}{user:07d}{Generated.SERVICES.index(service)}{check}Q</ServiceSpecificCredentialId>"
                f"<ServiceName>{service}</ServiceName>{expiry}</member>"
            )
        more = start + size < len(held)
        tail = (f"<IsTruncated>true</IsTruncated><Marker>{start + size}</Marker>" if more
                else "<IsTruncated>false</IsTruncated>")
        result = f"<ServiceSpecificCredentials>{''.join(members)}</ServiceSpecificCredentials>{tail}"
        return 200, "text/xml", _xml("ListServiceSpecificCredentials", IAM_NS, result)

    def q_GetCredentialReport(  # noqa: N802
        self, params: dict[str, str], account: int | None
    ) -> tuple[int, str, bytes]:
        if account is None:
            return _xml_error("InvalidClientTokenId", "unknown session", 403)
        with self._lock:
            state = self._reports.get(account)
        if state is None:
            return _xml_error("ReportNotPresent", "Credential report not present", 410)
        generated, ready_at = state
        if time.monotonic() < ready_at:
            return _xml_error("ReportInProgress", "Credential report is being generated", 404)
        content = base64.b64encode(self.gen.report_csv(account).encode()).decode()
        result = (
            f"<Content>{content}</Content><ReportFormat>text/csv</ReportFormat>"
            f"<GeneratedTime>{self.gen.iso(generated)}</GeneratedTime>"
        )
        return 200, "text/xml", _xml("GetCredentialReport", IAM_NS, result)

    def q_GenerateCredentialReport(  # noqa: N802
        self, params: dict[str, str], account: int | None
    ) -> tuple[int, str, bytes]:
        if account is None:
            return _xml_error("InvalidClientTokenId", "unknown session", 403)
        now = datetime.now(UTC)
        with self._lock:
            state = self._reports.get(account)
            if state is not None and time.monotonic() < state[1]:
                answer = "INPROGRESS"
            elif state is not None and now - state[0] < REPORT_MAX_AGE:
                answer = "COMPLETE"  # IAM does not make a new report within four hours of the last one
            else:
                self._reports[account] = (now.replace(microsecond=0), time.monotonic() + self.report_delay)
                answer = "STARTED"
        result = f"<State>{answer}</State>"
        if answer == "STARTED":
            result += "<Description>No report exists. Starting a new report generation task</Description>"
        return 200, "text/xml", _xml("GenerateCredentialReport", IAM_NS, result)

    # --- Organizations (JSON protocol) ---

    def list_accounts(self, request: dict[str, object]) -> tuple[int, str, bytes]:
        start = int(str(request.get("NextToken") or 0))
        size = max(1, min(20, int(str(request.get("MaxResults") or 20))))
        ids = self.gen.account_ids
        joined = (self.gen.now - timedelta(days=900)).timestamp()
        accounts = [
            {
                "Id": ids[i],
                "Arn": f"arn:aws:organizations::{HOME_ACCOUNT_ID}:account/o-bench0001/{ids[i]}",
                "Email": f"aws+{i}@example.com",
                "Name": "Management" if i == 0 else f"Workload {i:03d}",
                "Status": "ACTIVE",
                "State": "ACTIVE",
                "JoinedMethod": "INVITED" if i == 0 else "CREATED",
                "JoinedTimestamp": joined,
            }
            for i in range(start, min(start + size, len(ids)))
        ]
        page: dict[str, object] = {"Accounts": accounts}
        if start + size < len(ids):
            page["NextToken"] = str(start + size)
        return 200, "application/x-amz-json-1.1", json.dumps(page).encode()


def serve(responder: Responder, port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the clients' connection pools are reused, as against AWS
        disable_nagle_algorithm = True  # else a small reply waits for the client's delayed ACK (40 ms a call)
        wbufsize = 1 << 16  # headers and body leave in one send (handle_one_request flushes after each reply)

        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/__stats":
                self._reply(200, "application/json", json.dumps(responder.stats()).encode())
            else:
                self._reply(404, "text/plain", b"not found")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/__reset":
                responder.reset()
                self._reply(204, "text/plain", b"")
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, content_type, payload = responder.handle(headers, body)
            except Exception as exc:  # a responder bug shows as a 500, it never hangs the client
                status, content_type, payload = _xml_error("InternalFailure", repr(exc), 500)
            self._reply(status, content_type, payload)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024  # ~150 clients connecting at once must not overflow the accept backlog

    server = Server(("127.0.0.1", port), Handler)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="W1")
    parser.add_argument("--latency", type=float, default=None, help="seconds per call (default: the workload's)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--report", choices=["fresh", "absent"], default="fresh",
                        help="credential reports at the start of each run: fresh in every account, or none yet")
    parser.add_argument("--report-delay", type=float, default=1.0,
                        help="seconds IAM takes to generate a report (with --report absent)")
    args = parser.parse_args(argv)
    sys.setswitchinterval(0.001)  # hand the GIL over quickly: many handler threads each do a little work
    responder = Responder(WORKLOADS[args.workload], args.latency, args.report, args.report_delay)
    server = serve(responder, args.port)
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
