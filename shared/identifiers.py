"""The shapes of the identifiers we validate (AWS's, and e-mail addresses), defined once. ASCII only and matched
whole (``fullmatch``): ``\\d`` without ``re.ASCII`` admits Arabic-Indic digits, and ``$`` admits a trailing newline.
tests/unit/test_identifiers.py scans shared/ so that no pattern elsewhere goes back to either."""

from __future__ import annotations

import re

ACCOUNT_ID = re.compile(r"[0-9]{12}", re.ASCII)
ACCESS_KEY_ID = re.compile(r"[A-Z0-9]{16,128}", re.ASCII)
FINGERPRINT = re.compile(r"[0-9a-f]{16}", re.ASCII)  # shared/collection/transform.py: sha256 prefix of the key id
# AWS Organizations' own identifiers, as its API reference gives their patterns: an organization (o-), an
# organizational unit (ou-<root part>-<8 to 32>) and a root (r-).
ORGANIZATION_ID = re.compile(r"o-[a-z0-9]{10,32}", re.ASCII)
ORGANIZATIONAL_UNIT_ID = re.compile(r"ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}", re.ASCII)
ROOT_ID = re.compile(r"r-[a-z0-9]{4,32}", re.ASCII)


def is_account_id(value: object) -> bool:
    return isinstance(value, str) and ACCOUNT_ID.fullmatch(value) is not None


def is_access_key_id(value: object) -> bool:
    return isinstance(value, str) and ACCESS_KEY_ID.fullmatch(value) is not None


def is_fingerprint(value: object) -> bool:
    return isinstance(value, str) and FINGERPRINT.fullmatch(value) is not None


def is_organization_id(value: object) -> bool:
    return isinstance(value, str) and ORGANIZATION_ID.fullmatch(value) is not None


def is_organizational_unit_id(value: object) -> bool:
    return isinstance(value, str) and ORGANIZATIONAL_UNIT_ID.fullmatch(value) is not None


def is_root_id(value: object) -> bool:
    return isinstance(value, str) and ROOT_ID.fullmatch(value) is not None


# A plain e-mail address (an owner tag's value, NOTIFY_SENDER, NOTIFY_FALLBACK_RECIPIENT): one @, no spaces, quotes,
# angle brackets or commas. Conservative on purpose: a tag value is hostile text, and display-name or list syntax could
# add recipients; an owner tag that is not such an address sends its keys to the fallback recipient instead.
EMAIL_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+", re.ASCII)


def is_email_address(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 254 and EMAIL_ADDRESS.fullmatch(value) is not None
