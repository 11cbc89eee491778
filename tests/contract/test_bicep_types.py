"""Every ``resource`` block in infra/ checked against Azure's published type data of exactly its type@apiVersion
(tests/data/azure-types/, copied from Azure/bicep-types-az by scripts/refresh_azure_types.sh): property names at every
depth, literal and enum values, read-only and required properties. Any module added under infra/ is covered.

The mutation tests feed the checker broken copies of the project's own Bicep and prove each kind of mistake fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import azure_types, bicep

BICEP_FILES = bicep.bicep_files()
MODULES = bicep.INFRA / "modules"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(bicep.INFRA)))
def test_resources_match_azure_type_data(path: Path) -> None:
    errors = azure_types.check_text(path)
    assert not errors, "\n".join(errors)


def test_every_resource_is_checked_against_a_known_type() -> None:
    checked = 0
    for path in BICEP_FILES:
        for resource in (bicep.parse(path).get("resources") or {}).values():
            key = f"{resource['type']}@{resource['api_version']}".lower()
            assert key in azure_types.resource_types(), f"{path.name}: {key} has no type data"
            checked += 1
    assert checked >= 20


def errors_of_mutant(name: str, old: str, new: str) -> list[str]:
    path = MODULES / name
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {name}: update the mutant"
    return azure_types.check_text(path, text.replace(old, new, 1))


def assert_reported(errors: list[str], *fragments: str) -> None:
    assert any(all(f in e for f in fragments) for e in errors), f"expected {fragments} in {errors}"


def test_misspelled_property_fails() -> None:
    assert_reported(
        errors_of_mutant("alerts.bicep", "evaluationFrequency: 'PT1H'", "evaluationFrequncy: 'PT1H'"),
        "rootKey",
        "properties.evaluationFrequncy",
        "is not a property",
    )


def test_misspelled_nested_property_fails() -> None:
    assert_reported(
        errors_of_mutant("alerts.bicep", "timeAggregation: 'Count'", "timeAgregation: 'Count'"),
        "properties.criteria.allOf[0].timeAgregation",
        "is not a property",
    )
    assert_reported(
        errors_of_mutant("storage.bicep", "minimumTlsVersion", "minimumTLSVersion"), "did you mean 'minimumTlsVersion'"
    )


def test_wrong_enum_value_fails() -> None:
    # Closed enums (a union of literals only): an extensible enum (literals plus any string) accepts any string,
    # as the Bicep compiler does.
    assert_reported(errors_of_mutant("storage.bicep", "accessTier: 'Hot'", "accessTier: 'Warm'"), "'Warm'")
    assert_reported(errors_of_mutant("keyvault.bicep", "name: 'standard'", "name: 'standad'"), "sku.name", "'standad'")


def test_missing_required_property_fails() -> None:
    assert_reported(
        errors_of_mutant("keyvault.bicep", "tenantId: subscription().tenantId", "tenant: subscription().tenantId"),
        "properties.tenantId",
        "is required",
    )
    assert_reported(
        errors_of_mutant("workbook.bicep", "category: 'workbook'", ""), "properties.category", "is required"
    )
    assert_reported(errors_of_mutant("storage.bicep", "  sku: {", "  skuu: {"), "resource.sku", "is required")


def test_read_only_property_fails() -> None:
    assert_reported(
        errors_of_mutant("storage.bicep", "minimumTlsVersion: 'TLS1_2'", "provisioningState: 'Succeeded'"),
        "provisioningState",
        "is read-only",
    )


def test_wrong_literal_type_fails() -> None:
    assert_reported(errors_of_mutant("alerts.bicep", "severity: 1", "severity: '1'"), "severity")
    assert_reported(errors_of_mutant("alerts.bicep", "enabled: true", "enabled: 'yes'"), "enabled", "not a boolean")
    assert_reported(errors_of_mutant("storage.bicep", "kind: 'StorageV2'", "kind: ['StorageV2']"), "kind")


def test_api_version_without_type_data_fails() -> None:
    assert_reported(
        errors_of_mutant("storage.bicep", "storageAccounts@2023-05-01' = {", "storageAccounts@2099-01-01' = {"),
        "Microsoft.Storage/storageAccounts@2099-01-01 is not in the Azure type data",
    )
