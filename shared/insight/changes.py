"""What changed since the last run, and how old the keys are: pure functions over the ``file`` sink's rows.

``key_changes`` derives the key lifecycle events of queries/key-changes.kql (its ``KeyChanges`` function) from the
records of several runs, with the same snapshot rules:

- an account's snapshots are the ``Succeeded`` or ``PartiallySucceeded`` runs it did not fail in (not listed in the
  run's ``FailedAccounts``), from the first run that has its keys on; that first snapshot is the baseline (no events);
- each key counts once per run, each run once (delivery is at least once: a row may arrive twice);
- consecutive snapshots of an account are compared key by key (``AccessKeyFingerprint``): a key only in the newer one
  is ``Created`` (``RootKeyAppeared`` for a root key), only in the older one ``Deleted`` (``RootKeyRemoved``), Active
  then Inactive ``Deactivated``, Inactive then Active ``Reactivated``; a user whose Active key was deactivated or
  deleted while a newer key of theirs is Active was ``Rotated`` (one event per user and run, besides the others);
- an account that succeeded with no keys has none, so its keys of the snapshot before count as deleted.

``key_age_distribution`` counts the keys of a snapshot per age band (0-30, 30-90, 90-180, 180-365, 365+ days),
split by each key's most severe finding of the catalogue (shared/findings/catalogue.py), for the report's stacked chart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from shared.domain import GOOD_RUN_STATUSES
from shared.findings.catalogue import FINDINGS, is_active, is_excepted
from shared.insight.snapshot import _json_list, failed_accounts, once, parse_time

Row = Mapping[str, Any]

CREATED = "Created"
DEACTIVATED = "Deactivated"
REACTIVATED = "Reactivated"
DELETED = "Deleted"
ROTATED = "Rotated"
ROOT_KEY_APPEARED = "RootKeyAppeared"
ROOT_KEY_REMOVED = "RootKeyRemoved"
EVENT_TYPES = (CREATED, DEACTIVATED, REACTIVATED, DELETED, ROTATED, ROOT_KEY_APPEARED, ROOT_KEY_REMOVED)
# Events that put a new key in an account: what the "new access key" alert (queries/alert-new-key.kql) reports.
NEW_KEY_EVENTS = (CREATED, ROTATED, ROOT_KEY_APPEARED)


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One lifecycle event, as a row of queries/key-changes.kql."""

    TimeGenerated: datetime  # the run that saw the change
    PreviousRun: datetime  # the account's snapshot before it
    RunId: str
    AccountId: str
    AccountName: str
    UserName: str
    UserArn: str
    AccessKeyId: str | None  # masked; None for root keys; a Rotated event names the new key(s)
    AccessKeyFingerprint: str  # empty for Rotated (it concerns a user, not one key)
    IsRootKey: bool
    EventType: str
    Detail: str


def key_changes(
    keys_rows: Sequence[Row], runs_rows: Sequence[Row], *, window: timedelta | None = None,
    end: datetime | None = None,
) -> list[KeyChange]:
    """The lifecycle events between consecutive good snapshots of each account, newest first.

    ``window`` (default: all runs) counts back from ``end`` (default: the newest run record), as the report's windows
    end at the newest run so that an old folder still renders.
    """
    runs = [r for r in once(runs_rows, "RunId") if r.get("Status") in GOOD_RUN_STATUSES and r.get("TimeGenerated")]
    if not runs:
        return []
    if window is not None:
        end = end or max(parse_time(r["TimeGenerated"]) for r in once(runs_rows, "RunId") if r.get("TimeGenerated"))
        since = end - window
        runs = [r for r in runs if parse_time(r["TimeGenerated"]) > since]
    runs.sort(key=lambda r: (parse_time(r["TimeGenerated"]), str(r["RunId"])))
    run_ids = {r["RunId"] for r in runs}
    keys = once((k for k in keys_rows if k.get("RunId") in run_ids), "RunId", "AccessKeyFingerprint")
    by_run_account: dict[tuple[str, str], dict[str, Row]] = {}
    first_seen: dict[str, datetime] = {}
    for key in keys:
        account = str(key.get("AccountId", ""))
        by_run_account.setdefault((key["RunId"], account), {})[str(key["AccessKeyFingerprint"])] = key
        seen = parse_time(key["TimeGenerated"])
        first_seen[account] = min(seen, first_seen.get(account, seen))

    events: list[KeyChange] = []
    for account, since_time in first_seen.items():
        observations = [r for r in runs if parse_time(r["TimeGenerated"]) >= since_time
                        and account not in failed_accounts(r)]
        for before_run, now_run in pairwise(observations):
            before = by_run_account.get((before_run["RunId"], account), {})
            now = by_run_account.get((now_run["RunId"], account), {})
            events += _compare(account, before, now, now_run, parse_time(before_run["TimeGenerated"]))
    events.sort(key=lambda e: (e.AccountId, e.UserName, e.EventType))
    events.sort(key=lambda e: e.TimeGenerated, reverse=True)
    return events


def _compare(
    account: str, before: Mapping[str, Row], now: Mapping[str, Row], run: Row, previous_run: datetime
) -> list[KeyChange]:
    run_time = parse_time(run["TimeGenerated"])

    def event(key: Row, event_type: str, detail: str = "") -> KeyChange:
        return KeyChange(
            TimeGenerated=run_time, PreviousRun=previous_run, RunId=str(run["RunId"]), AccountId=account,
            AccountName=str(key.get("AccountName") or ""), UserName=str(key.get("UserName", "")),
            UserArn=str(key.get("UserArn", "")), AccessKeyId=key.get("AccessKeyId"),
            AccessKeyFingerprint=str(key.get("AccessKeyFingerprint", "")), IsRootKey=bool(key.get("IsRootKey")),
            EventType=event_type, Detail=detail,
        )

    out = []
    for fp, key in now.items():
        old = before.get(fp)
        if old is None:
            created = str(key.get("CreatedAt") or "")[:10]
            out.append(event(key, ROOT_KEY_APPEARED if key.get("IsRootKey") else CREATED,
                             f"created {created}" if created else ""))
        elif old.get("Status") == "Active" and key.get("Status") == "Inactive":
            out.append(event(key, DEACTIVATED))
        elif old.get("Status") == "Inactive" and key.get("Status") == "Active":
            out.append(event(key, REACTIVATED))
    for fp, old in before.items():
        if fp not in now:
            out.append(event(old, ROOT_KEY_REMOVED if old.get("IsRootKey") else DELETED))
    out += _rotations(before, now, event)
    return out


def _rotations(
    before: Mapping[str, Row], now: Mapping[str, Row], event: Callable[[Row, str, str], KeyChange]
) -> list[KeyChange]:
    """Per user: Active keys that stopped being Active, replaced by a newer key that is Active now."""
    retired: dict[str, list[Row]] = {}
    for fp, old in before.items():
        if old.get("IsRootKey") or old.get("Status") != "Active":
            continue
        if now.get(fp, {}).get("Status") != "Active":
            retired.setdefault(str(old.get("UserArn", "")), []).append(old)
    out = []
    for user_arn, old_keys in sorted(retired.items()):
        new_keys = [k for k in now.values() if str(k.get("UserArn", "")) == user_arn and not k.get("IsRootKey")
                    and k.get("Status") == "Active"
                    and any(_created(k) > _created(o) for o in old_keys)]
        if not new_keys:
            continue
        replaced = [o for o in old_keys if any(_created(k) > _created(o) for k in new_keys)]
        new_keys.sort(key=_created)
        replaced.sort(key=_created)
        change = event(new_keys[-1], ROTATED, "replaces " + ", ".join(str(o.get("AccessKeyId")) for o in replaced))
        out.append(replace(change, AccessKeyId=", ".join(str(k.get("AccessKeyId")) for k in new_keys),
                         AccessKeyFingerprint=""))
    return out


def _created(key: Row) -> datetime:
    value = key.get("CreatedAt")
    return parse_time(value) if value else datetime.min.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------------------------------
# The other long-lived credentials' changes (queries/credential-changes.kql)

EXPIRED = "Expired"
CREDENTIAL_KINDS = ("ServiceSpecificCredential", "SigningCertificate")


@dataclass(frozen=True, slots=True)
class CredentialChange:
    """One lifecycle event of a credential other than an access key, as a row of queries/credential-changes.kql."""

    TimeGenerated: datetime
    PreviousRun: datetime
    RunId: str
    AccountId: str
    AccountName: str
    UserName: str
    UserArn: str
    CredentialType: str
    Service: str
    CredentialId: str | None
    CredentialFingerprint: str
    EventType: str  # Created, Deactivated, Reactivated, Expired or Deleted
    Detail: str


def _not_snapshots(run: Row) -> set[tuple[str, str]]:
    """(account, kind) a run is no snapshot of: its failed accounts, and the kinds it could not read."""
    found = {(account, kind) for account in failed_accounts(run) for kind in CREDENTIAL_KINDS}
    found |= {(str(u["AccountId"]), str(u.get("CredentialType") or ""))
              for u in _json_list(run.get("CredentialsUnknownAccounts")) if isinstance(u, dict) and u.get("AccountId")}
    return found


def credential_changes(credential_rows: Sequence[Row], runs_rows: Sequence[Row], *, window: timedelta | None = None,
                       end: datetime | None = None) -> list[CredentialChange]:
    """Created, Deactivated, Reactivated, Expired and Deleted between consecutive good snapshots of each account and
    kind of credential (a run it failed in, or could not read that kind in, is none), newest first."""
    runs = [r for r in once(runs_rows, "RunId") if r.get("Status") in GOOD_RUN_STATUSES and r.get("TimeGenerated")]
    if window is not None and runs:
        end = end or max(parse_time(r["TimeGenerated"]) for r in once(runs_rows, "RunId") if r.get("TimeGenerated"))
        runs = [r for r in runs if parse_time(r["TimeGenerated"]) > end - window]
    runs.sort(key=lambda r: (parse_time(r["TimeGenerated"]), str(r["RunId"])))
    run_ids = {r["RunId"] for r in runs}
    rows = once((c for c in credential_rows if c.get("RunId") in run_ids), "RunId", "CredentialFingerprint")
    state: dict[tuple[str, str, str], dict[str, Row]] = {}
    first_seen: dict[tuple[str, str], datetime] = {}
    for c in rows:
        kind = (str(c.get("AccountId", "")), str(c.get("CredentialType", "")))
        state.setdefault((c["RunId"], *kind), {})[str(c["CredentialFingerprint"])] = c
        seen = parse_time(c["TimeGenerated"])
        first_seen[kind] = min(seen, first_seen.get(kind, seen))
    events: list[CredentialChange] = []
    for kind, since in first_seen.items():
        snapshots = [r for r in runs if parse_time(r["TimeGenerated"]) >= since and kind not in _not_snapshots(r)]
        for before_run, now_run in pairwise(snapshots):
            before = state.get((before_run["RunId"], *kind), {})
            now = state.get((now_run["RunId"], *kind), {})
            events += _credential_events(before, now, now_run, parse_time(before_run["TimeGenerated"]))
    events.sort(key=lambda e: (e.AccountId, e.UserName, e.EventType))
    events.sort(key=lambda e: e.TimeGenerated, reverse=True)
    return events


def _credential_events(
    before: Mapping[str, Row], now: Mapping[str, Row], run: Row, previous_run: datetime
) -> list[CredentialChange]:
    def event(c: Row, event_type: str, detail: str) -> CredentialChange:
        return CredentialChange(
            TimeGenerated=parse_time(run["TimeGenerated"]), PreviousRun=previous_run, RunId=str(run["RunId"]),
            AccountId=str(c.get("AccountId", "")), AccountName=str(c.get("AccountName") or ""),
            UserName=str(c.get("UserName", "")), UserArn=str(c.get("UserArn", "")),
            CredentialType=str(c.get("CredentialType", "")), Service=str(c.get("Service") or ""),
            CredentialId=c.get("CredentialId"), CredentialFingerprint=str(c.get("CredentialFingerprint", "")),
            EventType=event_type, Detail=detail,
        )

    out = []
    for fp, c in now.items():
        old = before.get(fp)
        if old is None:
            out.append(event(c, CREATED, f"created {str(c.get('CreatedAt') or '')[:10]}"))
        elif old.get("Status") != c.get("Status"):
            kind = {EXPIRED: EXPIRED, "Inactive": DEACTIVATED}.get(str(c.get("Status")), REACTIVATED)
            out.append(event(c, kind, f"was {old.get('Status')}"))
    out += [event(old, DELETED, "") for fp, old in before.items() if fp not in now]
    return out


# --------------------------------------------------------------------------------------------------------------------
# Key age distribution


@dataclass(frozen=True, slots=True)
class AgeBand:
    label: str
    low: int  # AgeDays >= low
    high: int | None  # AgeDays < high; None: no upper bound


AGE_BANDS = (
    AgeBand("0-30 days", 0, 30),
    AgeBand("30-90 days", 30, 90),
    AgeBand("90-180 days", 90, 180),
    AgeBand("180-365 days", 180, 365),
    AgeBand("365+ days", 365, None),
)

NO_FINDING = "No finding"
INACTIVE = "Inactive"
EXCEPTED = "Excepted (accepted risk)"  # every finding accepted by an exception in force: counted under none


def _inactive(key: Row) -> bool:
    return not is_active(key)


# (series, applies): excepted keys first (they count under no finding), then the findings of the catalogue, most
# severe first (catalogue order among equals), then Inactive; a key stacks under the first that applies to it. The
# series are the catalogue's chart labels (the chart counts keys).
SEVERITY_ORDER: tuple[tuple[str, Callable[[Row], bool]], ...] = (
    (EXCEPTED, is_excepted),
    *((f.chart_label, f.matches) for f in sorted(FINDINGS, key=lambda f: -f.severity)),
    (INACTIVE, _inactive),
)


def primary_finding(key: Row, order: Sequence[tuple[str, Callable[[Row], bool]]] = SEVERITY_ORDER) -> str:
    """The most severe finding of a key (the first of ``order`` that applies), else "No finding"."""
    return next((name for name, applies in order if applies(key)), NO_FINDING)


def age_band(age_days: int, bands: Sequence[AgeBand] = AGE_BANDS) -> AgeBand:
    for band in bands:
        if age_days >= band.low and (band.high is None or age_days < band.high):
            return band
    return bands[0]  # a negative age (clock skew) is the youngest band


@dataclass(frozen=True, slots=True)
class AgeBucket:
    band: AgeBand
    counts: tuple[tuple[str, int], ...]  # (finding, keys), every finding of the order, in order

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


def key_age_distribution(
    keys: Iterable[Row], order: Sequence[tuple[str, Callable[[Row], bool]]] = SEVERITY_ORDER,
    bands: Sequence[AgeBand] = AGE_BANDS,
) -> list[AgeBucket]:
    """Keys per age band (``AgeDays``), each band split by the keys' most severe finding; every band and every
    finding present, zeros included, so that a chart's bars and legend stay put."""
    findings = [name for name, _ in order] + [NO_FINDING]
    counts = {band.label: dict.fromkeys(findings, 0) for band in bands}
    for key in keys:
        counts[age_band(int(key.get("AgeDays") or 0), bands).label][primary_finding(key, order)] += 1
    return [AgeBucket(band, tuple(counts[band.label].items())) for band in bands]
