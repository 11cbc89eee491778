"""The reviewed exceptions as a blob of the Function's own storage (EXCEPTIONS_SOURCE=blob): read at the start of
every run with the run's Azure credential (no connection string, no account key), validated exactly as the file is
(shared/findings/exceptions_file.py). Accepting a risk is then an upload (blob versioning keeps every earlier
version), not a release.

A blob that cannot be read or is invalid never stops collection: the run applies no exception (the findings stay
visible), its record names the blob, the entry and the field (ExceptionsProblem), and the "run failed" alert fires.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobClient

from shared.config.transport import ClientOptions, retry_options, transport_options
from shared.findings.exceptions import ExceptionSet
from shared.findings.exceptions_file import ExceptionsFileError, ExceptionsLoad, parse_exceptions

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

MAX_BYTES = 1_000_000  # far above any reviewed list; a larger blob is refused, not read into memory


class BlobExceptionsSource:
    def __init__(
        self,
        blob_service_uri: str,
        container: str,
        blob: str,
        credential: TokenCredential,
        options: ClientOptions,
        *,
        max_days: int,
    ) -> None:
        self.location = f"blob {container}/{blob}"
        self._max_days = max_days
        self._blob = BlobClient(
            account_url=blob_service_uri,
            container_name=container,
            blob_name=blob,
            credential=credential,
            **retry_options(options),
            **transport_options(options),
        )

    def close(self) -> None:
        self._blob.close()

    def read_text(self) -> str:
        """The blob's text. Raises ``ExceptionsFileError`` naming the blob and what to do."""
        try:
            properties = self._blob.get_blob_properties()
            if properties.size > MAX_BYTES:
                raise ExceptionsFileError(self.location, [f"{properties.size} bytes; at most {MAX_BYTES} are read"])
            data: bytes = self._blob.download_blob().readall()
        except ResourceNotFoundError:
            raise ExceptionsFileError(self.location, [
                "the blob does not exist: upload the reviewed exceptions file there (an empty list is "
                '{"version": 1, "exceptions": []}), or set EXCEPTIONS_SOURCE=file']) from None
        except AzureError as exc:
            status = getattr(exc, "status_code", None)
            hint = (" (the Function's identity needs Storage Blob Data Reader or above on the storage account)"
                    if status == 403 else "")
            raise ExceptionsFileError(self.location, [
                f"cannot be read: {type(exc).__name__} {status or ''}{hint}".rstrip()]) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExceptionsFileError(self.location, [f"not UTF-8 text (byte {exc.start})"]) from None

    def load(self, now: datetime) -> ExceptionsLoad:
        """This run's exceptions, or none and the problems. Never raises for the blob's content or reachability."""
        try:
            exceptions = parse_exceptions(self.read_text(), source=self.location, now=now, max_days=self._max_days)
        except ExceptionsFileError as exc:
            log.error("%s; this run applies no exception (every finding stays visible)", exc)
            return ExceptionsLoad(ExceptionSet(source=self.location), tuple(exc.problems))
        return ExceptionsLoad(exceptions)
