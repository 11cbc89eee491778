"""AWS Organizations: the member accounts of the organization (get: paged reads; transform: active accounts)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from botocore.client import BaseClient

from shared.domain import Account
from shared.errors import (
    MalformedResponseError,
)
from shared.identifiers import is_account_id

# --- get: raw, paginated reads (the SDK's paginators; errors propagate) ---


def list_organization_accounts(org: BaseClient) -> Iterator[dict[str, Any]]:
    """ListAccounts pages."""
    yield from org.get_paginator("list_accounts").paginate()


def active_accounts(pages: Sequence[Mapping[str, Any]] | Any) -> list[Account]:
    """ACTIVE accounts from Organizations ListAccounts pages, with their names, sorted by id (checked strictly: a
    missing or malformed field raises ``MalformedResponseError`` rather than losing an account)."""
    where = "Organizations ListAccounts"
    accounts: dict[str, Account] = {}
    for page in pages:
        items = page.get("Accounts") if isinstance(page, Mapping) else None
        if not isinstance(items, list):  # botocore parses a cut or garbled JSON answer as an empty one
            raise MalformedResponseError(f"{where}: field Accounts is missing")
        for item in items:
            account_id = item.get("Id") if isinstance(item, Mapping) else None
            if not isinstance(account_id, str) or not account_id:
                raise MalformedResponseError(f"{where}: field Id is {'missing' if account_id is None else 'not a str'}")
            if not is_account_id(account_id):
                raise MalformedResponseError(f"{where}: field Id is not a 12-digit account id")
            # Newer responses carry State (ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED); older ones only Status.
            state = item.get("State") or item.get("Status")
            if state == "ACTIVE":
                name = item.get("Name")
                accounts[account_id] = Account(account_id, name if isinstance(name, str) else "")
    return [accounts[i] for i in sorted(accounts)]
