"""The one-command demo: a local emulated AWS organization (moto in server mode on 127.0.0.1), seeded with keys
of every kind, collected through the same code path the Function uses (real boto3 over HTTP), into the ``file``
sink. Also the seed the end-to-end tests use.

moto is a development dependency (requirements-dev.txt); nothing in the Function imports this module.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.tools.demo_credentials import DEMO_CREDENTIAL_CHANGES, DEMO_CREDENTIALS, CredentialSpec, seed_credentials
from shared.tools.demo_iam import (
    AccountSpec,
    GroupSpec,
    KeySpec,
    UserSpec,
    allow,
    client,
    seed_account_iam,
    seed_root_keys,
)

MANAGEMENT_ACCOUNT_ID = "123456789012"  # moto's default account: the organization's management account
HOME_ROLE_NAME = "AwsIamKeyCollectorHome"
MEMBER_ROLE_NAME = "AwsIamKeyCollector"
COLLECTOR_USER = "aws-iam-key-collector"
EXTERNAL_ID = "demo-external-id-0001"
DEMO_FALLBACK_RECIPIENT = "security-team@example.com"  # NOTIFY_FALLBACK_RECIPIENT of the demo


# Keys of every kind: old, fresh, used, never used, inactive, two active on one user, exact boundaries; and users of
# every blast radius: an admin (AdministratorAccess attached), a group admin (group Admins), a user with iam:* from a
# customer-managed policy, a user AWS quarantined (AWSCompromisedKeyQuarantineV2), console users with and without MFA,
# a key made at its user's setup.
DEMO_ORGANIZATION: tuple[AccountSpec, ...] = (
    AccountSpec(
        "Management",
        (
            UserSpec("alice", (KeySpec(200, 2),), tags=(("owner", "alice@example.com"),)),
            UserSpec("bob", (KeySpec(10),)),
            UserSpec("carol", (KeySpec(30, 1), KeySpec(120, 100, service="ec2")),
                     tags=(("CostCenter", "4711"), ("email", "carol@example.com"))),
            UserSpec("dave", (KeySpec(400, 380, status="Inactive"),)),
            UserSpec("erin", (KeySpec(60),)),
            UserSpec("ops-admin", (KeySpec(150, 1, service="iam", description="break-glass automation"),),
                     tags=(("owner", "ops@example.com"),), policies=("aws:AdministratorAccess",), console=True,
                     mfa=True),
        ),
    ),
    AccountSpec(
        "Production",
        (
            UserSpec("deploy-bot", (KeySpec(500, 0, service="cloudformation"),),
                     tags=(("Owner", "platform-team@example.com"),), policies=("deploy-all",)),
            UserSpec("ci-runner", (KeySpec(5, 0, description="GitHub Actions runner"), KeySpec(95, 1, service="ecr")),
                     tags=(("owner", "  "), ("contact", "ci-team@example.com"))),
            UserSpec("frank"),
            UserSpec("grace", (KeySpec(46),)),
            UserSpec("heidi", (KeySpec(300, 200, status="Inactive"), KeySpec(20, 3))),
            UserSpec("release-bot", (KeySpec(40, 0, service="ecs"),), tags=(("owner", "release@example.com"),),
                     groups=("Admins",)),
            # AWS found a key of it on a public repository: the old one is already switched off, the new one is not
            UserSpec("build-agent", (KeySpec(20, 0, service="ec2"), KeySpec(400, 25, status="Inactive")),
                     tags=(("owner", "build@example.com"),), policies=("aws:AWSCompromisedKeyQuarantineV2",)),
            # rotation due in 7 days: the owner's digest announces it (15, 7 and 1 day(s) before, then daily)
            UserSpec("kim", (KeySpec(83, 2),), tags=(("owner", "kim@example.com"),)),
        ),
        groups=(GroupSpec("Admins", ("aws:AdministratorAccess",)),),
        policies=(("deploy-all", allow("iam:*")),),
    ),
    AccountSpec(
        "Sandbox",
        (
            UserSpec("legacy-app", (KeySpec(1000, 400, service="sqs", region="us-west-2"),),
                     tags=(("owner", "legacy-team@example.com"),)),
            UserSpec("ivan", (KeySpec(3, 1),)),
            UserSpec("judy", (KeySpec(91, 5),)),
            UserSpec("test-user", (KeySpec(90, 45),)),
            UserSpec("contractor", (KeySpec(200, 120),), tags=(("owner", "vendor-mgmt@example.com"),), console=True,
                     key_at_setup=True),
        ),
        root_keys=(KeySpec(700, 12, service="ec2", region="us-east-1"),),  # a root key: the worst finding
    ),
)


@dataclass
class SeededOrganization:
    endpoint_url: str
    home_role_arn: str
    external_id: str
    member_role_name: str
    collector_key_id: str
    collector_secret_key: str
    accounts: dict[str, str] = field(default_factory=dict)  # account id -> name
    expected_keys: int = 0
    expected_credentials: int = 0  # long-lived credentials other than access keys (shared/tools/demo_credentials.py)

    def secrets(self) -> dict[str, str]:
        """What Key Vault would hold, under the contract's default secret names."""
        return {"aws-access-key-id": self.collector_key_id, "aws-secret-access-key": self.collector_secret_key}


@contextmanager
def moto_server() -> Iterator[str]:
    """moto in server mode on 127.0.0.1, on a free port; yields its URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SystemExit(
            "The demo needs moto (an emulated AWS): run `pip install -r requirements-dev.txt` first."
        ) from exc
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per emulated call is noise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def reset_moto(endpoint_url: str) -> None:
    """Empty every emulated account (moto's own reset API)."""
    import requests

    requests.post(f"{endpoint_url}/moto-api/reset", timeout=10).raise_for_status()


def _assume(endpoint_url: str, role_arn: str) -> dict[str, str]:
    creds = client("sts", endpoint_url).assume_role(RoleArn=role_arn, RoleSessionName="demo-seeder")["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


def name_management_account(name: str) -> None:
    """moto names the management account "master" and AWS has no API to rename it: set the seeded name in the
    in-process backend, so the records, the summary and the report name it as the demo's organization does."""
    from moto.organizations.models import organizations_backends

    backend = organizations_backends[MANAGEMENT_ACCOUNT_ID]["aws"]
    (account,) = [a for a in backend.accounts if a.id == MANAGEMENT_ACCOUNT_ID]
    account.name = name


def seed_organization(
    endpoint_url: str,
    accounts: tuple[AccountSpec, ...] = DEMO_ORGANIZATION,
    now: datetime | None = None,
    credentials: tuple[CredentialSpec, ...] | None = None,
) -> SeededOrganization:
    """Management account (the first spec) + member accounts, the collector's home role, IAM user and member roles;
    then the long-lived credentials other than access keys (``credentials``, in accounts of ``accounts``; by default
    the demo's for the demo's organization, none for another)."""
    now = now or datetime.now(UTC)
    org = client("organizations", endpoint_url)
    org.create_organization(FeatureSet="ALL")
    iam = client("iam", endpoint_url)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                                                  "Action": "sts:AssumeRole"}]})
    home = iam.create_role(RoleName=HOME_ROLE_NAME, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.create_user(UserName=COLLECTOR_USER)
    collector_key = iam.create_access_key(UserName=COLLECTOR_USER)["AccessKey"]
    seeded = SeededOrganization(
        endpoint_url=endpoint_url,
        home_role_arn=home,
        external_id=EXTERNAL_ID,
        member_role_name=MEMBER_ROLE_NAME,
        collector_key_id=collector_key["AccessKeyId"],
        collector_secret_key=collector_key["SecretAccessKey"],
    )
    management, *members = accounts
    name_management_account(management.name)
    seeded.accounts[MANAGEMENT_ACCOUNT_ID] = management.name
    seeded.expected_keys = 1 + seed_account_iam(endpoint_url, MANAGEMENT_ACCOUNT_ID, None, management, now)
    if management.root_keys:
        seed_root_keys(MANAGEMENT_ACCOUNT_ID, management.root_keys, now)
        seeded.expected_keys += len(management.root_keys)
    for spec in members:
        account_id = org.create_account(Email=f"{spec.name.lower()}@example.com", AccountName=spec.name)[
            "CreateAccountStatus"
        ]["AccountId"]
        seeded.accounts[account_id] = spec.name
        admin = _assume(endpoint_url, f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole")
        client("iam", endpoint_url, admin).create_role(RoleName=MEMBER_ROLE_NAME, AssumeRolePolicyDocument=trust)
        seeded.expected_keys += seed_account_iam(endpoint_url, account_id, admin, spec, now)
        if spec.root_keys:
            seed_root_keys(account_id, spec.root_keys, now)
            seeded.expected_keys += len(spec.root_keys)
    ids = {name: account_id for account_id, name in seeded.accounts.items()}
    if credentials is None:
        credentials = DEMO_CREDENTIALS if accounts is DEMO_ORGANIZATION else ()
    seeded.expected_credentials = len(seed_credentials(lambda a: account_iam(seeded, a), ids, credentials, now))
    return seeded


def account_iam(seeded: SeededOrganization, account_id: str) -> Any:
    """An IAM client of the account as its administrator (the management account's seeder, or
    OrganizationAccountAccessRole in a member account)."""
    credentials = None if account_id == MANAGEMENT_ACCOUNT_ID else _assume(
        seeded.endpoint_url, f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole")
    return client("iam", seeded.endpoint_url, credentials)


def change_credentials(
    seeded: SeededOrganization, changes: tuple[CredentialSpec, ...] = DEMO_CREDENTIAL_CHANGES
) -> list[str]:
    """Between the demo's runs: the credentials of ``changes`` created through IAM's API; one line per change."""
    ids = {name: account_id for account_id, name in seeded.accounts.items()}
    return seed_credentials(lambda a: account_iam(seeded, a), ids, changes, datetime.now(UTC))


def demo_exceptions(seeded: SeededOrganization, now: datetime) -> dict[str, Any]:
    """The demo's reviewed exceptions: one in force (deploy-bot's key is due for rotation, accepted for 90 days)
    and one expired ten days ago (every finding of ci-runner's keys: they count again and it is reported as expired).
    Both users keep their keys across the demo's two runs."""
    by_name = {name: account_id for account_id, name in seeded.accounts.items()}
    production = by_name.get("Production", MANAGEMENT_ACCOUNT_ID)
    return {"version": 1, "exceptions": [
        {"userArn": f"arn:aws:iam::{production}:user/deploy-bot", "finding": "rotation_due",
         "reason": "deploy pipeline key; rotation moves to OIDC federation in Q1 (CHG-2291)",
         "approvedBy": "security-lead@example.com", "expires": (now + timedelta(days=90)).date().isoformat()},
        {"userArn": f"arn:aws:iam::{production}:user/ci-*", "finding": "*",
         "reason": "CI runner keys, replaced by the new runner fleet by the end of the month",
         "approvedBy": "security-lead@example.com", "expires": (now - timedelta(days=10)).date().isoformat()},
    ]}


def write_demo_exceptions(seeded: SeededOrganization, out_dir: str, now: datetime | None = None) -> str:
    """Writes the demo's exceptions file into ``out_dir``; returns its absolute path (for EXCEPTIONS_FILE)."""
    path = Path(out_dir).resolve() / "demo-exceptions.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(demo_exceptions(seeded, now or datetime.now(UTC)), indent=2) + "\n", encoding="utf-8")
    return str(path)


@dataclass(frozen=True)
class KeyChangeSpec:
    """A change an operator (or an attacker) makes between two runs, so that the second run has something to show."""

    action: str  # "create", "deactivate", "delete" or "rotate" (create a new key, delete the oldest)
    account: str  # account name, as in DEMO_ORGANIZATION
    user: str


# Between the demo's two runs: one of each lifecycle event the change timeline shows.
DEMO_CHANGES: tuple[KeyChangeSpec, ...] = (
    KeyChangeSpec("create", "Production", "frank"),  # a user with no key gets one: Created
    KeyChangeSpec("deactivate", "Management", "erin"),  # a never-used key switched off: Deactivated
    KeyChangeSpec("delete", "Sandbox", "legacy-app"),  # the 1000-day-old key removed: Deleted
    KeyChangeSpec("rotate", "Management", "alice"),  # the 200-day-old key replaced: Created, Deleted, Rotated
)
CHANGE_ACTIONS = ("create", "deactivate", "delete", "rotate")


def change_keys(seeded: SeededOrganization, changes: tuple[KeyChangeSpec, ...] = DEMO_CHANGES) -> list[str]:
    """Apply ``changes`` to the emulated organization through IAM's own API (as its account's admin); returns one
    line per change saying what was done (no key id: the full id is never printed)."""
    ids = {name: account_id for account_id, name in seeded.accounts.items()}
    done = []
    for change in changes:
        if change.action not in CHANGE_ACTIONS:
            raise ValueError(f"demo key change: unknown action {change.action!r}; use one of "
                             f"{', '.join(CHANGE_ACTIONS)}")
        if change.account not in ids:
            raise ValueError(f"demo key change: no account named {change.account!r} in the demo organization")
        iam = account_iam(seeded, ids[change.account])
        keys = sorted(iam.list_access_keys(UserName=change.user)["AccessKeyMetadata"], key=lambda k: k["CreateDate"])
        if change.action in ("create", "rotate"):
            iam.create_access_key(UserName=change.user)
        if change.action in ("deactivate", "delete", "rotate") and not keys:
            raise ValueError(f"demo key change: {change.account}/{change.user} has no key to {change.action}")
        if change.action == "deactivate":
            iam.update_access_key(UserName=change.user, AccessKeyId=keys[0]["AccessKeyId"], Status="Inactive")
        elif change.action in ("delete", "rotate"):
            iam.delete_access_key(UserName=change.user, AccessKeyId=keys[0]["AccessKeyId"])
        done.append(f"{change.account}/{change.user}: {_CHANGE_DONE[change.action]}")
    return done


_CHANGE_DONE = {
    "create": "new access key created",
    "deactivate": "oldest access key deactivated",
    "delete": "oldest access key deleted",
    "rotate": "access key rotated (new key created, oldest deleted)",
}


def demo_environment(seeded: SeededOrganization, out_dir: str) -> dict[str, str]:
    """The app settings of the demo run, as an operator would set them; writes the demo's exceptions file."""
    return {
        "AWS_AUTH_MODE": "access_key",
        "AWS_ROLE_ARN": seeded.home_role_arn,
        "AWS_EXTERNAL_ID": seeded.external_id,
        "AWS_ACCOUNTS": "organization",
        "AWS_MEMBER_ROLE_NAME": seeded.member_role_name,
        "LOG_SINK": "file",
        "FILE_SINK_DIR": out_dir,
        "KEY_VAULT_URL": "https://demo-vault.vault.azure.net/",  # never called: the demo passes its secrets in
        "EXCEPTIONS_FILE": write_demo_exceptions(seeded, out_dir),
        # Owner digests: written to <out>/digests/, never sent; keys without an owner go to the fallback address.
        "NOTIFY_MODE": "dry_run",
        "NOTIFY_FALLBACK_RECIPIENT": DEMO_FALLBACK_RECIPIENT,
    }


@contextmanager
def endpoint_env(endpoint_url: str) -> Iterator[None]:
    """Point boto3 at the emulated AWS the way boto3 itself documents: AWS_ENDPOINT_URL."""
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = previous
