"""Who owns a key: the value of the first owner tag present on its IAM user (pure; no I/O).

``OWNER_TAG_KEYS`` lists the tag keys tried, in order (default ``owner,Owner,email,contact``). Keys are matched
exactly, as written (IAM keeps the case a tag was created with); a tag present with an empty or blank value is
skipped, so that the next key on the list can still name someone. No such tag: the key has no owner (``""``),
which is a finding of its own for an active key ("unowned active key").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from shared.errors import MalformedResponseError
from shared.redaction import redact

DEFAULT_OWNER_TAG_KEYS: tuple[str, ...] = ("owner", "Owner", "email", "contact")
# IAM tag keys: 1-128 Unicode letters, digits, spaces and _ . : / = + - @ (the IAM API's own pattern,
# [\p{L}\p{Z}\p{N}_.:/=+\-@]+: Unicode on purpose, unlike identifiers). Matched whole (fullmatch).
_TAG_KEY = re.compile(r"[\w .:/=+\-@]{1,128}", re.UNICODE)
_MAX_KEYS = 20
_MAX_OWNER = 256  # IAM's limit for a tag value


def parse_owner_tag_keys(value: str) -> tuple[str, ...]:
    """``"owner, Owner,email"`` -> ``("owner", "Owner", "email")``. Raises ValueError saying what is expected."""
    keys = [part.strip() for part in value.split(",") if part.strip()]
    bad = [k for k in keys if not _TAG_KEY.fullmatch(k) or k.lower().startswith("aws:")]
    if not keys or bad or len(keys) > _MAX_KEYS:
        detail = f" (not a tag key: {', '.join(repr(b[:40]) for b in bad[:5])})" if bad else ""
        raise ValueError(
            f"expected a comma-separated list of 1 to {_MAX_KEYS} IAM tag keys (letters, digits, spaces and "
            f"_.:/=+-@, not aws:), got {value[:80]!r}{detail}"
        )
    return tuple(dict.fromkeys(keys))


def owner_from_tags(tags: Sequence[Mapping[str, Any]], tag_keys: Sequence[str], *, user_name: str = "?") -> str:
    """The value of the first of ``tag_keys`` present on the user with a non-blank value; ``""`` when none.

    ``tags`` is the ``Tags`` list of the user's ``GetAccountAuthorizationDetails`` item, each
    ``{"Key": ..., "Value": ...}``.
    """
    where = f"IAM GetAccountAuthorizationDetails (user {user_name})"
    values: dict[str, str] = {}
    for tag in tags:
        key = tag.get("Key") if isinstance(tag, Mapping) else None
        value = tag.get("Value") if isinstance(tag, Mapping) else None
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise MalformedResponseError(f"{where}: a tag lacks its Key or Value")
        values[key] = value
    for key in tag_keys:
        owner = values.get(key, "").strip()
        if owner:
            return redact(owner[:_MAX_OWNER])  # a tag is free text: never let a key id through
    return ""
