"""The demo's long-lived credentials other than access keys: long-term API keys for Amazon Bedrock (one without
expiry, one expiring within days), a CodeCommit Git credential and an X.509 signing certificate, seeded through IAM's
own API into the emulated organization; and, between the demo's two runs, one more never-expiring API key.

moto (5.x) does not serve CreateServiceSpecificCredential or ListServiceSpecificCredentials, and writes ``N/A`` as
every signing certificate's ``cert_N_last_rotated`` in its credential report. The demo therefore teaches the moto
server it runs in this process both actions (answered in IAM's own shapes: moto serializes from botocore's service
model, so the collector's real botocore client reads them over HTTP on 127.0.0.1 as it reads AWS), and the report the
certificates' upload times, as AWS writes them. Nothing of this is imported by the Function.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

CERTIFICATE = "certificate"
_STORE = "demo_service_credentials"  # the attribute of moto's IAM backend holding the credentials
_SERVICES = ("bedrock.amazonaws.com", "logs.amazonaws.com", "codecommit.amazonaws.com", "cassandra.amazonaws.com")
_API_KEY_SERVICES = ("bedrock.amazonaws.com", "logs.amazonaws.com")


@dataclass(frozen=True)
class CredentialSpec:
    account: str  # account name, as in DEMO_ORGANIZATION
    user: str  # created (with ``owner``) when the account has no such user
    kind: str  # a service name, or CERTIFICATE
    age_days: int = 0
    expires_in_days: int | None = None  # API keys only: days left until it expires; None: it never expires
    owner: str = ""


# Seeded before the first run: one of each kind and finding.
DEMO_CREDENTIALS: tuple[CredentialSpec, ...] = (
    CredentialSpec("Production", "ml-pipeline", "bedrock.amazonaws.com", 40, owner="ml-team@example.com"),
    CredentialSpec("Production", "ml-pipeline", "bedrock.amazonaws.com", 25, expires_in_days=5),
    CredentialSpec("Management", "carol", "codecommit.amazonaws.com", 150),  # older than KEY_ROTATION_DAYS
    CredentialSpec("Sandbox", "judy", CERTIFICATE, 30),
)
# Created between the two runs: a user who also gets a new access key gets a Bedrock API key that never expires.
DEMO_CREDENTIAL_CHANGES: tuple[CredentialSpec, ...] = (
    CredentialSpec("Production", "frank", "bedrock.amazonaws.com"),
)


def _iam_backend(account_id: str) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[account_id]["aws"]


def install_service_credentials() -> None:
    """Teach this process's moto IAM CreateServiceSpecificCredential and ListServiceSpecificCredentials (AllUsers,
    ServiceName, Marker, MaxItems), with IAM's errors, and certificate times in the credential report."""
    from moto.core.responses import ActionResult
    from moto.iam.exceptions import IAMException
    from moto.iam.responses import IamResponse

    if getattr(IamResponse, "list_service_specific_credentials", None) is not None:
        return

    class NotSupportedService(IAMException):
        code = "NotSupportedService"

    class ValidationError(IAMException):
        code = "ValidationError"

    def create(self: Any) -> Any:
        user = self.backend.get_user(self._get_param("UserName"))  # NoSuchEntity for an unknown user
        service = self._get_param("ServiceName")
        if service not in _SERVICES:
            raise NotSupportedService(f"The specified service {service} does not support service-specific credentials")
        days = self._get_int_param("CredentialAgeDays")
        now = datetime.now(UTC).replace(microsecond=0)
        alphabet = string.ascii_uppercase + string.digits
        item = {"UserName": user.name, "ServiceName": service, "Status": "Active", "CreateDate": now,
                "ServiceSpecificCredentialId": "ACCA" + "".join(secrets.choice(alphabet) for _ in range(17)),
                "ServiceUserName": f"{user.name}-at-{self.current_account}"}
        if days is not None and service in _API_KEY_SERVICES:
            item["ExpirationDate"] = now + timedelta(days=days)
        vars(self.backend).setdefault(_STORE, []).append(item)
        secret = secrets.token_urlsafe(30)  # never printed: the seeder drops the answer
        answer = {**item, ("ServiceCredentialSecret" if service in _API_KEY_SERVICES else "ServicePassword"): secret}
        return ActionResult({"ServiceSpecificCredential": answer})

    def list_(self: Any) -> Any:
        user_name, every_user = self._get_param("UserName"), self._get_bool_param("AllUsers", False)
        if user_name and every_user:
            raise ValidationError("AllUsers cannot be specified together with UserName")
        service = self._get_param("ServiceName")
        if service and service not in _SERVICES:
            raise NotSupportedService(f"The specified service {service} does not support service-specific credentials")
        if not every_user:
            user_name = self.backend.get_user(user_name).name if user_name else None
        found = [c for c in vars(self.backend).get(_STORE, []) if (not service or c["ServiceName"] == service)
                 and (every_user or c["UserName"] == user_name) and c["UserName"] in self.backend.users]
        start = int(self._get_param("Marker") or 0)
        size = self._get_int_param("MaxItems") or 100
        page = found[start:start + size]
        result: dict[str, Any] = {"ServiceSpecificCredentials": page, "IsTruncated": start + size < len(found)}
        if result["IsTruncated"]:
            result["Marker"] = str(start + size)
        return ActionResult(result)

    IamResponse.create_service_specific_credential = create  # type: ignore[attr-defined]
    IamResponse.list_service_specific_credentials = list_  # type: ignore[attr-defined]


def report_certificate_dates(account_id: str) -> None:
    """The account's credential report with each signing certificate's upload time in ``cert_N_last_rotated``, as
    AWS writes it (moto writes N/A)."""
    backend = _iam_backend(account_id)
    original = backend.get_credential_report
    if getattr(original, "certificate_dates", False):
        return

    def with_dates() -> str:
        header, *lines = original().split("\n")
        column = {name: n for n, name in enumerate(header.split(","))}
        out = [header]
        for line in lines:
            cells = line.split(",")
            user = backend.users.get(cells[0]) if cells[0] else None
            for slot, cert in enumerate(list(user.signing_certificates.values())[:2] if user else [], 1):
                cells[column[f"cert_{slot}_last_rotated"]] = cert.upload_date.strftime("%Y-%m-%dT%H:%M:%S+00:00")
            out.append(",".join(cells))
        return "\n".join(out)

    with_dates.certificate_dates = True  # type: ignore[attr-defined]
    backend.get_credential_report = with_dates


def seed_credentials(
    iam_of: Callable[[str], Any], account_ids: dict[str, str], specs: tuple[CredentialSpec, ...], now: datetime
) -> list[str]:
    """Create ``specs`` through IAM's API (``iam_of(account id)``: a boto3 IAM client as the account's admin), then
    date them as the specs say; returns one line per credential (no id, no secret)."""
    install_service_credentials()
    done = []
    for spec in specs:
        account_id = account_ids[spec.account]
        iam = iam_of(account_id)
        backend = _iam_backend(account_id)
        if spec.user not in backend.users:
            iam.create_user(UserName=spec.user)
            if spec.owner:
                iam.tag_user(UserName=spec.user, Tags=[{"Key": "owner", "Value": spec.owner}])
        created = (now - timedelta(days=spec.age_days, hours=1)).replace(microsecond=0)
        if spec.kind == CERTIFICATE:
            report_certificate_dates(account_id)
            iam.upload_signing_certificate(UserName=spec.user, CertificateBody=_certificate_pem(spec.user))
            cert = list(backend.users[spec.user].signing_certificates.values())[-1]
            cert.upload_date = created.replace(tzinfo=None)  # moto keeps naive UTC times
            done.append(f"{spec.account}/{spec.user}: X.509 signing certificate, {spec.age_days} days old")
            continue
        extra = {} if spec.expires_in_days is None else {"CredentialAgeDays": spec.age_days + spec.expires_in_days}
        iam.create_service_specific_credential(UserName=spec.user, ServiceName=spec.kind, **extra)
        item = vars(backend)[_STORE][-1]
        item["CreateDate"] = created
        if spec.expires_in_days is not None:
            item["ExpirationDate"] = (now + timedelta(days=spec.expires_in_days)).replace(microsecond=0)
        expiry = "never expires" if spec.expires_in_days is None else f"expires in {spec.expires_in_days} days"
        done.append(f"{spec.account}/{spec.user}: {spec.kind} credential, {spec.age_days} days old, {expiry}")
    return done


def _certificate_pem(common_name: str) -> str:
    """A self-signed X.509 certificate (EC P-256), as a user would upload for signing (moto checks it parses)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = datetime.now(UTC) - timedelta(days=1)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(start)
                   .not_valid_after(start + timedelta(days=365)).sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
