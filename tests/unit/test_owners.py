"""A key's owner from its IAM user's tags (its GetAccountAuthorizationDetails item's Tags, as boto3 returns them)."""

from __future__ import annotations

import pytest

from shared.errors import MalformedResponseError
from shared.findings.owners import DEFAULT_OWNER_TAG_KEYS, owner_from_tags, parse_owner_tag_keys


def tags(**pairs: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def test_the_first_configured_key_present_wins_in_the_settings_order() -> None:
    assert owner_from_tags(tags(contact="ops@example.com", email="dev@example.com"), DEFAULT_OWNER_TAG_KEYS) \
        == "dev@example.com"
    assert owner_from_tags(tags(Owner="Team B", owner="team-a"), DEFAULT_OWNER_TAG_KEYS) == "team-a"
    assert owner_from_tags(tags(Owner="Team B"), DEFAULT_OWNER_TAG_KEYS) == "Team B"
    assert owner_from_tags(tags(team="x"), ("team",)) == "x"


def test_no_owner_tag_or_only_blank_values_means_no_owner() -> None:
    assert owner_from_tags([], DEFAULT_OWNER_TAG_KEYS) == ""
    assert owner_from_tags(tags(CostCenter="42", OWNER="shouting"), DEFAULT_OWNER_TAG_KEYS) == ""  # exact keys
    assert owner_from_tags(tags(owner="  ", contact=" ops@example.com "), DEFAULT_OWNER_TAG_KEYS) == "ops@example.com"


def test_a_tag_value_never_carries_a_full_access_key_id() -> None:
    owner = owner_from_tags(tags(owner="key AKIAOWNERTAGVALUE123 of bob"), DEFAULT_OWNER_TAG_KEYS)
    assert owner == "key AKIA...E123 of bob"  # masked, as everywhere (a unique id: no other test registers it)


def test_a_malformed_answer_names_the_api_and_user() -> None:
    expected = r"IAM GetAccountAuthorizationDetails \(user bob\): a tag lacks its Key or Value"
    with pytest.raises(MalformedResponseError, match=expected):
        owner_from_tags([{"Key": "owner"}], DEFAULT_OWNER_TAG_KEYS, user_name="bob")


def test_the_setting_is_parsed_in_order_and_checked() -> None:
    assert parse_owner_tag_keys("owner,Owner,email,contact") == DEFAULT_OWNER_TAG_KEYS
    assert parse_owner_tag_keys(" team , owner,team ") == ("team", "owner")
    for bad in ("", " , ", "own*er", "aws:createdBy", ",".join(f"k{i}" for i in range(21))):
        with pytest.raises(ValueError, match="expected a comma-separated list of 1 to 20 IAM tag keys"):
            parse_owner_tag_keys(bad)
