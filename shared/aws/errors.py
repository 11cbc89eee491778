"""What an AWS error means: no such entity, a one-line secret-free description, the account-level message."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from shared.errors import (
    shorten,
)
from shared.redaction import redact


def is_no_such_entity(exc: Exception) -> bool:
    """The user or key was deleted between listing and reading: it no longer exists, so it has no record."""
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "NoSuchEntity"


def describe_aws_error(exc: BaseException) -> str:
    """A short, secret-free description of an AWS error, with the API's code when there is one."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "") or "request"
        text = f"{operation}: {error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")
    else:  # the first line only: a ResponseParserError appends the raw (possibly cut, secret-bearing) body
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return shorten(redact(text))


IAM_READ_ACTIONS = "iam:GetAccountAuthorizationDetails, iam:ListAccessKeys, iam:GetAccessKeyLastUsed"
# The permission the collector's roles gained with issue 20: a role deployed from an older stack lacks it.
AUTHORIZATION_DETAILS = "GetAccountAuthorizationDetails"
ROLE_STACKS = "infra/aws/member-account.yaml (member accounts) or infra/aws/home-account.yaml (the home account)"
# The read of the long-lived credentials other than keys (infra/aws/*.yaml grant it since the issue that added them):
# a role deployed before lacks it, and only those credentials are then unknown.
SERVICE_CREDENTIALS_ACTION = "iam:ListServiceSpecificCredentials"


def error_code(exc: BaseException) -> str:
    """AWS's error code of a failed call ("" when it is not an AWS error answer)."""
    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""


def describe_iam_error(exc: BaseException, account_id: str, needs: str = IAM_READ_ACTIONS) -> str:
    """An IAM call of an account failed: which dependency (IAM), which account, what failed and what to check.
    ``needs`` is the permission an access denial names."""
    text = f"IAM in account {account_id}: {describe_aws_error(exc)}"
    code = error_code(exc)
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        if needs == SERVICE_CREDENTIALS_ACTION:
            return (f"{text} (the account's collector role needs {needs}: update its stack from {ROLE_STACKS}; "
                    "its access keys are collected all the same)")
        if getattr(exc, "operation_name", "") == AUTHORIZATION_DETAILS:
            return (f"{text} (the account's collector role needs iam:{AUTHORIZATION_DETAILS}: update its stack from "
                    f"{ROLE_STACKS})")
        return f"{text} (the account's collector role needs {needs}; its stack: {ROLE_STACKS})"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) if isinstance(exc, ClientError) else 0
    if isinstance(exc, ResponseParserError):  # botocore does not retry an answer it cannot parse
        return f"{text} (IAM's answer was cut off or garbled; the next run retries the account)"
    if isinstance(exc, BotoCoreError) or status >= 500 or status == 429 or "Throttl" in code:
        return f"{text} (still failing after botocore's retries: check the network path to IAM; the next run retries)"
    return text
