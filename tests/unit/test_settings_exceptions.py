"""OWNER_TAG_KEYS, EXCEPTIONS_FILE and EXCEPTIONS_MAX_DAYS: defaults, and a bad exceptions file stopping the run
before any network call, named by file, entry and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.config.settings import APP_DIR, SettingsError, load_settings
from shared.tools.cli import main
from tests.unit.test_settings import minimal

DATA = Path(__file__).parents[1] / "data" / "exceptions"
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def test_defaults_no_exceptions_and_the_contracts_owner_tags() -> None:
    s = load_settings(minimal())
    assert s.owner_tag_keys == ("owner", "Owner", "email", "contact")
    assert s.exceptions_file is None and len(s.exceptions) == 0 and s.exceptions_max_days == 365


def test_the_exceptions_file_is_read_relative_to_the_app_and_validated_once() -> None:
    s = load_settings(minimal(EXCEPTIONS_FILE="exceptions.json", OWNER_TAG_KEYS="team, owner"), now=NOW)
    assert Path(__file__).resolve().parents[2] == APP_DIR and (APP_DIR / "exceptions.json").is_file()
    assert s.exceptions.source == "exceptions.json" and len(s.exceptions) == 0
    assert s.owner_tag_keys == ("team", "owner")
    valid = load_settings(minimal(EXCEPTIONS_FILE=str(DATA / "valid.json"), EXCEPTIONS_MAX_DAYS="730"), now=NOW)
    assert len(valid.exceptions) == 4 and [e.entry for e in valid.exceptions.expired(NOW)] == [3]


def test_every_problem_of_the_file_is_a_settings_problem_with_the_others() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(minimal(EXCEPTIONS_FILE=str(DATA / "malformed.json"), KEY_UNUSED_DAYS="x",
                              OWNER_TAG_KEYS="aws:owner"), now=NOW)
    problems = caught.value.problems
    assert any(p.startswith("KEY_UNUSED_DAYS:") for p in problems)
    assert any(p.startswith("OWNER_TAG_KEYS: expected a comma-separated list") for p in problems)
    prefix = f"EXCEPTIONS_FILE {DATA / 'malformed.json'}: "
    assert f"{prefix}entry 4 (accountId 602955238310): expires: 2031-01-01 is more than 365 days ahead " \
           "(EXCEPTIONS_MAX_DAYS); expected 2027-11-29 or earlier" in problems
    assert sum(p.startswith(prefix) for p in problems) == 10


def test_max_days_is_bounded_and_applied_to_the_file() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(minimal(EXCEPTIONS_MAX_DAYS="731", EXCEPTIONS_FILE="exceptions.json"))
    assert caught.value.problems == ["EXCEPTIONS_MAX_DAYS: expected a whole number from 1 to 730, got '731'"]
    with pytest.raises(SettingsError, match=r"entry 4 \(accountId 602955238310\): expires: 2027-06-30 is more than "
                                            r"30 days ahead"):
        load_settings(minimal(EXCEPTIONS_FILE=str(DATA / "valid.json"), EXCEPTIONS_MAX_DAYS="30"), now=NOW)
    with pytest.raises(SettingsError, match=r"EXCEPTIONS_FILE nope\.json: the file does not exist"):
        load_settings(minimal(EXCEPTIONS_FILE="nope.json"))


def test_the_check_command_takes_max_days_from_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    month_ahead = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    path = tmp_path / "exceptions.json"
    path.write_text(json.dumps({"version": 1, "exceptions": [
        {"accountId": "123456789012", "finding": "unused", "reason": "r", "approvedBy": "a", "expires": month_ahead}]}))
    monkeypatch.setenv("EXCEPTIONS_MAX_DAYS", "31")
    assert main(["exceptions", "check", str(path)]) == 0
    monkeypatch.setenv("EXCEPTIONS_MAX_DAYS", "7")
    assert main(["exceptions", "check", str(path)]) == 2
    assert "more than 7 days ahead (EXCEPTIONS_MAX_DAYS)" in capsys.readouterr().err
    monkeypatch.setenv("EXCEPTIONS_MAX_DAYS", "0")
    assert main(["exceptions", "check", str(path)]) == 2
    assert "EXCEPTIONS_MAX_DAYS: expected a whole number from 1 to 730, got '0'" in capsys.readouterr().err
