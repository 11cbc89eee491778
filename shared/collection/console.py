"""Console sign-in facts of an account's users, from the IAM credential report the inventory already reads (pure).

- ``ConsoleWithoutMfa``: the user has a console password (``password_enabled`` is ``true``) and no MFA device
  (``mfa_active`` is ``false``): whoever phishes the password gets the console, and can make keys of their own.
- ``KeyAtUserSetup``: the key was created when the user was, and the user has a console password. This is
  CIS AWS Foundations Benchmark v3.0.0 1.11 (1.11 from v1.4.0 on: "Do not setup access keys during initial user setup
  for all IAM users that have a console password"), whose remediation deletes the keys "created at the same time as the
  user profile". The benchmark gives no tolerance; here a key counts when its ``CreateDate`` is within
  ``KEY_AT_SETUP_TOLERANCE`` (10 minutes) of the user's, either way: one console wizard or one provisioning script
  makes both in that time, while a key asked for later, as the benchmark wants, comes after. (The benchmark's own
  audit uses "console password and the key never used" as a proxy; the creation time is what it asks about.)

When the account's report could not be had, neither is known, and both are false.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

KEY_AT_SETUP_TOLERANCE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class ConsoleAccess:
    """One user's console sign-in, as its credential report row says."""

    password: bool  # password_enabled
    mfa: bool  # mfa_active

    @property
    def without_mfa(self) -> bool:
        return self.password and not self.mfa


def console_access(rows: Iterable[Mapping[str, str]]) -> dict[str, ConsoleAccess]:
    """Per user name, from the report's rows (the root user's row included, as ``<root_account>``: its
    ``password_enabled`` is ``not_supported``, and the root user signs in to the console unless its password was
    removed, so it counts as having one)."""
    found: dict[str, ConsoleAccess] = {}
    for row in rows:
        user = row.get("user") or ""
        if not user:
            continue
        password = (row.get("password_enabled") or "").strip().lower()
        found[user] = ConsoleAccess(password in ("true", "not_supported"),
                                    (row.get("mfa_active") or "").strip().lower() == "true")
    return found


def key_at_user_setup(key_created: datetime, user_created: datetime | None, console: ConsoleAccess | None) -> bool:
    if user_created is None or console is None or not console.password:
        return False
    return abs(key_created - user_created) <= KEY_AT_SETUP_TOLERANCE
