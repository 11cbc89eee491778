"""The composition root: the one place where real adapters are chosen and built, from validated settings.

``function_app.py`` and the command line both call ``compose``. Data flows one way:
settings -> credentials (Azure, then AWS) -> sources -> records -> sinks.

``ClientOptions`` carries the only test-only knobs (a CA bundle for local HTTPS fakes, Key Vault's
challenge-resource check for a vault on localhost). They are never read from a setting: production code passes
the defaults, which keep TLS verification and the challenge check on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from shared.aws import AwsClientFactory, AwsSource
from shared.collector import Collector, CollectorOptions, Progress
from shared.endpoints import PRODUCTION, EndpointPolicy
from shared.outbox import FileOutbox, NoOutbox, Outbox, ReliableSink
from shared.ports import SecretProvider, Sink, WebIdentityTokenProvider
from shared.settings import AuthMode, Settings, SinkKind
from shared.sinks.file_sink import FileSink

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


@dataclass(frozen=True)
class ClientOptions:
    """Test-only client options, passed in by tests through this composition root. Defaults are production's."""

    ca_bundle: str | None = None  # trust this CA file (the local fakes' trustme CA) in the Azure clients
    verify_challenge_resource: bool = True  # Key Vault: the challenge's resource must match the vault's domain
    # Fault-injection tests only: shorter waits so a timeout or a retried fault costs a fraction of a second.
    # None keeps production's values (shared/aws.py retry_config, shared/azure.py RETRY_*, the sinks' own).
    aws_max_attempts: int | None = None  # botocore attempts per call (None: 10)
    aws_read_timeout: float | None = None  # seconds (None: 60)
    azure_read_timeout: float | None = None  # seconds, every Azure client and the data_collector sink
    azure_retry_backoff_factor: float | None = None  # azure-core backoff factor; data_collector's first wait
    # Hosts a token may go to beyond the clouds' own domains (shared/endpoints.py): the local fakes' hosts in tests.
    # Passed to load_settings by the caller that owns these options (function_app.py); never from a setting.
    endpoints: EndpointPolicy = PRODUCTION


def needs_azure_credential(
    settings: Settings, secrets: SecretProvider | None, tokens: WebIdentityTokenProvider | None, sink: Sink | None
) -> bool:
    return (
        bool(settings.outbox_blob_service_uri)
        or (secrets is None and bool(settings.secret_names_needed()))
        or (tokens is None and settings.aws_auth_mode is AuthMode.WEB_IDENTITY)
        or (sink is None and settings.log_sink is SinkKind.LOGS_INGESTION)
    )


@contextmanager
def compose(
    settings: Settings,
    options: ClientOptions | None = None,
    *,
    progress: Progress | None = None,
    secrets: SecretProvider | None = None,
    tokens: WebIdentityTokenProvider | None = None,
    sink: Sink | None = None,
    use_outbox: bool = True,
    time_budget: timedelta | None = None,
) -> Iterator[Collector]:
    """Build one run's collector. ``secrets``, ``tokens`` and ``sink`` replace the real adapters (demo, tests).
    ``time_budget``: accounts not started within it are skipped and named (the Function passes part of its timeout).

    One Azure credential per run, shared by every Azure client, closed with them when the block ends.
    """
    options = options or ClientOptions()
    with ExitStack() as stack:
        credential: TokenCredential | None = None
        if needs_azure_credential(settings, secrets, tokens, sink):
            from shared.azure import build_credential

            credential = build_credential(settings.azure_client_id, options)
            close = getattr(credential, "close", None)  # azure-identity credentials hold HTTP sessions
            if close is not None:
                stack.callback(close)

        if secrets is None and settings.secret_names_needed():
            from shared.azure import KeyVaultSecretProvider

            vault = KeyVaultSecretProvider(_given(settings.key_vault_url), _given(credential), options)
            stack.callback(vault.close)
            secrets = vault

        if tokens is None and settings.aws_auth_mode is AuthMode.WEB_IDENTITY:
            from shared.azure import ManagedIdentityTokenProvider

            tokens = ManagedIdentityTokenProvider(_given(credential), _given(settings.aws_web_identity_audience))

        if sink is None:
            sink = build_sink(settings, options, credential, secrets)
            stack.callback(sink.close)
        reliable = ReliableSink(
            sink,
            build_outbox(settings, options, credential) if use_outbox else NoOutbox(),
            max_rows=settings.outbox_max_records,
            max_age=timedelta(hours=settings.outbox_max_age_hours),
        )
        stack.callback(reliable.outbox.close)

        source = AwsSource(
            settings,
            AwsClientFactory(
                settings.aws_region,
                max_pool_connections=settings.iam_concurrency,
                max_attempts=options.aws_max_attempts,
                read_timeout=options.aws_read_timeout,
            ),
            secrets=secrets,
            tokens=tokens,
        )
        yield Collector(
            CollectorOptions(
                auth_mode=settings.aws_auth_mode.value,
                sink_name=settings.log_sink.value,
                rotation_days=settings.key_rotation_days,
                unused_days=settings.key_unused_days,
                account_concurrency=settings.account_concurrency,
                iam_concurrency=settings.iam_concurrency,
                time_budget=time_budget,
            ),
            source,
            reliable,
            progress,
        )


def build_outbox(settings: Settings, options: ClientOptions, credential: TokenCredential | None) -> Outbox:
    """The Function's own storage account when it has one (identity-based), else a folder beside the file sink."""
    if settings.outbox_blob_service_uri:
        from shared.blob_outbox import BlobOutbox

        return BlobOutbox(settings.outbox_blob_service_uri, settings.outbox_container, _given(credential), options)
    return FileOutbox(Path(settings.file_sink_dir) / "outbox")


def build_sink(
    settings: Settings,
    options: ClientOptions,
    credential: TokenCredential | None,
    secrets: SecretProvider | None,
) -> Sink:
    if settings.log_sink is SinkKind.FILE:
        return FileSink(settings.file_sink_dir)
    if settings.log_sink is SinkKind.LOGS_INGESTION:
        from shared.sinks.logs_ingestion_sink import LogsIngestionSink

        return LogsIngestionSink(
            endpoint=_given(settings.logs_ingestion_endpoint),
            rule_id=_given(settings.logs_ingestion_rule_id),
            keys_stream=settings.logs_ingestion_keys_stream,
            runs_stream=settings.logs_ingestion_runs_stream,
            credential=_given(credential),
            options=options,
        )
    from shared.sinks.data_collector_sink import DataCollectorSink

    return DataCollectorSink(
        workspace_id=_given(settings.log_analytics_workspace_id),
        shared_key=_given(secrets).get_secret(settings.log_analytics_workspace_key_secret),
        domain=settings.log_analytics_domain,
        options=options,
    )


T = TypeVar("T")


def _given(value: T | None) -> T:
    """Settings validation guarantees what each mode needs; this only narrows the type."""
    if value is None:
        raise RuntimeError("composition: a value the settings guarantee is missing")
    return value
