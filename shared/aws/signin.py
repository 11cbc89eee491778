"""Sign-in: the home role (by the IAM user's key or by web identity) and member roles chained from it.

Credentials are used for exactly one thing, the STS call into the home role. Sessions are short (15 minutes, the STS
minimum) and botocore refreshes them a few minutes before they expire, so a long inventory never runs on expired
credentials. Every AssumeRole and AssumeRoleWithWebIdentity carries a read-only session policy
(shared/aws/session_policy.py, a required argument here): the session holds at most those reads, whatever the role
grants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    AssumeRoleWithWebIdentityCredentialFetcher,
    Credentials,
    RefreshableCredentials,
)

from shared.aws.clients import AWS_ERRORS, AwsClientFactory
from shared.aws.errors import describe_aws_error
from shared.errors import (
    AwsSignInError,
)
from shared.identifiers import is_access_key_id
from shared.ports import SecretProvider, WebIdentityTokenProvider
from shared.redaction import register_secret

SESSION_SECONDS = 900  # the STS minimum: a leaked session is worth as little as possible
_REFRESH_BEFORE_SECONDS = 180  # refresh this long before expiry (botocore's default of 15 min would refresh always)


def _refreshing(fetch: Callable[[], dict[str, Any]], method: str, what: str) -> RefreshableCredentials:
    """Fetch now (so a sign-in error surfaces here, named) and let botocore refresh before expiry."""

    def fetch_and_protect() -> dict[str, Any]:
        try:
            metadata = fetch()
        except AWS_ERRORS as exc:
            raise AwsSignInError(f"{what} failed: {describe_aws_error(exc)}") from None
        register_secret(metadata.get("secret_key"))
        register_secret(metadata.get("token"))
        return metadata

    return RefreshableCredentials.create_from_metadata(
        metadata=fetch_and_protect(),
        refresh_using=fetch_and_protect,
        method=method,
        advisory_timeout=_REFRESH_BEFORE_SECONDS,
        mandatory_timeout=_REFRESH_BEFORE_SECONDS // 3,
    )


def session_name(run_id: str) -> str:
    """RoleSessionName: recognisable in CloudTrail, unique per run."""
    return f"aws-iam-key-collector-{run_id[:8]}"


def iam_user_credentials(secrets: SecretProvider, key_id_secret: str, secret_key_secret: str) -> Credentials:
    """The IAM user's long-lived key pair, from the secret provider; used for nothing but AssumeRole."""
    key_id = secrets.get_secret(key_id_secret).strip()
    secret_key = secrets.get_secret(secret_key_secret).strip()
    register_secret(secret_key)
    register_secret(key_id)
    if not is_access_key_id(key_id):
        raise AwsSignInError(
            f"secret {key_id_secret!r} does not hold an AWS access key id (expected 16+ upper-case letters and "
            "digits, like AKIA...): check the value stored in Key Vault"
        )
    if len(secret_key) < 16:
        raise AwsSignInError(f"secret {secret_key_secret!r} does not hold an AWS secret access key")
    return Credentials(key_id, secret_key)


def _extra_args(run_id: str, policy: str) -> dict[str, Any]:
    return {"RoleSessionName": session_name(run_id), "DurationSeconds": SESSION_SECONDS, "Policy": policy}


def assume_home_role_with_key(
    factory: AwsClientFactory,
    user_credentials: Credentials,
    role_arn: str,
    external_id: str | None,
    run_id: str,
    *,
    policy: str,
) -> RefreshableCredentials:
    extra = _extra_args(run_id, policy)
    if external_id:
        extra["ExternalId"] = external_id
    fetcher = AssumeRoleCredentialFetcher(
        factory.client_creator, user_credentials, role_arn, extra_args=extra, expiry_window_seconds=60
    )
    return _refreshing(
        fetcher.fetch_credentials,
        "assume-role",
        f"STS AssumeRole into {role_arn} with the IAM user's key (check the key in Key Vault, the role's trust "
        "policy and the ExternalId)",
    )


def assume_home_role_with_web_identity(
    factory: AwsClientFactory, tokens: WebIdentityTokenProvider, role_arn: str, run_id: str, *, policy: str
) -> RefreshableCredentials:
    def token() -> str:
        value = tokens.get_token()
        register_secret(value)
        return value

    fetcher = AssumeRoleWithWebIdentityCredentialFetcher(
        factory.client_creator,
        token,
        role_arn,
        extra_args=_extra_args(run_id, policy),
        expiry_window_seconds=60,
    )
    return _refreshing(
        fetcher.fetch_credentials,
        "assume-role-with-web-identity",
        f"STS AssumeRoleWithWebIdentity into {role_arn} (check the role's OIDC trust: issuer, audience and the "
        "managed identity's object id as subject)",
    )


def assume_member_role(
    factory: AwsClientFactory, home: Credentials, role_arn: str, run_id: str, *, policy: str
) -> RefreshableCredentials:
    fetcher = AssumeRoleCredentialFetcher(
        factory.client_creator,
        home,
        role_arn,
        extra_args=_extra_args(run_id, policy),
        expiry_window_seconds=60,
    )
    return _refreshing(
        fetcher.fetch_credentials,
        "assume-role",
        f"STS AssumeRole into {role_arn} from the home role (check that the role exists in that account and trusts "
        "the home role)",
    )


def member_role_arn(partition: str, account_id: str, role_name: str) -> str:
    return f"arn:{partition}:iam::{account_id}:role/{role_name}"
