"""The outbox in a blob container of the Function's own storage account: identity-based (the run's Azure
credential, no connection string or account key), one blob per undelivered batch.

Claiming an item takes a blob lease, renewed by a background thread while the item is being replayed, so a slow
delivery is never taken over by a second run; a run that dies while holding one lets the lease lapse (60 s) and the
next run replays the item. Unreadable items are moved under the ``dead-letter/`` prefix of the same container.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient, ContainerClient

from shared.config.transport import ClientOptions, retry_options, transport_options
from shared.delivery.outbox import DEAD_LETTER, OutboxItem, encode_rows, item_name, parse_item_name
from shared.errors import SinkError
from shared.records import Table

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

LEASE_SECONDS = 60  # the longest finite blob lease; renewed every third of it while an item is replayed


@dataclass
class _Claim:
    """A held lease, its renewer, and the item's body (kept for a move to the dead-letter prefix)."""

    lease: BlobLeaseClient
    data: bytes
    stop: threading.Event = field(default_factory=threading.Event)
    renewer: threading.Thread | None = None
    lost: bool = False

    def end(self) -> None:
        self.stop.set()
        if self.renewer is not None and self.renewer is not threading.current_thread():
            self.renewer.join(timeout=5)


def _renew_until_stopped(name: str, claim: _Claim, interval: float) -> None:
    while not claim.stop.wait(interval):
        try:
            claim.lease.renew()
        except AzureError as exc:  # the lease lapses: another run may take the item over (at least once)
            claim.lost = True
            log.warning("Outbox item %s: its lease could not be renewed (%s); another run may replay it too",
                        name, type(exc).__name__)
            return


class BlobOutbox:
    def __init__(
        self,
        blob_service_uri: str,
        container: str,
        credential: TokenCredential,
        options: ClientOptions,
        *,
        lease_seconds: int = LEASE_SECONDS,
    ) -> None:
        self.location = f"{blob_service_uri.rstrip('/')}/{container}"
        self.lease_seconds = lease_seconds
        self._container = ContainerClient(
            account_url=blob_service_uri,
            container_name=container,
            credential=credential,
            **retry_options(options),
            **transport_options(options),
        )
        self._claims: dict[str, _Claim] = {}
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
            blobs = [(blob.name, blob.size) for blob in self._container.list_blobs()]
        except ResourceNotFoundError:
            return []  # no container yet: nothing was ever deferred
        except AzureError as exc:
            raise self._fail("listing", exc) from None
        found = []
        for name, size in blobs:
            item = parse_item_name(name)
            if item is not None:  # trusted for no more rows than its size (the storage service's) can hold
                found.append(item.within(size or 0))
        return sorted(found, key=lambda i: i.name)

    def claim(self, item: OutboxItem) -> bytes | None:
        blob = self._container.get_blob_client(item.name)
        try:
            lease = blob.acquire_lease(lease_duration=self.lease_seconds)
        except (ResourceExistsError, ResourceNotFoundError):
            return None  # leased by another run, or already delivered by it
        except HttpResponseError as exc:
            if exc.status_code == 409:
                return None
            raise self._fail("claiming an item", exc) from None
        try:
            data = blob.download_blob(lease=lease).readall()
        except AzureError as exc:
            with contextlib.suppress(AzureError):  # else it lapses within lease_seconds
                lease.release()
            raise self._fail("reading an item", exc) from None
        claim = _Claim(lease, data)
        claim.renewer = threading.Thread(
            target=_renew_until_stopped, args=(item.name, claim, self.lease_seconds / 3),
            name=f"outbox-lease-{item.name[:24]}", daemon=True,
        )
        claim.renewer.start()
        self._claims[item.name] = claim
        return data

    def _end(self, item: OutboxItem) -> _Claim | None:
        claim = self._claims.pop(item.name, None)
        if claim is not None:
            claim.end()
        return claim

    def release(self, item: OutboxItem) -> None:
        claim = self._end(item)
        if claim is not None:
            try:
                claim.lease.release()
            except AzureError as exc:  # it lapses within lease_seconds: the item is replayed by a later run
                log.warning("Outbox item %s: the lease could not be released (%s); it lapses on its own",
                            item.name, type(exc).__name__)

    def delete(self, item: OutboxItem) -> None:
        claim = self._end(item)
        try:
            self._container.delete_blob(item.name, lease=claim.lease if claim else None)
        except ResourceNotFoundError:
            pass
        except HttpResponseError as exc:
            if exc.status_code not in (409, 412):
                raise self._fail("removing an item", exc) from None
            # 412 lease lost / 409 leased by another run: our lease lapsed and another run claimed the item; it
            # may deliver it again (at least once; the queries count a row once). Nothing is lost.
            log.warning("Outbox item %s is now held by another run (HTTP %s); it may be delivered twice",
                        item.name, exc.status_code)
        except AzureError as exc:
            raise self._fail("removing an item", exc) from None

    def dead_letter(self, item: OutboxItem, reason: str) -> str:
        claim = self._claims.get(item.name)
        if claim is None:
            raise SinkError(f"outbox {self.location}: {item.name} is not claimed by this run", 0)
        target = f"{DEAD_LETTER}/{item.name}"
        why = reason.encode("ascii", "replace").decode()[:256]  # blob metadata is ASCII
        try:
            self._container.upload_blob(target, claim.data, overwrite=True, metadata={"reason": why})
        except AzureError as exc:
            raise self._fail("moving an unreadable item aside", exc) from None
        self.delete(item)
        return f"{self.location}/{target}"

    def trim_dead_letter(self, keep: int) -> int:
        try:
            names = sorted(b.name for b in self._container.list_blobs(name_starts_with=f"{DEAD_LETTER}/")
                           if parse_item_name(b.name.removeprefix(f"{DEAD_LETTER}/")) is not None)
            for name in names[: max(0, len(names) - keep)]:  # oldest first: item names start with their time
                with contextlib.suppress(ResourceNotFoundError):
                    self._container.delete_blob(name)
        except ResourceNotFoundError:
            return 0
        except AzureError as exc:
            raise self._fail("trimming the dead-letter items", exc) from None
        return max(0, len(names) - keep)

    def close(self) -> None:
        for name in list(self._claims):
            claim = self._claims.pop(name)
            claim.end()
        self._container.close()
