"""The findings catalogue: each rule once, and what the transform and the readers take from it."""

from __future__ import annotations

from shared.findings.catalogue import (
    FINDINGS,
    NEVER_USED,
    ROOT_KEY,
    ROTATION_DUE,
    TWO_ACTIVE_KEYS,
    UNOWNED_ACTIVE_KEY,
    KeyFacts,
    Thresholds,
    counts,
    findings_of,
    is_excepted,
    open_findings_of,
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
    row = {"Status": "Active", "UserActiveKeyCount": 2, "IsRootKey": False, "Owner": "team@example.com"}
    assert TWO_ACTIVE_KEYS.matches(row)
    assert not TWO_ACTIVE_KEYS.matches({**row, "Status": "Inactive"})
    assert not TWO_ACTIVE_KEYS.matches({**row, "UserActiveKeyCount": 1})
    assert findings_of({**row, "IsRootKey": True}) == [ROOT_KEY]  # root keys are their own finding


def test_an_active_key_without_an_owner_is_a_finding_but_not_a_root_key() -> None:
    row = {"Status": "Active", "UserActiveKeyCount": 1, "IsRootKey": False, "Owner": ""}
    assert findings_of(row) == [UNOWNED_ACTIVE_KEY]
    assert findings_of({**row, "Owner": "team@example.com"}) == []
    assert findings_of({**row, "Status": "Inactive"}) == []
    assert findings_of({**row, "IsRootKey": True}) == [ROOT_KEY]


def test_an_excepted_key_has_its_findings_but_counts_under_none() -> None:
    row = {"Status": "Active", "RotationDue": True, "Owner": "t", "Excepted": True}
    assert findings_of(row) == [ROTATION_DUE] and open_findings_of(row) == []
    assert not counts(ROTATION_DUE, row) and is_excepted(row)
    for excepted in (False, None):  # None: a row from before the column existed still counts
        assert counts(ROTATION_DUE, {**row, "Excepted": excepted}) and open_findings_of({**row, "Excepted": excepted})
