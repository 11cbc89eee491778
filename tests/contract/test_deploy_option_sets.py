"""`azd up` on the defaults and on each documented option, one rendered deployment at a time (issue 23).

For each option set of docs/deploy.md, the azd environment it sets is substituted into infra/main.parameters.json as
azd does (``${VAR=default}``), the values converted to main.bicep's parameter types, and then:
- every parameter value is checked against its declaration (type, @allowed, @minValue/@maxValue, @minLength/
  @maxLength), and so is every value main.bicep passes on to a module parameter as it is;
- every fail() guard is evaluated with those values (test_deploy_options's evaluator): none may fire;
- every ``if (...)`` of a module (main.bicep) and of a resource (in the modules deployed) is evaluated, and the
  conditional part of the deployment is what the docs promise for that option;
- the service-rule table (test_service_rules.SERVICE_RULES) and the type data run over the rendered deployment: the
  files of the modules deployed, without the resources and modules not deployed, and with every ``c ? a : b`` whose
  condition is false in this option replaced by its ``b`` (a true one stays as written: the rules read the structure).

Values known only at deployment (outputs of other modules, resource properties, names with interpolations) are not
evaluated: a condition that depends on one fails the test, with its text.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.contract import test_deploy_options as options
from tests.contract import test_service_rules as rules
from tests.support import azure_types, bicep

INFRA = bicep.INFRA
MAIN_PATH = INFRA / "main.bicep"
MONITORING = INFRA / "modules" / "monitoring.bicep"
NETWORK = INFRA / "modules" / "network.bicep"
AZD_VARIABLE = re.compile(r"\$\{(\w+)(?:=([^}]*))?\}")
WORKSPACE_ID = ("/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-soc/providers/"
                "Microsoft.OperationalInsights/workspaces/soc-workspace")

# What `azd env new` / `azd up` set on their own, then each option as docs/deploy.md gives it.
AZD = {"AZURE_ENV_NAME": "iamkeys-prod", "AZURE_LOCATION": "swedencentral",
       "AZURE_PRINCIPAL_ID": "00000000-0000-0000-0000-000000000001"}
OPTION_SETS: dict[str, dict[str, str]] = {
    "defaults": {},
    "web_identity": {"AWS_AUTH_MODE": "web_identity",
                     "AWS_WEB_IDENTITY_AUDIENCE": "api://0b9f6c2e-1d2a-4c3b-9e8f-1a2b3c4d5e6f"},
    "access_key": {"AWS_AUTH_MODE": "access_key",
                   "AWS_ROLE_ARN": "arn:aws:iam::111111111111:role/AwsIamKeyCollectorHome"},
    "vnetEnabled": {"VNET_ENABLED": "true", "KEY_VAULT_ALLOWED_IP_RANGES": "203.0.113.7/32"},
    "sentinel_new_workspace": {"SENTINEL_WORKSPACE": "true"},
    "sentinel_existing_workspace": {"SENTINEL_WORKSPACE": "true", "EXISTING_LOG_ANALYTICS_WORKSPACE_ID": WORKSPACE_ID},
    "legacy_sink": {"LOG_SINK": "data_collector", "ENABLE_LEGACY_DATA_COLLECTOR": "true"},
}
# The conditional part of each deployment, as the docs promise it: a new workspace unless an existing one is named
# (then it is looked up), Sentinel only when asked and onboarded only on a new workspace, the network and a data
# collection endpoint only with vnetEnabled, the workspace key only with the legacy flag, the signed-in user's Key Vault
# role because azd sets AZURE_PRINCIPAL_ID, no action group without ALERT_EMAIL_ADDRESS.
ALWAYS = {"main.bicep:logAnalytics", "role-assignments.bicep:userSecretsOfficer"}
PROMISED: dict[str, set[str]] = {
    "defaults": ALWAYS,
    "web_identity": ALWAYS,
    "access_key": ALWAYS,
    "vnetEnabled": ALWAYS | {"main.bicep:network", "monitoring.bicep:dataCollectionEndpoint"},
    "sentinel_new_workspace": ALWAYS | {"main.bicep:sentinel", "sentinel.bicep:onboarding"},
    "sentinel_existing_workspace": {"role-assignments.bicep:userSecretsOfficer", "main.bicep:existingWorkspace",
                                    "main.bicep:sentinel"},
    "legacy_sink": ALWAYS | {"main.bicep:legacyWorkspaceKey"},
}


class UnevaluableError(Exception):
    """An expression whose value is known only at deployment."""


def render(azd_env: dict[str, str], main: dict[str, Any]) -> dict[str, Any]:
    """main.parameters.json with azd's substitution (unset and no default: empty), typed as main.bicep declares."""
    file = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    values: dict[str, Any] = {}
    for name, entry in file.items():
        text = AZD_VARIABLE.sub(lambda m: azd_env.get(m[1], m[2] or ""), entry["value"])
        kind = main["parameters"][name]["type"]
        if kind == "bool":
            assert text.lower() in ("true", "false"), f"{name}: {text!r} is not a bool"
            values[name] = text.lower() == "true"
        elif kind == "int":
            assert re.fullmatch(r"-?\d+", text), f"{name}: {text!r} is not an int"
            values[name] = int(text)
        else:
            values[name] = text
    return values


def declaration_problems(where: str, declaration: dict[str, Any], value: Any) -> list[str]:
    """A value against its parameter's type and decorators."""
    kind = declaration.get("type")
    types = {"bool": bool, "int": int, "string": str, "object": dict, "array": list}
    if kind in types and (not isinstance(value, types[kind]) or (kind == "int" and isinstance(value, bool))):
        return [f"{where}: {value!r} is not of type {kind}"]
    decorators = {d["type"]: d.get("argument") for d in declaration.get("decorators") or []}
    problems = []
    if "allowed" in decorators and value not in decorators["allowed"]:
        problems.append(f"{where}: {value!r} is not in @allowed")
    if "min_value" in decorators and value < decorators["min_value"]:
        problems.append(f"{where}: {value!r} is below @minValue {decorators['min_value']}")
    if "max_value" in decorators and value > decorators["max_value"]:
        problems.append(f"{where}: {value!r} is above @maxValue {decorators['max_value']}")
    if "min_length" in decorators and len(value) < decorators["min_length"]:
        problems.append(f"{where}: {value!r} is shorter than @minLength {decorators['min_length']}")
    if "max_length" in decorators and len(value) > decorators["max_length"]:
        problems.append(f"{where}: {value!r} is longer than @maxLength {decorators['max_length']}")
    return problems


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "empty": lambda value: len(value) == 0,
    "to_lower": lambda text: text.lower(),
    "split": lambda text, separator: text.split(separator),
    "trim": lambda text: text.strip(),
    "last": lambda items: items[-1],
    "map": lambda items, function: [function(i) for i in items],
    "filter": lambda items, function: [i for i in items if function(i)],
}
BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "and": lambda a, b: a and b, "or": lambda a, b: a or b, "equals": lambda a, b: a == b,
    "not_equals": lambda a, b: a != b,
}


def value(node: Any, env: dict[str, Any], names: set[str]) -> Any:
    """A pycep expression evaluated with the option's values; UnevaluableError when it needs the deployment's."""
    if isinstance(node, bool | int | float) or node is None:
        return node
    if isinstance(node, str):
        if node in env:
            return env[node]
        if "${" in node or node.split(".")[0].split("[")[0] in names:
            raise UnevaluableError(node)
        return node  # a string literal (pycep drops the quotes)
    if isinstance(node, list):
        return [value(n, env, names) for n in node]
    if isinstance(node, dict) and node.get("type") == "lambda_expression":
        detail = node["detail"]
        return lambda item: value(detail["expression"], {**env, detail["var_1"]: item}, names)
    call = bicep.function_call(node)
    if call is not None:
        if call[0] not in FUNCTIONS:
            raise UnevaluableError(call[0])
        return FUNCTIONS[call[0]](*[value(v, env, names) for v in call[1].values()])
    operator = node.get("operator") if isinstance(node, dict) else None
    if operator is None:
        if isinstance(node, dict):
            return {k: value(v, env, names) for k, v in node.items()}
        raise UnevaluableError(repr(node))
    operands = operator["operands"]
    if operator["type"] == "not":
        return not value(operands["bool_value"], env, names)
    if operator["type"] in BINARY:
        return BINARY[operator["type"]](value(operands["operand_1"], env, names),
                                        value(operands["operand_2"], env, names))
    if operator["type"] == "conditional":
        chosen = "true_value" if value(operands["condition"], env, names) else "false_value"
        return value(operands[chosen], env, names)
    raise UnevaluableError(operator["type"])


def ternary_lowest(node: Any) -> Any:
    """pycep parses ``a && b ? x : y`` as ``a && (b ? x : y)``; Bicep's ``?:`` binds loosest: ``(a && b) ? x : y``."""
    if isinstance(node, list):
        return [ternary_lowest(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: ternary_lowest(v) for k, v in node.items()}
    operator = node.get("operator")
    if isinstance(operator, dict) and operator.get("type") in BINARY:
        right = operator["operands"]["operand_2"]
        inner = right.get("operator") if isinstance(right, dict) else None
        if isinstance(inner, dict) and inner.get("type") == "conditional":
            condition = {"operator": {"type": operator["type"], "operands": {
                "operand_1": operator["operands"]["operand_1"], "operand_2": inner["operands"]["condition"]}}}
            return {"operator": {"type": "conditional", "operands": {**inner["operands"], "condition": condition}}}
    return node


def parse(path: Path, overrides: dict[Path, str]) -> dict[str, Any]:
    return dict(ternary_lowest(bicep.parse(path, overrides.get(path))))


def evaluated_variables(tree: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """The parameters' values plus every variable computable from them, in declaration order."""
    env = dict(env)
    names = bicep.declared_names(tree)
    for name, variable in (tree.get("variables") or {}).items():
        try:
            env[name] = value(variable["value"], env, names)
        except (UnevaluableError, KeyError, TypeError):
            continue
    return env


def condition_of(declaration: dict[str, Any]) -> Any:
    config = declaration["config"]
    return config.get("condition") if isinstance(config, dict) else None


def resolve_false_branches(node: Any, env: dict[str, Any], names: set[str]) -> Any:
    """Every ``c ? a : b`` whose c is false in this option replaced by b (throughout the tree)."""
    if isinstance(node, list):
        return [resolve_false_branches(n, env, names) for n in node]
    if not isinstance(node, dict):
        return node
    operator = node.get("operator")
    if isinstance(operator, dict) and operator.get("type") == "conditional":
        try:
            taken = value(operator["operands"]["condition"], env, names)
        except (UnevaluableError, KeyError, TypeError):
            taken = True
        if taken is False:
            return resolve_false_branches(operator["operands"]["false_value"], env, names)
    return {k: resolve_false_branches(v, env, names) for k, v in node.items()}


@dataclass
class Deployment:
    """One option set rendered: parameter values, tripped guards, what is deployed, and the trees as deployed."""

    parameters: dict[str, Any]
    problems: list[str]
    tripped: list[str]
    deployed: set[str]
    trees: rules.Trees
    unevaluable: list[str]


def deploy(azd_env: dict[str, str], overrides: dict[Path, str] | None = None) -> Deployment:
    overrides = overrides or {}
    main = parse(MAIN_PATH, overrides)
    parameters = render({**AZD, **azd_env}, main)
    problems = [p for name, v in parameters.items()
                for p in declaration_problems(f"main.bicep: {name}", main["parameters"][name], v)]
    env = options.environment(**parameters)
    text = overrides.get(MAIN_PATH, MAIN_PATH.read_text(encoding="utf-8"))
    tripped = [name for name, condition, _ in options.GUARD.findall(text) if options.evaluate(condition, env)]
    env = evaluated_variables(main, env)
    names = bicep.declared_names(main)
    deployed: set[str] = set()
    unevaluable: list[str] = []

    def deploys(where: str, declaration: dict[str, Any], scope: dict[str, Any], scope_names: set[str]) -> bool:
        condition = condition_of(declaration)
        if condition is None:
            return True
        try:
            taken = bool(value(condition, scope, scope_names))
        except (UnevaluableError, KeyError, TypeError) as error:
            unevaluable.append(f"{where}: if ({condition}) needs {error}")
            return True
        if taken:
            deployed.add(where)
        return taken

    main_out = copy.deepcopy(main)
    trees: rules.Trees = {MAIN_PATH: main_out}
    for name, resource in main["resources"].items():
        if not deploys(f"main.bicep:{name}", resource, env, names) and not resource["existing"]:
            del main_out["resources"][name]
    for name, module in main["modules"].items():
        if not deploys(f"main.bicep:{name}", module, env, names):
            del main_out["modules"][name]
            continue
        path = INFRA / module["detail"]["path"]
        tree = parse(path, overrides)
        module_names = bicep.declared_names(tree)
        module_env = {n: p["default"] for n, p in tree["parameters"].items() if "default" in p}
        for parameter, given in bicep.body(module)["params"].items():
            try:
                module_env[parameter] = value(given, env, names)
            except (UnevaluableError, KeyError, TypeError):
                module_env.pop(parameter, None)  # known at deployment only: not its default
                continue
            if parameter in tree["parameters"]:
                problems += declaration_problems(f"{path.name}: {parameter}", tree["parameters"][parameter],
                                                 module_env[parameter])
            else:
                problems.append(f"{path.name}: no parameter {parameter}")
        module_env = evaluated_variables(tree, module_env)
        rendered = copy.deepcopy(tree)
        for resource_name, resource in tree["resources"].items():
            if not deploys(f"{path.name}:{resource_name}", resource, module_env, module_names):
                del rendered["resources"][resource_name]
        outputs = rendered.get("outputs") or {}
        for output in outputs.values():
            output["value"] = resolve_false_branches(output["value"], module_env, module_names)
        trees[path] = rendered
    return Deployment(parameters, problems, tripped, deployed, trees, unevaluable)


# A rule's finding that is the option itself, as documented: an existing workspace is not onboarded by the deployment
# (docs/deploy.md: it must already be), so its alert rules have no onboardingStates beside them.
NOT_DEPLOYED_BY_DESIGN = {
    ("sentinel_existing_workspace", "rule_sentinel_onboarded_before_rules: sentinel.bicep: alert rules but 0 "
     "onboardingStates resources"),
}


def rule_problems(deployment: Deployment, option: str = "") -> list[str]:
    found = [f"{r.check.__name__}: {p}" for r in rules.SERVICE_RULES for p in r.check(deployment.trees)]
    return [p for p in found if (option, p) not in NOT_DEPLOYED_BY_DESIGN]


def type_problems(deployment: Deployment) -> list[str]:
    errors = []
    for path, tree in deployment.trees.items():
        names = bicep.declared_names(tree)
        for name, resource in (tree.get("resources") or {}).items():
            errors += azure_types.check_resource(f"{path.name}:{name}", resource, names)
    return errors


@pytest.mark.parametrize("option", OPTION_SETS)
def test_azd_up_on_each_documented_option_passes_every_check(option: str) -> None:
    deployment = deploy(OPTION_SETS[option])
    assert deployment.unevaluable == []
    assert deployment.problems == []
    assert deployment.tripped == []
    assert deployment.deployed == PROMISED[option]
    assert rule_problems(deployment, option) == []
    assert type_problems(deployment) == []


def test_the_options_set_what_they_say() -> None:
    """The rendering itself: azd's defaults from the parameters file, each option's values typed."""
    defaults = deploy({}).parameters
    assert defaults["awsAuthMode"] == "access_key" and defaults["vnetEnabled"] is False
    assert defaults["maximumInstanceCount"] == 40 and defaults["existingLogAnalyticsWorkspaceId"] == ""
    vnet = deploy(OPTION_SETS["vnetEnabled"]).parameters
    assert vnet["vnetEnabled"] is True and vnet["keyVaultAllowedIpRanges"] == "203.0.113.7/32"
    # the deployments differ where they should: the network's files are read only with vnetEnabled
    assert NETWORK not in deploy({}).trees and NETWORK in deploy(OPTION_SETS["vnetEnabled"]).trees


# --------------------------------------------------------------------------------------------------------------------
# Each kind of check fails on a broken option or a broken copy of the Bicep.


def broken(path: Path, old: str, new: str) -> dict[Path, str]:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}: update the broken copy"
    return {path: text.replace(old, new, 1)}


def test_a_parameter_outside_its_declaration_is_caught() -> None:
    problems = deploy({"MAXIMUM_INSTANCE_COUNT": "20", "AZURE_LOCATION": "chilecentral"}).problems
    assert "main.bicep: maximumInstanceCount: 20 is below @minValue 40" in problems
    assert "main.bicep: location: 'chilecentral' is not in @allowed" in problems
    # a value passed on to a module is checked against the module's own declaration too
    problems = deploy({}, broken(INFRA / "modules" / "function-app.bicep", "@minValue(40)", "@minValue(50)")).problems
    assert "function-app.bicep: maximumInstanceCount: 40 is below @minValue 50" in problems


def test_an_option_whose_parameters_trip_a_guard_is_caught() -> None:
    assert deploy({"LOG_SINK": "data_collector"}).tripped == ["guardLegacySink"]
    assert deploy({"VNET_ENABLED": "true"}).tripped == ["guardVnetKeyVault"]


def test_a_data_collection_endpoint_without_vnet_enabled_is_caught() -> None:
    deployment = deploy({}, broken(MAIN_PATH, "createDataCollectionEndpoint: vnetEnabled",
                                   "createDataCollectionEndpoint: true"))
    assert "monitoring.bicep:dataCollectionEndpoint" in deployment.deployed - PROMISED["defaults"]
    # and onboarding an existing workspace
    deployment = deploy(OPTION_SETS["sentinel_existing_workspace"],
                        broken(MAIN_PATH, "onboardWorkspace: !useExistingWorkspace", "onboardWorkspace: true"))
    assert "sentinel.bicep:onboarding" in deployment.deployed - PROMISED["sentinel_existing_workspace"]


def test_a_condition_known_only_at_deployment_is_reported() -> None:
    deployment = deploy({}, broken(MAIN_PATH, "createDataCollectionEndpoint: vnetEnabled",
                                   "createDataCollectionEndpoint: !empty(identity.outputs.clientId)"))
    assert any("dataCollectionEndpoint" in u for u in deployment.unevaluable), deployment.unevaluable


def test_a_service_rule_broken_only_in_one_option_is_caught_there() -> None:
    copy_ = broken(MONITORING, "name: dataCollectionEndpointName\n  location: dataCollectionLocation",
                   "name: dataCollectionEndpointName\n  location: location")
    assert rule_problems(deploy({}, copy_)) == []  # no data collection endpoint by default
    problems = rule_problems(deploy(OPTION_SETS["vnetEnabled"], copy_))
    assert any("dataCollectionEndpoint: location location" in p for p in problems), problems


def test_a_type_error_in_a_resource_deployed_only_with_an_option_is_caught_there() -> None:
    copy_ = broken(NETWORK, "privateEndpointNetworkPolicies: 'Disabled'", "privateEndpointNetworkPolicy: 'Disabled'")
    assert type_problems(deploy({}, copy_)) == []  # no network by default
    errors = type_problems(deploy(OPTION_SETS["vnetEnabled"], copy_))
    assert any("privateEndpointNetworkPolicy" in e and "is not a property" in e for e in errors), errors
