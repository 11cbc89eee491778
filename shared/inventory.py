"""One account's inventory: every access key of every IAM user, read through the ``IamReader`` port (no SDK here),
as records written to a spool; and its root keys, from the credential report.

ListUsers pages stream in while up to ``iam.concurrency`` users are read in parallel (ListAccessKeys, then
GetAccessKeyLastUsed per key): exactly the calls of a serial walk, fewer ListUsers pages, no call twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from typing import IO, Any

from shared.domain import Account, RunContext
from shared.errors import MalformedResponseError, NoSuchEntityError, describe_error
from shared.ports import IamReader
from shared.records import KeyRecord
from shared.transform import key_records_for_user, parse_key_metadata

_UserKeys = tuple[Mapping[str, Any], list[Mapping[str, Any]], dict[str, Mapping[str, Any]]]


def write_rows(records: list[KeyRecord], out: IO[str]) -> None:
    """Records as JSON Lines rows (``Record.to_row()``)."""
    for record in records:
        out.write(json.dumps(record.to_row(), separators=(",", ":")) + "\n")


def inventory_account(iam: IamReader, account: Account, run: RunContext, out: IO[str]) -> int:
    """Every access key of every IAM user of one account, as JSON Lines rows written to ``out``; returns how many.

    A user or key deleted while the account is walked has no record; any other error fails the account (raised)."""
    count = 0

    def write(user: Mapping[str, Any], keys: list[Mapping[str, Any]], last_used: dict[str, Mapping[str, Any]]) -> None:
        nonlocal count
        records = key_records_for_user(user, keys, last_used, account, run)
        write_rows(records, out)
        count += len(records)

    workers = max(1, iam.concurrency)
    window = workers * 4  # bounded look-ahead: memory does not grow with the number of users
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"iam-{account.id}") as pool:
        pending: set[Future[_UserKeys | None]] = set()
        try:
            for user in iam.users():
                pending.add(pool.submit(_read_user, iam, user))
                if len(pending) >= window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        if (result := future.result()) is not None:
                            write(*result)
            for future in as_completed(pending):
                if (result := future.result()) is not None:
                    write(*result)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return count


def _read_user(iam: IamReader, user: Mapping[str, Any]) -> _UserKeys | None:
    name = user.get("UserName") if isinstance(user, Mapping) else None
    if not isinstance(name, str) or not name:
        raise MalformedResponseError("IAM ListUsers: field UserName is missing")
    try:
        keys = list(iam.access_keys(name))
    except NoSuchEntityError:
        return None  # the user was deleted while we listed: it has no keys any more
    last_used: dict[str, Mapping[str, Any]] = {}
    present = []
    for key in keys:
        key_id, _, _ = parse_key_metadata(name, key)  # a malformed key fails the account before any further call
        try:
            last_used[key_id] = iam.key_last_used(key_id)
        except NoSuchEntityError:
            continue  # the key was deleted while we listed
        present.append(key)
    return user, present, last_used


def describe_account_error(exc: BaseException, account: Account) -> str:
    """An account's inventory failed: which dependency (IAM), which account, what failed and what to check (the
    reader's errors say all of that already; anything else is named as IAM's in this account)."""
    described = describe_error(exc)
    return described if described.startswith("IAM ") else f"IAM in account {account.id}: {described}"
