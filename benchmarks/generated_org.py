"""The benchmark's organization, derived on demand from a seed (2019): accounts, users, keys, last uses, the users'
tags, groups and policies, and the credential report, so that every answer of the responder (aws_responder.py) agrees
with every other and the responder stores nothing per key. What the product must conclude (owners, privilege,
quarantine) is derived alongside, so the benchmark can check the product's records against the truth.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

HOME_ACCOUNT_ID = "111111111111"  # the management account: home role, and the first account of every workload
HOME_ROLE_NAME = "AwsIamKeyCollectorHome"
MEMBER_ROLE_NAME = "AwsIamKeyCollector"
USER_ACCESS_KEY_ID = "AKIABENCHUSER0000001"  # the collector's IAM user (access_key mode); signs AssumeRole only
USER_SECRET_ACCESS_KEY = "bench" * 8
IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
REPORT_HEADER = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,"
    "mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,"
    "access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,"
    "access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,"
    "cert_1_last_rotated,cert_2_active,cert_2_last_rotated"
)


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    accounts: int  # account 0 is the home (management) account
    users_per_account: int
    keys_per_account: int  # spread over the users: every user has 1 or 2 keys (IAM's maximum is 2)
    scope: str  # AWS_ACCOUNTS for the product: "home" or "organization"
    latency: float  # seconds added to every AWS call
    seed: int = 2019

    @property
    def total_keys(self) -> int:
        return self.accounts * self.keys_per_account

    @property
    def total_users(self) -> int:
        return self.accounts * self.users_per_account


WORKLOADS = {
    "W1": Workload("W1", "1 account, 300 users, 450 keys, 100 ms per call", 1, 300, 450, "home", 0.1),
    "W2": Workload("W2", "10 accounts x 30 users (45 keys each), 100 ms per call", 10, 30, 45, "organization", 0.1),
    "W3": Workload(
        "W3", "10 accounts x 5,000 users x 2 keys = 100,000 keys, no latency", 10, 5000, 10_000, "organization", 0.0
    ),
    "many-small": Workload(
        "many-small", "150 accounts x 2 users (3 keys each), 100 ms per call", 150, 2, 3, "organization", 0.1
    ),
}
REPORT_MAX_AGE = timedelta(hours=4)  # IAM makes a new report at most every 4 hours: a younger one is COMPLETE
REPORT_AGE_WHEN_FRESH = timedelta(minutes=30)


def account_id(index: int) -> str:
    return HOME_ACCOUNT_ID if index == 0 else f"{222222220000 + index:012d}"


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


class Generated:
    """The workload's organization, derived on demand from the seed: nothing is stored per user or key."""

    def __init__(self, workload: Workload, now: datetime) -> None:
        self.w = workload
        self.now = now.replace(microsecond=0)
        self.account_ids = [account_id(i) for i in range(workload.accounts)]
        self.index_of = {a: i for i, a in enumerate(self.account_ids)}
        # which users have two keys: the first (keys - users) of a seeded permutation
        doubles = workload.keys_per_account - workload.users_per_account
        if not 0 <= doubles <= workload.users_per_account:
            raise ValueError(f"{workload.name}: every user must have 1 or 2 keys")
        order = sorted(range(workload.users_per_account), key=lambda u: _digest(workload.seed, "double", u))
        self._double = frozenset(order[:doubles])

    def user_name(self, user: int) -> str:
        return f"svc-user-{user:06d}"

    def key_count(self, user: int) -> int:
        return 2 if user in self._double else 1

    def key_id(self, account: int, user: int, slot: int) -> str:
        check = f"{_digest(self.w.seed, account, user, slot) % 0x10000:04X}"
        return f"AKIA{account:03d}{user:07d}{slot}{check}Q"  # 20 characters, like a real key id

    @staticmethod
    def parse_key_id(key_id: str) -> tuple[int, int, int] | None:
        if len(key_id) != 20 or not key_id.startswith("AKIA") or not key_id[4:15].isdigit():
            return None
        return int(key_id[4:7]), int(key_id[7:14]), int(key_id[14])

    def days(self, *parts: object, low: int, high: int) -> int:
        return low + _digest(self.w.seed, *parts) % (high - low + 1)

    # Every fact about a user or key is derived here, once, so ListUsers, GetAccountAuthorizationDetails,
    # ListAccessKeys, GetAccessKeyLastUsed and the credential report can never disagree.

    def user_created(self, account: int, user: int) -> datetime:
        return self.now - timedelta(days=self.days(account, user, "user", low=400, high=1500))

    def key_status(self, account: int, user: int, slot: int) -> str:
        return "Inactive" if self.days(account, user, slot, "status", low=0, high=9) == 0 else "Active"

    def key_created(self, account: int, user: int, slot: int) -> datetime:
        return self.now - timedelta(days=self.days(account, user, slot, "age", low=1, high=700))

    def key_last_used(self, account: int, user: int, slot: int) -> tuple[datetime, str, str] | None:
        """(when, region, service) of the key's last use; None: never used."""
        ago = self.days(account, user, slot, "used", low=-1, high=200)  # -1: never used
        if ago < 0:
            return None
        service = ("s3", "ec2", "sts", "dynamodb", "ecr")[self.days(account, user, slot, "svc", low=0, high=4)]
        return self.now - timedelta(days=ago, hours=3), "eu-west-1", service

    def report_csv(self, account: int) -> str:
        """The account's credential report, as IAM writes it (dates as ``+00:00``, ``N/A`` where nothing applies)."""

        def stamp(moment: datetime) -> str:
            return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")

        acct_id = self.account_ids[account]
        lines = [
            REPORT_HEADER,
            f"<root_account>,arn:aws:iam::{acct_id}:root,{stamp(self.now - timedelta(days=2000))},not_supported,N/A,"
            "not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
        ]
        for user in range(self.w.users_per_account):
            name = self.user_name(user)
            cells = [name, f"arn:aws:iam::{acct_id}:user/{name}", stamp(self.user_created(account, user)),
                     "false", "N/A", "N/A", "N/A", "false"]
            for slot in range(2):
                if slot >= self.key_count(user):
                    cells += ["false", "N/A", "N/A", "N/A", "N/A"]
                    continue
                used = self.key_last_used(account, user, slot)
                active = "true" if self.key_status(account, user, slot) == "Active" else "false"
                cells += [active, stamp(self.key_created(account, user, slot))]
                cells += ["N/A", "N/A", "N/A"] if used is None else [stamp(used[0]), used[1], used[2]]
            certificate = self.certificate(account, user)
            cells += ["false", "N/A"] if certificate is None else ["true", stamp(certificate)]
            cells += ["false", "N/A"]
            lines.append(",".join(cells))
        return "\n".join(lines) + "\n"

    def iso(self, moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    # The long-lived credentials other than keys, derived like the rest: (service, expires in days or None).
    SERVICES = ("bedrock.amazonaws.com", "logs.amazonaws.com", "codecommit.amazonaws.com", "cassandra.amazonaws.com")

    def service_credential(self, account: int, user: int, service: str) -> tuple[datetime, datetime | None] | None:
        """(created, expires) of the user's credential for the service, if it holds one."""
        every = {"bedrock.amazonaws.com": 10, "codecommit.amazonaws.com": 25}.get(service)
        if every is None or _digest(self.w.seed, account, user, service) % every:
            return None
        created = self.now - timedelta(days=self.days(account, user, service, "age", low=1, high=400))
        never = _digest(self.w.seed, account, user, service, "expiry") % 2 == 0 or service != "bedrock.amazonaws.com"
        return created, None if never else created + timedelta(days=365)

    def certificate(self, account: int, user: int) -> datetime | None:
        """When the user's signing certificate was uploaded, if it has one (one user in 50)."""
        if _digest(self.w.seed, account, user, "certificate") % 50:
            return None
        return self.now - timedelta(days=self.days(account, user, "certificate", low=1, high=900))

    # --- users' tags, groups and policies (GetAccountAuthorizationDetails), and what follows from them ---

    @staticmethod
    def owner(user: int) -> str:
        return f"team-{user % 7}@example.com" if user % 2 == 0 else ""

    @staticmethod
    def groups(user: int) -> list[str]:
        return [g for g, member in (("Admins", user % 40 == 0), ("Developers", user % 3 == 0)) if member]

    @staticmethod
    def attached(user: int) -> list[str]:
        """Managed policies attached to the user: AWS-managed by name, customer-managed as ``policy/<name>``."""
        return [p for p, on in (("AdministratorAccess", user % 50 == 7), ("AWSCompromisedKeyQuarantineV2",
                user % 97 == 5), ("policy/deploy-all", user % 60 == 11)) if on]

    @staticmethod
    def bounded(user: int) -> bool:
        return user % 100 == 7  # a ReadOnlyAccess boundary: caps every grant below admin-equivalent

    @staticmethod
    def break_glass(user: int) -> bool:
        return user % 150 == 13  # an inline policy of its own allowing "*" on "*"

    def privileged(self, user: int) -> bool:
        if self.bounded(user):
            return False
        return (user % 40 == 0 or user % 50 == 7 or user % 60 == 11 or self.break_glass(user))

    @staticmethod
    def quarantined(user: int) -> bool:
        return user % 97 == 5

    def user_detail(self, account: int, user: int) -> str:
        """The user's UserDetailList member, as IAM writes it."""
        acct_id, name = self.account_ids[account], self.user_name(user)
        tags = [("owner", self.owner(user))] if self.owner(user) else []
        if user % 5 == 0:
            tags.append((self.key_id(account, user, 0), f"build key of {name}"))
        inline = [("read-logs", _allow("logs:Get*"))] if user % 20 == 3 else []
        if self.break_glass(user):
            inline.append(("break-glass", _allow("*")))
        attached = [(p.rsplit("/", 1)[-1], f"arn:aws:iam::{acct_id}:{p}" if p.startswith("policy/")
                     else f"arn:aws:iam::aws:policy/{p}") for p in self.attached(user)]
        boundary = ("<PermissionsBoundary><PermissionsBoundaryType>PermissionsBoundaryPolicy</PermissionsBoundaryType>"
                    "<PermissionsBoundaryArn>arn:aws:iam::aws:policy/ReadOnlyAccess</PermissionsBoundaryArn>"
                    "</PermissionsBoundary>") if self.bounded(user) else ""
        return (
            f"<member><Path>/</Path><UserName>{name}</UserName><UserId>AIDA{account:03d}{user:09d}BENCH</UserId>"
            f"<Arn>arn:aws:iam::{acct_id}:user/{name}</Arn><CreateDate>{self.iso(self.user_created(account, user))}"
            f"</CreateDate><UserPolicyList>{_inline(inline)}</UserPolicyList>"
            f"<GroupList>{''.join(f'<member>{g}</member>' for g in self.groups(user))}</GroupList>"
            f"<AttachedManagedPolicies>{_attached(attached)}</AttachedManagedPolicies>{boundary}"
            f"<Tags>{''.join(f'<member><Key>{k}</Key><Value>{v}</Value></member>' for k, v in tags)}</Tags></member>"
        )

    def group_details(self, account: int) -> list[str]:
        acct_id, created = self.account_ids[account], self.iso(self.now - timedelta(days=2000))
        return [
            f"<member><Path>/</Path><GroupName>{name}</GroupName><GroupId>AGPA{account:03d}{n:09d}BENCH</GroupId>"
            f"<Arn>arn:aws:iam::{acct_id}:group/{name}</Arn><CreateDate>{created}</CreateDate>"
            f"<GroupPolicyList>{_inline(inline)}</GroupPolicyList>"
            f"<AttachedManagedPolicies>{_attached(attached)}</AttachedManagedPolicies></member>"
            for n, (name, inline, attached) in enumerate((
                ("Admins", [], [("AdministratorAccess", "arn:aws:iam::aws:policy/AdministratorAccess")]),
                ("Developers", [("dev-metrics", _allow("cloudwatch:*"))],
                 [("developer-access", f"arn:aws:iam::{acct_id}:policy/developer-access")]),
            ))
        ]

    def policy_details(self, account: int) -> list[str]:
        """Customer-managed policies: deploy-all's default version (v2) allows iam:*, its old one (v1) s3:* only."""
        acct_id, created = self.account_ids[account], self.iso(self.now - timedelta(days=2000))
        found = []
        for n, (name, versions) in enumerate((("developer-access", [_allow(["s3:*", "ec2:*"])]),
                                              ("deploy-all", [_allow("s3:*"), _allow("iam:*")]))):
            default = f"v{len(versions)}"
            listed = "".join(
                f"<member><Document>{quote(json.dumps(doc), safe='')}</Document><VersionId>v{i + 1}</VersionId>"
                f"<IsDefaultVersion>{str(f'v{i + 1}' == default).lower()}</IsDefaultVersion>"
                f"<CreateDate>{created}</CreateDate></member>" for i, doc in enumerate(versions))
            found.append(
                f"<member><PolicyName>{name}</PolicyName><PolicyId>ANPA{account:03d}{n:09d}BENCH</PolicyId>"
                f"<Arn>arn:aws:iam::{acct_id}:policy/{name}</Arn><Path>/</Path><DefaultVersionId>{default}"
                f"</DefaultVersionId><AttachmentCount>1</AttachmentCount><IsAttachable>true</IsAttachable>"
                f"<CreateDate>{created}</CreateDate><UpdateDate>{created}</UpdateDate>"
                f"<PolicyVersionList>{listed}</PolicyVersionList></member>")
        return found


def _allow(action: str | list[str]) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}


def _inline(policies: list[tuple[str, dict[str, object]]]) -> str:
    return "".join(f"<member><PolicyName>{name}</PolicyName><PolicyDocument>{quote(json.dumps(doc), safe='')}"
                   "</PolicyDocument></member>" for name, doc in policies)


def _attached(policies: list[tuple[str, str]]) -> str:
    return "".join(f"<member><PolicyName>{name}</PolicyName><PolicyArn>{arn}</PolicyArn></member>"
                   for name, arn in policies)
