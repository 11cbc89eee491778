"""Property tests: whatever an operator types, settings either load or fail with a SettingsError that names the
setting — never another exception, never a value silently accepted in the wrong shape."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config.settings import load_settings
from shared.errors import SettingsError
from tests.support.settings_env import minimal

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
SETTINGS = [
    "AWS_ROLE_ARN", "AWS_AUTH_MODE", "AWS_EXTERNAL_ID", "AWS_ACCOUNTS", "AWS_MEMBER_ROLE_NAME", "AWS_REGION",
    "LOG_SINK", "LOGS_INGESTION_ENDPOINT", "LOGS_INGESTION_RULE_ID", "LOGS_INGESTION_KEYS_STREAM",
    "LOG_ANALYTICS_WORKSPACE_ID", "LOG_ANALYTICS_DOMAIN", "KEY_VAULT_URL", "AZURE_CLIENT_ID", "KEY_ROTATION_DAYS",
    "KEY_UNUSED_DAYS", "COLLECTOR_ACCOUNT_CONCURRENCY", "OUTBOX_MAX_RECORDS", "OUTBOX_CONTAINER",
    "AWS_WEB_IDENTITY_AUDIENCE", "AWS_ACCESS_KEY_ID_SECRET",
]


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(SETTINGS), value=text)
def test_any_value_loads_or_names_the_setting(name: str, value: str) -> None:
    try:
        loaded = load_settings(minimal(**{name: value}))
    except SettingsError as exc:
        assert exc.problems, "an error lists at least one problem"
        assert all(re.match(r"^[A-Za-z_]+: ", p) for p in exc.problems)
        assert any(p.startswith(f"{name}: ") for p in exc.problems) or name in ("AWS_AUTH_MODE", "LOG_SINK")
    else:
        assert loaded is not None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="0123456789", min_size=12, max_size=12), min_size=1, max_size=20))
def test_valid_account_lists_round_trip(ids: list[str]) -> None:
    loaded = load_settings(minimal(AWS_ACCOUNTS=", ".join(ids)))
    assert loaded.aws_account_ids == tuple(dict.fromkeys(ids))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-10**6, max_value=10**7))
def test_day_thresholds_accept_exactly_their_range(days: int) -> None:
    try:
        loaded = load_settings(minimal(KEY_ROTATION_DAYS=str(days)))
    except SettingsError as exc:
        assert not 1 <= days <= 3650
        assert exc.problems == [f"KEY_ROTATION_DAYS: expected a whole number from 1 to 3650, got {str(days)!r}"]
    else:
        assert 1 <= days <= 3650 and loaded.key_rotation_days == days


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789abcdefxyz-", max_size=40))
def test_rule_ids_must_be_dcr_and_32_hex(value: str) -> None:
    valid = re.fullmatch(r"dcr-[0-9a-f]{32}", value.strip()) is not None  # blank: required and missing
    try:
        load_settings(minimal(LOGS_INGESTION_RULE_ID=value))
    except SettingsError as exc:
        assert not valid and exc.problems[0].startswith("LOGS_INGESTION_RULE_ID: ")
    else:
        assert valid
