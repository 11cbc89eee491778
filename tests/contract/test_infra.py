"""Invariants of the infrastructure (infra/), checked without any cloud and without a Bicep compiler.

Every .bicep file is parsed with pycep-parser; the tests then check what the issue asks the infrastructure to
guarantee: the custom tables and the data collection rule declare exactly the fields of ``shared.records`` (so code
and infrastructure cannot drift), every role assignment is named with guid(), the workspace key is read only on the
opt-in legacy path, every app setting the code reads is set with the contract's default, and the security settings
(https only, no shared keys, no local auth, RBAC vault with soft delete; purge protection on request) are in place.
The CloudFormation templates are loaded with cfn-lint's decoder and their IAM policies compared with the
least-privilege sets.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from botocore import xform_name

pycep = pytest.importorskip("pycep")
cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")

from shared.config import settings as settings_module  # noqa: E402
from shared.records import (  # noqa: E402
    CREDENTIALS_TABLE,
    DIGEST_RUNS_STREAM,
    DIGEST_RUNS_TABLE,
    KEYS_TABLE,
    RUNS_TABLE,
    CredentialRecord,
    DigestRunRecord,
    KeyRecord,
    RunRecord,
    columns,
)
from tests.support.bicep import walk as walk_tree  # noqa: E402
from tests.support.contract import CONTRACT_VALUES  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

# Settings the code requires (no default in shared/config/settings.py) that the infrastructure must set.
REQUIRED_SETTINGS = {
    "AWS_ROLE_ARN",
    "KEY_VAULT_URL",
    "LOGS_INGESTION_ENDPOINT",
    "LOGS_INGESTION_RULE_ID",
    "AZURE_CLIENT_ID",
    "COLLECTOR_SCHEDULE",
}

ROLE = {
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "09976791-48a7-449e-bb21-39d1a415f350": "Communication and Email Service Owner",
    "73c42c96-874c-492b-b04d-ab87d138a893": "Log Analytics Reader",
}


# --------------------------------------------------------------------------------------------------------------------
# Bicep helpers


@cache
def bicep(path: Path) -> dict[str, Any]:
    return pycep.BicepParser().parse(text=path.read_text())


def main() -> dict[str, Any]:
    return bicep(INFRA / "main.bicep")


def module_file(name: str) -> Path:
    return MODULES / f"{name}.bicep"


def body(resource_or_module: dict[str, Any]) -> dict[str, Any]:
    """The object of a resource or module, through an `if (...)` condition."""
    config = resource_or_module["config"]
    return config["config"] if "condition" in config else config


def condition(resource_or_module: dict[str, Any]) -> Any:
    return resource_or_module["config"].get("condition")


def resources(path: Path, type_: str | None = None, *, existing: bool = False) -> dict[str, dict[str, Any]]:
    found = bicep(path).get("resources", {})
    return {
        name: r
        for name, r in found.items()
        if (type_ is None or r["type"].lower() == type_.lower()) and r["existing"] == existing
    }


def one_resource(path: Path, type_: str) -> dict[str, Any]:
    found = resources(path, type_)
    assert len(found) == 1, f"{path.name}: expected one {type_}, found {list(found)}"
    return body(next(iter(found.values())))


def main_module(path: str) -> dict[str, Any]:
    """The (only) invocation of a module by main.bicep, by the module's path."""
    found = [m for m in main()["modules"].values() if m["detail"]["path"] == path]
    assert len(found) == 1, f"main.bicep should call {path} once, calls it {len(found)} times"
    return found[0]


def main_env() -> dict[str, Any]:
    """main.bicep's variables and parameter defaults, resolved to literals where they are literals."""
    env: dict[str, Any] = {}
    for name, param in main()["parameters"].items():
        if param["default"] is not None and not isinstance(param["default"], dict):
            env[name] = param["default"]
    for name, var in main()["variables"].items():
        env[name] = var["value"]
    return env


def resolve(expr: Any, env: dict[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """Substitute identifiers and '${...}' interpolations of simple identifiers found in env, recursively."""
    if isinstance(expr, str):
        if expr in env and expr not in seen:
            return resolve(env[expr], env, seen | {expr})
        return interpolate(expr, env, seen)
    if isinstance(expr, list):
        return [resolve(e, env, seen) for e in expr]
    if isinstance(expr, dict):
        return {interpolate(k.strip("'"), env, seen): resolve(v, env, seen) for k, v in expr.items()}
    return expr


def interpolate(text: str, env: dict[str, Any], seen: frozenset[str]) -> str:
    def value(m: re.Match[str]) -> str:
        name = m[1]
        return str(resolve(env[name], env, seen | {name})) if name in env and name not in seen else m[0]

    return re.sub(r"\$\{(\w+)\}", value, text)


def module_env(path: str) -> dict[str, Any]:
    """The parameters main.bicep passes to a module, resolved against main.bicep's variables."""
    env = main_env()
    return {name: resolve(value, env) for name, value in body(main_module(path))["params"].items()}


def list_function_calls(node: Any) -> list[str]:
    """Names of list*() resource functions (listKeys, listSecrets, ...) used anywhere in a parsed tree."""
    calls = []
    for _, n in walk_tree(node):
        if isinstance(n, dict) and n.get("type") == "function_accessor":
            calls.append(n["operands"]["func_name"])
        if isinstance(n, dict) and isinstance(n.get("type"), str) and n["type"].lower().startswith("list"):
            calls.append(n["type"])
    return calls


def as_columns(value: Any) -> list[tuple[str, str]]:
    assert isinstance(value, list), f"columns should be a literal array, got {value!r}"
    return [(c["name"], c["type"]) for c in value]


# --------------------------------------------------------------------------------------------------------------------
# Parsing


def test_there_are_bicep_files() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in BICEP_FILES}
    assert {"main.bicep", "modules/function-app.bicep", "modules/monitoring.bicep"} <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_bicep_file_parses(path: Path) -> None:
    parsed = bicep(path)
    assert parsed.get("resources") or parsed.get("modules")


def test_every_module_main_calls_exists() -> None:
    for module in main()["modules"].values():
        assert (INFRA / module["detail"]["path"]).is_file(), module["detail"]["path"]


def test_azd_files() -> None:
    azure_yaml = (ROOT / "azure.yaml").read_text()
    assert re.search(r"^services:\n  api:\n(    .*\n)*    project: \.\n", azure_yaml, re.M)
    assert re.search(r"^    language: python$", azure_yaml, re.M)
    assert re.search(r"^    host: function$", azure_yaml, re.M)
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text())
    assert abbreviations["webSitesFunctions"] == "func-"


def test_parameters_file_maps_azd_variables_with_the_bicep_defaults() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    bicep_params = main()["parameters"]
    assert set(parameters) <= set(bicep_params), "main.parameters.json sets a parameter main.bicep does not declare"
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    for name, entry in parameters.items():
        m = re.fullmatch(r"\$\{(\w+)(?:=(.*))?\}", entry["value"])
        assert m, f"{name}: expected an azd ${{VARIABLE}} or ${{VARIABLE=default}}, got {entry['value']!r}"
        default = bicep_params[name]["default"]
        if m[2] is not None and default is not None and not isinstance(default, dict):
            expected = str(default).lower() if isinstance(default, bool) else str(default)
            assert m[2] == expected, f"{name}: main.parameters.json default {m[2]!r} != main.bicep {expected!r}"


# --------------------------------------------------------------------------------------------------------------------
# Tables and data collection rule: the one source of truth is shared/records.py


def test_main_declares_the_contract_tables_and_streams() -> None:
    env = main_env()
    assert env["keysTableName"] == KEYS_TABLE.table
    assert env["runsTableName"] == RUNS_TABLE.table
    assert env["keysStreamName"] == settings_module.DEFAULTS["LOGS_INGESTION_KEYS_STREAM"] == "Custom-AwsIamAccessKeys"
    assert env["runsStreamName"] == settings_module.DEFAULTS["LOGS_INGESTION_RUNS_STREAM"]
    assert as_columns(env["keyColumns"]) == columns(KeyRecord)
    assert as_columns(env["runColumns"]) == columns(RunRecord)
    assert env["digestRunsTableName"] == DIGEST_RUNS_TABLE.table and env["digestRunsStreamName"] == DIGEST_RUNS_STREAM
    assert as_columns(env["digestRunColumns"]) == columns(DigestRunRecord)
    # No setting names the credentials stream: the records do (shared/records.py), and main.bicep follows them.
    assert env["credentialsTableName"] == CREDENTIALS_TABLE.table
    assert env["credentialsStreamName"] == CREDENTIALS_TABLE.stream == "Custom-AwsIamCredentials"
    assert as_columns(env["credentialColumns"]) == columns(CredentialRecord)


def test_custom_tables_have_exactly_the_record_columns() -> None:
    path = module_file("custom-tables")
    env = module_env("modules/custom-tables.bicep")
    tables = {}
    for r in resources(path, "Microsoft.OperationalInsights/workspaces/tables").values():
        config = resolve(body(r), env)
        assert config["name"] == config["properties"]["schema"]["name"]
        tables[config["name"]] = as_columns(config["properties"]["schema"]["columns"])
    assert tables == {KEYS_TABLE.table: columns(KeyRecord), RUNS_TABLE.table: columns(RunRecord),
                      DIGEST_RUNS_TABLE.table: columns(DigestRunRecord),
                      CREDENTIALS_TABLE.table: columns(CredentialRecord)}


def test_data_collection_rule_streams_have_exactly_the_record_columns_and_flow_to_their_tables() -> None:
    env = module_env("modules/monitoring.bicep")
    rule = resolve(one_resource(module_file("monitoring"), "Microsoft.Insights/dataCollectionRules"), env)
    properties = rule["properties"]
    keys_stream = settings_module.DEFAULTS["LOGS_INGESTION_KEYS_STREAM"]
    runs_stream = settings_module.DEFAULTS["LOGS_INGESTION_RUNS_STREAM"]
    credentials_stream = CREDENTIALS_TABLE.stream
    declared = {name: as_columns(s["columns"]) for name, s in properties["streamDeclarations"].items()}
    assert declared == {keys_stream: columns(KeyRecord), runs_stream: columns(RunRecord),
                        DIGEST_RUNS_STREAM: columns(DigestRunRecord), credentials_stream: columns(CredentialRecord)}
    flows = {tuple(f["streams"]): f for f in properties["dataFlows"]}
    assert set(flows) == {(keys_stream,), (runs_stream,), (DIGEST_RUNS_STREAM,), (credentials_stream,)}
    assert flows[(DIGEST_RUNS_STREAM,)]["outputStream"] == f"Custom-{DIGEST_RUNS_TABLE.table}"
    assert flows[(keys_stream,)]["outputStream"] == f"Custom-{KEYS_TABLE.table}"
    assert flows[(runs_stream,)]["outputStream"] == f"Custom-{RUNS_TABLE.table}"
    assert flows[(credentials_stream,)]["outputStream"] == f"Custom-{CREDENTIALS_TABLE.table}"
    destinations = {d["name"] for d in properties["destinations"]["logAnalytics"]}
    for flow in flows.values():
        assert flow["transformKql"] == "source"
        assert set(flow["destinations"]) <= destinations
    # Kind Direct: the rule has its own Logs Ingestion endpoint; a data collection endpoint only with private link.
    assert rule["kind"] == "Direct"
    # with the defaults (vnetEnabled false) the condition resolves to false: no endpoint id
    assert properties["dataCollectionEndpointId"] == {"operator": {"type": "conditional", "operands": {
        "condition": False, "true_value": {"operator": {"type": "property_accessor",
            "operands": {"operand_1": "dataCollectionEndpoint", "operand_2": "id"}}}, "false_value": None}}}


def test_rule_is_created_after_the_tables() -> None:
    assert "customTables" in body(main_module("modules/monitoring.bicep")).get("dependsOn", [])


# --------------------------------------------------------------------------------------------------------------------
# Role assignments


def role_assignments() -> list[tuple[Path, str, dict[str, Any]]]:
    found = []
    for path in BICEP_FILES:
        for name, r in resources(path, "Microsoft.Authorization/roleAssignments").items():
            found.append((path, name, r))
    return found


def test_every_role_assignment_is_named_guid_of_scope_principal_role() -> None:
    assert role_assignments()
    for path, name, r in role_assignments():
        config = body(r)
        function = config["name"].get("function", {}) if isinstance(config["name"], dict) else {}
        assert function.get("type") == "guid", f"{path.name}:{name}: name must be guid(scope, principal, role)"
        args = list(function["parameters"].values())
        assert len(args) == 3, f"{path.name}:{name}: guid() needs exactly scope, principal and role"
        scope, principal, role = args
        assert scope == {
            "operator": {"type": "property_accessor", "operands": {"operand_1": config["scope"], "operand_2": "id"}}
        }
        assert principal == config["properties"]["principalId"]
        role_definition = config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        assert role == role_definition


def test_role_assignments_are_the_least_privilege_set() -> None:
    path = module_file("role-assignments")
    granted = set()
    for where, _, r in role_assignments():
        roles = bicep(where)["variables"]["roles"]["value"]  # each file's own table of role ids
        config = body(r)
        accessor = config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        assert accessor["operator"]["operands"]["operand_1"] == "roles", "role ids come from the roles table"
        role = roles[accessor["operator"]["operands"]["operand_2"]]
        granted.add((ROLE[role], config["scope"], config["properties"]["principalId"]))
    assert granted == {
        ("Key Vault Secrets User", "vault", "principalId"),
        ("Monitoring Metrics Publisher", "dataCollectionRule", "principalId"),
        ("Monitoring Metrics Publisher", "applicationInsights", "principalId"),
        ("Storage Blob Data Owner", "storage", "principalId"),
        ("Storage Table Data Contributor", "storage", "principalId"),  # the host's diagnostic events (AZFD0003)
        ("Key Vault Secrets Officer", "vault", "userPrincipalId"),  # the deploying user, to set the AWS key
        # Owner digests: send through the one Communication Services resource, read the one workspace.
        ("Communication and Email Service Owner", "communicationService", "principalId"),
        ("Log Analytics Reader", "workspace", "principalId"),
    }
    user_grant = resources(path, "Microsoft.Authorization/roleAssignments")["userSecretsOfficer"]
    assert condition(user_grant) is not None, "the user's grant is skipped when AZURE_PRINCIPAL_ID is empty"


# --------------------------------------------------------------------------------------------------------------------
# No secret anywhere by default


def test_list_functions_only_on_the_opt_in_legacy_path() -> None:
    for path in BICEP_FILES:
        calls = list_function_calls(bicep(path))
        text_calls = re.findall(r"\.\s*(list\w*)\s*\(", path.read_text(), re.I)
        if path.name == "legacy-workspace-key.bicep":
            assert calls == ["listKeys"] == text_calls
        else:
            assert not calls and not text_calls, f"{path.name} reads keys: {calls or text_calls}"
    legacy = main_module("modules/legacy-workspace-key.bicep")
    assert condition(legacy) == "enableLegacyDataCollector"
    assert main()["parameters"]["enableLegacyDataCollector"]["default"] is False


def test_legacy_key_goes_only_into_key_vault() -> None:
    path = module_file("legacy-workspace-key")
    assert list(resources(path)) == ["workspaceKeySecret"]
    secret = one_resource(path, "Microsoft.KeyVault/vaults/secrets")
    assert "listKeys" in list_function_calls(secret["properties"]["value"])
    assert "primarySharedKey" in json.dumps(secret["properties"]["value"])
    assert body(main_module("modules/legacy-workspace-key.bicep"))["params"]["secretName"] == (
        "logAnalyticsWorkspaceKeySecretName"
    )
    assert (
        main()["parameters"]["logAnalyticsWorkspaceKeySecretName"]["default"]
        == (settings_module.DEFAULTS["LOG_ANALYTICS_WORKSPACE_KEY_SECRET"])
    )
    # The only output of that module is the secret's name.
    assert list(bicep(path)["outputs"]) == ["secretName"]


def test_no_secure_or_secret_outputs_and_no_keys_or_connection_strings_anywhere() -> None:
    for path in BICEP_FILES:
        parsed = bicep(path)
        for name, output in parsed.get("outputs", {}).items():
            assert not any(d["type"] == "secure" for d in output["decorators"]), f"{path.name}: @secure() output {name}"
            assert not re.search(r"key$|secret(?!name)|password|sharedkey|accountkey|sas", name, re.I), (
                f"{path.name}: output {name} looks like a secret"
            )
        text = path.read_text()
        assert not re.search(r"AccountKey=|SharedAccessSignature|listAccountSas|listServiceSas", text)
        assert not re.search(r"InstrumentationKey", text), f"{path.name}: use the connection string with Entra ID auth"


# --------------------------------------------------------------------------------------------------------------------
# App settings


def app_settings() -> dict[str, Any]:
    """Every app setting of the Function App, resolved as far as literals go (main.bicep + function-app.bicep)."""
    config = one_resource(module_file("function-app"), "Microsoft.Web/sites/config")
    assert config["name"] == "appsettings"
    env = module_env("modules/function-app.bicep") | main_env()
    found: dict[str, Any] = {}

    def collect(expr: Any) -> None:
        if isinstance(expr, str) and expr in env:
            collect(env[expr])
        elif isinstance(expr, dict) and "function" in expr and expr["function"]["type"] == "union":
            for arg in expr["function"]["parameters"].values():
                collect(arg)
        elif isinstance(expr, dict) and "operator" in expr and expr["operator"]["type"] == "conditional":
            collect(expr["operator"]["operands"]["true_value"])
            collect(expr["operator"]["operands"]["false_value"])
        elif isinstance(expr, dict):
            for key, value in expr.items():
                assert key not in found, f"app setting {key} set twice"
                found[key] = value
        else:
            raise AssertionError(f"unexpected app settings expression {expr!r}")

    collect(config["properties"])
    return found


def setting_default(expr: Any) -> Any:
    """The default value a setting gets: a parameter's default, a variable's value, or string() of either."""
    params = main()["parameters"]
    variables = main()["variables"]
    if isinstance(expr, dict) and expr.get("function", {}).get("type") == "string":
        return str(setting_default(expr["function"]["parameters"]["value_to_convert"]))
    if isinstance(expr, str) and expr in params:
        return params[expr]["default"]
    if isinstance(expr, str) and expr in variables:
        return variables[expr]["value"]
    return expr


def test_every_setting_the_code_reads_is_set() -> None:
    names = set(settings_module.DEFAULTS) | REQUIRED_SETTINGS
    missing = names - set(app_settings())
    assert not missing, f"app settings the code reads but the Function App does not set: {sorted(missing)}"


def test_settings_default_to_the_contract() -> None:
    settings = app_settings()
    expected = dict(settings_module.DEFAULTS) | CONTRACT_VALUES
    for name, value in expected.items():
        assert setting_default(settings[name]) == value, f"{name}: default differs from the contract"
    assert setting_default(settings["AWS_ROLE_ARN"]) == ""  # set after the AWS stack exists (docs/deploy.md)
    # the collector's own Entra application's ID URI, set by the azd hook; a guard refuses web_identity without it
    assert setting_default(settings["AWS_WEB_IDENTITY_AUDIENCE"]) == ""


def test_host_settings_are_identity_based() -> None:
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    # Every service named (the platform's test of a configured identity-based host storage), each from the account's
    # own endpoints; tables for the host's diagnostic events (Storage Table Data Contributor), no queue role.
    for service in ("blob", "queue", "table"):
        uri = json.dumps(settings[f"AzureWebJobsStorage__{service}ServiceUri"])
        assert '"storage"' in uri and '"primaryEndpoints"' in uri and f'"{service}"' in uri, service
    assert "AzureWebJobsStorage" not in settings, "no storage connection string"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert body(main_module("modules/function-app.bicep"))["params"]["identityClientId"] == {
        "operator": {
            "type": "property_accessor",
            "operands": {
                "operand_1": "identity",
                "operand_2": {
                    "operator": {
                        "type": "property_accessor",
                        "operands": {"operand_1": "outputs", "operand_2": "clientId"},
                    }
                },
            },
        }
    }
    # Flex Consumption takes the runtime from functionAppConfig; these settings are rejected there.
    assert "FUNCTIONS_WORKER_RUNTIME" not in settings and "FUNCTIONS_EXTENSION_VERSION" not in settings
    # Only the legacy sink learns the workspace id.
    legacy = main()["variables"]["legacySettings"]["value"]["operator"]
    assert legacy["operands"]["condition"] == "enableLegacyDataCollector"
    assert "LOG_ANALYTICS_WORKSPACE_ID" in legacy["operands"]["true_value"]
    assert legacy["operands"]["false_value"] == {}


def test_azd_outputs() -> None:
    outputs = set(main()["outputs"])
    assert {
        "AZURE_TENANT_ID",
        "AZURE_KEY_VAULT_NAME",
        "KEY_VAULT_URL",
        "LOGS_INGESTION_ENDPOINT",
        "LOGS_INGESTION_RULE_ID",
        "AZURE_MANAGED_IDENTITY_CLIENT_ID",
        "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID",
        "AWS_WEB_IDENTITY_AUDIENCE",
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_LOG_ANALYTICS_WORKSPACE_ID",
    } <= outputs


# --------------------------------------------------------------------------------------------------------------------
# Security settings of each resource


def test_function_app_is_flex_consumption_python_311_https_only_with_the_user_assigned_identity() -> None:
    path = module_file("function-app")
    plan = one_resource(path, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True  # Linux
    site = one_resource(path, "Microsoft.Web/sites")
    assert "linux" in site["kind"] and "functionapp" in site["kind"]
    assert site["properties"]["httpsOnly"] is True
    assert site["identity"]["type"] == "UserAssigned"
    assert site["properties"]["siteConfig"]["minTlsVersion"] == "1.2"
    # No ftpsState: Flex Consumption has no FTP deployment and newer stamps refuse the property (test_service_rules)
    assert "ftpsState" not in site["properties"]["siteConfig"]
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["type"] == "blobContainer"
    assert config["deployment"]["storage"]["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    policies = resources(path, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert sorted(body(p)["name"] for p in policies.values()) == ["ftp", "scm"]
    assert all(body(p)["properties"]["allow"] is False for p in policies.values())


def test_python_version_matches_the_tests() -> None:
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == "3.11"


def test_storage_has_no_shared_keys() -> None:
    storage = one_resource(module_file("storage"), "Microsoft.Storage/storageAccounts")["properties"]
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    assert storage["supportsHttpsTrafficOnly"] is True
    assert storage["defaultToOAuthAuthentication"] is True


def test_application_insights_accepts_entra_id_only() -> None:
    insights = one_resource(module_file("monitoring"), "Microsoft.Insights/components")
    assert insights["properties"]["DisableLocalAuth"] is True
    assert insights["properties"]["WorkspaceResourceId"] == "workspaceResourceId"


def test_key_vault_is_rbac_with_soft_delete_and_purge_protection_on_request() -> None:
    vault = one_resource(module_file("keyvault"), "Microsoft.KeyVault/vaults")["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    # Purge protection only when asked for: with it, `azd down` then `azd up` fails for 90 days (the name stays taken).
    # The service refuses false, so the property is omitted (null) unless it is on.
    assert vault["enablePurgeProtection"] == {
        "operator": {"type": "conditional", "operands": {
            "condition": "enablePurgeProtection", "true_value": True, "false_value": None}}
    }
    assert main()["parameters"]["enableKeyVaultPurgeProtection"]["default"] is False
    assert "accessPolicies" not in vault
    assert not resources(module_file("keyvault"), "Microsoft.KeyVault/vaults/secrets"), "the vault starts empty"


def test_existing_workspace_can_be_used() -> None:
    assert main()["parameters"]["existingLogAnalyticsWorkspaceId"]["default"] == ""
    assert condition(main_module("modules/log-analytics.bicep")) == {
        "operator": {"type": "not", "operands": {"bool_value": "useExistingWorkspace"}}
    }
    use_existing = main()["variables"]["useExistingWorkspace"]["value"]
    assert "existingLogAnalyticsWorkspaceId" in json.dumps(use_existing)
    # The tables go into whichever workspace is used, in that workspace's resource group.
    scope = body(main_module("modules/custom-tables.bicep"))["scope"]["function"]
    assert scope["type"] == "resource_group"
    assert scope["parameters"] == {
        "resource_group_name": "workspaceResourceGroupName",
        "subscription_id": "workspaceSubscriptionId",
    }


def test_every_resource_is_tagged_and_the_app_has_its_service_name() -> None:
    assert main_env()["tags"] == {"'azd-env-name'": "environmentName"}
    assert body(main()["resources"]["rg"])["tags"] == "checkedTags"  # the tags, once every guard passed
    for module in main()["modules"].values():
        params = body(module)["params"]
        if "tags" in bicep(INFRA / module["detail"]["path"])["parameters"]:
            assert params["tags"] == "tags", module["detail"]["path"]
    for path in MODULES.glob("*.bicep"):
        for name, r in resources(path).items():
            config = body(r)
            if "location" in config:  # every tracked (top-level) resource
                assert "tags" in config, f"{path.name}:{name} has no tags"
    site = one_resource(module_file("function-app"), "Microsoft.Web/sites")
    assert site["tags"] == {
        "function": {"type": "union", "parameters": {"arg_1": "tags", "arg_2": {"'azd-service-name'": "api"}}}
    }


def test_checkov_suppressions_are_justified() -> None:
    for path in BICEP_FILES:
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.fullmatch(r"\s*// checkov:skip=CKV2?_AZURE_\d+: \S.{20,}", line), f"{path.name}: {line}"


# --------------------------------------------------------------------------------------------------------------------
# CloudFormation

IAM_READ = {
    # users with their tags (OWNER_TAG_KEYS, key descriptions), groups and policies (privilege, quarantine)
    "iam:GetAccountAuthorizationDetails",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:ListServiceSpecificCredentials",  # the long-lived credentials other than keys (one call per service)
}


def template(name: str) -> dict[str, Any]:
    return cfn_yaml.load(str(INFRA / "aws" / name))


def actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def policy_statements(properties: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in properties.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def organization_only(statement: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (organization only, anywhere) variants of a statement under `!If [OrganizationOnly, ...]`."""
    condition_name, inside, anywhere = statement["Fn::If"]
    assert condition_name == "OrganizationOnly"
    return inside, anywhere


def test_home_role_policy_is_least_privilege() -> None:
    role = template("home-account.yaml")["Resources"]["HomeRole"]["Properties"]
    assert role["MaxSessionDuration"] == 3600
    assert "ManagedPolicyArns" not in role
    statements = [organization_only(s)[0] if "Fn::If" in s else s for s in policy_statements(role)]
    assert all(s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s for s in statements)
    assert set().union(*(actions(s) for s in statements)) == IAM_READ | {"organizations:ListAccounts", "sts:AssumeRole"}
    (assume,) = [s for s in statements if "sts:AssumeRole" in actions(s)]
    assert actions(assume) == {"sts:AssumeRole"}
    assert assume["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"}


def test_home_role_assumes_member_roles_only_inside_its_organization_by_default() -> None:
    tpl = template("home-account.yaml")
    (conditional,) = [s for s in policy_statements(tpl["Resources"]["HomeRole"]["Properties"]) if "Fn::If" in s]
    inside, anywhere = organization_only(conditional)
    # A plain string, not !Sub: ${aws:PrincipalOrgID} is an IAM policy variable, resolved by IAM at request time.
    assert inside["Condition"] == {"StringEquals": {"aws:ResourceOrgID": "${aws:PrincipalOrgID}"}}
    assert {k: v for k, v in inside.items() if k != "Condition"} == anywhere
    outside = {"Ref": "MemberAccountsOutsideOrganization"}
    assert tpl["Conditions"]["OrganizationOnly"] == {"Fn::Equals": [outside, "false"]}
    assert tpl["Parameters"]["MemberAccountsOutsideOrganization"]["Default"] == "false"


def test_home_role_trust_for_access_key_mode_is_the_user_with_an_external_id() -> None:
    trust = template("home-account.yaml")["Resources"]["HomeRole"]["Properties"]["AssumeRolePolicyDocument"]
    mode, access_key, _ = trust["Fn::If"]
    assert mode == "IsAccessKey"
    (statement,) = access_key["Statement"]
    assert statement["Principal"] == {"AWS": {"Fn::GetAtt": ["CollectorUser", "Arn"]}}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}


def test_home_role_trust_for_web_identity_is_the_managed_identity_through_entra_id() -> None:
    tpl = template("home-account.yaml")
    trust = tpl["Resources"]["HomeRole"]["Properties"]["AssumeRolePolicyDocument"]
    text, variables = trust["Fn::If"][2]["Fn::Sub"]
    assert variables == {
        "ProviderArn": {
            "Fn::If": ["CreateOidcProvider", {"Ref": "EntraIdOidcProvider"}, {"Ref": "ExistingOidcProviderArn"}]
        }
    }
    document = json.loads(text)
    (statement,) = document["Statement"]
    assert statement["Principal"] == {"Federated": "${ProviderArn}"}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {
            "sts.windows.net/${TenantId}/:aud": "${Audience}",
            "sts.windows.net/${TenantId}/:sub": "${ManagedIdentityObjectId}",
        }
    }
    provider = tpl["Resources"]["EntraIdOidcProvider"]
    assert provider["Condition"] == "CreateOidcProvider"
    assert provider["Properties"]["Url"] == {"Fn::Sub": "https://sts.windows.net/${TenantId}/"}
    assert provider["Properties"]["ClientIdList"] == [{"Ref": "Audience"}]
    # No default audience: the collector's own Entra application's URI (azd output), required in web_identity mode,
    # and never Entra's shared token-exchange audience.
    assert tpl["Parameters"]["Audience"]["Default"] == ""
    web_identity = {"Fn::Equals": [{"Ref": "AuthMode"}, "web_identity"]}
    (rule,) = [r for r in tpl["Rules"].values() if r["RuleCondition"] == web_identity]
    asserted = [a["Assert"] for a in rule["Assertions"]]
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "Audience"}, ""]}]} in asserted
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "Audience"}, "api://AzureADTokenExchange"]}]} in asserted
    assert tpl["Parameters"]["AuthMode"]["AllowedValues"] == ["access_key", "web_identity"]


def test_iam_user_can_only_assume_the_home_role_and_has_no_key_from_the_template() -> None:
    tpl = template("home-account.yaml")
    types = {name: r["Type"] for name, r in tpl["Resources"].items()}
    assert "AWS::IAM::AccessKey" not in types.values()
    assert [n for n, t in types.items() if t in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")] == []
    user = tpl["Resources"]["CollectorUser"]
    assert user["Condition"] == "IsAccessKey"
    assert set(user["Properties"]) == {"UserName", "Groups"}
    assert user["Properties"]["Groups"] == [{"Ref": "CollectorUserGroup"}]
    group = tpl["Resources"]["CollectorUserGroup"]
    assert group["Condition"] == "IsAccessKey"
    assert set(group["Properties"]) == {"Policies"}
    (statement,) = policy_statements(group["Properties"])
    assert statement["Effect"] == "Allow" and actions(statement) == {"sts:AssumeRole"}
    assert statement["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${HomeRoleName}"}
    assert tpl["Resources"]["HomeRole"]["Properties"]["RoleName"] == {"Ref": "HomeRoleName"}


def test_member_role_trusts_only_the_home_role_and_only_reads_iam() -> None:
    tpl = template("member-account.yaml")
    assert set(tpl["Resources"]) == {"MemberRole"}
    role = tpl["Resources"]["MemberRole"]["Properties"]
    assert role["RoleName"] == {"Ref": "MemberRoleName"}
    assert tpl["Parameters"]["MemberRoleName"]["Default"] == settings_module.DEFAULTS["AWS_MEMBER_ROLE_NAME"]
    assert role["MaxSessionDuration"] == 3600
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {
        "Sid": "CollectorHomeRoleOnly",
        "Effect": "Allow",
        "Principal": {"AWS": {"Ref": "HomeRoleArn"}},
        "Action": "sts:AssumeRole",
    }
    statements = policy_statements(role)
    assert all(s["Effect"] == "Allow" for s in statements)
    assert set().union(*(actions(s) for s in statements)) == IAM_READ
    assert "ManagedPolicyArns" not in role


def iam_actions_called(sources: list[str]) -> set[str]:
    """The IAM actions the code calls: botocore operations named in ``get_paginator("...")`` or ``iam.<op>(``."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("iam")
    by_snake = {xform_name(op): op for op in model.operation_names}
    found = set()
    for text in sources:
        for name in re.findall(r'get_paginator\("(\w+)"\)|\biam\.(?!get_paginator)(\w+)\(', text):
            snake = next(n for n in name if n)
            if snake in by_snake:
                found.add(f"iam:{by_snake[snake]}")
    return found


def aws_sources() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted((ROOT / "shared" / "aws").glob("*.py"))]


def test_both_roles_grant_exactly_the_iam_calls_the_code_makes() -> None:
    """Nothing the code no longer calls (ListUsers, ListUserTags since GetAccountAuthorizationDetails), nothing it
    calls missing."""
    called = iam_actions_called(aws_sources())
    assert called == IAM_READ
    for name in ("home-account.yaml", "member-account.yaml"):
        tpl = template(name)
        role = next(r for r in tpl["Resources"].values() if r["Type"] == "AWS::IAM::Role")["Properties"]
        granted = {a for s in policy_statements(role) if "Fn::If" not in s for a in actions(s) if a.startswith("iam:")}
        assert granted == called, name


def test_the_calls_check_fails_on_a_copy_that_calls_list_users_again() -> None:
    broken = [*aws_sources(), 'pages = iam.get_paginator("list_users").paginate()']
    assert iam_actions_called(broken) - IAM_READ == {"iam:ListUsers"}


def test_member_role_name_defaults_agree() -> None:
    home = template("home-account.yaml")["Parameters"]["MemberRoleName"]["Default"]
    assert (
        home == settings_module.DEFAULTS["AWS_MEMBER_ROLE_NAME"] == main()["parameters"]["awsMemberRoleName"]["default"]
    )


_VENV_CFN_LINT = Path(sys.executable).parent / "cfn-lint"
CFN_LINT = str(_VENV_CFN_LINT) if _VENV_CFN_LINT.exists() else "cfn-lint"


def test_cfn_lint_is_clean() -> None:
    result = subprocess.run(
        [CFN_LINT, *map(str, sorted((INFRA / "aws").glob("*.yaml")))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------------------------------
# checkov (about 6 s; skipped where its separate venv is not installed)


@pytest.mark.skipif(not CHECKOV.exists() and not shutil.which("checkov"), reason="checkov is not installed")
def test_checkov_passes() -> None:
    checkov = str(CHECKOV) if CHECKOV.exists() else shutil.which("checkov")
    assert checkov
    result = subprocess.run(
        [checkov, "-d", "infra", "--framework", "bicep", "cloudformation", "--skip-download", "--quiet", "--compact"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Failed checks: 0" in result.stdout


# --------------------------------------------------------------------------------------------------------------------
# Owner digests: Communication Services without keys, an Azure-managed domain, the settings from the resources


def notify_problems(tree: dict[str, Any]) -> list[str]:
    """What infra/modules/notify.bicep must guarantee, checked on its parsed tree (a broken copy too)."""
    problems = []
    found = {r["type"]: body(r) for r in tree.get("resources", {}).values() if not r["existing"]}
    service = found.get("Microsoft.Communication/communicationServices", {}).get("properties", {})
    if service.get("disableLocalAuth") is not True:
        problems.append("Communication Services must have local auth disabled (no access key, no connection string)")
    domain = found.get("Microsoft.Communication/emailServices/domains", {})
    if domain.get("name") != "AzureManagedDomain" or domain.get("properties", {}).get(
            "domainManagement") != "AzureManaged":
        problems.append("the sender domain must be the Azure-managed one (AzureManagedDomain, AzureManaged)")
    if "managedDomain" not in json.dumps(service.get("linkedDomains")):
        problems.append("the Azure-managed domain must be linked to the Communication Services resource")
    return problems


def test_owner_digests_send_through_communication_services_without_a_key() -> None:
    assert notify_problems(bicep(module_file("notify"))) == []
    text = module_file("notify").read_text()
    broken = pycep.BicepParser().parse(text=text.replace("disableLocalAuth: true", "disableLocalAuth: false"))
    assert notify_problems(broken) == [
        "Communication Services must have local auth disabled (no access key, no connection string)"]
    broken = pycep.BicepParser().parse(text=text.replace("domainManagement: 'AzureManaged'",
                                                         "domainManagement: 'CustomerManaged'"))
    assert notify_problems(broken) == ["the sender domain must be the Azure-managed one (AzureManagedDomain, "
                                       "AzureManaged)"]


def test_owner_digest_settings_come_from_the_deployed_resources() -> None:
    settings = app_settings()
    outputs = {"NOTIFY_EMAIL_ENDPOINT": "endpoint", "NOTIFY_SENDER": "sender"}
    for name, output in outputs.items():
        assert json.dumps(settings[name]).count(f'"{output}"') == 1 and '"notify"' in json.dumps(settings[name]), name
    assert '"customerId"' in json.dumps(settings["NOTIFY_WORKSPACE_ID"])
    assert setting_default(settings["NOTIFY_MODE"]) == "dry_run"  # a deployment never mails anyone by surprise
    assert setting_default(settings["NOTIFY_SCHEDULE"]) == "0 0 7 * * *"
    assert main()["parameters"]["notifyMode"]["decorators"][0]["argument"] == ["off", "dry_run", "send"]
