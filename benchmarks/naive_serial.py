"""The 2019 algorithm, written for the comparison: the naive serial walk.

One boto3 session; AssumeRole into the home role with the IAM user's key; for an organization, ListAccounts and then,
account after account, AssumeRole into the member role and one IAM client. In each account: the ListUsers paginator
(IAM's default page of 100 users), then for each user ListAccessKeys, then for each key GetAccessKeyLastUsed, one call
after another. Every record is built in memory (a list) and written out at the end. It reads no tags and no
privileges (the 2019 algorithm never did; issue 20): the product does more (owners, key descriptions, privilege,
quarantine, console facts, root keys) with fewer calls.

Endpoints come from ``AWS_ENDPOINT_URL`` (boto3's own convention), like the product.
``python benchmarks/naive_serial.py --scope home|organization --out FILE`` prints ``RESULT {json}`` on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import boto3

HOME_ROLE_ARN = "arn:aws:iam::111111111111:role/AwsIamKeyCollectorHome"
MEMBER_ROLE_NAME = "AwsIamKeyCollector"
USER_ACCESS_KEY_ID = "AKIABENCHUSER0000001"
USER_SECRET_ACCESS_KEY = "bench" * 8


def peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _session(credentials: dict[str, Any]) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name="us-east-1",
    )


def walk(scope: str, progress_every: int = 100) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    user_session = boto3.session.Session(
        aws_access_key_id=USER_ACCESS_KEY_ID, aws_secret_access_key=USER_SECRET_ACCESS_KEY, region_name="us-east-1"
    )
    home = user_session.client("sts").assume_role(RoleArn=HOME_ROLE_ARN, RoleSessionName="naive-2019")["Credentials"]
    home_session = _session(home)
    home_account = HOME_ROLE_ARN.split(":")[4]
    if scope == "organization":
        organizations = home_session.client("organizations")
        accounts = [
            (a["Id"], a["Name"])
            for page in organizations.get_paginator("list_accounts").paginate()
            for a in page["Accounts"]
            if a["Status"] == "ACTIVE"
        ]
    else:
        accounts = [(home_account, "")]

    records: list[dict[str, Any]] = []
    for number, (account_id, account_name) in enumerate(accounts, 1):
        if account_id == home_account:
            session = home_session
        else:
            role = f"arn:aws:iam::{account_id}:role/{MEMBER_ROLE_NAME}"
            member = home_session.client("sts").assume_role(RoleArn=role, RoleSessionName="naive-2019")
            session = _session(member["Credentials"])
        iam = session.client("iam")
        users_done = 0
        for page in iam.get_paginator("list_users").paginate():
            for user in page["Users"]:
                keys = iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]
                active = sum(1 for k in keys if k["Status"] == "Active")
                for key in keys:
                    used = iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])["AccessKeyLastUsed"]
                    key_id = key["AccessKeyId"]
                    last = used.get("LastUsedDate")
                    records.append(
                        {
                            "TimeGenerated": now.isoformat(),
                            "AccountId": account_id,
                            "AccountName": account_name,
                            "UserName": user["UserName"],
                            "UserArn": user["Arn"],
                            "AccessKeyId": f"{key_id[:4]}...{key_id[-4:]}",
                            "AccessKeyFingerprint": hashlib.sha256(key_id.encode()).hexdigest()[:16],
                            "Status": key["Status"],
                            "CreatedAt": key["CreateDate"].isoformat(),
                            "LastUsedAt": last.isoformat() if last else None,
                            "LastUsedRegion": None if used.get("Region") == "N/A" else used.get("Region"),
                            "LastUsedService": None if used.get("ServiceName") == "N/A" else used.get("ServiceName"),
                            "AgeDays": (now - key["CreateDate"]).days,
                            "DaysSinceLastUse": max(0, (now - last).days) if last else None,
                            "NeverUsed": last is None,
                            "UserActiveKeyCount": active,
                        }
                    )
                users_done += 1
                if users_done % progress_every == 0:
                    print(
                        f"    naive: account {number}/{len(accounts)}: {users_done} users, "
                        f"{len(records)} keys so far",
                        file=sys.stderr,
                        flush=True,
                    )
        print(f"    naive: account {number}/{len(accounts)} done ({len(records)} keys so far)", file=sys.stderr,
              flush=True)
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the naive serial walk (2019)")
    parser.add_argument("--scope", choices=["home", "organization"], default="home")
    parser.add_argument("--out", required=True)
    parser.add_argument("--progress-every", type=int, default=100)
    args = parser.parse_args(argv)
    started, cpu_started = time.monotonic(), time.process_time()
    records = walk(args.scope, args.progress_every)
    with open(args.out, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    wall, cpu = time.monotonic() - started, time.process_time() - cpu_started
    result = {"wall": wall, "cpu": cpu, "keys": len(records), "peak_rss_mb": peak_rss_mb()}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
