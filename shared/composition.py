"""The composition root: the one place where real adapters are chosen and built, from validated settings.

``function_app.py`` and the command line both call ``compose``. Data flows one way:
settings -> credentials (Azure, then AWS) -> sources -> records -> sinks.

``ClientOptions`` (shared/config/transport.py) carries the only test-only knobs (a CA bundle for local HTTPS fakes, Key
Vault's challenge-resource check for a vault on localhost, shorter waits). Tests pass them here, and only here; they
are never read from a setting: production passes the defaults, which keep TLS verification and the challenge check on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.aws.clients import AwsClientFactory
from shared.aws.source import AwsSource
from shared.collection.collector import Collector, CollectorOptions
from shared.config.modes import (
    DataCollectorSettings,
    FileSinkSettings,
    LogsIngestionSettings,
    SinkSettings,
    WebIdentityAuth,
)
from shared.config.notify import NotifyMode, NotifySettings
from shared.config.settings import Settings
from shared.config.transport import ClientOptions as ClientOptions  # re-exported: tests pass options through this root
from shared.deadline import Deadline
from shared.delivery.file_sink import FileSink
from shared.delivery.outbox import FileOutbox, NoOutbox, Outbox
from shared.delivery.reliable_sink import ReliableSink
from shared.errors import SecretError, SinkError, describe_error
from shared.findings.catalogue import Thresholds
from shared.memory import limit_malloc_arenas
from shared.notify.run import DigestRowsSource, FileRows, Mailer, NotifyRun, QueryRows, run_digests
from shared.ports import Progress, SecretProvider, Sink, WebIdentityTokenProvider
from shared.records import DigestRunRecord, Table
from shared.redaction import run_secrets

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

CredentialSource = Callable[[], "TokenCredential"]


class RunCredential:
    """The run's one Azure credential, built when an adapter first asks for it (so a run whose modes need none never
    signs in to Azure), shared by every Azure client, closed when the run's block ends (after them)."""

    def __init__(self, client_id: str | None, options: ClientOptions, stack: ExitStack) -> None:
        self._client_id = client_id
        self._options = options
        self._stack = stack
        self._credential: TokenCredential | None = None

    def __call__(self) -> TokenCredential:
        if self._credential is None:
            from shared.azure.identity import build_credential

            self._credential = build_credential(self._client_id, self._options)
            close = getattr(self._credential, "close", None)  # azure-identity credentials hold HTTP sessions
            if close is not None:
                self._stack.callback(close)
        return self._credential


class NoKeyVault:
    """The secret provider when the chosen modes need no secret (no KEY_VAULT_URL is required then)."""

    def get_secret(self, name: str) -> str:
        raise SecretError(f"secret {name!r} asked for, but the chosen modes read no secret (KEY_VAULT_URL is not used)")


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
    deadline: Deadline | None = None,
) -> Iterator[Collector]:
    """Build one run's collector. ``secrets``, ``tokens`` and ``sink`` replace the real adapters (demo, tests).
    ``time_budget``: accounts not started within it are skipped and named (the Function passes part of its timeout).
    ``deadline``: the run's one deadline (the Function's, from functionTimeout): the sinks' waits, AWS calls, the
    replay and the run record are bounded by it.

    What each mode needs is declared by its settings type (shared/config/settings.py); here each type is matched once.
    """
    options = options or ClientOptions()
    # One deadline object for every part of the run (even without a timeout): its stop signal reaches them all.
    deadline = deadline or Deadline.never()
    limit_malloc_arenas()  # a run's IAM threads would otherwise spread freed memory over many arenas (shared/memory.py)
    with ExitStack() as stack:
        # First in, so last out: the secrets this run registers (keys, tokens) are forgotten once everything it built
        # is closed, and the registry does not grow run after run in a warm worker (shared/redaction.py).
        stack.enter_context(run_secrets())
        credential = RunCredential(settings.azure_client_id, options, stack)

        if secrets is None:
            if settings.key_vault is not None:
                from shared.azure.keyvault import KeyVaultSecretProvider

                vault = KeyVaultSecretProvider(settings.key_vault.url, credential(), options)
                stack.callback(vault.close)
                secrets = vault
            else:
                secrets = NoKeyVault()

        if tokens is None and isinstance(settings.aws_auth, WebIdentityAuth):
            from shared.azure.identity import ManagedIdentityTokenProvider

            tokens = ManagedIdentityTokenProvider(credential(), settings.aws_auth.audience)

        if sink is None:
            sink = build_sink(settings.sink, options, credential, secrets, deadline)
            stack.callback(sink.close)
        outbox = (
            build_outbox(
                settings.outbox_blob_service_uri,
                settings.outbox_container,
                Path(settings.file_sink_dir),
                options,
                credential,
            )
            if use_outbox
            else NoOutbox()
        )
        reliable = ReliableSink(
            sink,
            outbox,
            max_rows=settings.outbox_max_records,
            max_age=timedelta(hours=settings.outbox_max_age_hours),
            deadline=deadline,
        )
        stack.callback(reliable.outbox.close)

        source = AwsSource(
            settings,
            AwsClientFactory(
                settings.aws_region,
                max_attempts=options.aws_max_attempts,
                read_timeout=options.aws_read_timeout,
                deadline=deadline,
                sts_connections=settings.account_concurrency,  # member roles are assumed by parallel accounts
            ),
            secrets=secrets,
            tokens=tokens,
        )
        exceptions_source = None
        if settings.exceptions_source == "blob" and settings.outbox_blob_service_uri:
            from shared.azure.exceptions_blob import BlobExceptionsSource

            blob_exceptions = BlobExceptionsSource(
                settings.outbox_blob_service_uri,  # the app's own storage (AzureWebJobsStorage__blobServiceUri)
                settings.exceptions_container,
                settings.exceptions_blob,
                credential(),
                options,
                max_days=settings.exceptions_max_days,
            )
            stack.callback(blob_exceptions.close)
            exceptions_source = blob_exceptions.load
        yield Collector(
            CollectorOptions(
                auth_mode=settings.aws_auth.mode.value,
                sink_name=settings.sink.kind.value,
                rotation_days=settings.key_rotation_days,
                unused_days=settings.key_unused_days,
                account_concurrency=settings.account_concurrency,
                owner_tag_keys=settings.owner_tag_keys,
                exceptions=settings.exceptions,
                exceptions_source=exceptions_source,
                time_budget=time_budget,
                deadline=deadline,
            ),
            source,
            reliable,
            progress,
        )


def build_outbox(
    blob_service_uri: str | None,
    container: str,
    file_sink_dir: Path,
    options: ClientOptions,
    credential: CredentialSource,
) -> Outbox:
    """The Function's own storage account when it has one (identity-based), else a folder beside the file sink."""
    if blob_service_uri:
        from shared.delivery.blob_outbox import BlobOutbox

        return BlobOutbox(blob_service_uri, container, credential(), options)
    return FileOutbox(file_sink_dir / "outbox")


class FirstUseSink:
    """A sink built when the first rows come (inside the run), so that what building it needs and may fail at
    (data_collector's workspace key from Key Vault) fails the delivery, not the run: the rows and the run record go
    to the outbox, with the reason."""

    def __init__(self, name: str, build: Callable[[], Sink]) -> None:
        self.name = name
        self._build = build
        self._sink: Sink | None = None

    def send(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if self._sink is None:
            try:
                self._sink = self._build()
            except SinkError:
                raise
            except Exception as exc:  # e.g. SecretError: the workspace key could not be read from Key Vault
                raise SinkError(f"{self.name}: sink not ready: {describe_error(exc)}", len(rows)) from None
        self._sink.send(table, rows)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()


def build_sink(
    settings: SinkSettings,
    options: ClientOptions,
    credential: CredentialSource,
    secrets: SecretProvider,
    deadline: Deadline | None = None,
) -> Sink:
    """The sink its settings type names; each type carries exactly what its sink needs."""
    match settings:
        case FileSinkSettings():
            return FileSink(settings.directory)
        case LogsIngestionSettings():
            from shared.delivery.logs_ingestion_sink import LogsIngestionSink

            return LogsIngestionSink(
                endpoint=settings.endpoint,
                rule_id=settings.rule_id,
                keys_stream=settings.keys_stream,
                runs_stream=settings.runs_stream,
                credential=credential(),
                options=options,
                deadline=deadline,
            )
        case DataCollectorSettings():
            from shared.delivery.data_collector_sink import DataCollectorSink

            collector_settings = settings
            return FirstUseSink("data_collector", lambda: DataCollectorSink(
                workspace_id=collector_settings.workspace_id,
                shared_key=secrets.get_secret(collector_settings.workspace_key_secret),
                domain=collector_settings.domain,
                options=options,
                deadline=deadline,
            ))


class DigestRunner:
    """One owner-digest run, its parts chosen by ``compose_notify``."""

    def __init__(self, run: NotifyRun, source: DigestRowsSource, sink: Sink, mailer: Mailer | None) -> None:
        self.settings = run
        self._source, self._sink, self._mailer = source, sink, mailer

    def run(self) -> DigestRunRecord:
        return run_digests(self.settings, self._source, self._sink, self._mailer)


@contextmanager
def compose_notify(
    settings: NotifySettings,
    options: ClientOptions | None = None,
    *,
    files: str | Path | None = None,
    sink: Sink | None = None,
    deadline: Deadline | None = None,
) -> Iterator[DigestRunner]:
    """Build one owner-digest run (NOTIFY_MODE dry_run or send). Its rows come from Log Analytics (NOTIFY_WORKSPACE_ID,
    the Function's way), or from the file sink's records in ``files`` (the demo, ``python -m shared notify --in``);
    its record goes to the sink LOG_SINK names (or ``sink``). dry_run writes the digests to the log and, off Azure,
    to <FILE_SINK_DIR>/digests/."""
    from shared.azure.identity import in_azure

    if settings.mode is NotifyMode.OFF:
        raise ValueError("NOTIFY_MODE is off: no digest run is built")
    options = options or ClientOptions()
    limits = Thresholds(settings.rotation_days, settings.unused_days)
    with ExitStack() as stack:
        credential = RunCredential(settings.azure_client_id, options, stack)
        source: DigestRowsSource
        if files is not None:
            source = FileRows(files, limits)
        else:
            from shared.notify.query import LogAnalyticsDigestRows

            # NOTIFY_WORKSPACE_ID is required unless off (shared/config/notify.py)
            rows = LogAnalyticsDigestRows(settings.workspace_id or "", credential(), options, limits, deadline)
            stack.callback(rows.close)
            source = QueryRows(rows)
        mailer: Mailer | None = None
        if settings.mode is NotifyMode.SEND:
            from shared.notify.email import CommunicationServicesMailer

            # NOTIFY_EMAIL_ENDPOINT and NOTIFY_SENDER are required for send (shared/config/notify.py)
            email = CommunicationServicesMailer(settings.email_endpoint or "", settings.sender or "", credential(),
                                                options, deadline)
            stack.callback(email.close)
            mailer = email
        if sink is None:
            secrets: SecretProvider = NoKeyVault()
            if settings.key_vault is not None:
                from shared.azure.keyvault import KeyVaultSecretProvider

                vault = KeyVaultSecretProvider(settings.key_vault.url, credential(), options)
                stack.callback(vault.close)
                secrets = vault
            sink = build_sink(settings.sink, options, credential, secrets, deadline)
            stack.callback(sink.close)
        folder = None if in_azure() or settings.mode is not NotifyMode.DRY_RUN else Path(settings.file_sink_dir)
        run = NotifyRun(settings.mode.value, settings.fallback_recipient, folder / "digests" if folder else None)
        yield DigestRunner(run, source, sink, mailer)
