"""The outbox in a blob container of the Function's own storage account: identity-based (the run's Azure
credential, no connection string or account key), one blob per undelivered batch.

Claiming an item takes a blob lease, so two runs never replay the same item; a run that dies while holding one
lets the lease lapse (60 s) and the next run replays the item.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient, ContainerClient

from shared.errors import SinkError
from shared.outbox import OutboxItem, decode_rows, encode_rows, item_name, parse_item_name
from shared.records import Table
from shared.transport import ClientOptions, retry_options, transport_options

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

LEASE_SECONDS = 60


class BlobOutbox:
    def __init__(
        self, blob_service_uri: str, container: str, credential: TokenCredential, options: ClientOptions
    ) -> None:
        self.location = f"{blob_service_uri.rstrip('/')}/{container}"
        self._container = ContainerClient(
            account_url=blob_service_uri,
            container_name=container,
            credential=credential,
            **retry_options(options),
            **transport_options(options),
        )
        self._leases: dict[str, BlobLeaseClient] = {}
        self._ensured = False

    def _fail(self, action: str, exc: AzureError, rows: int = 0) -> SinkError:
        status = getattr(exc, "status_code", None)
        hint = (
            " (the Function's identity needs Storage Blob Data Owner or Contributor on the storage account)"
            if status == 403
            else ""
        )
        return SinkError(f"outbox {self.location}: {action} failed: {type(exc).__name__} {status or ''}{hint}", rows)

    def put(self, table: Table, rows: Sequence[dict[str, Any]], now: datetime) -> None:
        data = encode_rows(rows)
        try:
            if not self._ensured:
                with contextlib.suppress(ResourceExistsError):  # Bicep creates it; a local run may not have
                    self._container.create_container()
                self._ensured = True
            self._container.upload_blob(item_name(table, len(rows), now), data, overwrite=False)
        except AzureError as exc:
            raise self._fail("keeping undelivered rows", exc, len(rows)) from None

    def items(self) -> list[OutboxItem]:
        try:
            names = [blob.name for blob in self._container.list_blobs()]
        except ResourceNotFoundError:
            return []  # no container yet: nothing was ever deferred
        except AzureError as exc:
            raise self._fail("listing", exc) from None
        found = (parse_item_name(n) for n in names)
        return sorted((i for i in found if i is not None), key=lambda i: i.name)

    def claim(self, item: OutboxItem) -> list[dict[str, Any]] | None:
        blob = self._container.get_blob_client(item.name)
        try:
            lease = blob.acquire_lease(lease_duration=LEASE_SECONDS)
        except (ResourceExistsError, ResourceNotFoundError):
            return None  # leased by another run, or already delivered by it
        except HttpResponseError as exc:
            if exc.status_code == 409:
                return None
            raise self._fail("claiming an item", exc) from None
        try:
            data = blob.download_blob(lease=lease).readall()
        except AzureError as exc:
            lease.release()
            raise self._fail("reading an item", exc) from None
        self._leases[item.name] = lease
        return decode_rows(data)

    def release(self, item: OutboxItem) -> None:
        lease = self._leases.pop(item.name, None)
        if lease is not None:
            lease.release()

    def delete(self, item: OutboxItem) -> None:
        lease = self._leases.pop(item.name, None)
        try:
            self._container.delete_blob(item.name, lease=lease)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise self._fail("removing a delivered item", exc) from None

    def close(self) -> None:
        self._container.close()
