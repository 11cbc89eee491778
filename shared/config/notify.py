"""The owner digests' settings (NOTIFY_*, docs/settings.md), read and validated in one place, with what a digest run
needs besides: the findings' limits (KEY_ROTATION_DAYS, KEY_UNUSED_DAYS, as the collector reads them), the Azure
identity, and the sink its run record goes to (LOG_SINK and that sink's settings, as the collector's run records go).

Independent of the collector's own settings on purpose: a digest run needs no AWS setting (AWS_ROLE_ARN may still be
empty while the AWS side is not deployed), and a bad NOTIFY_* value never stops collection. The checks themselves
(patterns, the endpoint allow-lists) are the collector's (shared/config/settings.py, shared/config/endpoints.py).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.config import endpoints
from shared.config.endpoints import PRODUCTION, EndpointPolicy
from shared.config.modes import SINK_TYPES, KeyVaultSettings, SinkKind, SinkSettings, required_because
from shared.config.schedule import _NCRONTAB_EXPECTED, _is_ncrontab
from shared.config.settings import _DCR_ID, _GUID, _KV_SECRET_NAME, _STREAM, _m, _Reader
from shared.errors import SettingsError
from shared.identifiers import is_email_address


class NotifyMode(enum.StrEnum):
    OFF = "off"
    DRY_RUN = "dry_run"  # digests written to the log (and, locally, to FILE_SINK_DIR/digests/), nothing sent
    SEND = "send"  # e-mailed through Azure Communication Services


EMAIL_EXPECTED = "an e-mail address like security@example.com"


@dataclass(frozen=True)
class NotifySettings:
    mode: NotifyMode
    schedule: str | None
    workspace_id: str | None  # required unless off
    email_endpoint: str | None  # required for send
    sender: str | None  # required for send
    fallback_recipient: str | None  # None: digests of keys without an owner are not sent
    rotation_days: int
    unused_days: int
    azure_client_id: str | None
    sink: SinkSettings  # where the digest run's record goes
    key_vault: KeyVaultSettings | None  # only when that sink reads a secret (data_collector)
    file_sink_dir: str  # locally, dry_run writes the digests to <FILE_SINK_DIR>/digests/


def load_notify_settings(
    environ: Mapping[str, str], endpoint_policy: EndpointPolicy = PRODUCTION, *, from_files: bool = False
) -> NotifySettings:
    """Read and validate the digest run's settings. Raises SettingsError naming each bad one; no network call.
    ``from_files``: the rows come from the file sink's records (the demo, ``python -m shared notify --in``), so the
    workspace is not needed."""
    r = _Reader(environ)

    def on(check: Callable[[str, str, EndpointPolicy], str | None]) -> Callable[[str, str], str | None]:
        return lambda name, value: check(name, value, endpoint_policy)

    mode = r.choice("NOTIFY_MODE", NotifyMode, [m.value for m in NotifyMode])
    log_sink = r.choice("LOG_SINK", SinkKind, [s.value for s in SinkKind])
    sink_type = None if log_sink is None else SINK_TYPES[log_sink]
    r.required_because = required_because(None, sink_type)
    r.required_because.pop("AWS_ROLE_ARN", None)  # the collector's, not a digest's
    if mode is not None and mode is not NotifyMode.OFF and not from_files:
        r.required_because["NOTIFY_WORKSPACE_ID"] = f"when NOTIFY_MODE is {mode} (the digests read the workspace)"
    if mode is NotifyMode.SEND:
        for name in ("NOTIFY_EMAIL_ENDPOINT", "NOTIFY_SENDER"):
            r.required_because[name] = "when NOTIFY_MODE is send"

    schedule = r.read("NOTIFY_SCHEDULE", _is_ncrontab, _NCRONTAB_EXPECTED)
    r.read("NOTIFY_WORKSPACE_ID", _m(_GUID), "a GUID (the Log Analytics workspace id, azd output "
           "AZURE_LOG_ANALYTICS_WORKSPACE_ID)")
    r.url("NOTIFY_EMAIL_ENDPOINT", on(endpoints.communication_problem),
          "https://<name>.<geo>.communication.azure.com")
    r.read("NOTIFY_SENDER", is_email_address,
           f"{EMAIL_EXPECTED} (DoNotReply@<domain> of the Communication Services domain)")
    r.read("NOTIFY_FALLBACK_RECIPIENT", is_email_address, EMAIL_EXPECTED)
    rotation_days = r.integer("KEY_ROTATION_DAYS", 1, 3650)
    unused_days = r.integer("KEY_UNUSED_DAYS", 1, 3650)
    # The run record's sink: the same checks as the collector's (shared/config/settings.py).
    r.read("AZURE_CLIENT_ID", _m(_GUID), "a GUID (the managed identity's client id)")
    r.url("KEY_VAULT_URL", on(endpoints.key_vault_problem), "a Key Vault URL like https://<vault>.vault.azure.net/")
    r.url("LOGS_INGESTION_ENDPOINT", on(endpoints.logs_ingestion_problem),
          "an https URL like https://<dce>.<region>-1.ingest.monitor.azure.com")
    r.read("LOGS_INGESTION_RULE_ID", _m(_DCR_ID), "a data collection rule immutable id: dcr- followed by 32 hex digits")
    for stream in ("LOGS_INGESTION_KEYS_STREAM", "LOGS_INGESTION_RUNS_STREAM"):
        r.read(stream, _m(_STREAM), "a custom stream name: Custom- followed by letters, digits or _")
    r.read("LOG_ANALYTICS_WORKSPACE_ID", _m(_GUID), "a GUID (the Log Analytics workspace id)")
    r.read("LOG_ANALYTICS_WORKSPACE_KEY_SECRET", _m(_KV_SECRET_NAME), "a Key Vault secret name")
    r.url("LOG_ANALYTICS_DOMAIN", on(endpoints.data_collector_domain_problem), "ods.opinsights.azure.com")
    r.read("FILE_SINK_DIR", lambda v: "\x00" not in v, "a folder path")

    if r.problems or mode is None or sink_type is None:
        raise SettingsError(r.problems)
    v = r.values
    sink = sink_type.from_values(v)
    return NotifySettings(
        mode=mode,
        schedule=schedule,
        workspace_id=v.get("NOTIFY_WORKSPACE_ID"),
        email_endpoint=v.get("NOTIFY_EMAIL_ENDPOINT"),
        sender=v.get("NOTIFY_SENDER"),
        fallback_recipient=v.get("NOTIFY_FALLBACK_RECIPIENT", "").lower() or None,
        rotation_days=rotation_days,
        unused_days=unused_days,
        azure_client_id=v.get("AZURE_CLIENT_ID"),
        sink=sink,
        key_vault=KeyVaultSettings(v["KEY_VAULT_URL"], sink.secret_names) if sink.secret_names else None,
        file_sink_dir=v["FILE_SINK_DIR"],
    )
