"""GetAccountAuthorizationDetails as IAM really answers it, in front of moto: paged (``IsTruncated`` + ``Marker``),
policy documents URL-encoded in the XML, and with what moto leaves out.

moto (5.2) answers the call in one page whatever ``MaxItems`` says, and drops a user's permissions boundary
(``CreateUser`` accepts ``PermissionsBoundary`` and forgets it; ``PutUserPermissionsBoundary`` is not implemented). This
proxy rule (tests/support/aws_proxy.py) reads moto's full answer for the calling account (moto names the account by
the access key id that signed the call), adds the boundaries it is given, and serves it again the way IAM does: users,
then groups, then customer-managed policies, ``page_size`` entities a page.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import boto3

from tests.support.aws_proxy import Call, Fault

ACTION = "GetAccountAuthorizationDetails"
_LISTS = ("UserDetailList", "GroupDetailList", "Policies")
_DOCUMENTS = ("PolicyDocument", "Document")  # IAM sends these as URL-encoded JSON text


def _xml(value: Any, name: str = "") -> str:
    """boto3's parsed shape back to IAM's XML: lists as <member> items, dates ISO 8601, documents URL-encoded."""
    if name in _DOCUMENTS:
        return quote(json.dumps(value, separators=(",", ":")), safe="")
    if isinstance(value, Mapping):
        return "".join(f"<{k}>{_xml(v, k)}</{k}>" for k, v in value.items())
    if isinstance(value, list):
        return "".join(f"<member>{_xml(v)}</member>" for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return escape(str(value))


def serve_authorization_details(
    moto_url: str, page_size: int, boundaries: Mapping[str, str] | None = None
) -> Callable[[Call], Fault | None]:
    """The proxy rule. ``boundaries``: user name -> permissions boundary policy ARN, added to moto's answer."""
    lock = threading.Lock()
    answers: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    def entities(call: Call) -> list[tuple[str, dict[str, Any]]]:
        with lock:
            if call.access_key_id not in answers:
                iam = boto3.client("iam", endpoint_url=moto_url, region_name="us-east-1",
                                   aws_access_key_id=call.access_key_id, aws_secret_access_key="x" * 40)
                full = iam.get_account_authorization_details(Filter=["User", "Group", "LocalManagedPolicy"])
                found = []
                for list_name in _LISTS:
                    for item in full.get(list_name, []):
                        boundary = (boundaries or {}).get(item.get("UserName", ""))
                        if boundary:
                            item["PermissionsBoundary"] = {"PermissionsBoundaryType": "PermissionsBoundaryPolicy",
                                                           "PermissionsBoundaryArn": boundary}
                        found.append((list_name, item))
                answers[call.access_key_id] = found
            return answers[call.access_key_id]

    def rule(call: Call) -> Fault | None:
        if call.action != ACTION:
            return None
        every = entities(call)
        start = int(call.params.get("Marker", "0"))
        page = every[start:start + page_size]
        truncated = start + page_size < len(every)
        lists = "".join(
            f"<{name}>{''.join(f'<member>{_xml(item)}</member>' for kind, item in page if kind == name)}</{name}>"
            for name in (*_LISTS[:2], "RoleDetailList", _LISTS[2])
        )
        marker = f"<Marker>{start + page_size}</Marker>" if truncated else ""
        body = (f'<{ACTION}Response xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><{ACTION}Result>{lists}'
                f"<IsTruncated>{str(truncated).lower()}</IsTruncated>{marker}</{ACTION}Result>"
                f"<ResponseMetadata><RequestId>p</RequestId></ResponseMetadata></{ACTION}Response>")
        return Fault(200, body, {"Content-Type": "text/xml"})

    return rule


def filter_of(call: Call) -> list[str]:
    """The ``Filter`` a GetAccountAuthorizationDetails call asked for (query protocol: Filter.member.N)."""
    return [call.params[k] for k in sorted(call.params) if k.startswith("Filter.member.")]
