"""Canned rows of the two tables (as the file sink writes them), for the readers' tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def key(run: str, at: datetime, account: str, user: str, **fields: Any) -> dict[str, Any]:
    row = {
        "TimeGenerated": iso(at), "RunId": run, "AccountId": account, "AccountName": f"acct-{account[-2:]}",
        "UserName": user, "UserArn": f"arn:aws:iam::{account}:user/{user}", "AccessKeyId": f"AKIA...{user[:4].upper()}",
        "AccessKeyFingerprint": f"{account}{user}", "Status": "Active", "CreatedAt": iso(at - timedelta(days=10)),
        "LastUsedAt": iso(at), "LastUsedRegion": "us-east-1", "LastUsedService": "s3", "AgeDays": 10,
        "DaysSinceLastUse": 0, "NeverUsed": False, "RotationDue": False, "Unused": False, "UserActiveKeyCount": 1,
        "IsRootKey": False,
    }
    return {**row, **fields}


def run(run_id: str, at: datetime, status: str, failed: tuple[str, ...] = (), unknown: tuple[str, ...] = ()) -> dict:
    return {
        "TimeGenerated": iso(at), "RunId": run_id, "Status": status, "AuthMode": "access_key", "Sink": "file",
        "AccountsTotal": 3, "AccountsSucceeded": 3 - len(failed), "AccountsFailed": len(failed),
        "FailedAccounts": json.dumps([{"AccountId": a, "Error": f"AccessDenied <{a}>"} for a in failed]),
        "KeysCollected": 0, "DurationSeconds": 1.0, "CollectorVersion": "t", "RecordsDeferred": 0,
        "RecordsReplayed": 0, "RecordsDropped": 0, "RootKeysUnknownAccounts": json.dumps(list(unknown)),
    }
