"""The shapes of AWS identifiers we validate, defined once. ASCII only and matched whole (``fullmatch``): ``\\d``
without ``re.ASCII`` admits Arabic-Indic digits, and ``$`` admits a trailing newline."""

from __future__ import annotations

import re

ACCOUNT_ID = re.compile(r"[0-9]{12}", re.ASCII)
ACCESS_KEY_ID = re.compile(r"[A-Z0-9]{16,128}", re.ASCII)
FINGERPRINT = re.compile(r"[0-9a-f]{16}", re.ASCII)  # shared/collection/transform.py: sha256 prefix of the key id


def is_account_id(value: object) -> bool:
    return isinstance(value, str) and ACCOUNT_ID.fullmatch(value) is not None


def is_access_key_id(value: object) -> bool:
    return isinstance(value, str) and ACCESS_KEY_ID.fullmatch(value) is not None


def is_fingerprint(value: object) -> bool:
    return isinstance(value, str) and FINGERPRINT.fullmatch(value) is not None
