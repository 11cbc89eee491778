"""The IAM credential report: the only place AWS shows whether the root user has access keys, and the cheap
source of every key's last use. Read here (the calls, AWS's 4-hour rhythm); its format is read in shared/domain.py
(``parse_credential_report``, ``report_date``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from shared.errors import (
    CredentialReportUnavailableError,
    MalformedResponseError,
)

# --- the IAM credential report: the only place AWS shows whether the root user has access keys ---

REPORT_MAX_AGE = timedelta(hours=4)  # AWS generates a new report at most every 4 hours; a fresher one cannot exist
_REPORT_NOT_READY = frozenset({"ReportNotPresent", "ReportExpired", "ReportInProgress"})
REPORT_WAITS = (1.0, 2.0, 4.0, 8.0, 8.0)  # seconds between polls while AWS generates the report


def _current_report(iam: BaseClient) -> tuple[str, datetime] | None:
    try:
        response = iam.get_credential_report()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _REPORT_NOT_READY:
            return None
        raise
    content, generated = response.get("Content"), response.get("GeneratedTime")
    if not isinstance(content, bytes | str) or not isinstance(generated, datetime):
        raise MalformedResponseError("IAM GetCredentialReport: field Content or GeneratedTime is missing")
    return (content.decode("utf-8") if isinstance(content, bytes) else content), generated


def read_credential_report(
    iam: BaseClient, now: datetime, sleep: Callable[[float], None] = time.sleep, waits: tuple[float, ...] = REPORT_WAITS
) -> str:
    """The account's credential report (CSV): the current one when it is under four hours old, else a new one.

    GenerateCredentialReport is called only when the report is missing or stale, so the collector never asks for
    more than AWS's rate limit allows, whatever the schedule."""
    return read_report_content(iam, now, sleep, waits)[0]


def read_report_content(
    iam: BaseClient, now: datetime, sleep: Callable[[float], None], waits: tuple[float, ...]
) -> tuple[str, datetime]:
    current = _current_report(iam)
    if current is not None and now - current[1] <= REPORT_MAX_AGE:
        return current
    iam.generate_credential_report()
    for wait in (0.0, *waits):
        sleep(wait)
        report = _current_report(iam)
        if report is not None:
            return report  # the newest AWS has: fresh, or (inside the rate limit) the last one it generated
    raise CredentialReportUnavailableError(
        f"IAM credential report still being generated after {sum(waits):.0f} s; root keys are read next run"
    )


def sleep_unless(stop: threading.Event) -> Callable[[float], None]:
    """The credential report's wait between polls, cut short (with an error) once ``stop`` is set."""

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise CredentialReportUnavailableError("the account failed; its credential report is no longer read")

    return sleep
