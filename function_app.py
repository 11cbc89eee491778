"""The Azure Function (Python v2 programming model): a timer trigger that runs one collection, and a second one that
sends the owners their digests (NOTIFY_MODE; dry_run by default: nothing is mailed until it is send).

It only wires: settings from the app settings, log safety, the composition root, one run. Everything else lives in
``shared`` (which never imports azure.functions), so the command line runs exactly the same code.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import azure.functions as func

from shared.collection.collector import LogProgress, time_budget_of
from shared.composition import ClientOptions, compose, compose_notify
from shared.config.notify import NotifyMode, load_notify_settings
from shared.config.settings import load_settings
from shared.deadline import parse_function_timeout, run_deadline
from shared.domain import RUN_FAILED, AccountFailure
from shared.errors import CollectionFailedError
from shared.notify.run import DigestRunFailedError
from shared.redaction import install_log_safety

app = func.FunctionApp()

log = logging.getLogger("function_app")

# Production's client options (TLS verification and Key Vault's challenge check on). Tests replace this object with
# monkeypatch to trust their local fakes; it is never read from a setting.
CLIENT_OPTIONS = ClientOptions()

# Accounts not started within three quarters of the host's functionTimeout are left for the next run (and named), so
# that a run over a very large organization still ends with its run record instead of being killed.
_FUNCTION_TIMEOUT_TEXT = json.loads((Path(__file__).parent / "host.json").read_text())["functionTimeout"]
TIME_BUDGET = time_budget_of(_FUNCTION_TIMEOUT_TEXT)
# The host kills the invocation at functionTimeout: the run's one deadline (replay, sign-in, accounts, delivery, the
# run record) ends a margin before it. Tests shorten it with monkeypatch.
FUNCTION_TIMEOUT = parse_function_timeout(_FUNCTION_TIMEOUT_TEXT)


@app.timer_trigger(schedule="%COLLECTOR_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def collect_iam_keys(timer: func.TimerRequest) -> None:
    deadline = run_deadline(FUNCTION_TIMEOUT)  # from the invocation's start
    install_log_safety()
    if timer.past_due:
        log.warning("The timer is past due: this run starts later than scheduled")
    # SettingsError names every bad setting; the host records it as the failure. The endpoint policy comes with the
    # client options (production's: the clouds' own domains only), never from a setting.
    settings = load_settings(os.environ, CLIENT_OPTIONS.endpoints)
    with compose(
        settings, CLIENT_OPTIONS, progress=LogProgress(), time_budget=TIME_BUDGET, deadline=deadline
    ) as collector:
        result = collector.run()
    if result.status == RUN_FAILED:
        first = result.failures[0] if result.failures else AccountFailure("-", "no account was collected")
        raise CollectionFailedError(
            f"Run {result.run.run_id} Failed: {len(result.failures)} of {result.accounts_total} account(s) failed; "
            f"first: {first.account_id}: {first.error} (every error is in the run record's FailedAccounts)"
        )


@app.timer_trigger(schedule="%NOTIFY_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def notify_owners(timer: func.TimerRequest) -> None:
    """The owner digests: what Log Analytics holds (the latest good snapshot), one digest per owner of keys due or
    overdue, sent as NOTIFY_MODE says; the run record goes to AwsIamOwnerDigestRuns_CL."""
    deadline = run_deadline(FUNCTION_TIMEOUT)
    install_log_safety()
    settings = load_notify_settings(os.environ, CLIENT_OPTIONS.endpoints)
    if settings.mode is NotifyMode.OFF:
        log.info("NOTIFY_MODE is off: no owner digest this time")
        return
    with compose_notify(settings, CLIENT_OPTIONS, deadline=deadline) as runner:
        record = runner.run()
    if record.Status == "Failed":
        raise DigestRunFailedError(
            f"Owner digests {record.RunId} Failed: {record.DigestsNotSent} of {record.DigestsBuilt} digest(s) not "
            f"sent; {record.Errors[:500]} (the run record in AwsIamOwnerDigestRuns_CL has every error)"
        )
