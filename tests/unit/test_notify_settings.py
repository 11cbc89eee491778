"""NOTIFY_* (shared/config/notify.py): every problem named at once, what each mode requires, the Communication
Services endpoint on the cloud's own domain only, plain e-mail addresses only."""

from __future__ import annotations

import pytest

from shared.config.endpoints import EndpointPolicy, communication_problem
from shared.config.notify import NotifyMode, load_notify_settings
from shared.errors import SettingsError

WORKSPACE = "0b6a8f5e-3c1d-4e2f-9a7b-6c5d4e3f2a1b"
ENDPOINT = "https://acs-x1.unitedstates.communication.azure.com"
SINK = {"LOGS_INGESTION_ENDPOINT": "https://dcr-x-a1b2.swedencentral-1.ingest.monitor.azure.com",
        "LOGS_INGESTION_RULE_ID": "dcr-00112233445566778899aabbccddeeff"}


def problems(env: dict[str, str], **kwargs: object) -> list[str]:
    with pytest.raises(SettingsError) as error:
        load_notify_settings(env, **kwargs)  # type: ignore[arg-type]
    return error.value.problems


def test_the_defaults_are_a_dry_run_that_needs_the_workspace_only() -> None:
    settings = load_notify_settings({"NOTIFY_WORKSPACE_ID": WORKSPACE, **SINK})
    assert settings.mode is NotifyMode.DRY_RUN and settings.email_endpoint is None
    assert settings.fallback_recipient is None
    assert (settings.rotation_days, settings.unused_days) == (90, 45)
    assert problems(SINK) == ["NOTIFY_WORKSPACE_ID: required when NOTIFY_MODE is dry_run (the digests read the "
                              "workspace); expected a GUID (the Log Analytics workspace id, azd output "
                              "AZURE_LOG_ANALYTICS_WORKSPACE_ID)"]
    assert load_notify_settings(SINK, from_files=True).workspace_id is None  # the demo: rows from the files


def test_off_needs_nothing_and_needs_no_aws_setting() -> None:
    assert load_notify_settings({"NOTIFY_MODE": "off", "LOG_SINK": "file"}).mode is NotifyMode.OFF


def test_send_needs_the_endpoint_and_the_sender() -> None:
    found = problems({"NOTIFY_MODE": "send", "NOTIFY_WORKSPACE_ID": WORKSPACE, **SINK})
    assert [p.split(":")[0] for p in found] == ["NOTIFY_EMAIL_ENDPOINT", "NOTIFY_SENDER"]
    settings = load_notify_settings({"NOTIFY_MODE": "send", "NOTIFY_WORKSPACE_ID": WORKSPACE, **SINK,
                                     "NOTIFY_EMAIL_ENDPOINT": ENDPOINT, "NOTIFY_SENDER": "DoNotReply@x.azurecomm.net",
                                     "NOTIFY_FALLBACK_RECIPIENT": "Sec@Example.com"})
    assert settings.mode is NotifyMode.SEND and settings.fallback_recipient == "sec@example.com"


def test_every_bad_value_is_named() -> None:
    found = problems({"NOTIFY_MODE": "mail", "NOTIFY_WORKSPACE_ID": "ws", "NOTIFY_SENDER": "Ann <a@b.com>",
                      "NOTIFY_FALLBACK_RECIPIENT": "security team", "NOTIFY_SCHEDULE": "daily",
                      "NOTIFY_EMAIL_ENDPOINT": "http://acs.communication.azure.com", **SINK})
    assert [p.split(":")[0] for p in found] == ["NOTIFY_MODE", "NOTIFY_SCHEDULE", "NOTIFY_WORKSPACE_ID",
                                                "NOTIFY_EMAIL_ENDPOINT", "NOTIFY_SENDER",
                                                "NOTIFY_FALLBACK_RECIPIENT"]


@pytest.mark.parametrize(("value", "reason"), [
    ("http://acs-x.unitedstates.communication.azure.com", "must be https"),
    ("https://acs-x.communication.azure.com.evil.example", "not on the cloud's own domain"),
    ("https://evil.example/acs-x.communication.azure.com", "not on the cloud's own domain"),
    ("https://acs-x.unitedstates.communication.azure.com/emails", "no path"),
    ("https://user:pw@acs-x.unitedstates.communication.azure.com", "no user name"),
])
def test_the_communication_endpoint_must_be_the_clouds_own(value: str, reason: str) -> None:
    problem = communication_problem("NOTIFY_EMAIL_ENDPOINT", value)
    assert problem is not None and reason in problem
    assert communication_problem("NOTIFY_EMAIL_ENDPOINT", ENDPOINT) is None
    assert communication_problem("NOTIFY_EMAIL_ENDPOINT", ENDPOINT + "/") is None


def test_a_test_host_is_allowed_only_through_the_policy() -> None:
    local = "https://127.0.0.1:8443"
    assert communication_problem("NOTIFY_EMAIL_ENDPOINT", local) is not None
    assert communication_problem("NOTIFY_EMAIL_ENDPOINT", local, EndpointPolicy(frozenset({"127.0.0.1"}))) is None
