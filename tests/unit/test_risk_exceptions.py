"""The reviewed exceptions file: its format, every validation error (named by file, entry and field), and which keys
an exception covers, on canned files."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.findings.exceptions import EMPTY, ExceptionSet, annotate, describe, key_findings
from shared.findings.exceptions_file import ExceptionsFileError, check_max_days, load_exceptions, parse_exceptions
from shared.records import KeyRecord
from shared.tools.cli import main

DATA = Path(__file__).parents[1] / "data" / "exceptions"
ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
CI_ARN = "arn:aws:iam::123456789012:user/ci-deploy"


def valid() -> ExceptionSet:
    return load_exceptions(DATA / "valid.json", now=NOW)


def errors_of(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ExceptionsFileError) as caught:
        load_exceptions(path, now=NOW, **kwargs)  # type: ignore[arg-type]
    assert str(path) in str(caught.value)
    return caught.value.problems


def test_a_valid_file_parses_every_entry_in_order() -> None:
    exceptions = valid()
    assert [(e.entry, e.selector, e.finding) for e in exceptions.exceptions] == [
        (1, "fingerprint", "rotation_due"), (2, "userArn", "*"), (3, "accountId", "unused"),
        (4, "accountId", "root_key"),
    ]
    first = exceptions.exceptions[0]
    assert first.expires == datetime(2027, 3, 1, tzinfo=UTC)  # a date: stops applying at 00:00 UTC that day
    assert exceptions.exceptions[1].expires == datetime(2027, 1, 15, 12, tzinfo=UTC)
    assert first.approved_by == "alice@example.com" and first.reason.startswith("vendor appliance")


def test_the_deployed_default_file_is_valid_and_empty() -> None:
    assert len(load_exceptions(ROOT / "exceptions.json", now=NOW)) == 0


def test_the_documented_example_is_valid() -> None:
    doc = (ROOT / "docs" / "exceptions.md").read_text()
    block = re.search(r"```json\n(.*?)```", doc, re.S)
    assert block is not None
    example = parse_exceptions(block.group(1), source="docs/exceptions.md", now=NOW)
    assert {e.selector for e in example.exceptions} == {"fingerprint", "userArn", "accountId"}


def test_every_problem_is_reported_at_once_naming_the_entry_and_the_field() -> None:
    problems = errors_of(DATA / "malformed.json")
    assert problems == [
        "unknown top-level field(s) comment; expected version and exceptions",
        "entry 1 (fingerprint 0123456789ABCDEF): fingerprint: expected 16 lower-case hex digits (a key's "
        "AccessKeyFingerprint), got '0123456789ABCDEF'",
        "entry 2 (userArn arn:aws:iam::123456789012:user/ci-*): expiry: unknown field; expected one of accountId, "
        "approvedBy, expires, finding, fingerprint, reason, userArn",
        "entry 2 (userArn arn:aws:iam::123456789012:user/ci-*): finding: expected one of api_key_no_expiry, "
        "credential_expiring_soon, credential_rotation_due, never_used, privileged_user_credential, quarantined, "
        "root_key, rotation_due, two_active_keys, unowned_active_key, unused or * (every finding but root_key and "
        "quarantined), got 'Rotation'",
        "entry 2 (userArn arn:aws:iam::123456789012:user/ci-*): reason: required: why the risk is accepted and "
        "what limits it, as text; got ''",
        "entry 2 (userArn arn:aws:iam::123456789012:user/ci-*): expires: required: a date YYYY-MM-DD (stops "
        "applying at 00:00 UTC that day) or an ISO 8601 time with a zone; got nothing",
        "entry 3: selector: expected exactly one of fingerprint, userArn, accountId, found userArn, accountId",
        "entry 4 (accountId 602955238310): expires: 2031-01-01 is more than 365 days ahead (EXCEPTIONS_MAX_DAYS); "
        "expected 2027-11-29 or earlier",
        "entry 5 (accountId 602955238310): expires: 2027-01-01T10:00:00 has no time zone; add Z or an offset, or "
        "give a date",
        "entry 6: expected an object with a selector, finding, reason, approvedBy and expires, got 'not an object'",
    ]


def test_broken_json_is_named_with_its_line_and_column() -> None:
    (problem,) = errors_of(DATA / "not-json.json")
    assert problem.startswith("not valid JSON:") and "line 2" in problem


def test_a_missing_file_says_what_the_setting_means(tmp_path: Path) -> None:
    (problem,) = errors_of(tmp_path / "exceptions.json")
    assert "does not exist" in problem and "EXCEPTIONS_FILE" in problem


@pytest.mark.parametrize(("text", "expected"), [
    ("[]", 'expected a JSON object {"version": 1, "exceptions": [...]}'),
    ('{"version": 2, "exceptions": []}', "version: expected 1, got 2"),
    ('{"version": true, "exceptions": []}', "version: expected 1, got true"),
    ('{"version": 1}', "exceptions: expected a list of entries, got nothing"),
])
def test_the_top_level_shape_is_checked(text: str, expected: str) -> None:
    with pytest.raises(ExceptionsFileError) as caught:
        parse_exceptions(text, source="x.json", now=NOW)
    assert caught.value.problems == [expected]


def entry(**fields: object) -> str:
    base: dict[str, object] = {"accountId": "123456789012", "finding": "unused", "reason": "r",
                               "approvedBy": "a", "expires": "2027-01-01"}
    base.update(fields)
    return json.dumps({"version": 1, "exceptions": [{k: v for k, v in base.items() if v is not None}]})


def test_max_days_is_the_setting_and_is_bounded() -> None:
    text = entry(expires=(NOW + timedelta(days=31)).date().isoformat())
    with pytest.raises(ExceptionsFileError, match="more than 30 days ahead"):
        parse_exceptions(text, source="x.json", now=NOW, max_days=30)
    assert len(parse_exceptions(text, source="x.json", now=NOW, max_days=31)) == 1
    for bad in (0, 731):
        with pytest.raises(ValueError, match="EXCEPTIONS_MAX_DAYS: expected a whole number from 1 to 730"):
            check_max_days(bad)


def test_a_past_expiry_is_valid_but_expired() -> None:
    exceptions = parse_exceptions(entry(expires="2026-01-01"), source="x.json", now=NOW)
    assert [e.entry for e in exceptions.expired(NOW)] == [1] and exceptions.in_force(NOW) == []


def test_duplicates_and_bad_text_are_refused() -> None:
    one = json.loads(entry())["exceptions"][0]
    text = json.dumps({"version": 1, "exceptions": [one, dict(one, reason="again")]})
    with pytest.raises(ExceptionsFileError, match=r"entry 2 \(accountId 123456789012\): finding unused is already "
                                                  r"excepted for the same keys by entry 1"):
        parse_exceptions(text, source="x.json", now=NOW)
    with pytest.raises(ExceptionsFileError, match="reason: expected at most 500 characters on one line"):
        parse_exceptions(entry(reason="line\nbreak"), source="x.json", now=NOW)
    with pytest.raises(ExceptionsFileError, match="userArn: expected an IAM user ARN"):
        parse_exceptions(entry(accountId=None, userArn="ci-*"), source="x.json", now=NOW)


def test_a_key_is_excepted_only_when_every_finding_it_has_is_covered() -> None:
    exceptions = valid()
    fingerprint = "0123456789abcdef"
    key = {"account_id": "111111111111", "user_arn": "arn:aws:iam::111111111111:user/appliance",
           "fingerprint": fingerprint, "now": NOW}
    covered = exceptions.decide(findings={"rotation_due"}, **key)  # type: ignore[arg-type]
    assert covered.excepted and covered.reason is not None and covered.reason.startswith("vendor appliance")
    assert covered.expires == datetime(2027, 3, 1, tzinfo=UTC)
    # Another finding the exception does not name: the key stays counted; what was covered is still said.
    both = exceptions.decide(findings={"rotation_due", "unused"}, **key)  # type: ignore[arg-type]
    assert not both.excepted and both.partial == ("rotation_due",) and both.reason is None
    # No finding: nothing to except.
    assert not exceptions.decide(findings=set(), **key).excepted  # type: ignore[arg-type]
    # The exception ends at 00:00 UTC of its date.
    late = dict(key, now=datetime(2027, 3, 1, tzinfo=UTC))
    after = exceptions.decide(findings={"rotation_due"}, **late)  # type: ignore[arg-type]
    assert not after.excepted and [e.entry for e in after.expired] == [1]


def test_globs_accounts_and_the_wildcard_that_never_hides_a_root_key() -> None:
    exceptions = valid()
    ci = exceptions.decide(account_id="123456789012", user_arn=CI_ARN, fingerprint="f" * 16,
                           findings={"unused", "never_used", "two_active_keys"}, now=NOW)
    assert ci.excepted and [e.entry for e in ci.applied] == [2]
    assert ci.expires == datetime(2027, 1, 15, 12, tzinfo=UTC)
    other_account = exceptions.decide(account_id="999999999999", user_arn=CI_ARN.replace("123456789012",
                                      "999999999999"), fingerprint="f" * 16, findings={"unused"}, now=NOW)
    assert not other_account.excepted
    # Case matters in an ARN glob, as in IAM user names.
    assert not exceptions.decide(account_id="123456789012", user_arn=CI_ARN.replace("ci-", "CI-"),
                                 fingerprint="f" * 16, findings={"unused"}, now=NOW).excepted
    # A wildcard does not cover a root key; a root key exception names it.
    root_arn = "arn:aws:iam::123456789012:root"
    wildcard = parse_exceptions(entry(finding="*"), source="x.json", now=NOW)  # accountId 123456789012
    assert not wildcard.decide(account_id="123456789012", user_arn=root_arn, fingerprint="e" * 16,
                               findings={"root_key"}, now=NOW).excepted
    sandbox_root = exceptions.decide(account_id="602955238310", user_arn="arn:aws:iam::602955238310:root",
                                     fingerprint="e" * 16, findings={"root_key"}, now=NOW)
    assert sandbox_root.excepted and sandbox_root.reason == "break-glass root key held in the safe, audited monthly"


def test_the_wildcard_never_hides_a_quarantined_users_key_naming_it_does() -> None:
    """AWS quarantined the user after it saw one of its keys in public: a blanket exception must not silence that."""
    wildcard = parse_exceptions(entry(accountId=None, userArn=CI_ARN, finding="*"), source="x.json", now=NOW)
    named = parse_exceptions(entry(accountId=None, userArn=CI_ARN, finding="quarantined"), source="x.json", now=NOW)
    for exceptions, excepted in ((wildcard, False), (named, True)):
        decision = exceptions.decide(account_id="123456789012", user_arn=CI_ARN, fingerprint="f" * 16,
                                     findings={"quarantined"}, now=NOW)
        assert decision.excepted is excepted
    # and a record's findings name it
    assert key_findings(record(Owner="t", RotationDue=False, Quarantined=True)) == {"quarantined"}
    assert key_findings(record(Owner="t", RotationDue=False, Quarantined=True, Status="Inactive")) == set()


def test_an_expired_exception_stops_applying_and_is_reported() -> None:
    exceptions = valid()  # entry 3 (sandbox, unused) expired on 2026-10-01
    decision = exceptions.decide(account_id="602955238310", user_arn="arn:aws:iam::602955238310:user/old",
                                 fingerprint="d" * 16, findings={"unused"}, now=NOW)
    assert not decision.excepted and [e.entry for e in decision.expired] == [3]
    assert [e.entry for e in exceptions.expired(NOW)] == [3]
    assert "entry 3 (accountId 602955238310): unused - EXPIRED until 2026-10-01" in describe(exceptions, NOW)[2]


def test_reasons_of_several_exceptions_are_joined_and_the_earliest_expiry_kept() -> None:
    text = json.dumps({"version": 1, "exceptions": [
        {"accountId": "123456789012", "finding": "unused", "reason": "account-wide", "approvedBy": "a",
         "expires": "2027-05-01"},
        {"fingerprint": "c" * 16, "finding": "never_used", "reason": "this key", "approvedBy": "b",
         "expires": "2027-02-01"},
    ]})
    decision = parse_exceptions(text, source="x.json", now=NOW).decide(
        account_id="123456789012", user_arn=CI_ARN, fingerprint="c" * 16, findings={"unused", "never_used"}, now=NOW)
    assert decision.excepted and decision.reason == "account-wide; this key"
    assert decision.expires == datetime(2027, 2, 1, tzinfo=UTC)
    assert not EMPTY.decide(account_id="123456789012", user_arn=CI_ARN, fingerprint="c" * 16,
                            findings={"unused"}, now=NOW).excepted


def test_the_check_command_exits_0_for_a_valid_file_and_2_naming_every_problem(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["exceptions", "check", str(DATA / "valid.json"), "--max-days", "730"]) == 0
    out = capsys.readouterr().out
    assert f"{DATA / 'valid.json'}: valid - 4 exception(s)" in out
    assert "entry 2 (userArn arn:aws:iam::123456789012:user/ci-*): * - " in out
    assert main(["exceptions", "check", str(DATA / "malformed.json")]) == 2
    err = capsys.readouterr().err
    assert f"Invalid exceptions file {DATA / 'malformed.json'}" in err
    assert "entry 4 (accountId 602955238310): expires:" in err and "Traceback" not in err
    assert main(["exceptions", "check", str(DATA / "valid.json"), "--max-days", "0"]) == 2
    assert "EXCEPTIONS_MAX_DAYS" in capsys.readouterr().err


def record(**fields: object) -> KeyRecord:
    base = dict(  # noqa: C408 - the record's own field names, as keywords
        TimeGenerated=NOW, RunId="r", AccountId="123456789012", AccountName="", UserName="ci-deploy", UserArn=CI_ARN,
        AccessKeyId="AKIA...WXYZ", AccessKeyFingerprint="f" * 16, Status="Active", CreatedAt=NOW, LastUsedAt=NOW,
        LastUsedRegion=None, LastUsedService=None, LastUsedAsOf=NOW,
        AgeDays=100, DaysSinceLastUse=0, NeverUsed=False,
        RotationDue=True, Unused=False, UserActiveKeyCount=1, IsRootKey=False)
    base.update(fields)
    return KeyRecord(**base)  # type: ignore[arg-type]


def test_the_findings_of_a_record_follow_the_queries_rules() -> None:
    assert key_findings(record(Owner="team")) == {"rotation_due"}
    assert key_findings(record()) == {"rotation_due", "unowned_active_key"}
    assert key_findings(record(Owner="t", RotationDue=False, NeverUsed=True, UserActiveKeyCount=2)) == {
        "never_used", "two_active_keys"}
    assert key_findings(record(Status="Inactive", RotationDue=False, NeverUsed=True, UserActiveKeyCount=0)) == set()
    root = record(IsRootKey=True, UserActiveKeyCount=2, RotationDue=False, UserArn="arn:aws:iam::123456789012:root")
    assert key_findings(root) == {"root_key"}  # no owner is expected of a root key; two root keys are one finding


def test_annotate_sets_the_exception_fields_from_the_findings_the_key_has() -> None:
    exceptions = valid()
    excepted, decision = annotate(record(Owner="ci-team"), exceptions=exceptions, now=NOW)
    assert decision.excepted and excepted.Owner == "ci-team" and excepted.Excepted
    assert excepted.ExceptionReason == "CI users are rebuilt weekly; keys are replaced with them"
    assert excepted.to_row()["ExceptionExpires"] == "2027-01-15T12:00:00Z"
    # Elsewhere the key is not excepted: the fields stay at their nulls.
    other, _ = annotate(record(UserArn="arn:aws:iam::123456789012:user/bob"), exceptions=exceptions, now=NOW)
    assert (other.Excepted, other.ExceptionReason, other.ExceptionExpires) == (False, None, None)
    # An unowned key: that is a finding too, and the wildcard of entry 2 covers it.
    unowned, _ = annotate(record(), exceptions=exceptions, now=NOW)
    assert unowned.Excepted
