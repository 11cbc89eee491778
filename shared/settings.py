"""The collector's settings: read from the environment in exactly one place (``load_settings``).

Every name and default here is fixed by the contract (``../shared/contract.md``) and documented in the README.
Validation happens before any network call; every problem is reported at once in one ``SettingsError`` that
names each bad setting and what is expected.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from shared import endpoints
from shared.endpoints import PRODUCTION, EndpointPolicy


class SettingsError(ValueError):
    """One or more settings are missing or invalid. The message names every one and what is expected."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "Invalid collector settings (fix these app settings or environment variables):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


class AuthMode(enum.StrEnum):
    ACCESS_KEY = "access_key"
    WEB_IDENTITY = "web_identity"


class SinkKind(enum.StrEnum):
    LOGS_INGESTION = "logs_ingestion"
    DATA_COLLECTOR = "data_collector"
    FILE = "file"


class AccountsScope(enum.StrEnum):
    HOME = "home"
    ORGANIZATION = "organization"
    LIST = "list"


@dataclass(frozen=True)
class Settings:
    # Azure
    azure_client_id: str | None
    key_vault_url: str | None
    # AWS sign-in
    aws_auth_mode: AuthMode
    aws_role_arn: str
    aws_external_id: str | None
    aws_access_key_id_secret: str
    aws_secret_access_key_secret: str
    aws_web_identity_audience: str | None
    # AWS scope
    aws_accounts: AccountsScope
    aws_account_ids: tuple[str, ...]  # only for AccountsScope.LIST
    aws_member_role_name: str
    aws_region: str
    # Sinks
    log_sink: SinkKind
    logs_ingestion_endpoint: str | None
    logs_ingestion_rule_id: str | None
    logs_ingestion_keys_stream: str
    logs_ingestion_runs_stream: str
    log_analytics_workspace_id: str | None
    log_analytics_workspace_key_secret: str
    log_analytics_domain: str
    file_sink_dir: str
    # Findings
    key_rotation_days: int
    key_unused_days: int
    # Speed (not in the contract's first version: added by the organization-scale issue, documented in the README)
    account_concurrency: int
    iam_concurrency: int
    # Outbox (the reliability issue): where undelivered rows wait for the next run, and its bounds
    outbox_blob_service_uri: str | None = None  # the Function's own storage (AzureWebJobsStorage__blobServiceUri)
    outbox_container: str = "collector-outbox"
    outbox_max_records: int = 500_000
    outbox_max_age_hours: int = 48
    collector_schedule: str | None = None

    @property
    def home_account_id(self) -> str:
        return self.aws_role_arn.split(":")[4]

    @property
    def aws_partition(self) -> str:
        return self.aws_role_arn.split(":")[1]

    def secret_names_needed(self) -> tuple[str, ...]:
        """The Key Vault secrets this combination of modes needs, and no others."""
        names: list[str] = []
        if self.aws_auth_mode is AuthMode.ACCESS_KEY:
            names += [self.aws_access_key_id_secret, self.aws_secret_access_key_secret]
        if self.log_sink is SinkKind.DATA_COLLECTOR:
            names.append(self.log_analytics_workspace_key_secret)
        return tuple(names)


DEFAULTS: dict[str, str] = {
    "AWS_AUTH_MODE": "access_key",
    "AWS_ACCESS_KEY_ID_SECRET": "aws-access-key-id",
    "AWS_SECRET_ACCESS_KEY_SECRET": "aws-secret-access-key",
    "AWS_ACCOUNTS": "home",
    "AWS_MEMBER_ROLE_NAME": "AwsIamKeyCollector",
    "AWS_REGION": "us-east-1",
    "LOG_SINK": "logs_ingestion",
    "LOGS_INGESTION_KEYS_STREAM": "Custom-AwsIamAccessKeys",
    "LOGS_INGESTION_RUNS_STREAM": "Custom-AwsIamKeyCollectorRuns",
    "LOG_ANALYTICS_WORKSPACE_KEY_SECRET": "log-analytics-workspace-key",
    "LOG_ANALYTICS_DOMAIN": "ods.opinsights.azure.com",
    "FILE_SINK_DIR": "out",
    "KEY_ROTATION_DAYS": "90",
    "KEY_UNUSED_DAYS": "45",
    "COLLECTOR_ACCOUNT_CONCURRENCY": "16",
    "COLLECTOR_IAM_CONCURRENCY": "16",
    "OUTBOX_CONTAINER": "collector-outbox",
    "OUTBOX_MAX_RECORDS": "500000",
    "OUTBOX_MAX_AGE_HOURS": "48",
}

# Set by the Functions platform (and our Bicep) for identity-based AzureWebJobsStorage; reused for the outbox.
BLOB_SERVICE_URI_SETTING = "AzureWebJobsStorage__blobServiceUri"

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# re.ASCII everywhere: \d and \w must not accept other scripts' digits and letters (AWS and Azure do not).
_ROLE_ARN = re.compile(r"^arn:(aws|aws-us-gov|aws-cn):iam::(\d{12}):role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$", re.ASCII)
_ACCOUNT_ID = re.compile(r"^\d{12}$", re.ASCII)
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$", re.ASCII)
_KV_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$", re.ASCII)
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$", re.ASCII)
_DCR_ID = re.compile(r"^dcr-[0-9a-f]{32}$")
_STREAM = re.compile(r"^Custom-[A-Za-z0-9_]{1,100}$")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
_AUDIENCE = re.compile(r"^[\x21-\x7e]{1,512}$")

T = TypeVar("T")


class _Reader:
    """Collects every problem instead of stopping at the first, so one run of the app shows them all."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._env = environ
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            default = DEFAULTS.get(name)
            return default
        return value.strip()

    def optional(self, name: str, check: Callable[[str], bool], expected: str) -> str | None:
        value = self.raw(name)
        if value is not None and not check(value):
            self.problems.append(f"{name}: expected {expected}, got {_show(value)}")
            return None
        return value

    def required(self, name: str, check: Callable[[str], bool], expected: str, why: str) -> str | None:
        value = self.raw(name)
        if value is None:
            self.problems.append(f"{name}: required {why}; expected {expected}")
            return None
        return self.optional(name, check, expected)

    def url(
        self, name: str, problem: Callable[[str, str], str | None], expected: str, why: str | None = None
    ) -> str | None:
        """A token-bearing URL: ``problem`` (shared.endpoints) names what is wrong with it, or None."""
        value = self.raw(name)
        if value is None:
            if why is not None:
                self.problems.append(f"{name}: required {why}; expected {expected}")
            return None
        found = problem(name, value)
        if found is not None:
            self.problems.append(f"{found}; got {_show(value)}")
            return None
        return value

    def choice(self, name: str, enum_type: type[T], choices: list[str]) -> T | None:
        value = self.raw(name) or DEFAULTS[name]
        if value not in choices:
            self.problems.append(f"{name}: expected one of {', '.join(choices)}, got {_show(value)}")
            return None
        return enum_type(value)  # type: ignore[call-arg]

    def integer(self, name: str, low: int, high: int) -> int:
        value = self.raw(name) or DEFAULTS[name]
        if re.fullmatch(r"[0-9]{1,9}", value) and low <= int(value) <= high:
            return int(value)
        self.problems.append(f"{name}: expected a whole number from {low} to {high}, got {_show(value)}")
        return low


def _m(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda value: pattern.fullmatch(value) is not None


def _show(value: str) -> str:
    """Quote a bad value for an error message, shortened, so the message stays readable and bounded. A URL's
    user-info, query and fragment (where a password, SAS signature or key would be) are never echoed."""
    if "://" in value or "@" in value or "?" in value:
        value = _strip_url_secrets(value)
    return repr(value if len(value) <= 80 else value[:77] + "...")


def _strip_url_secrets(value: str) -> str:
    try:
        parts = urlsplit(value)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        text = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else netloc + parts.path
    except ValueError:
        return "(not shown: not a well-formed URL)"
    if "@" in parts.netloc:
        text += " (user-info removed)"
    if parts.query or parts.fragment:
        text += " (query removed)"
    return text


def load_settings(environ: Mapping[str, str], endpoint_policy: EndpointPolicy = PRODUCTION) -> Settings:
    """Read and validate every setting. Raises SettingsError naming each bad one; makes no network call.

    ``endpoint_policy`` is never read from a setting: production passes ``PRODUCTION`` (the clouds' own domains
    only); tests with local fakes pass theirs from ``ClientOptions``."""
    r = _Reader(environ)

    def on(check: Callable[[str, str, EndpointPolicy], str | None]) -> Callable[[str, str], str | None]:
        return lambda name, value: check(name, value, endpoint_policy)

    auth_mode = r.choice("AWS_AUTH_MODE", AuthMode, [m.value for m in AuthMode])
    log_sink = r.choice("LOG_SINK", SinkKind, [s.value for s in SinkKind])

    role_arn = r.required(
        "AWS_ROLE_ARN",
        _m(_ROLE_ARN),
        "an IAM role ARN like arn:aws:iam::123456789012:role/AwsIamKeyCollector",
        "always (the home role the collector assumes first)",
    )
    external_id = r.optional(
        "AWS_EXTERNAL_ID", _m(_EXTERNAL_ID), "2 to 1224 characters of letters, digits and +=,.@:/-"
    )
    secret_check = _m(_KV_SECRET_NAME)
    secret_expected = "a Key Vault secret name (1-127 letters, digits and dashes)"  # noqa: S105 - a description
    access_key_id_secret = r.optional("AWS_ACCESS_KEY_ID_SECRET", secret_check, secret_expected)
    secret_key_secret = r.optional("AWS_SECRET_ACCESS_KEY_SECRET", secret_check, secret_expected)
    workspace_key_secret = r.optional(
        "LOG_ANALYTICS_WORKSPACE_KEY_SECRET", secret_check, secret_expected
    )

    audience_expected = "the application ID URI or client id the AWS OIDC provider expects, e.g. api://AzureADTokenExchange"
    if auth_mode is AuthMode.WEB_IDENTITY:
        audience = r.required(
            "AWS_WEB_IDENTITY_AUDIENCE", _is_audience, audience_expected, "when AWS_AUTH_MODE is web_identity"
        )
    else:
        audience = r.optional("AWS_WEB_IDENTITY_AUDIENCE", _is_audience, audience_expected)

    accounts_raw = r.raw("AWS_ACCOUNTS") or "home"
    account_ids: tuple[str, ...] = ()
    if accounts_raw in ("home", "organization"):
        accounts = AccountsScope(accounts_raw)
    else:
        accounts = AccountsScope.LIST
        ids = [part.strip() for part in accounts_raw.split(",") if part.strip()]
        bad = [i for i in ids if not _ACCOUNT_ID.match(i)]
        if not ids or bad:
            r.problems.append(
                "AWS_ACCOUNTS: expected home, organization, or a comma-separated list of 12-digit account ids, "
                f"got {_show(accounts_raw)}"
                + (f" (not 12 digits: {', '.join(_show(b) for b in bad[:5])})" if bad else "")
            )
        account_ids = tuple(dict.fromkeys(ids))  # de-duplicated, in the order given

    member_role = r.optional(
        "AWS_MEMBER_ROLE_NAME", _m(_ROLE_NAME), "an IAM role name (1-64 letters, digits and +=,.@_-)"
    )
    region = r.optional("AWS_REGION", _m(_REGION), "an AWS region name such as us-east-1")

    client_id = r.optional("AZURE_CLIENT_ID", _m(_GUID), "a GUID (the managed identity's client id)")

    needs_vault = auth_mode is AuthMode.ACCESS_KEY or log_sink is SinkKind.DATA_COLLECTOR
    vault_expected = "a Key Vault URL like https://<vault>.vault.azure.net/"
    vault_why = "when AWS_AUTH_MODE is access_key or LOG_SINK is data_collector (secrets come from Key Vault)"
    vault_url = r.url(
        "KEY_VAULT_URL", on(endpoints.key_vault_problem), vault_expected, vault_why if needs_vault else None
    )

    endpoint_expected = "an https URL like https://<dce>.<region>.ingest.monitor.azure.com"
    rule_expected = "a data collection rule immutable id: dcr- followed by 32 hex digits"
    if log_sink is SinkKind.LOGS_INGESTION:
        why = "when LOG_SINK is logs_ingestion"
        endpoint = r.url("LOGS_INGESTION_ENDPOINT", on(endpoints.logs_ingestion_problem), endpoint_expected, why)
        rule_id = r.required("LOGS_INGESTION_RULE_ID", _m(_DCR_ID), rule_expected, why)
    else:
        endpoint = r.url("LOGS_INGESTION_ENDPOINT", on(endpoints.logs_ingestion_problem), endpoint_expected)
        rule_id = r.optional("LOGS_INGESTION_RULE_ID", _m(_DCR_ID), rule_expected)
    stream_expected = "a custom stream name: Custom- followed by letters, digits or _"
    keys_stream = r.optional("LOGS_INGESTION_KEYS_STREAM", _m(_STREAM), stream_expected)
    runs_stream = r.optional("LOGS_INGESTION_RUNS_STREAM", _m(_STREAM), stream_expected)

    workspace_expected = "a GUID (the Log Analytics workspace id)"
    if log_sink is SinkKind.DATA_COLLECTOR:
        workspace_id = r.required(
            "LOG_ANALYTICS_WORKSPACE_ID", _m(_GUID), workspace_expected, "when LOG_SINK is data_collector"
        )
    else:
        workspace_id = r.optional("LOG_ANALYTICS_WORKSPACE_ID", _m(_GUID), workspace_expected)
    domain = r.url("LOG_ANALYTICS_DOMAIN", on(endpoints.data_collector_domain_problem), "ods.opinsights.azure.com")
    file_dir = r.optional("FILE_SINK_DIR", lambda v: "\x00" not in v, "a folder path")

    rotation_days = r.integer("KEY_ROTATION_DAYS", 1, 3650)
    unused_days = r.integer("KEY_UNUSED_DAYS", 1, 3650)
    account_concurrency = r.integer("COLLECTOR_ACCOUNT_CONCURRENCY", 1, 64)
    iam_concurrency = r.integer("COLLECTOR_IAM_CONCURRENCY", 1, 32)
    schedule = r.optional("COLLECTOR_SCHEDULE", _is_ncrontab, _NCRONTAB_EXPECTED)
    blob_uri = r.url(
        BLOB_SERVICE_URI_SETTING, on(endpoints.blob_service_problem), "https://<account>.blob.core.windows.net"
    )
    container = r.optional(
        "OUTBOX_CONTAINER", _m(_CONTAINER), "a blob container name (3-63 lower-case letters, digits and dashes)"
    )
    outbox_max_records = r.integer("OUTBOX_MAX_RECORDS", 1000, 10_000_000)
    outbox_max_age_hours = r.integer("OUTBOX_MAX_AGE_HOURS", 1, 720)

    r.problems.extend(endpoints.aws_endpoint_problems(environ))
    if role_arn and region and _partition_of_region(region) != role_arn.split(":")[1]:
        r.problems.append(
            f"AWS_ROLE_ARN / AWS_REGION: the role is in partition {role_arn.split(':')[1]} but region {region} is in "
            f"{_partition_of_region(region)}; set AWS_REGION to a region of the role's partition (e.g. "
            f"{_EXAMPLE_REGION.get(role_arn.split(':')[1], 'us-east-1')})"
        )

    if r.problems:
        raise SettingsError(r.problems)

    # With no problem recorded, every value below is present; _ok only narrows the types.
    return Settings(
        azure_client_id=client_id,
        key_vault_url=vault_url,
        aws_auth_mode=_ok(auth_mode),
        aws_role_arn=_ok(role_arn),
        aws_external_id=external_id,
        aws_access_key_id_secret=_ok(access_key_id_secret),
        aws_secret_access_key_secret=_ok(secret_key_secret),
        aws_web_identity_audience=audience,
        aws_accounts=accounts,
        aws_account_ids=account_ids,
        aws_member_role_name=_ok(member_role),
        aws_region=_ok(region),
        log_sink=_ok(log_sink),
        logs_ingestion_endpoint=endpoint,
        logs_ingestion_rule_id=rule_id,
        logs_ingestion_keys_stream=_ok(keys_stream),
        logs_ingestion_runs_stream=_ok(runs_stream),
        log_analytics_workspace_id=workspace_id,
        log_analytics_workspace_key_secret=_ok(workspace_key_secret),
        log_analytics_domain=_ok(domain),
        file_sink_dir=_ok(file_dir),
        key_rotation_days=rotation_days,
        key_unused_days=unused_days,
        account_concurrency=account_concurrency,
        iam_concurrency=iam_concurrency,
        outbox_blob_service_uri=blob_uri,
        outbox_container=_ok(container),
        outbox_max_records=outbox_max_records,
        outbox_max_age_hours=outbox_max_age_hours,
        collector_schedule=schedule,
    )


def _ok(value: T | None) -> T:
    if value is None:  # unreachable: a missing value is always recorded as a problem first
        raise RuntimeError("settings validation let a missing value through")
    return value


def _is_audience(value: str) -> bool:
    # The scope requested is "<audience>/.default": the audience itself must not carry a scope suffix.
    return _AUDIENCE.fullmatch(value) is not None and not value.endswith("/.default")


_EXAMPLE_REGION = {"aws": "us-east-1", "aws-us-gov": "us-gov-west-1", "aws-cn": "cn-north-1"}


def _partition_of_region(region: str) -> str:
    """The AWS partition a region belongs to (its STS and IAM endpoints live there)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if "-isob-" in region:
        return "aws-iso-b"
    if "-iso" in region:
        return "aws-iso"
    return "aws"


# NCRONTAB, as the Functions timer trigger reads it: {second} {minute} {hour} {day} {month} {day-of-week}.
_NCRONTAB_EXPECTED = (
    "an NCRONTAB expression of 6 fields: second minute hour day month day-of-week, e.g. 0 0 2 * * * (02:00 daily)"
)
_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                                       "DEC"), 1)}
_DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}), (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _DAYS)
)


def _is_ncrontab(value: str) -> bool:
    fields = value.split()
    return len(fields) == 6 and all(_cron_field(f, *spec) for f, spec in zip(fields, _FIELDS, strict=True))


def _cron_field(field: str, low: int, high: int, names: dict[str, int]) -> bool:
    def number(text: str) -> int | None:
        if re.fullmatch(r"[0-9]{1,2}", text):
            return int(text) if low <= int(text) <= high else None
        return names.get(text.upper())

    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and not (re.fullmatch(r"[0-9]{1,2}", step) and 0 < int(step) <= high):
            return False
        if base == "*":
            continue
        first, dash, last = base.partition("-")
        start, end = number(first), number(last) if dash else None
        if start is None or (dash and (end is None or end < start)):
            return False
    return True
