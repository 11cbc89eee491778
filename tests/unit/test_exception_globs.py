"""Exception userArn globs are segment-aware (audit finding F4): no wildcard crosses ``/`` or ``:``, the account is
written out, and a root key is accepted only by fingerprint or account id. The samples (the docs' example, the
repository's files, the demo's) still validate."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.findings.exceptions import arn_matches
from shared.findings.exceptions_file import ExceptionsFileError, load_exceptions, parse_exceptions
from shared.tools.demo import SeededOrganization, demo_exceptions

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
ACCOUNT = "123456789012"


def one(**selector: Any) -> str:
    fields = {"finding": "*", "reason": "r", "approvedBy": "a", "expires": "2027-01-01", **selector}
    return json.dumps({"version": 1, "exceptions": [fields]})


def errors(text: str) -> list[str]:
    with pytest.raises(ExceptionsFileError) as caught:
        parse_exceptions(text, source="x.json", now=NOW)
    return caught.value.problems


def selects(pattern: str, user_arn: str) -> bool:
    exceptions = parse_exceptions(one(userArn=pattern), source="x.json", now=NOW)
    return exceptions.decide(account_id=user_arn.split(":")[4], user_arn=user_arn, fingerprint="f" * 16,
                             findings={"unused"}, now=NOW).excepted


def test_a_star_does_not_cross_a_slash() -> None:
    """The attack: anyone who can create user ci-x/admin (path /ci-x/) hid its findings under user/ci-*."""
    pattern = f"arn:aws:iam::{ACCOUNT}:user/ci-*"
    assert selects(pattern, f"arn:aws:iam::{ACCOUNT}:user/ci-deploy")
    assert not selects(pattern, f"arn:aws:iam::{ACCOUNT}:user/ci-x/admin")
    assert selects(f"arn:aws:iam::{ACCOUNT}:user/ci-x/*", f"arn:aws:iam::{ACCOUNT}:user/ci-x/admin")


@pytest.mark.parametrize(
    ("pattern", "user_arn"),
    [
        ("arn:aws:iam::123456789012:user/ci?admin", "arn:aws:iam::123456789012:user/ci/admin"),
        ("arn:aws:iam::123456789012:user/ci[/]admin", "arn:aws:iam::123456789012:user/ci/admin"),
        ("arn:aws:iam::123456789012:user/ci[!x]admin", "arn:aws:iam::123456789012:user/ci/admin"),
        ("arn:aws:iam::123456789012:user/ci[!x]admin", "arn:aws:iam::123456789012:user/ci:admin"),
        ("arn:aws:iam::123456789012:user/*", "arn:aws:iam::123456789012:user/team/alice"),
    ],
)
def test_no_wildcard_matches_a_separator(pattern: str, user_arn: str) -> None:
    assert not arn_matches(pattern, user_arn)


def test_sets_and_single_characters_still_match_inside_a_segment() -> None:
    assert arn_matches("arn:aws:iam::123456789012:user/ci-[a-c]?", "arn:aws:iam::123456789012:user/ci-b7")
    assert arn_matches("arn:aws:iam::123456789012:user/ci-[!a-c]*", "arn:aws:iam::123456789012:user/ci-deploy")
    assert not arn_matches("arn:aws:iam::123456789012:user/ci-[!a-c]*", "arn:aws:iam::123456789012:user/ci-build")
    assert arn_matches("arn:aws:iam::123456789012:user/a.b+c", "arn:aws:iam::123456789012:user/a.b+c")
    assert not arn_matches("arn:aws:iam::123456789012:user/a.b", "arn:aws:iam::123456789012:user/aXb")


@pytest.mark.parametrize(
    "pattern",
    [
        "arn:aws:iam::*:user/ci-*",  # the docs' own example until now: any account, so any member account's admin
        "arn:aws:iam::1234567890??:user/ci-*",
        "arn:*",
        "arn:aws*:iam::123456789012:user/ci-*",
        "arn:aws:iam::123456789012:*",
        "arn:aws:iam::123456789012:role/ci-*",
        "arn:aws:iam::123456789012:user/",
        "arn:aws:iam::123456789012:user/ci-*\n",
    ],
)
def test_a_wildcard_outside_the_user_path_and_name_is_refused(pattern: str) -> None:
    (problem,) = errors(one(userArn=pattern))
    assert problem.startswith("entry 1 (userArn ") and ": userArn: expected an IAM user ARN" in problem


@pytest.mark.parametrize(
    "selector",
    [{"userArn": "arn:*"}, {"userArn": f"arn:aws:iam::{ACCOUNT}:user/*"}, {"userArn": f"arn:aws:iam::{ACCOUNT}:root"}],
)
def test_a_root_key_is_accepted_only_by_fingerprint_or_account(selector: dict[str, str]) -> None:
    found = errors(one(finding="root_key", **selector))
    assert found and all(p.startswith("entry 1 (userArn ") for p in found)
    assert any(": finding: root_key is accepted only with a fingerprint or accountId selector" in p
               or ": userArn: a root user has no IAM user ARN" in p or ": userArn: expected" in p for p in found)
    if selector["userArn"].endswith(":user/*"):
        assert found == [f"entry 1 (userArn arn:aws:iam::{ACCOUNT}:user/*): finding: root_key is accepted only with a "
                         "fingerprint or accountId selector, not userArn; name the root key's AccessKeyFingerprint "
                         "or its account's accountId"]
    for ok in ({"fingerprint": "0123456789abcdef"}, {"accountId": ACCOUNT}):
        assert len(parse_exceptions(one(finding="root_key", **ok), source="x.json", now=NOW)) == 1


def test_the_docs_example_and_the_repositorys_files_validate() -> None:
    docs = (ROOT / "docs" / "exceptions.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```json\n(.*?)```", docs, re.DOTALL)
    assert len(parse_exceptions(example, source="docs", now=NOW)) == 3
    assert docs.count("arn:aws:iam::*:") == 1 and "`arn:aws:iam::*:user/ci-*` matched" in docs  # only as history
    for path in (ROOT / "exceptions.json", ROOT / "tests" / "data" / "exceptions" / "valid.json"):
        load_exceptions(path, now=NOW, max_days=730)


def test_the_demos_exceptions_validate() -> None:
    seeded = SeededOrganization("http://127.0.0.1:1", "arn:aws:iam::123456789012:role/Home", "x", "Member", "AKIA",
                                "s", accounts={"210987654321": "Production"})
    text = json.dumps(demo_exceptions(seeded, NOW))
    assert len(parse_exceptions(text, source="demo", now=NOW)) == 2
