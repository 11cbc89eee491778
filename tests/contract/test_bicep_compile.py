"""The Bicep check closest to `bicep build` this machine allows (tests/support/bicep_check/), over every .bicep file
in infra/: grammar, names, property access on known shapes, module calls, decorators, fail() guards.

Every kind of mistake it exists to catch is proven by a broken copy of the project's own Bicep, written with its
layout (infra/ and queries/) into tmp_path so that module paths and load*Content() paths resolve as they do here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import bicep
from tests.support.bicep_check import Diagnostic, check_file, check_text
from tests.support.bicep_check.checker import model

BICEP_FILES = bicep.bicep_files()


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(bicep.INFRA)))
def test_infra_compiles(path: Path) -> None:
    errors = check_file(path)
    assert not errors, "\n".join(map(str, errors))


def test_every_module_file_is_called() -> None:
    """A module nobody calls is never deployed, and its calls are what the module checks above look at."""
    called = {(path.parent / m.module_path).resolve() for path in BICEP_FILES
              for m in model(path).decls if m.kind == "module"}
    for path in BICEP_FILES:
        assert path.name == "main.bicep" or path.resolve() in called, f"{path.name} is called by no module declaration"


def broken_copy(tmp_path: Path, relative: str, old: str, new: str) -> Path:
    """A copy of infra/ and queries/ in tmp_path with one replacement in one file; the path of that file."""
    for folder in ("infra", "queries"):
        shutil.copytree(bicep.ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("aws", "hooks"))
    target = tmp_path / "infra" / relative
    source = target.read_text(encoding="utf-8")
    assert old in source, f"{old!r} is not in {relative}: update this test's broken copy"
    target.write_text(source.replace(old, new, 1), encoding="utf-8")
    return target


def errors_of(path: Path) -> list[Diagnostic]:
    return check_file(path)


def line_of(path: Path, fragment: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if fragment in line)


def assert_reported(errors: list[Diagnostic], path: Path, line: int | None, code: str, symbol: str,
                    *fragments: str) -> Diagnostic:
    """One error names the file, the line (when given), the code and the symbol, and says what is wrong."""
    for error in errors:
        if (error.path == path.resolve() and error.code == code and error.symbol == symbol
                and (line is None or error.line == line) and all(f in error.message for f in fragments)):
            text = str(error)
            assert path.name in text and symbol in text and (line is None or f":{line}:" in text)
            return error
    raise AssertionError(f"expected {code} [{symbol}] at {path.name}:{line} with {fragments}; got:\n"
                         + "\n".join(map(str, errors)))


def test_missing_abbreviation_key_fails(tmp_path: Path) -> None:
    """The defect main.bicep had: abbrs.networkVirtualNetworks read from an abbreviations.json without that key
    (the compiler's BCP053; azd provision stops at `bicep build`)."""
    broken_copy(tmp_path, "abbreviations.json", '  "networkVirtualNetworks": "vnet-",\n', "")
    main = tmp_path / "infra" / "main.bicep"
    error = assert_reported(errors_of(main), main, line_of(main, "abbrs.networkVirtualNetworks"), "BCP053",
                            "abbrs.networkVirtualNetworks", '"networkVirtualNetworks"', "abbreviations.json",
                            '"webSitesFunctions"')
    assert str(tmp_path / "infra" / "abbreviations.json") in error.message


def test_misspelled_abbreviation_key_gets_a_suggestion(tmp_path: Path) -> None:
    main = broken_copy(tmp_path, "main.bicep", "abbrs.keyVaultVaults", "abbrs.keyVaultVault")
    assert_reported(errors_of(main), main, None, "BCP083", "abbrs.keyVaultVault", 'Did you mean "keyVaultVaults"')


def test_wrong_module_output_fails(tmp_path: Path) -> None:
    main = broken_copy(tmp_path, "main.bicep", "monitoring.outputs.logsIngestionRuleId\n",
                       "monitoring.outputs.logsIngestionRuleID\n")
    assert_reported(errors_of(main), main, line_of(main, "logsIngestionRuleID"), "BCP083",
                    "monitoring.outputs.logsIngestionRuleID", "the outputs modules/monitoring.bicep declares",
                    'Did you mean "logsIngestionRuleId"')


def test_module_output_removed_from_the_module_fails(tmp_path: Path) -> None:
    module = broken_copy(tmp_path, "modules/identity.bicep", "output clientId string = identity.properties.clientId\n",
                         "")
    main = tmp_path / "infra" / "main.bicep"
    errors = errors_of(main)
    assert_reported(errors, main, line_of(main, "AZURE_CLIENT_ID: identity.outputs.clientId"), "BCP053",
                    "identity.outputs.clientId", '"clientId"', '"principalId"')
    assert not errors_of(module)


def test_unknown_module_parameter_fails(tmp_path: Path) -> None:
    main = broken_copy(tmp_path, "main.bicep", "    retentionInDays: logRetentionInDays\n    // Shared-key",
                       "    retentionDays: logRetentionInDays\n    // Shared-key")
    errors = errors_of(main)
    assert_reported(errors, main, line_of(main, "retentionDays: logRetentionInDays"), "BCP037",
                    "logAnalytics.params.retentionDays", "modules/log-analytics.bicep",
                    'Did you mean "retentionInDays"')
    # ... and then the parameter it should have been is missing.
    assert_reported(errors, main, None, "BCP035", "logAnalytics.params", '"retentionInDays"')


def test_missing_module_parameter_fails(tmp_path: Path) -> None:
    main = broken_copy(tmp_path, "main.bicep", "    storageAccountName: storage.outputs.name\n    keyVaultName",
                       "    keyVaultName")
    assert_reported(errors_of(main), main, None, "BCP035", "network.params", '"storageAccountName"',
                    "modules/network.bicep")


def test_module_parameter_of_the_wrong_type_or_value_fails(tmp_path: Path) -> None:
    main = broken_copy(tmp_path, "main.bicep", "publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'",
                       "publicNetworkAccess: vnetEnabled ? 'Disable' : 'Enabled'")
    assert_reported(errors_of(main), main, None, "BCP036", "storage.params.publicNetworkAccess", "'Disable'",
                    "@allowed")
    main = broken_copy(tmp_path / "2", "main.bicep", "maximumInstanceCount: maximumInstanceCount\n",
                       "maximumInstanceCount: '40'\n")
    assert_reported(errors_of(main), main, None, "BCP036", "functionApp.params.maximumInstanceCount", '"int"')


def test_undeclared_variable_fails(tmp_path: Path) -> None:
    main = broken_copy(tmp_path, "main.bicep", "tags: checkedTags", "tags: checkTags")
    assert_reported(errors_of(main), main, line_of(main, "tags: checkTags"), "BCP082", "checkTags",
                    'Did you mean "checkedTags"')
    module = broken_copy(tmp_path / "2", "modules/alerts.bicep", "actionGroups: actionGroups\n",
                         "actionGroups: emailGroups\n")
    assert_reported(errors_of(module), module, line_of(module, "emailGroups"), "BCP057", "emailGroups",
                    "does not exist")
    # The module's error stops main too, as the compiler's BCP104 does.
    assert_reported(errors_of(tmp_path / "2" / "infra" / "main.bicep"), tmp_path / "2" / "infra" / "main.bicep",
                    None, "BCP104", "alerts", "modules/alerts.bicep", "emailGroups")


def test_default_outside_allowed_fails(tmp_path: Path) -> None:
    main = broken_copy(tmp_path, "main.bicep", "param principalType string = 'User'",
                       "param principalType string = 'user'")
    assert_reported(errors_of(main), main, line_of(main, "param principalType"), "BCP033", "principalType",
                    "'user' is not allowed")


def test_default_outside_bounds_fails(tmp_path: Path) -> None:
    main = broken_copy(tmp_path, "main.bicep", "param iamConcurrency int = 24", "param iamConcurrency int = 33")
    assert_reported(errors_of(main), main, line_of(main, "param iamConcurrency"), "BCP327", "iamConcurrency",
                    "maximum allowable value is 32")
    module = broken_copy(tmp_path / "2", "modules/keyvault.bicep", "@minValue(7)", "@minValue(91)")
    assert_reported(errors_of(module), module, None, "BCP331", "softDeleteRetentionInDays", "minimum of 91")
    module = broken_copy(tmp_path / "3", "modules/storage.bicep", "param name string",
                         "@minLength(30)\nparam name int")
    assert_reported(errors_of(module), module, None, "BCP124", "@minLength", '"int"')


def test_unreferenced_fail_guard_fails(tmp_path: Path) -> None:
    """A guard nobody reads is never evaluated: the combination it should refuse deploys."""
    main = broken_copy(tmp_path, "main.bicep", "guardWebIdentityAudience && guardLegacySink && guardVnetKeyVault",
                       "guardWebIdentityAudience && guardLegacySink")
    assert_reported(errors_of(main), main, line_of(main, "var guardVnetKeyVault"), "fail-guard", "guardVnetKeyVault",
                    "calls fail()", "never evaluates it")
    # Read only by a variable nothing deployed reads: still never evaluated.
    main = broken_copy(tmp_path / "2", "main.bicep", "  tags: checkedTags\n", "  tags: tags\n")
    errors = errors_of(main)
    for guard in ("guardWebIdentityAudience", "guardLegacySink", "guardVnetKeyVault"):
        assert_reported(errors, main, line_of(main, f"var {guard}"), "fail-guard", guard, "only checkedTags read it")


def test_syntax_error_fails(tmp_path: Path) -> None:
    main = broken_copy(tmp_path, "main.bicep", "  tags: checkedTags\n}\n", "  tags: checkedTags\n\n")
    errors = errors_of(main)
    assert errors and all(e.code in ("syntax", "BCP018", "BCP019", "BCP236") for e in errors), errors
    module = broken_copy(tmp_path / "2", "modules/storage.bicep", "    accessTier: 'Hot'\n",
                         "    accessTier: 'Hot' allowBlobPublicAccess: false\n")
    assert_reported(errors_of(module), module, line_of(module, "accessTier: 'Hot'"), "BCP236",
                    "allowBlobPublicAccess: false", "new line or comma")
    module = broken_copy(tmp_path / "3", "modules/identity.bicep", "  location: location\n",
                         "  location: location)\n")
    errors = errors_of(module)
    assert errors and errors[0].line == line_of(module, "location: location)"), errors


def test_other_compiler_errors_fail(tmp_path: Path) -> None:
    """A few more of the compiler's errors, on the project's files as they are."""
    path = bicep.INFRA / "main.bicep"
    source = path.read_text(encoding="utf-8")

    def errors(old: str, new: str) -> list[Diagnostic]:
        assert old in source, old
        return check_text(path, source.replace(old, new, 1))

    codes = {
        "BCP071": errors("toLower(uniqueString(subscription().id, environmentName, location))",
                         "toLower(uniqueString(subscription().id, environmentName, location), 1)"),
        "BCP057": errors("toLower(uniqueString(", "toLowr(uniqueString("),
        "BCP028": errors("var webIdentity =", "var tags2 = 1\nvar tags = 2\nvar webIdentity ="),
        "BCP063": errors("tags: checkedTags", "tags: AZURE_LOCATION"),
        "BCP072": errors("param resourceGroupName string = ''", "param resourceGroupName string = tags.x"),
        "BCP080": errors("var webIdentity = awsAuthMode == 'web_identity'",
                         "var webIdentity = effectiveExternalId == ''"),
        "BCP091": errors("loadJsonContent('./abbreviations.json')", "loadJsonContent('./abbreviation.json')"),
        "BCP053": errors("subscription().subscriptionId", "subscription().subscriptionID"),
        "BCP065": errors("guid(subscription().id, environmentName, 'aws-external-id')", "newGuid()"),
    }
    for code, found in codes.items():
        assert any(e.code in (code, "BCP083") for e in found), f"{code} not reported: {found}"


def test_loop_variable_over_object_literals_is_checked(tmp_path: Path) -> None:
    """sentinel.bicep's rules are object literals: a property no rule has is an error on the loop variable."""
    module = broken_copy(tmp_path, "modules/sentinel.bicep", "displayName: rule.displayName",
                         "displayName: rule.displayname")
    assert_reported(errors_of(module), module, line_of(module, "rule.displayname"), "BCP083", "rule.displayname",
                    'Did you mean "displayName"')


def test_user_defined_type_properties_are_checked(tmp_path: Path) -> None:
    """The project declares no type of its own yet; a small file shows the first one will be checked."""
    path = tmp_path / "typed.bicep"
    source = (
        "type alertSpec = {\n  name: string\n  severity: int\n}\n\n"
        "param alert alertSpec\n\n"
        "output display string = '${alert.name} (${alert.severty})'\n"
    )
    path.write_text(source, encoding="utf-8")
    assert_reported(check_file(path), path, 8, "BCP083", "alert.severty", 'Did you mean "severity"', "alertSpec")
    path.write_text(source.replace("alert.severty", "alert.severity"), encoding="utf-8")
    assert not check_file(path)


def test_resource_property_access_is_checked_against_type_data(tmp_path: Path) -> None:
    module = broken_copy(tmp_path, "modules/storage.bicep", "storage.properties.primaryEndpoints.blob",
                         "storage.properties.primaryEndpoints.blobs")
    assert_reported(errors_of(module), module, None, "BCP083", "storage.properties.primaryEndpoints.blobs",
                    'Did you mean "blob"', "ARM fails the deployment")


def test_whole_infra_checks_fast() -> None:
    """Parsed once per text and cached: the whole folder, modules followed from main, in well under a second on an
    idle machine (the bound leaves room for a loaded one)."""
    import time

    started = time.perf_counter()
    for path in BICEP_FILES:
        check_text(path, path.read_text(encoding="utf-8") + "\n// fresh text, not cached\n")
    assert time.perf_counter() - started < 5.0  # about 0.3 s on an idle machine
