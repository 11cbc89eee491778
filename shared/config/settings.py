"""The collector's settings: read from the environment in exactly one place (``load_settings``).

Every name and default here is fixed by the contract (``docs/contract.md``) and documented in docs/settings.md.
Validation happens before any network call; every problem is reported at once in one ``SettingsError`` that
names each bad setting and what is expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from shared.config import endpoints
from shared.config.defaults import DEFAULTS
from shared.config.endpoints import EXAMPLE_REGION, PRODUCTION, EndpointPolicy, partition_of_region
from shared.config.modes import (
    AUTH_TYPES,
    SINK_TYPES,
    AccountsScope,
    AuthMode,
    AwsAuth,
    KeyVaultSettings,
    SinkKind,
    SinkSettings,
    required_because,
)
from shared.config.schedule import _NCRONTAB_EXPECTED, _is_ncrontab
from shared.errors import SettingsError
from shared.findings.exceptions import EMPTY, ExceptionSet
from shared.findings.exceptions_file import DEFAULT_MAX_DAYS, MAX_DAYS_RANGE, ExceptionsFileError, load_exceptions
from shared.findings.owners import DEFAULT_OWNER_TAG_KEYS, parse_owner_tag_keys
from shared.identifiers import ACCOUNT_ID, is_account_id


@dataclass(frozen=True)
class Settings:
    """Every setting's validated value, as the contract names it, and the typed modes built from them (``aws_auth``,
    ``sink``, ``key_vault``), which adapters and the composition root read. A setting a mode reads is only in the
    mode (e.g. the secret names in ``aws_auth``, the streams in ``sink``), not repeated here."""

    # Azure
    azure_client_id: str | None
    key_vault: KeyVaultSettings | None  # when the modes need secrets (KEY_VAULT_URL and the secrets' names)
    # AWS sign-in
    aws_auth: AwsAuth
    aws_role_arn: str
    aws_external_id: str | None
    # AWS scope
    aws_accounts: AccountsScope
    aws_account_ids: tuple[str, ...]  # only for AccountsScope.LIST
    aws_member_role_name: str
    aws_region: str
    # Sinks
    sink: SinkSettings
    file_sink_dir: str  # the file sink's folder, and the local outbox's parent whatever the sink
    # Findings
    key_rotation_days: int
    key_unused_days: int
    # Speed (not in the contract's first version: added by the organization-scale issue, documented in docs/settings.md)
    account_concurrency: int
    iam_concurrency: int
    iam_max_calls_per_second: int = 0  # per account, retries included; 0: no cap (issue 14)
    # Outbox (the reliability issue): where undelivered rows wait for the next run, and its bounds
    outbox_blob_service_uri: str | None = None  # the Function's own storage (AzureWebJobsStorage__blobServiceUri)
    outbox_container: str = "collector-outbox"
    outbox_max_records: int = 500_000
    outbox_max_age_hours: int = 48
    collector_schedule: str | None = None
    # Owners and exceptions (docs/exceptions.md): the tag keys naming a key's owner, and the reviewed exceptions file,
    # already read and validated (an invalid file is a settings problem, found before any network call).
    owner_tag_keys: tuple[str, ...] = DEFAULT_OWNER_TAG_KEYS
    exceptions_file: str | None = None  # as set (relative to the app's folder unless absolute); None: no exceptions
    exceptions_max_days: int = DEFAULT_MAX_DAYS
    exceptions: ExceptionSet = EMPTY
    # EXCEPTIONS_SOURCE=blob: the exceptions are a blob of the Function's own storage, read and validated at the start
    # of each run (shared/azure/exceptions_blob.py), not at startup; exceptions_file is then not read.
    exceptions_source: str = "file"
    exceptions_container: str = "collector-config"
    exceptions_blob: str = "exceptions.json"

    @property
    def home_account_id(self) -> str:
        return self.aws_role_arn.split(":")[4]

    @property
    def aws_partition(self) -> str:
        return self.aws_role_arn.split(":")[1]

    def secret_names_needed(self) -> tuple[str, ...]:
        """The Key Vault secrets this combination of modes needs, and no others."""
        return self.aws_auth.secret_names + self.sink.secret_names


# The app's folder (where function_app.py and the deployed exceptions.json are): EXCEPTIONS_FILE is relative to it,
# and must resolve to a regular file inside it.
APP_DIR = Path(__file__).resolve().parents[2]

# Set by the Functions platform (and our Bicep) for identity-based AzureWebJobsStorage; reused for the outbox.
BLOB_SERVICE_URI_SETTING = "AzureWebJobsStorage__blobServiceUri"

# Matched whole (fullmatch, through _m) and ASCII only: \d and \w must not accept other scripts' digits and letters
# (AWS and Azure do not), and no pattern ends in $ (which would admit a trailing newline with match).
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII)
_ROLE_ARN = re.compile(
    rf"arn:(aws|aws-us-gov|aws-cn):iam::({ACCOUNT_ID.pattern}):role/([\w+=,.@-]+/)*[\w+=,.@-]{{1,64}}", re.ASCII
)
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_KV_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}", re.ASCII)
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}", re.ASCII)
_DCR_ID = re.compile(r"dcr-[0-9a-f]{32}", re.ASCII)
_STREAM = re.compile(r"Custom-[A-Za-z0-9_]{1,100}", re.ASCII)
_CONTAINER = re.compile(r"(?=.{3,63}\Z)[a-z0-9]+(-[a-z0-9]+)*", re.ASCII)
# The web identity audience: the application ID URI of the collector's own Entra application (the deployment hook
# creates it as api://<app id>). Only an api:// URI: a token for any other resource (storage, ARM, Graph) must never
# be asked for on the AWS side's behalf, nor sent to STS.
_AUDIENCE = re.compile(r"api://[A-Za-z0-9][A-Za-z0-9._~/-]{0,500}", re.ASCII)

T = TypeVar("T")


class _Reader:
    """Collects every problem instead of stopping at the first, so one run of the app shows them all, and keeps every
    valid value present (given or defaulted) in ``values``, by setting name."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._env = environ
        self.problems: list[str] = []
        self.values: dict[str, str] = {}
        self.required_because: dict[str, str] = {}  # setting -> why it is required (from the modes chosen)

    def raw(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            default = DEFAULTS.get(name)
            return default
        return value.strip()

    def present(self, name: str, expected: str) -> str | None:
        """The setting's value (or default); None when absent, a problem when the modes chosen require it."""
        value = self.raw(name)
        why = self.required_because.get(name)
        if value is None and why is not None:
            self.problems.append(f"{name}: required {why}; expected {expected}")
        return value

    def read(self, name: str, check: Callable[[str], bool], expected: str) -> str | None:
        """The setting's valid value, or None when it is absent (a problem when required) or invalid (a problem)."""
        value = self.present(name, expected)
        if value is None:
            return None
        if not check(value):
            self.problems.append(f"{name}: expected {expected}, got {_show(value)}")
            return None
        self.values[name] = value
        return value

    def url(self, name: str, problem: Callable[[str, str], str | None], expected: str) -> str | None:
        """A token-bearing URL (or domain): ``problem`` (shared.endpoints) names what is wrong with it, or None."""
        value = self.present(name, expected)
        if value is None:
            return None
        found = problem(name, value)
        if found is not None:
            self.problems.append(f"{found}; got {_show(value)}")
            return None
        self.values[name] = value
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


def load_settings(
    environ: Mapping[str, str],
    endpoint_policy: EndpointPolicy = PRODUCTION,
    *,
    now: datetime | None = None,
    exceptions_root: Path | None = None,
) -> Settings:
    """Read and validate every setting. Raises SettingsError naming each bad one; makes no network call.

    ``endpoint_policy`` is never read from a setting: production passes ``PRODUCTION`` (the clouds' own domains
    only); tests with local fakes pass theirs from ``ClientOptions``. ``now`` is when the exceptions file's expiries
    are checked against ``EXCEPTIONS_MAX_DAYS`` (default: the clock). ``exceptions_root``: the folder EXCEPTIONS_FILE
    must be in, the app's (``APP_DIR``) unless a caller passes another in code (the demo its output folder, tests
    their temporary one); never read from a setting."""
    r = _Reader(environ)

    def on(check: Callable[[str, str, EndpointPolicy], str | None]) -> Callable[[str, str], str | None]:
        return lambda name, value: check(name, value, endpoint_policy)

    auth_mode = r.choice("AWS_AUTH_MODE", AuthMode, [m.value for m in AuthMode])
    log_sink = r.choice("LOG_SINK", SinkKind, [s.value for s in SinkKind])
    auth_type = None if auth_mode is None else AUTH_TYPES[auth_mode]
    sink_type = None if log_sink is None else SINK_TYPES[log_sink]
    r.required_because = required_because(auth_type, sink_type)

    # Every setting is validated whatever the modes (a bad value is reported even where it is not used yet), in
    # this order, so that the problems always read in the same order.
    r.read("AWS_ROLE_ARN", _m(_ROLE_ARN), "an IAM role ARN like arn:aws:iam::123456789012:role/AwsIamKeyCollector")
    r.read("AWS_EXTERNAL_ID", _m(_EXTERNAL_ID), "2 to 1224 characters of letters, digits and +=,.@:/-")
    secret_check = _m(_KV_SECRET_NAME)
    secret_expected = "a Key Vault secret name (1-127 letters, digits and dashes)"  # noqa: S105 - a description
    r.read("AWS_ACCESS_KEY_ID_SECRET", secret_check, secret_expected)
    r.read("AWS_SECRET_ACCESS_KEY_SECRET", secret_check, secret_expected)
    r.read("LOG_ANALYTICS_WORKSPACE_KEY_SECRET", secret_check, secret_expected)
    r.read(
        "AWS_WEB_IDENTITY_AUDIENCE",
        _is_audience,
        "the application ID URI of the collector's own Entra application, an api:// URI (azd output "
        "AWS_WEB_IDENTITY_AUDIENCE, api://<app id>), which the AWS OIDC provider lists as its client id",
    )

    accounts_raw = r.raw("AWS_ACCOUNTS") or "home"
    account_ids: tuple[str, ...] = ()
    if accounts_raw in ("home", "organization"):
        accounts = AccountsScope(accounts_raw)
    else:
        accounts = AccountsScope.LIST
        ids = [part.strip() for part in accounts_raw.split(",") if part.strip()]
        bad = [i for i in ids if not is_account_id(i)]
        if not ids or bad:
            r.problems.append(
                "AWS_ACCOUNTS: expected home, organization, or a comma-separated list of 12-digit account ids, "
                f"got {_show(accounts_raw)}"
                + (f" (not 12 digits: {', '.join(_show(b) for b in bad[:5])})" if bad else "")
            )
        account_ids = tuple(dict.fromkeys(ids))  # de-duplicated, in the order given

    r.read("AWS_MEMBER_ROLE_NAME", _m(_ROLE_NAME), "an IAM role name (1-64 letters, digits and +=,.@_-)")
    r.read("AWS_REGION", _m(_REGION), "an AWS region name such as us-east-1")
    r.read("AZURE_CLIENT_ID", _m(_GUID), "a GUID (the managed identity's client id)")
    r.url("KEY_VAULT_URL", on(endpoints.key_vault_problem), "a Key Vault URL like https://<vault>.vault.azure.net/")
    r.url(
        "LOGS_INGESTION_ENDPOINT",
        on(endpoints.logs_ingestion_problem),
        "an https URL like https://<dce>.<region>.ingest.monitor.azure.com",
    )
    r.read("LOGS_INGESTION_RULE_ID", _m(_DCR_ID), "a data collection rule immutable id: dcr- followed by 32 hex digits")
    stream_expected = "a custom stream name: Custom- followed by letters, digits or _"
    r.read("LOGS_INGESTION_KEYS_STREAM", _m(_STREAM), stream_expected)
    r.read("LOGS_INGESTION_RUNS_STREAM", _m(_STREAM), stream_expected)
    r.read("LOG_ANALYTICS_WORKSPACE_ID", _m(_GUID), "a GUID (the Log Analytics workspace id)")
    r.url("LOG_ANALYTICS_DOMAIN", on(endpoints.data_collector_domain_problem), "ods.opinsights.azure.com")
    r.read("FILE_SINK_DIR", lambda v: "\x00" not in v, "a folder path")

    rotation_days = r.integer("KEY_ROTATION_DAYS", 1, 3650)
    unused_days = r.integer("KEY_UNUSED_DAYS", 1, 3650)
    account_concurrency = r.integer("COLLECTOR_ACCOUNT_CONCURRENCY", 1, 64)
    iam_concurrency = r.integer("COLLECTOR_IAM_CONCURRENCY", 1, 32)
    iam_max_calls_per_second = r.integer("COLLECTOR_IAM_MAX_CALLS_PER_SECOND", 0, 1000)
    schedule = r.read("COLLECTOR_SCHEDULE", _is_ncrontab, _NCRONTAB_EXPECTED)
    r.url(BLOB_SERVICE_URI_SETTING, on(endpoints.blob_service_problem), "https://<account>.blob.core.windows.net")
    r.read("OUTBOX_CONTAINER", _m(_CONTAINER), "a blob container name (3-63 lower-case letters, digits and dashes)")
    outbox_max_records = r.integer("OUTBOX_MAX_RECORDS", 1000, 10_000_000)
    outbox_max_age_hours = r.integer("OUTBOX_MAX_AGE_HOURS", 1, 720)
    exceptions_source = r.read("EXCEPTIONS_SOURCE", lambda v: v in ("file", "blob"), "file or blob")
    if exceptions_source == "blob" and r.raw(BLOB_SERVICE_URI_SETTING) is None:
        r.problems.append(f"{BLOB_SERVICE_URI_SETTING}: required by EXCEPTIONS_SOURCE=blob (the exceptions blob is in "
                          "the app's own storage); expected https://<account>.blob.core.windows.net")
    r.read("EXCEPTIONS_CONTAINER", _m(_CONTAINER),
           "a blob container name (3-63 lower-case letters, digits and dashes)")
    r.read("EXCEPTIONS_BLOB", lambda v: 0 < len(v) <= 1024 and "\x00" not in v and not v.endswith("/"),
           "a blob name, e.g. exceptions.json")
    owner_tag_keys, exceptions_file, exceptions_max_days, exceptions = _owners_and_exceptions(
        r, now, exceptions_root, read_file=exceptions_source != "blob")

    role_arn, region = r.values.get("AWS_ROLE_ARN"), r.values.get("AWS_REGION")
    r.problems.extend(endpoints.aws_endpoint_problems(environ, role_arn.split(":")[1] if role_arn else None))
    if role_arn and region and partition_of_region(region) != role_arn.split(":")[1]:
        r.problems.append(
            f"AWS_ROLE_ARN / AWS_REGION: the role is in partition {role_arn.split(':')[1]} but region {region} is in "
            f"{partition_of_region(region)}; set AWS_REGION to a region of the role's partition (e.g. "
            f"{EXAMPLE_REGION.get(role_arn.split(':')[1], 'us-east-1')})"
        )

    if r.problems or auth_type is None or sink_type is None:  # an invalid mode is always among the problems
        raise SettingsError(r.problems)

    # With no problem recorded, every setting that is required or has a default is in r.values.
    v = r.values
    aws_auth = auth_type.from_values(v)
    sink = sink_type.from_values(v)
    secret_names = aws_auth.secret_names + sink.secret_names
    return Settings(
        azure_client_id=v.get("AZURE_CLIENT_ID"),
        key_vault=KeyVaultSettings(v["KEY_VAULT_URL"], secret_names) if secret_names else None,
        aws_auth=aws_auth,
        aws_role_arn=v["AWS_ROLE_ARN"],
        aws_external_id=v.get("AWS_EXTERNAL_ID"),
        aws_accounts=accounts,
        aws_account_ids=account_ids,
        aws_member_role_name=v["AWS_MEMBER_ROLE_NAME"],
        aws_region=v["AWS_REGION"],
        sink=sink,
        file_sink_dir=v["FILE_SINK_DIR"],
        key_rotation_days=rotation_days,
        key_unused_days=unused_days,
        account_concurrency=account_concurrency,
        iam_concurrency=iam_concurrency,
        iam_max_calls_per_second=iam_max_calls_per_second,
        outbox_blob_service_uri=v.get(BLOB_SERVICE_URI_SETTING),
        outbox_container=v["OUTBOX_CONTAINER"],
        exceptions_source=v["EXCEPTIONS_SOURCE"],
        exceptions_container=v["EXCEPTIONS_CONTAINER"],
        exceptions_blob=v["EXCEPTIONS_BLOB"],
        outbox_max_records=outbox_max_records,
        outbox_max_age_hours=outbox_max_age_hours,
        collector_schedule=schedule,
        owner_tag_keys=owner_tag_keys,
        exceptions_file=exceptions_file,
        exceptions_max_days=exceptions_max_days,
        exceptions=exceptions,
    )


def exceptions_max_days(environ: Mapping[str, str]) -> int:
    """EXCEPTIONS_MAX_DAYS alone, for ``python -m shared exceptions check`` (which needs no other setting)."""
    r = _Reader(environ)
    value = r.integer("EXCEPTIONS_MAX_DAYS", *MAX_DAYS_RANGE)
    if r.problems:
        raise SettingsError(r.problems)
    return value


def exceptions_setting(environ: Mapping[str, str], now: datetime | None = None) -> ExceptionSet | None:
    """EXCEPTIONS_FILE (validated as for a run) alone, for ``python -m shared report``; None when not set."""
    r = _Reader(environ)
    _, exceptions_file, _, exceptions = _owners_and_exceptions(r, now)
    if r.problems:
        raise SettingsError(r.problems)
    return exceptions if exceptions_file else None


def _owners_and_exceptions(
    r: _Reader, now: datetime | None, root: Path | None = None, *, read_file: bool = True
) -> tuple[tuple[str, ...], str | None, int, ExceptionSet]:
    owner_tag_keys = DEFAULT_OWNER_TAG_KEYS
    try:
        owner_tag_keys = parse_owner_tag_keys(r.raw("OWNER_TAG_KEYS") or DEFAULTS["OWNER_TAG_KEYS"])
    except ValueError as exc:
        r.problems.append(f"OWNER_TAG_KEYS: {exc}")
    before = len(r.problems)
    max_days = r.integer("EXCEPTIONS_MAX_DAYS", *MAX_DAYS_RANGE)
    exceptions_file = r.read("EXCEPTIONS_FILE", lambda v: "\x00" not in v,
                                 "a file path relative to the app's folder, e.g. exceptions.json")
    exceptions = EMPTY
    if exceptions_file and read_file and len(r.problems) == before:
        path, folder = Path(exceptions_file), root or APP_DIR
        try:
            exceptions = load_exceptions(path if path.is_absolute() else folder / path, now=now or datetime.now(UTC),
                                         max_days=max_days, shown_as=exceptions_file, within=folder)
        except ExceptionsFileError as exc:
            r.problems += [f"EXCEPTIONS_FILE {exceptions_file}: {problem}" for problem in exc.problems]
    return owner_tag_keys, exceptions_file, max_days, exceptions


def _is_audience(value: str) -> bool:
    # The scope requested is "<audience>/.default": the audience itself must not carry a scope suffix.
    return _AUDIENCE.fullmatch(value) is not None and not value.endswith(("/.default", "/"))
