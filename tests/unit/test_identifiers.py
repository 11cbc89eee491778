"""Identifiers are validated whole and in ASCII (audit finding F14): other scripts' digits and a trailing newline pass
neither the shared patterns nor any pattern in shared/ (a scan of the source keeps it so)."""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.collection.transform import parse_key_metadata
from shared.config.settings import load_settings
from shared.errors import MalformedResponseError, SettingsError
from shared.findings.exceptions_file import ExceptionsFileError, parse_exceptions
from shared.identifiers import (
    is_access_key_id,
    is_account_id,
    is_fingerprint,
    is_organization_id,
    is_organizational_unit_id,
    is_root_id,
)
from tests.support.settings_env import minimal

ROOT = Path(__file__).resolve().parents[2]
# twelve Arabic-Indic digits (U+0661...): \d without re.ASCII accepts them
ARABIC_INDIC = "".join(chr(0x0660 + int(d)) for d in "123456789012")
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("check", "good"),
    [
        (is_account_id, "123456789012"),
        (is_access_key_id, "AKIAIOSFODNN7EXAMPLE"),
        (is_fingerprint, "0123456789abcdef"),
        (is_organization_id, "o-a1b2c3d4e5"),
        (is_organizational_unit_id, "ou-ab12-cd34ef56"),
        (is_root_id, "r-ab12"),
    ],
)
def test_identifiers_are_whole_and_ascii(check: object, good: str) -> None:
    assert callable(check)
    assert check(good)
    for bad in (good + "\n", "\n" + good, good + " ", good.upper() if good != good.upper() else good.lower(), ""):
        if bad != good:
            assert not check(bad), repr(bad)
    assert not check(ARABIC_INDIC)
    assert not check(None) and not check(123456789012)


def entry(**fields: str) -> str:
    return json.dumps({"version": 1, "exceptions": [{"finding": "unused", "reason": "r", "approvedBy": "a", **fields}]})


def test_arabic_indic_digits_are_no_account_id_anywhere() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(minimal(AWS_ACCOUNTS=ARABIC_INDIC, AWS_ROLE_ARN=f"arn:aws:iam::{ARABIC_INDIC}:role/R"))
    assert {p.split(":")[0] for p in info.value.problems} == {"AWS_ROLE_ARN", "AWS_ACCOUNTS"}
    with pytest.raises(ExceptionsFileError, match="accountId: expected a 12-digit account id"):
        parse_exceptions(entry(accountId=ARABIC_INDIC, expires="2027-01-01"), source="f", now=NOW)


def test_arabic_indic_digits_are_no_expiry_date() -> None:
    with pytest.raises(ExceptionsFileError, match="expires: expected a date YYYY-MM-DD"):
        parse_exceptions(entry(accountId="123456789012", expires=ARABIC_INDIC[:4] + "-" + ARABIC_INDIC[9:11] + "-"
                               + ARABIC_INDIC[9:11]), source="f", now=NOW)


def test_a_key_id_with_a_trailing_newline_is_malformed() -> None:
    key = {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE\n", "Status": "Active", "CreateDate": NOW}
    with pytest.raises(MalformedResponseError, match="AccessKeyId is not an access key id"):
        parse_key_metadata("alice", key)


# --- the source scan -------------------------------------------------------------------------------------------------

_RE_CALLS = {"compile", "match", "fullmatch", "search", "sub", "subn", "split", "findall", "finditer"}
_CLASSES = re.compile(r"(?<!\\)(?:\\\\)*\\[dwsbDWSB]")


def regex_calls(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, pattern, flag names) of every re.<call>(literal pattern, ...) in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _RE_CALLS
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re" and node.args):
            continue
        pattern = node.args[0]
        if isinstance(pattern, ast.Constant) and isinstance(pattern.value, str):
            flags = [n.attr for arg in [*node.args[1:], *(k.value for k in node.keywords)]
                     for n in ast.walk(arg) if isinstance(n, ast.Attribute)]
            found.append((node.lineno, pattern.value, flags))
    return found


def problems_of(path: Path) -> list[str]:
    problems = []
    for line, pattern, flags in regex_calls(path):
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{line}"
        unicode_ok = {"ASCII", "A", "UNICODE", "U"} & set(flags) or pattern.startswith(("(?a", "(?u"))
        if _CLASSES.search(pattern) and not unicode_ok:
            problems.append(f"{where}: \\d, \\w, \\s or \\b without re.ASCII (or an explicit re.UNICODE)")
        if pattern.endswith("$") and not pattern.endswith("\\$"):
            problems.append(f"{where}: ends in $ (a trailing newline matches): use fullmatch, or \\Z")
    return problems


def test_no_pattern_in_shared_admits_other_scripts_digits_or_a_trailing_newline() -> None:
    found = [p for path in sorted((ROOT / "shared").rglob("*.py")) for p in problems_of(path)]
    assert found == []


def test_the_scan_catches_both_broken_copies(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text('import re\nA = re.compile(r"\\d{12}")\nB = re.compile(r"^[0-9]{12}$", re.ASCII)\n'
                      'C = re.compile(r"[\\w.]+", re.ASCII)\nD = re.compile(r"\\s+", re.UNICODE)\n', encoding="utf-8")
    found = problems_of(broken)
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in found] == ["2", "3"]
