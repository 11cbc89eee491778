"""Running the timer function as the host does, and what its tests share: the contract's settings,
one invocation."""

from __future__ import annotations

import azure.functions as func
from azure.functions.timer import TimerRequest  # the concrete request the worker decodes

import function_app
from shared.config.defaults import DEFAULTS

RULE_ID = "dcr-00112233445566778899aabbccddeeff"
AUDIENCE = "api://AzureADTokenExchange"
CONTRACT_SETTINGS = (*DEFAULTS, "COLLECTOR_SCHEDULE", "AZURE_CLIENT_ID", "KEY_VAULT_URL", "AWS_ROLE_ARN",
                     "AWS_EXTERNAL_ID", "AWS_WEB_IDENTITY_AUDIENCE", "LOGS_INGESTION_ENDPOINT",
                     "LOGS_INGESTION_RULE_ID", "LOG_ANALYTICS_WORKSPACE_ID", "EXCEPTIONS_FILE", "NOTIFY_SCHEDULE",
                     "NOTIFY_EMAIL_ENDPOINT", "NOTIFY_SENDER", "NOTIFY_FALLBACK_RECIPIENT", "NOTIFY_WORKSPACE_ID")
# Indexed once, as the host does (a FunctionApp can be indexed only once: names are checked for uniqueness).
FUNCTIONS = function_app.app.get_functions()


def timer() -> func.TimerRequest:
    return TimerRequest(past_due=False, schedule_status={"Last": "2026-01-01T00:00:00"},
                             schedule={"AdjustForDST": True})


def run_function() -> None:
    """The collection (collect_iam_keys)."""
    (function,) = [f for f in FUNCTIONS if f.get_function_name() == "collect_iam_keys"]
    function.get_user_function()(timer())


def run_notify_function() -> None:
    """The owner digests (notify_owners)."""
    (function,) = [f for f in FUNCTIONS if f.get_function_name() == "notify_owners"]
    function.get_user_function()(timer())
