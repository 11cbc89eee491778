"""The one secret-free, one-line description of an error, and the one cut of foreign text."""

from __future__ import annotations

from shared.errors import (
    MAX_DETAIL_CHARS,
    CollectorError,
    IamCallError,
    NoSuchEntityError,
    describe_error,
    first_line,
    shorten,
)

KEY_ID = "AKIAQQQQERRORSTEST01"  # registered by no test, so masked, not replaced


def test_foreign_text_is_cut_once_at_the_limit_and_says_so() -> None:
    assert shorten("x" * MAX_DETAIL_CHARS) == "x" * MAX_DETAIL_CHARS
    cut = shorten("x" * (MAX_DETAIL_CHARS + 1))
    assert len(cut) == MAX_DETAIL_CHARS and cut.endswith("...")


def test_first_line_keeps_one_redacted_bounded_line() -> None:
    assert first_line(f"denied for {KEY_ID}\nTroubleshooting: https://aka.ms/...") == "denied for AKIA...ST01"
    assert first_line("  ") == first_line(None) == "no detail"
    assert len(first_line("y" * 1000)) == MAX_DETAIL_CHARS


def test_our_errors_are_described_by_their_message_and_others_by_type_and_first_line() -> None:
    described = describe_error(CollectorError(f"STS AssumeRole failed for {KEY_ID}"))
    assert described == "STS AssumeRole failed for AKIA...ST01"
    assert describe_error(ValueError(f"bad\nsecond line {KEY_ID}")) == "ValueError: bad"
    assert describe_error(RuntimeError()) == "RuntimeError"


def test_a_deleted_entity_is_an_iam_call_error() -> None:
    assert issubclass(NoSuchEntityError, IamCallError) and issubclass(IamCallError, CollectorError)
