"""One account's IAM users as ``GetAccountAuthorizationDetails`` (``Filter`` User, Group, LocalManagedPolicy) shows
them: each user with its owner, its keys' console descriptions, its privilege and whether AWS has quarantined it.
Pure: it takes the answer's pages, as boto3 returns them.

One paged call per about 1,000 entities replaces ``ListUsers`` and a ``ListUserTags`` per user: a user's item holds
its tags, its groups, its attached and inline policies and its permissions boundary. The groups and the customer-
managed policies come in the same pages, usually after the users, so privilege is settled once every page is read
(``DirectoryBuilder.build``). What is kept per user is small (no policy document is kept once it is judged): an
account of 5,000 users holds about 2 MB while its keys are read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.errors import MalformedResponseError
from shared.findings.owners import DEFAULT_OWNER_TAG_KEYS, owner_from_tags
from shared.findings.privilege import (
    NOT_PRIVILEGED,
    Grant,
    Level,
    Privilege,
    attached_grant,
    aws_managed_name,
    document_level,
    inline_grant,
    is_quarantine_policy,
    managed_level,
    safe_name,
    user_privilege,
)
from shared.identifiers import is_access_key_id
from shared.redaction import redact

API = "IAM GetAccountAuthorizationDetails"
FILTER = ("User", "Group", "LocalManagedPolicy")
# The AWS console's access key description is a user tag whose key is the access key id (IAM's own convention).
_MAX_DESCRIPTION = 256  # IAM's limit for a tag value


@dataclass(frozen=True, slots=True)
class UserEntry:
    """What the key records of one IAM user take from the directory."""

    name: str
    arn: str
    created: datetime  # the user's CreateDate (KeyAtUserSetup compares each key's with it)
    owner: str = ""  # the first of OWNER_TAG_KEYS on its tags
    descriptions: tuple[tuple[str, str], ...] = ()  # (access key id, console description), from its tags
    privilege: Privilege = NOT_PRIVILEGED

    def description(self, key_id: str) -> str:
        return next((text for tag_key, text in self.descriptions if tag_key == key_id), "")


@dataclass(frozen=True)
class AccountDirectory:
    users: list[UserEntry]  # in the order IAM listed them
    groups: int = 0
    policies: int = 0


@dataclass(slots=True)
class _Listed:
    """A user as listed, its privilege not settled yet (its groups and policies may come on later pages)."""

    entry: UserEntry
    groups: tuple[str, ...]
    attached: tuple[tuple[str, str], ...]  # (policy ARN, policy name)
    inline: tuple[Grant, ...]
    boundary: str | None  # the boundary policy's ARN
    quarantined: bool


@dataclass(slots=True)
class _Group:
    attached: tuple[tuple[str, str], ...]
    inline: tuple[Grant, ...]


@dataclass
class DirectoryBuilder:
    """Reads the pages one by one (``add_page``), then settles every user's privilege (``build``)."""

    owner_tag_keys: Sequence[str] = DEFAULT_OWNER_TAG_KEYS
    _users: list[_Listed] = field(default_factory=list)
    _groups: dict[str, _Group] = field(default_factory=dict)
    _policies: dict[str, Level] = field(default_factory=dict)  # customer-managed policy ARN -> its default version's
    _policy_names: dict[str, str] = field(default_factory=dict)

    def add_page(self, page: Mapping[str, Any]) -> None:
        if not isinstance(page, Mapping):
            raise MalformedResponseError(f"{API}: the answer is not an object")
        for item in _items(page, "UserDetailList"):
            self._users.append(self._user(item))
        for item in _items(page, "GroupDetailList"):
            name = _text(item, "GroupName", API)
            where = f"{API} (group {safe_name(name)})"
            self._groups[name] = _Group(
                _attached(item, where),
                _inline(item, "GroupPolicyList", where, f"group {safe_name(name)}"),
            )
        for item in _items(page, "Policies"):
            arn = _text(item, "Arn", API)
            self._policy_names[arn] = str(item.get("PolicyName") or arn.rsplit("/", 1)[-1])
            self._policies[arn] = _default_version_level(item, f"{API} (policy {safe_name(self._policy_names[arn])})")

    def build(self) -> AccountDirectory:
        """Every user with its privilege settled: its own grants and its groups', capped by its boundary."""
        group_grants = {name: self._group_grants(name, group) for name, group in self._groups.items()}
        users = []
        for listed in self._users:
            grants = [*listed.inline, *self._attached_grants(listed.attached, via="")]
            for group in listed.groups:
                grants.extend(group_grants.get(group, ()))
            boundary = None if listed.boundary is None else managed_level(listed.boundary, self._policies)
            boundary_name = "" if listed.boundary is None else (
                aws_managed_name(listed.boundary) or self._policy_names.get(listed.boundary, listed.boundary))
            privilege = user_privilege(grants, boundary, boundary_name, quarantined=listed.quarantined)
            users.append(_with_privilege(listed.entry, privilege))
        return AccountDirectory(users, len(self._groups), len(self._policies))

    def _group_grants(self, name: str, group: _Group) -> list[Grant]:
        return [*group.inline, *self._attached_grants(group.attached, via=f"group {safe_name(name)}")]

    def _attached_grants(self, attached: Iterable[tuple[str, str]], via: str) -> list[Grant]:
        found = (attached_grant(arn, name, self._policies, via) for arn, name in attached)
        return [grant for grant in found if grant is not None]

    def _user(self, item: Mapping[str, Any]) -> _Listed:
        name = _text(item, "UserName", API)
        where = f"{API} (user {safe_name(name)})"
        arn = _text(item, "Arn", where)
        created = item.get("CreateDate") if isinstance(item, Mapping) else None
        if not isinstance(created, datetime) or created.tzinfo is None:
            shown = "missing" if created is None else "not a date"
            raise MalformedResponseError(f"{where}: field CreateDate is {shown}")
        tags = _list(item, "Tags", where)
        owner = owner_from_tags(tags, self.owner_tag_keys, user_name=safe_name(name))
        descriptions = tuple(
            (str(tag["Key"]), _printable(str(tag.get("Value") or "")))
            for tag in tags if is_access_key_id(tag.get("Key")) and str(tag.get("Value") or "").strip()
        )
        groups = _list(item, "GroupList", where)
        if not all(isinstance(g, str) for g in groups):
            raise MalformedResponseError(f"{where}: field GroupList holds a name that is not text")
        attached = _attached(item, where)
        boundary = item.get("PermissionsBoundary")
        boundary_arn = boundary.get("PermissionsBoundaryArn") if isinstance(boundary, Mapping) else None
        if boundary is not None and not isinstance(boundary_arn, str):
            raise MalformedResponseError(f"{where}: field PermissionsBoundary has no PermissionsBoundaryArn")
        return _Listed(
            UserEntry(name, arn, created, owner, descriptions),
            tuple(groups),
            attached,
            _inline(item, "UserPolicyList", where, ""),
            boundary_arn,
            any(is_quarantine_policy(policy_arn) for policy_arn, _ in attached),
        )


def read_directory(pages: Iterable[Mapping[str, Any]], owner_tag_keys: Sequence[str] = DEFAULT_OWNER_TAG_KEYS
                   ) -> AccountDirectory:
    """The account's users, their owners, key descriptions and privilege, from every page of the answer."""
    builder = DirectoryBuilder(owner_tag_keys)
    for page in pages:
        builder.add_page(page)
    return builder.build()


def _printable(text: str) -> str:
    """A tag value shown as a key's description: hostile text, kept to one printable line with no key id."""
    return redact("".join(c if c.isprintable() else " " for c in text.strip()[:_MAX_DESCRIPTION]))


def _with_privilege(entry: UserEntry, privilege: Privilege) -> UserEntry:
    return UserEntry(entry.name, entry.arn, entry.created, entry.owner, entry.descriptions, privilege)


def _items(page: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    """A list of the answer (absent: none on this page, as IAM's model allows), each item an object."""
    items = page.get(name)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise MalformedResponseError(f"{API}: field {name} is not a list of objects")
    return items


def _list(item: Mapping[str, Any], name: str, where: str) -> list[Any]:
    value = item.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedResponseError(f"{where}: field {name} is not a list")
    return value


def _text(item: Any, name: str, where: str) -> str:
    value = item.get(name) if isinstance(item, Mapping) else None
    if not isinstance(value, str) or not value:
        raise MalformedResponseError(f"{where}: field {name} is {'missing' if value is None else 'not text'}")
    return value


def _attached(item: Mapping[str, Any], where: str) -> tuple[tuple[str, str], ...]:
    attached = []
    for policy in _list(item, "AttachedManagedPolicies", where):
        arn = _text(policy, "PolicyArn", f"{where}, AttachedManagedPolicies")
        attached.append((arn, str(policy.get("PolicyName") or "")))
    return tuple(attached)


def _inline(item: Mapping[str, Any], field_name: str, where: str, owner: str) -> tuple[Grant, ...]:
    grants = []
    for policy in _list(item, field_name, where):
        name = _text(policy, "PolicyName", f"{where}, {field_name}")
        grant = inline_grant(name, policy.get("PolicyDocument"), owner, f"{where}, inline policy {safe_name(name)}")
        if grant is not None:
            grants.append(grant)
    return tuple(grants)


def _default_version_level(policy: Mapping[str, Any], where: str) -> Level:
    """What a customer-managed policy's default version grants (the version IAM evaluates)."""
    default_id = policy.get("DefaultVersionId")
    versions = _list(policy, "PolicyVersionList", where)
    chosen = [v for v in versions if isinstance(v, Mapping) and v.get("IsDefaultVersion") is True]
    if not chosen:
        chosen = [v for v in versions if isinstance(v, Mapping) and default_id and v.get("VersionId") == default_id]
    if not chosen:
        raise MalformedResponseError(f"{where}: no default version in PolicyVersionList")
    return document_level(chosen[0].get("Document"), where)
