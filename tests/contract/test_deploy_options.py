"""The deployment's options and guards, read from infra/main.bicep and its modules: the combinations refused before
anything is created (each fail() guard evaluated for the defaults and for each combination it exists for), what
vnetEnabled adds, the audit log of Key Vault, Entra-only ingestion of a new workspace, and the outputs the AWS stack
takes as parameters (checked against infra/aws/home-account.yaml's own parameter names).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.support import bicep

cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")

INFRA = bicep.INFRA
MAIN_TEXT = (INFRA / "main.bicep").read_text(encoding="utf-8")
MAIN = bicep.parse(INFRA / "main.bicep")
GUARD = re.compile(r"^var (guard\w+) = (.+?) \? fail\('((?:[^'\\]|\\.)*)'\) : true$", re.M)


def defaults() -> dict[str, Any]:
    """main.bicep's parameters as a new user's `azd up` gives them: the defaults, plus the three azd sets."""
    env = {name: p["default"] for name, p in MAIN["parameters"].items() if "default" in p}
    env.update(environmentName="prod", location="swedencentral", principalId="00000000-0000-0000-0000-000000000001")
    return env


def evaluate(expression: str, env: dict[str, Any]) -> Any:
    """A Bicep boolean expression of the guards' kind (&&, ||, !, ==, empty(), toLower(), names), evaluated."""
    python = expression.replace("&&", " and ").replace("||", " or ")
    python = re.sub(r"!(?!=)", " not ", python)
    python = python.replace("empty(", "_empty(").replace("toLower(", "_lower(")
    names = {**env, "_empty": lambda v: len(v) == 0, "_lower": lambda v: v.lower()}
    return eval(python, {"__builtins__": {}}, names)  # noqa: S307 - our own Bicep, in a test


def value_of(node: Any, env: dict[str, Any]) -> Any:
    """A pycep expression tree of the kinds main.bicep's list variables use (split, map, filter, trim, empty, !,
    lambdas, names and literals), evaluated: the Bicep expression itself, not a copy of it in Python."""
    if isinstance(node, str):
        return env.get(node, node)
    if isinstance(node, dict) and node.get("type") == "lambda_expression":
        detail = node["detail"]
        return lambda item: value_of(detail["expression"], {**env, detail["var_1"]: item})
    if isinstance(node, dict) and "operator" in node and node["operator"]["type"] == "not":
        return not value_of(node["operator"]["operands"]["bool_value"], env)
    call = bicep.function_call(node)
    if call is None:
        return node
    name, params = call
    args = [value_of(v, env) for v in params.values()]
    functions = {
        "split": lambda text, separator: text.split(separator),
        "trim": lambda text: text.strip(),
        "empty": lambda value: len(value) == 0,
        "map": lambda items, function: [function(i) for i in items],
        "filter": lambda items, function: [i for i in items if function(i)],
    }
    return functions[name](*args)


def environment(**overrides: Any) -> dict[str, Any]:
    env = {**defaults(), **overrides}
    env["webIdentity"] = env["awsAuthMode"] == "web_identity"
    env["sharedTokenExchangeAudience"] = "api://AzureADTokenExchange"
    env["keyVaultAllowedIps"] = value_of(MAIN["variables"]["keyVaultAllowedIps"]["value"], env)
    return env


def tripped(env: dict[str, Any]) -> list[str]:
    return [name for name, condition, _ in GUARD.findall(MAIN_TEXT) if evaluate(condition, env)]


def test_every_guard_is_read_before_anything_is_created() -> None:
    guards = [name for name, _, _ in GUARD.findall(MAIN_TEXT)]
    assert len(guards) == 3
    checked = MAIN["variables"]["checkedTags"]
    assert all(name in str(checked) for name in guards)
    assert bicep.body(MAIN["resources"]["rg"])["tags"] == "checkedTags"


def test_a_new_users_defaults_pass_every_guard() -> None:
    assert tripped(environment()) == []
    # web_identity with the audience the hook sets
    assert tripped(environment(awsAuthMode="web_identity", awsWebIdentityAudience="api://0b9f6c2e-app")) == []


@pytest.mark.parametrize(
    ("overrides", "guard", "message"),
    [
        ({"awsAuthMode": "web_identity"}, "guardWebIdentityAudience", "infra/hooks/entra-app.sh"),
        ({"awsAuthMode": "web_identity", "awsWebIdentityAudience": "api://AzureADTokenExchange"},
         "guardWebIdentityAudience", "shared token-exchange audience"),
        ({"awsAuthMode": "web_identity", "awsWebIdentityAudience": "API://AzureADTokenExchange"},
         "guardWebIdentityAudience", "awsWebIdentityAudience"),
        ({"logSink": "data_collector"}, "guardLegacySink", "enableLegacyDataCollector"),
        ({"vnetEnabled": True}, "guardVnetKeyVault", "keyVaultAllowedIpRanges"),
    ],
)
def test_a_combination_that_cannot_work_is_refused_with_what_to_set(
    overrides: dict[str, Any], guard: str, message: str
) -> None:
    assert tripped(environment(**overrides)) == [guard]
    messages = {name: text for name, _, text in GUARD.findall(MAIN_TEXT)}
    assert message in messages[guard]


def test_combinations_that_work_are_not_refused() -> None:
    assert tripped(environment(logSink="data_collector", enableLegacyDataCollector=True)) == []
    assert tripped(environment(vnetEnabled=True, keyVaultAllowedIpRanges="203.0.113.7/32")) == []
    assert tripped(environment(vnetEnabled=True, keyVaultAllowedIpRanges=" 203.0.113.7/32 , ")) == []
    assert tripped(environment(vnetEnabled=True, awsAuthMode="web_identity", awsWebIdentityAudience="api://x")) == []


def test_key_vault_addresses_are_trimmed_and_empty_entries_dropped() -> None:
    typed = " 203.0.113.7/32, 198.51.100.0/24 ,,"
    assert environment(keyVaultAllowedIpRanges=typed)["keyVaultAllowedIps"] == ["203.0.113.7/32", "198.51.100.0/24"]
    assert environment()["keyVaultAllowedIps"] == []
    # only commas and spaces name no address: refused as if empty, and the vault closes to the internet
    assert tripped(environment(vnetEnabled=True, keyVaultAllowedIpRanges=" , ")) == ["guardVnetKeyVault"]
    params = bicep.body(module_call("modules/keyvault.bicep"))["params"]
    assert "keyVaultAllowedIps" in str(params["allowedIpRanges"]) and "keyVaultAllowedIps" in str(
        params["publicNetworkAccess"])
    assert "keyVaultAllowedIpRanges" not in str(params)  # never the raw text


def test_the_retired_data_collector_is_refused_unless_opted_into_and_said_so() -> None:
    (message,) = [text for name, _, text in GUARD.findall(MAIN_TEXT) if name == "guardLegacySink"]
    assert "retired on 2026-09-14" in message and "logs_ingestion" in message
    for parameter in ("logSink", "enableLegacyDataCollector"):
        decorators = MAIN["parameters"][parameter]["decorators"]
        description = next(d["argument"] for d in decorators if d["type"] == "description")
        assert "retired" in description and "2026-09-14" in description, parameter


def test_file_sink_is_not_offered_in_azure() -> None:
    (allowed,) = [d["argument"] for d in MAIN["parameters"]["logSink"]["decorators"] if d["type"] == "allowed"]
    assert allowed == ["logs_ingestion", "data_collector"]


def module_call(path: str) -> dict[str, Any]:
    (found,) = [m for m in MAIN["modules"].values() if m["detail"]["path"] == path]
    return found


def test_vnet_enabled_adds_the_network_and_closes_storage_and_vault() -> None:
    network = module_call("modules/network.bicep")
    assert network["config"]["condition"] == "vnetEnabled"
    text = (INFRA / "modules" / "network.bicep").read_text(encoding="utf-8")
    tree = bicep.parse(INFRA / "modules" / "network.bicep")
    vnet = bicep.body(tree["resources"]["virtualNetwork"])
    app_subnet = next(s for s in vnet["properties"]["subnets"] if s["name"] == "appSubnetName")
    assert app_subnet["properties"]["delegations"][0]["properties"]["serviceName"] == "Microsoft.App/environments"
    links = tree["variables"]["privateLinks"]["value"]
    assert {link["groupId"] for link in links} == {"blob", "table", "vault"}  # tables: the host's diagnostic events
    assert "privatelink.vaultcore.azure.net" in text and "privatelink.blob.${environment().suffixes.storage}" in text
    assert "privatelink.table.${environment().suffixes.storage}" in text
    for name in ("dnsZones", "dnsZoneLinks", "privateEndpoints", "dnsZoneGroups"):
        assert tree["resources"][name]["config"]["loop_type"]["detail"]["array_name"] == "privateLinks", name
    app = bicep.body(module_call("modules/function-app.bicep"))["params"]
    assert "network" in str(app["virtualNetworkSubnetId"]) and "vnetEnabled" in str(app["virtualNetworkSubnetId"])
    for module in ("modules/storage.bicep", "modules/keyvault.bicep"):
        access = bicep.body(module_call(module))["params"]["publicNetworkAccess"]
        assert "vnetEnabled" in str(access) and "Disabled" in str(access), module


def test_key_vault_reads_are_audited_in_the_workspace() -> None:
    tree = bicep.parse(INFRA / "modules" / "keyvault.bicep")
    (setting,) = [r for r in tree["resources"].values() if r["type"] == "Microsoft.Insights/diagnosticSettings"]
    config = bicep.body(setting)
    assert config["scope"] == "vault"
    assert config["properties"]["workspaceId"] == "workspaceResourceId"
    assert {"category": "AuditEvent", "enabled": True} in config["properties"]["logs"]
    assert bicep.body(module_call("modules/keyvault.bicep"))["params"]["workspaceResourceId"] == "workspaceResourceId"


def test_a_new_workspace_accepts_entra_id_only_unless_the_legacy_sink_is_on() -> None:
    workspace = bicep.body(bicep.parse(INFRA / "modules" / "log-analytics.bicep")["resources"]["workspace"])
    assert workspace["properties"]["features"]["disableLocalAuth"] == "disableLocalAuth"
    assert bicep.body(module_call("modules/log-analytics.bicep"))["params"]["disableLocalAuth"] == {
        "operator": {"type": "not", "operands": {"bool_value": "enableLegacyDataCollector"}}
    }


def home_stack_parameters() -> dict[str, Any]:
    template = cfn_yaml.load(str(INFRA / "aws" / "home-account.yaml"))
    parameters: dict[str, Any] = template["Parameters"]
    return parameters


def test_the_outputs_are_the_home_stacks_parameters() -> None:
    output = MAIN["outputs"]["AWS_HOME_STACK_PARAMETERS"]["value"]["operator"]
    assert output["type"] == "conditional" and output["operands"]["condition"] == "webIdentity"
    stack = home_stack_parameters()
    web_identity = dict(pair.split("=", 1) for pair in output["operands"]["true_value"].split())
    access_key = dict(pair.split("=", 1) for pair in output["operands"]["false_value"].split())
    assert set(web_identity) | set(access_key) <= set(stack)
    assert web_identity == {
        "AuthMode": "web_identity",
        "TenantId": "${tenant().tenantId}",  # the OIDC provider https://sts.windows.net/<tenant>/
        "ManagedIdentityObjectId": "${identity.outputs.principalId}",  # the trust's sub
        "Audience": "${awsWebIdentityAudience}",  # the provider's client id and the trust's aud
    }
    assert access_key == {"AuthMode": "access_key", "ExternalId": "${effectiveExternalId}"}
    assert MAIN["outputs"]["AWS_OIDC_PROVIDER_URL"]["value"] == "https://sts.windows.net/${tenant().tenantId}/"
    # the app setting is the same audience the stack trusts, and the same ExternalId
    settings = MAIN["variables"]["collectorSettings"]["value"]
    assert settings["AWS_WEB_IDENTITY_AUDIENCE"] == "awsWebIdentityAudience"
    assert settings["AWS_EXTERNAL_ID"] == "effectiveExternalId"


def test_parameters_file_maps_every_new_option() -> None:
    text = (INFRA / "main.parameters.json").read_text(encoding="utf-8")
    mapped = {
        "vnetEnabled": "VNET_ENABLED",
        "enableKeyVaultPurgeProtection": "ENABLE_KEY_VAULT_PURGE_PROTECTION",
        "keyVaultAllowedIpRanges": "KEY_VAULT_ALLOWED_IP_RANGES",
        "awsWebIdentityAudience": "AWS_WEB_IDENTITY_AUDIENCE",
    }
    for parameter, variable in mapped.items():
        assert re.search(rf'"{parameter}": {{ "value": "\$\{{{variable}=[^"]*}}" }}', text), parameter


def test_docs_walk_through_the_outputs() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "--parameter-overrides $(azd env get-value AWS_HOME_STACK_PARAMETERS)" in docs
    for output in ("AZURE_TENANT_ID", "AWS_WEB_IDENTITY_AUDIENCE", "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID",
                   "AWS_EXTERNAL_ID", "AWS_OIDC_PROVIDER_URL"):
        assert output in docs and output in MAIN["outputs"], output
