"""Which IAM users hold admin-equivalent permissions, and which AWS has quarantined: a documented heuristic over what
``iam:GetAccountAuthorizationDetails`` returns (pure; no I/O).

A user is **privileged** when, directly or through one of its groups, it has

- an AWS-managed admin-equivalent policy attached (``ADMIN_EQUIVALENT``: ``AdministratorAccess`` grants ``*``,
  ``IAMFullAccess`` grants ``iam:*``, which is admin-equivalent because it can attach any policy to itself), or
- an inline or customer-managed policy (its default version) with a statement that has ``"Effect": "Allow"``, an
  ``Action`` of ``*`` (or ``*:*``) or ``iam:*``, and a ``Resource`` of ``*``;

and its permissions boundary, when it has one, allows the same: a boundary caps what the user gets at what the
boundary itself grants by the same test (an AWS-managed boundary other than those above, whose document the collector
does not read, caps at nothing).

What the heuristic does **not** evaluate, and so never claims: service control policies and resource control
policies of AWS Organizations, ``Condition`` blocks (an Allow with a condition counts as if it always applied),
``Deny`` statements (an explicit deny does not lower the finding), ``NotAction`` and ``NotResource`` statements (never
counted, so ``PowerUserAccess``-style grants are not privileged here), resource-based policies, session policies, and
actions narrower than ``iam:*`` that also lead to admin (``iam:AttachUserPolicy``, ``iam:PassRole`` with a role, ...).
It is a ranking input (docs/insight.md), not an access analysis.

**Quarantined**: an ``AWSCompromisedKeyQuarantine`` policy (V1, V2 or V3) is attached to the user itself: AWS attaches
it after it finds one of the user's access keys in public.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from shared.errors import MalformedResponseError
from shared.redaction import redact


class Level(enum.IntEnum):
    """What a policy grants, as far as the heuristic looks: nothing it counts, ``iam:*`` on ``*``, or ``*`` on ``*``.
    ``iam:*`` is below ``*`` (``*`` includes it); a boundary caps a grant at the lower of the two."""

    NONE = 0
    IAM = 1
    FULL = 2


# AWS-managed policies that are admin-equivalent, by name (their ARN: arn:<partition>:iam::aws:policy/<name>).
ADMIN_EQUIVALENT: Mapping[str, Level] = {"AdministratorAccess": Level.FULL, "IAMFullAccess": Level.IAM}
# The policies AWS attaches to a user one of whose keys it found exposed in public.
QUARANTINE_POLICIES = frozenset({"AWSCompromisedKeyQuarantine", "AWSCompromisedKeyQuarantineV2",
                                 "AWSCompromisedKeyQuarantineV3"})
ROOT_REASON = "root user: no IAM policy restricts it"
_AWS_MANAGED = re.compile(r"arn:aws[a-z-]*:iam::aws:policy/([\w+=,.@-]{1,128})", re.ASCII)
_GRANTED = {Level.FULL: "*", Level.IAM: "iam:*"}
_MAX_NAME = 128  # IAM's own limit for policy and group names
_MAX_REASONS = 6  # PrivilegeReasons stays a short line: the first six, then how many more


@dataclass(frozen=True, slots=True)
class Grant:
    """One reason a user is privileged, before its boundary: what it grants and how the user has it."""

    level: Level
    reason: str  # e.g. "AdministratorAccess via group Admins", "inline policy deploy allows *"


@dataclass(frozen=True, slots=True)
class Privilege:
    """What the key records of one user say about its permissions (``Privileged``, ``PrivilegeReasons``,
    ``Quarantined``)."""

    privileged: bool
    reasons: str  # "; "-separated; empty when not privileged
    quarantined: bool = False


NOT_PRIVILEGED = Privilege(False, "")
ROOT_PRIVILEGE = Privilege(True, ROOT_REASON)


def aws_managed_name(arn: str) -> str | None:
    """``AdministratorAccess`` for ``arn:aws:iam::aws:policy/AdministratorAccess``; None for any other ARN."""
    match = _AWS_MANAGED.fullmatch(arn)
    return match[1] if match else None


def is_quarantine_policy(arn: str) -> bool:
    return aws_managed_name(arn) in QUARANTINE_POLICIES


def safe_name(text: Any) -> str:
    """A name from AWS shown in a reason: hostile text, kept to one short, printable line with no key id."""
    cleaned = "".join(c if c.isprintable() else "?" for c in str(text))[:_MAX_NAME]
    return redact(cleaned.replace(";", ","))  # "; " separates the reasons


def document_level(document: Any, where: str) -> Level:
    """What a policy document grants by the heuristic: the highest of its statements'.

    ``document`` is what boto3 returns (a dict: botocore URL-decodes and parses IAM's policy documents), or the
    document as IAM sends it (URL-encoded JSON text) or plain JSON text. Raises ``MalformedResponseError`` naming
    ``where`` when it is none of those."""
    parsed = _parsed(document, where)
    statements = parsed.get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list):
        raise MalformedResponseError(f"{where}: the policy document has no Statement list")
    return max((_statement_level(s) for s in statements), default=Level.NONE)


def _parsed(document: Any, where: str) -> Mapping[str, Any]:
    if isinstance(document, str):
        text = document.strip()
        for candidate in (text, unquote(text)):
            try:
                document = json.loads(candidate)
                break
            except ValueError:
                continue
        else:
            raise MalformedResponseError(f"{where}: the policy document is not JSON")
    if not isinstance(document, Mapping):
        raise MalformedResponseError(f"{where}: the policy document is not a JSON object")
    return document


def _statement_level(statement: Any) -> Level:
    if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
        return Level.NONE  # Deny is not evaluated: it never raises the level, and is not subtracted either
    if "Action" not in statement or "Resource" not in statement:
        return Level.NONE  # NotAction / NotResource: not evaluated, never counted
    if "*" not in _strings(statement["Resource"]):
        return Level.NONE
    actions = {action.lower() for action in _strings(statement["Action"])}
    if actions & {"*", "*:*"}:
        return Level.FULL
    return Level.IAM if "iam:*" in actions else Level.NONE


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.strip()]
    if isinstance(value, list):
        return [v.strip() for v in value if isinstance(v, str)]
    return []


def managed_level(arn: str, customer_levels: Mapping[str, Level]) -> Level:
    """What an attached managed policy grants: an AWS-managed one by name, a customer-managed one by its default
    version (``customer_levels``, from the account's LocalManagedPolicy list); anything else grants nothing counted."""
    name = aws_managed_name(arn)
    if name is not None:
        return ADMIN_EQUIVALENT.get(name, Level.NONE)
    return customer_levels.get(arn, Level.NONE)


def inline_grant(name: str, document: Any, owner: str, where: str) -> Grant | None:
    """The grant of one inline policy (``owner``: "" for the user's own, "group X" for a group's)."""
    level = document_level(document, where)
    if level is Level.NONE:
        return None
    of = f" of {owner}" if owner else ""
    return Grant(level, f"inline policy {safe_name(name)}{of} allows {_GRANTED[level]}")


def attached_grant(arn: str, name: str, customer_levels: Mapping[str, Level], via: str) -> Grant | None:
    """The grant of one attached managed policy (``via``: "" when attached to the user, "group X" otherwise)."""
    level = managed_level(arn, customer_levels)
    if level is Level.NONE:
        return None
    shown = safe_name(name or arn.rsplit("/", 1)[-1])
    how = f" via {via}" if via else " attached"
    if aws_managed_name(arn) is not None:
        return Grant(level, f"{shown}{how}")
    return Grant(level, f"{_GRANTED[level]} via policy {shown}" + (f" of {via}" if via else ""))


def user_privilege(
    grants: Iterable[Grant], boundary: Level | None, boundary_name: str = "", *, quarantined: bool = False
) -> Privilege:
    """A user's privilege from every grant it has (its own and its groups'), capped by its permissions boundary
    (``boundary``: what the boundary grants by the same test; None: no boundary)."""
    reasons: list[str] = []
    for grant in sorted(set(grants), key=lambda g: (-g.level, g.reason)):
        level = grant.level if boundary is None else min(grant.level, boundary)
        if level is Level.NONE:
            continue
        capped = f" (capped at {_GRANTED[level]} by boundary {safe_name(boundary_name)})" if level < grant.level else ""
        reasons.append(grant.reason + capped)
    if len(reasons) > _MAX_REASONS:
        reasons = [*reasons[:_MAX_REASONS], f"and {len(reasons) - _MAX_REASONS} more"]
    return Privilege(bool(reasons), "; ".join(reasons), quarantined)


def strongest(grants: Sequence[Grant]) -> Level:
    return max((g.level for g in grants), default=Level.NONE)
