"""What each mode needs, declared once: the AWS sign-in modes and the sinks as frozen dataclasses.

Each mode's fields name the setting that fills them (field metadata ``setting``) and mark the fields that name a Key
Vault secret (``secret``). Everything else is derived from that declaration: a setting without a default is required in
the mode that has a field for it; Key Vault is required when the modes chosen have a secret; the secrets fetched are
those fields' values.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from shared.config.defaults import DEFAULTS


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


# --- What each mode needs, declared once -----------------------------------------------------------------------
# Each mode is a frozen dataclass whose fields name the setting that fills them (field metadata ``setting``) and mark
# the fields that name a Key Vault secret (``secret``). Everything else is derived from that declaration: a setting
# without a default is required in the mode that has a field for it; Key Vault is required when the modes chosen
# have a secret; the secrets fetched are those fields' values.


def _setting(name: str, *, secret: bool = False) -> Any:
    return field(metadata={"setting": name, "secret": secret})


def _fields(mode: Any) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(mode)


class _Mode:
    """Derived from the dataclass fields of a mode type (below)."""

    needs_azure_credential: ClassVar[bool]  # does the mode itself use the run's Azure credential (not for secrets)

    @classmethod
    def settings_read(cls) -> tuple[str, ...]:
        return tuple(f.metadata["setting"] for f in _fields(cls))

    @classmethod
    def secret_settings(cls) -> tuple[str, ...]:
        """The settings that name a Key Vault secret this mode fetches."""
        return tuple(f.metadata["setting"] for f in _fields(cls) if f.metadata["secret"])

    @classmethod
    def required_settings(cls) -> tuple[str, ...]:
        """The settings this mode needs that have no default."""
        return tuple(name for name in cls.settings_read() if name not in DEFAULTS)

    @classmethod
    def from_values(cls: type[_M], values: Mapping[str, str]) -> _M:
        """The mode from validated values by setting name (every setting it reads is present once validation
        passed: a required one was checked, the others have defaults)."""
        return cls(**{f.name: values[f.metadata["setting"]] for f in _fields(cls)})

    @property
    def secret_names(self) -> tuple[str, ...]:
        """The Key Vault secrets this mode fetches."""
        return tuple(getattr(self, f.name) for f in _fields(self) if f.metadata["secret"])


_M = TypeVar("_M", bound=_Mode)


@dataclass(frozen=True)
class AccessKeyAuth(_Mode):
    """AWS_AUTH_MODE=access_key: an IAM user's access key, both halves from Key Vault."""

    mode: ClassVar[AuthMode] = AuthMode.ACCESS_KEY
    needs_azure_credential: ClassVar[bool] = False  # only to read the secrets
    access_key_id_secret: str = _setting("AWS_ACCESS_KEY_ID_SECRET", secret=True)
    secret_access_key_secret: str = _setting("AWS_SECRET_ACCESS_KEY_SECRET", secret=True)


@dataclass(frozen=True)
class WebIdentityAuth(_Mode):
    """AWS_AUTH_MODE=web_identity: the Function's managed identity token for ``<audience>/.default``, no secret."""

    mode: ClassVar[AuthMode] = AuthMode.WEB_IDENTITY
    needs_azure_credential: ClassVar[bool] = True  # the token comes from the Azure credential
    audience: str = _setting("AWS_WEB_IDENTITY_AUDIENCE")


@dataclass(frozen=True)
class LogsIngestionSettings(_Mode):
    """LOG_SINK=logs_ingestion: a data collection rule, signed in with the run's Azure credential, no secret."""

    kind: ClassVar[SinkKind] = SinkKind.LOGS_INGESTION
    needs_azure_credential: ClassVar[bool] = True
    endpoint: str = _setting("LOGS_INGESTION_ENDPOINT")
    rule_id: str = _setting("LOGS_INGESTION_RULE_ID")
    keys_stream: str = _setting("LOGS_INGESTION_KEYS_STREAM")
    runs_stream: str = _setting("LOGS_INGESTION_RUNS_STREAM")


@dataclass(frozen=True)
class DataCollectorSettings(_Mode):
    """LOG_SINK=data_collector (legacy): the workspace id and its shared key, the key from Key Vault."""

    kind: ClassVar[SinkKind] = SinkKind.DATA_COLLECTOR
    needs_azure_credential: ClassVar[bool] = False  # only to read the secret
    workspace_id: str = _setting("LOG_ANALYTICS_WORKSPACE_ID")
    workspace_key_secret: str = _setting("LOG_ANALYTICS_WORKSPACE_KEY_SECRET", secret=True)
    domain: str = _setting("LOG_ANALYTICS_DOMAIN")


@dataclass(frozen=True)
class FileSinkSettings(_Mode):
    """LOG_SINK=file: JSON Lines files in a folder."""

    kind: ClassVar[SinkKind] = SinkKind.FILE
    needs_azure_credential: ClassVar[bool] = False
    directory: str = _setting("FILE_SINK_DIR")


AwsAuth = AccessKeyAuth | WebIdentityAuth
SinkSettings = LogsIngestionSettings | DataCollectorSettings | FileSinkSettings
AuthType = type[AccessKeyAuth] | type[WebIdentityAuth]
SinkType = type[LogsIngestionSettings] | type[DataCollectorSettings] | type[FileSinkSettings]
AUTH_TYPES: dict[AuthMode, AuthType] = {t.mode: t for t in (AccessKeyAuth, WebIdentityAuth)}
SINK_TYPES: dict[SinkKind, SinkType] = {
    t.kind: t for t in (LogsIngestionSettings, DataCollectorSettings, FileSinkSettings)
}


@dataclass(frozen=True)
class KeyVaultSettings:
    """Present only when the chosen modes fetch secrets: the vault and the secrets' names."""

    url: str
    secret_names: tuple[str, ...]


def required_because(auth_type: AuthType | None, sink_type: SinkType | None) -> dict[str, str]:
    """Setting -> why it is required, for the modes chosen (None: an invalid mode, reported on its own)."""
    found = {"AWS_ROLE_ARN": "always (the home role the collector assumes first)"}
    if auth_type is not None:
        found.update(dict.fromkeys(auth_type.required_settings(), f"when AWS_AUTH_MODE is {auth_type.mode}"))
    if sink_type is not None:
        found.update(dict.fromkeys(sink_type.required_settings(), f"when LOG_SINK is {sink_type.kind}"))
    if any(t is not None and t.secret_settings() for t in (auth_type, sink_type)):
        with_secrets = [f"AWS_AUTH_MODE is {t.mode}" for t in AUTH_TYPES.values() if t.secret_settings()] + [
            f"LOG_SINK is {t.kind}" for t in SINK_TYPES.values() if t.secret_settings()
        ]
        found["KEY_VAULT_URL"] = f"when {' or '.join(with_secrets)} (secrets come from Key Vault)"
    return found
