"""AWS: sign-in (home role, member roles) and the raw API calls. Dumb I/O that raises; no transformation here.

Credentials: the IAM user's key (``access_key`` mode) or the managed identity's OIDC token (``web_identity`` mode)
is used for exactly one thing, the STS call into the home role. Every IAM and Organizations call runs on the home
role's session or on a member role chained from it. Sessions are short (15 minutes, the STS minimum) and botocore
refreshes them a few minutes before they expire, so a long inventory never runs on expired credentials.

Endpoints come from boto3's own conventions (``AWS_ENDPOINT_URL`` and friends), which is how the demo and the
tests point the real clients at a local emulated AWS.
"""

from __future__ import annotations

import threading

from botocore.config import Config
from botocore.credentials import (
    Credentials,
)

from shared.aws.clients import AWS_ERRORS, AwsClientFactory
from shared.aws.errors import describe_aws_error
from shared.aws.iam import BotocoreIamReader, _IamClientSlot, _ServingCredentials
from shared.aws.organizations import active_accounts, list_organization_accounts
from shared.aws.rate_limit import CallRateLimiter
from shared.aws.session_policy import home_session_policy, member_session_policy
from shared.aws.signin import (
    assume_home_role_with_key,
    assume_home_role_with_web_identity,
    assume_member_role,
    iam_user_credentials,
    member_role_arn,
)
from shared.config.modes import AccessKeyAuth, AccountsScope, WebIdentityAuth
from shared.config.settings import Settings
from shared.domain import Account
from shared.errors import (
    AwsSignInError,
    MalformedResponseError,
)
from shared.ports import SecretProvider, WebIdentityTokenProvider


class AwsSource:
    """The ``AwsAccounts`` port: signs in to the home role, lists the accounts in scope, and hands out an IAM reader
    on the right role for each account. Secret and token providers are passed in, never looked up here.

    ``COLLECTOR_IAM_CONCURRENCY`` takes effect here and only here: each account's IAM client gets that many
    connections plus two (the credential report, the service-specific credentials), and its reader says that many
    calls run in parallel."""

    def __init__(
        self,
        settings: Settings,
        factory: AwsClientFactory,
        *,
        secrets: SecretProvider | None = None,
        tokens: WebIdentityTokenProvider | None = None,
    ) -> None:
        self._settings = settings
        self._factory = factory
        self._secrets = secrets
        self._tokens = tokens
        self._home: Credentials | None = None
        self._run_id = ""
        # IAM clients of accounts that are done, reused for the next accounts (creating a client is about a third of
        # a small account's CPU); at most COLLECTOR_ACCOUNT_CONCURRENCY exist at once.
        self._idle_iam: list[_IamClientSlot] = []
        self._idle_lock = threading.Lock()

    def sign_in(self, run_id: str) -> None:
        s = self._settings
        self._run_id = run_id
        # The first IAM client loads IAM's service model and endpoint rules (tens of ms of CPU): made while sign-in
        # waits for STS, it is ready, in the idle pool, when the first account starts.
        threading.Thread(target=self._prepare_iam_client, name="iam-client-warmup", daemon=True).start()
        match s.aws_auth:
            case WebIdentityAuth():
                if self._tokens is None:
                    raise AwsSignInError("web_identity mode needs a token provider (composition error)")
                self._home = assume_home_role_with_web_identity(
                    self._factory, self._tokens, s.aws_role_arn, run_id, policy=self._home_policy()
                )
            case AccessKeyAuth():
                if self._secrets is None:
                    raise AwsSignInError("access_key mode needs a secret provider (composition error)")
                auth = s.aws_auth
                user = iam_user_credentials(self._secrets, auth.access_key_id_secret, auth.secret_access_key_secret)
                self._home = assume_home_role_with_key(
                    self._factory, user, s.aws_role_arn, s.aws_external_id, run_id, policy=self._home_policy()
                )

    def planned_account_ids(self) -> list[str]:
        """The accounts known before any AWS call (for naming them if sign-in fails)."""
        s = self._settings
        return list(s.aws_account_ids) if s.aws_accounts is AccountsScope.LIST else [s.home_account_id]

    def accounts(self) -> list[Account]:
        s = self._settings
        if s.aws_accounts is AccountsScope.HOME:
            return [Account(s.home_account_id)]
        if s.aws_accounts is AccountsScope.LIST:
            return [Account(i) for i in s.aws_account_ids]
        org = self._factory.client("organizations", self._home_credentials())
        try:
            return active_accounts(list_organization_accounts(org))
        except (*AWS_ERRORS, MalformedResponseError) as exc:
            raise AwsSignInError(
                f"Organizations ListAccounts through {s.aws_role_arn} failed: {describe_aws_error(exc)} (the home "
                "role must be in the management account or a delegated administrator, with organizations:ListAccounts)"
            ) from None

    def iam_reader(self, account: Account) -> BotocoreIamReader:
        s = self._settings
        home = self._home_credentials()
        if account.id == s.home_account_id:
            credentials: Credentials = home
        else:
            arn = member_role_arn(s.aws_partition, account.id, s.aws_member_role_name)
            credentials = assume_member_role(self._factory, home, arn, self._run_id, policy=member_session_policy())
        slot = self._iam_slot()
        slot.credentials.serving = credentials
        slot.limiter = CallRateLimiter(s.iam_max_calls_per_second) if s.iam_max_calls_per_second > 0 else None

        def release() -> None:
            slot.credentials.serving = None
            slot.limiter = None
            with self._idle_lock:
                self._idle_iam.append(slot)

        return BotocoreIamReader(slot.client, account.id, s.iam_concurrency, release)

    def _home_policy(self) -> str:
        return home_session_policy(self._settings.aws_partition, self._settings.aws_member_role_name)

    def _prepare_iam_client(self) -> None:
        try:
            slot = self._iam_slot()
        except Exception:  # only a head start: the first account makes its own client, and says what failed
            return
        with self._idle_lock:
            self._idle_iam.append(slot)

    def _iam_slot(self) -> _IamClientSlot:
        with self._idle_lock:
            if self._idle_iam:
                return self._idle_iam.pop()
        serving = _ServingCredentials()
        # one connection per parallel IAM call of the account, plus one for its credential report and one for its
        # service-specific credentials, both read alongside
        config = Config(max_pool_connections=self._settings.iam_concurrency + 2)
        slot = _IamClientSlot(self._factory.client("iam", serving, config), serving)
        # each request, retries included, first takes its turn under the account's cap (COLLECTOR_IAM_MAX_CALLS_...)
        slot.client.meta.events.register("before-send.iam", slot.take_turn)
        return slot

    def _home_credentials(self) -> Credentials:
        if self._home is None:
            raise AwsSignInError("not signed in to the home role")
        return self._home
