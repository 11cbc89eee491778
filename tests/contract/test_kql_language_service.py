"""Every KQL text the product ships compiles with Microsoft's Kusto language service, with zero errors.

The texts: queries/*.kql (any file added there is covered), each ``query`` of a resource in infra/**/*.bicep (the
alert rules; a Sentinel module's rules too), each query item of the workbook. The schema: our two tables from
shared/records.py and AWSCloudTrail from tests/data/schemas/. The mutation tests prove that the check catches a
misspelled column, a type error, an unknown table and bad syntax.
"""

from __future__ import annotations

import pytest

from shared.records import KEYS_TABLE, RUNS_TABLE
from tests.support import kusto

SHIPPED = kusto.shipped_kql()


@pytest.fixture(scope="module")
def compiled() -> dict[str, list[dict[str, object]]]:
    return kusto.compile_kql(SHIPPED)


def test_every_kind_of_shipped_text_is_found() -> None:
    files = {key for key in SHIPPED if key.startswith("queries/")}
    assert files == {str(p.relative_to(kusto.ROOT)) for p in kusto.query_files()} and files
    assert any(key.startswith("infra/modules/alerts.bicep:") for key in SHIPPED), "no alert rule query found"
    assert any(key.startswith("infra/workbook/") for key in SHIPPED), "no workbook query found"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_kql_compiles_without_errors(name: str, compiled: dict[str, list[dict[str, object]]]) -> None:
    errors = kusto.errors(compiled[name], SHIPPED[name])  # type: ignore[arg-type]
    assert not errors, f"{name}:\n" + "\n".join(errors)


def assert_error(text: str, code: str, fragment: str) -> None:
    diagnostics = kusto.compile_kql({"mutant": text})["mutant"]
    found = [(d["code"], text[d["start"] : d["start"] + d["length"]]) for d in diagnostics if d["severity"] == "Error"]
    assert (code, fragment) in found, f"expected {code} at {fragment!r}, got {found}"


# Each mutant derives from a shipped query, so the check is shown failing on the product's own texts.
ROTATION_DUE = (kusto.QUERIES / "rotation-due.kql").read_text(encoding="utf-8")


def test_misspelled_column_fails() -> None:
    assert "RotationDue" in ROTATION_DUE
    assert_error(ROTATION_DUE.replace("RotationDue", "RotatonDue"), "KS142", "RotatonDue")


def test_type_error_fails() -> None:
    # AgeDays is int: comparing it with a string is an error the old name-only check could not see.
    assert_error(f"{KEYS_TABLE.table} | where AgeDays > '90'", "KS106", ">")
    assert_error(f"{RUNS_TABLE.table} | summarize sum(Status)", "KS138", "Status")


def test_unknown_table_and_bad_syntax_fail() -> None:
    assert_error("AwsIamAccessKey_CL | take 1", "KS204", "AwsIamAccessKey_CL")
    diagnostics = kusto.compile_kql({"mutant": f"{KEYS_TABLE.table} | where"})["mutant"]
    assert any(d["severity"] == "Error" for d in diagnostics)


def test_cloudtrail_schema_is_declared() -> None:
    assert not kusto.compile_kql({"ok": "AWSCloudTrail | project UserIdentityAccessKeyId, EventName"})["ok"]
    assert_error("AWSCloudTrail | project UserIdentityAccessKey", "KS142", "UserIdentityAccessKey")


def test_every_replacement_in_a_shipped_query_finds_its_text() -> None:
    replacements = kusto.query_replacements()
    assert len(replacements) >= 2  # the alert rules' lookbacks (and the Sentinel hunting queries' windows)
    missing = [f"{where}: {old!r}" for where, old, present in replacements if not present]
    assert not missing, "replace() finds nothing, the query ships unchanged:\n" + "\n".join(missing)
