"""The findings catalogue: each rule once, and what the transform and the readers take from it."""

from __future__ import annotations

from shared.findings import (
    FINDINGS,
    NEVER_USED,
    ROOT_KEY,
    TWO_ACTIVE_KEYS,
    KeyFacts,
    Thresholds,
    findings_of,
    record_flags,
)

LIMITS = Thresholds(rotation_days=90, unused_days=45)


def test_record_flags_are_the_fields_the_catalogue_names() -> None:
    flags = record_flags(KeyFacts(active=True, age_days=91, days_since_last_use=46), LIMITS)
    assert flags == {"RotationDue": True, "Unused": True}
    assert set(flags) == {f.record_field for f in FINDINGS if f.record_field}


def test_flag_rules_are_strictly_past_the_limits_and_only_for_active_keys() -> None:
    assert record_flags(KeyFacts(active=True, age_days=90, days_since_last_use=45), LIMITS) == {
        "RotationDue": False, "Unused": False}
    assert record_flags(KeyFacts(active=False, age_days=900, days_since_last_use=None), LIMITS) == {
        "RotationDue": False, "Unused": False}
    # never used: unused only once older than the unused limit
    assert record_flags(KeyFacts(active=True, age_days=45, days_since_last_use=None), LIMITS)["Unused"] is False
    assert record_flags(KeyFacts(active=True, age_days=46, days_since_last_use=None), LIMITS)["Unused"] is True


def test_never_used_is_a_finding_only_for_active_keys() -> None:
    assert NEVER_USED.matches({"Status": "Active", "NeverUsed": True})
    assert not NEVER_USED.matches({"Status": "Inactive", "NeverUsed": True})  # the field is true; no finding


def test_two_active_keys_is_active_keys_of_a_user_with_two_and_not_root() -> None:
    row = {"Status": "Active", "UserActiveKeyCount": 2, "IsRootKey": False}
    assert TWO_ACTIVE_KEYS.matches(row)
    assert not TWO_ACTIVE_KEYS.matches({**row, "Status": "Inactive"})
    assert not TWO_ACTIVE_KEYS.matches({**row, "UserActiveKeyCount": 1})
    assert findings_of({**row, "IsRootKey": True}) == [ROOT_KEY]  # root keys are their own finding
