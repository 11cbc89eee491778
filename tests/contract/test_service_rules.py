"""Rules of the Azure services that their published type data cannot express, checked against infra/: one table,
each rule with the documentation it comes from. A rule broken here is a deployment that the type check passes and
Azure refuses (or accepts and then misbehaves). Any module added under infra/ is covered.

The mutation tests at the end feed each rule a broken copy of the project's Bicep and prove it fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import bicep

INFRA = bicep.INFRA
Trees = dict[Path, dict[str, Any]]

# Scheduled query rules (log search alerts), API 2023-12-01.
ALERT_WINDOW_SIZES = {"PT5M": 5, "PT10M": 10, "PT15M": 15, "PT30M": 30, "PT45M": 45, "PT1H": 60, "PT2H": 120,
                      "PT3H": 180, "PT4H": 240, "PT5H": 300, "PT6H": 360, "P1D": 1440, "P2D": 2880}
ALERT_EVALUATION_FREQUENCIES = {"PT1M": 1, "PT5M": 5, "PT10M": 10, "PT15M": 15, "PT30M": 30, "PT45M": 45, "PT1H": 60,
                                "PT2H": 120, "PT3H": 180, "PT4H": 240, "PT5H": 300, "PT6H": 360, "P1D": 1440}

# Regions that offer the Flex Consumption plan.
FLEX_CONSUMPTION_REGIONS = {
    "australiaeast", "australiasoutheast", "brazilsouth", "canadacentral", "centralindia", "centralus", "eastasia",
    "eastus", "eastus2", "francecentral", "germanywestcentral", "italynorth", "japaneast", "koreacentral",
    "northcentralus", "northeurope", "norwayeast", "southafricanorth", "southcentralus", "southeastasia", "southindia",
    "spaincentral", "swedencentral", "uaenorth", "uksouth", "ukwest", "westcentralus", "westeurope", "westus",
    "westus2", "westus3",
}

# App settings the Flex Consumption plan does not support (the platform owns them, or they belong to other plans).
FLEX_CONSUMPTION_FORBIDDEN_SETTINGS = {
    "FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY", "FUNCTIONS_WORKER_PROCESS_COUNT", "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTOVERVNET", "WEBSITE_CONTENTSHARE", "WEBSITE_DNS_SERVER",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT", "WEBSITE_NODE_DEFAULT_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION", "WEBSITE_VNET_ROUTE_ALL",
}

# Azure built-in roles (id -> name) the infrastructure may grant.
BUILT_IN_ROLES = {
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "43d0d8ad-25c7-4714-9337-8ba259a9fe05": "Monitoring Reader",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "73c42c96-874c-492b-b04d-ab87d138a893": "Log Analytics Reader",
    # Sends e-mail with Microsoft Entra ID through a Communication Services resource (owner digests).
    "09976791-48a7-449e-bb21-39d1a415f350": "Communication and Email Service Owner",
    "92aaf0da-9dab-42b6-94a3-d43ce8d16293": "Log Analytics Contributor",
    "ab8e14d6-4a74-4a29-9ba8-549422addade": "Microsoft Sentinel Contributor",
    "8d289c81-5878-46d4-8554-54e1e3d8b5cb": "Microsoft Sentinel Reader",
    "3e150937-b8fe-4cfb-8069-0eaf05ecd056": "Microsoft Sentinel Responder",
}
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def parse_all(overrides: dict[Path, str] | None = None) -> Trees:
    overrides = overrides or {}
    return {path: bicep.parse(path, overrides.get(path)) for path in bicep.bicep_files()}


def allowed_values(tree: dict[str, Any], parameter: str) -> list[Any]:
    param = tree["parameters"][parameter]
    for decorator in param["decorators"]:
        if decorator["type"] == "allowed":
            return list(decorator["argument"])
    raise AssertionError(f"parameter {parameter} has no @allowed list: the rule cannot see its values")


def minutes(hours_or_value: Any) -> int:
    return int(hours_or_value) * 60


def alert_window_values(tree: dict[str, Any], expression: Any) -> list[tuple[Any, str]]:
    """(parameter value, window) for every value a windowSize expression can take."""
    if isinstance(expression, str):  # a literal (pycep drops the quotes)
        return [(None, expression)]
    accessor = expression["operator"]
    assert accessor["type"] == "index_accessor", f"windowSize {expression} is neither a literal nor a lookup"
    table = {k.strip("'"): v for k, v in tree["variables"][accessor["operands"]["operand_1"]]["value"].items()}
    parameter = accessor["operands"]["operand_2"]["function"]["parameters"]["value_to_convert"]
    return [(hours, table.get(str(hours), "<missing>")) for hours in allowed_values(tree, parameter)]


def rule_alert_windows(trees: Trees) -> list[str]:
    problems = []
    for path, tree in trees.items():
        for name, resource in (tree.get("resources") or {}).items():
            if resource["type"].lower() != "microsoft.insights/scheduledqueryrules":
                continue
            properties = bicep.body(resource)["properties"]
            frequency = properties["evaluationFrequency"]
            if frequency not in ALERT_EVALUATION_FREQUENCIES:
                problems.append(f"{path.name}:{name}: evaluationFrequency {frequency} is not accepted")
            for hours, window in alert_window_values(tree, properties["windowSize"]):
                label = f"{path.name}:{name}: windowSize for {hours} h" if hours else f"{path.name}:{name}: windowSize"
                if window not in ALERT_WINDOW_SIZES:
                    problems.append(f"{label} is {window}, not one the service accepts")
                    continue
                if hours is not None:
                    holding = [w for w, m in ALERT_WINDOW_SIZES.items() if m >= minutes(hours)]
                    smallest = min(holding, key=ALERT_WINDOW_SIZES.__getitem__)
                    if window != smallest:
                        problems.append(f"{label} is {window}; the smallest accepted window holding it is {smallest}")
                if ALERT_WINDOW_SIZES[window] < ALERT_EVALUATION_FREQUENCIES.get(frequency, 0):
                    problems.append(f"{label} {window} is shorter than the evaluation frequency {frequency}")
            problems += lookback_replacements(path, name, properties)
    return problems


def lookback_replacements(path: Path, name: str, properties: dict[str, Any]) -> list[str]:
    """A replace() of the query's lookback line must find that line, or the rule silently keeps the default."""
    problems = []
    for _, value in bicep.walk(properties):
        call = bicep.function_call(value)
        if call and call[0] == "replace":
            params = call[1]
            text = bicep.loaded_text(params["original_string"], path, {})
            if text is None or params["old_string"] not in text:
                problems.append(f"{path.name}:{name}: the query has no {params['old_string']!r} line to replace")
    return problems


def rule_data_collection_in_workspace_region(trees: Trees) -> list[str]:
    problems = []
    main = trees[INFRA / "main.bicep"]
    for path, tree in trees.items():
        for name, resource in (tree.get("resources") or {}).items():
            kind = resource["type"].lower()
            if kind not in ("microsoft.insights/datacollectionendpoints", "microsoft.insights/datacollectionrules"):
                continue
            if resource["existing"]:
                continue
            location = bicep.body(resource)["location"]
            module = path.relative_to(INFRA).as_posix()
            calls = [m for m in main["modules"].values() if m["detail"]["path"] == module]
            passed = {bicep.body(m)["params"].get(location) for m in calls}
            if not calls or passed != {"workspaceLocation"}:
                problems.append(
                    f"{path.name}:{name}: location {location} is given {passed or 'nothing'} by main.bicep, "
                    "not workspaceLocation"
                )
    text = str(main["variables"].get("workspaceLocation", {}).get("value"))
    if "existingWorkspace" not in text or "location" not in text:
        problems.append("main.bicep: workspaceLocation is not the existing workspace's location")
    existing = main["resources"].get("existingWorkspace")
    if not existing or existing["type"] != "Microsoft.OperationalInsights/workspaces" or not existing["existing"]:
        problems.append("main.bicep: no existing-workspace lookup (existingWorkspace) to read the location from")
    new_workspace = [m for m in main["modules"].values() if m["detail"]["path"] == "modules/log-analytics.bicep"]
    # (a deployment on an existing workspace creates none: nothing to check)
    if new_workspace and [bicep.body(m)["params"]["location"] for m in new_workspace] != ["location"]:
        problems.append("main.bicep: a new workspace is not created in the deployment's location")
    return problems


def rule_flex_consumption_regions(trees: Trees) -> list[str]:
    offered = set(allowed_values(trees[INFRA / "main.bicep"], "location"))
    problems = [f"main.bicep: location {r} is offered but has no Flex Consumption" for r in offered
                - FLEX_CONSUMPTION_REGIONS]
    problems += [f"main.bicep: location {r} has Flex Consumption but is not offered" for r in FLEX_CONSUMPTION_REGIONS
                 - offered]
    return problems


def setting_names(node: Any) -> set[str]:
    """Names of app settings in an object literal, a union() of them, or variables holding them (main.bicep)."""
    names: set[str] = set()
    for _, value in bicep.walk(node):
        if isinstance(value, dict) and not bicep.function_call(value) and "operator" not in value:
            names |= {k.strip("'") for k in value if re.fullmatch(r"'?[A-Za-z_][A-Za-z0-9_]*'?", k)}
    return names


def rule_flex_consumption_settings(trees: Trees) -> list[str]:
    main = trees[INFRA / "main.bicep"]
    names = setting_names([main["variables"][v]["value"] for v in ("collectorSettings", "legacySettings")])
    for tree in trees.values():
        for resource in (tree.get("resources") or {}).values():
            if resource["type"].lower() == "microsoft.web/sites/config":
                names |= setting_names(bicep.body(resource).get("properties"))
    return [f"app setting {n} is not supported on Flex Consumption" for n in sorted(names
            & FLEX_CONSUMPTION_FORBIDDEN_SETTINGS)]


def camel(name: str) -> str:
    words = name.split()
    return words[0].lower() + "".join(w[:1].upper() + w[1:] for w in words[1:])


def rule_built_in_role_ids(trees: Trees) -> list[str]:
    problems = []
    for path, tree in trees.items():
        variables = tree.get("variables") or {}
        for name, resource in (tree.get("resources") or {}).items():
            if resource["type"].lower() != "microsoft.authorization/roleassignments":
                continue
            definition = bicep.body(resource)["properties"]["roleDefinitionId"]
            call = bicep.function_call(definition)
            assert call and call[0] == "subscription_resource_id", f"{path.name}:{name}: {definition}"
            role = call[1]["resource_name_1"]
            key = None
            if isinstance(role, dict):  # roles.someRole
                operands = role["operator"]["operands"]
                key = operands["operand_2"]
                role = {k.strip("'"): v for k, v in variables[operands["operand_1"]]["value"].items()}[key]
            if not isinstance(role, str) or not GUID.match(role):
                problems.append(f"{path.name}:{name}: role id {role!r} is not a literal GUID")
            elif role not in BUILT_IN_ROLES:
                problems.append(f"{path.name}:{name}: {role} is not a built-in role this table knows")
            elif key is not None and key != camel(BUILT_IN_ROLES[role]):
                problems.append(f"{path.name}:{name}: {key} is the id of {BUILT_IN_ROLES[role]}")
    return problems


def iso_minutes(duration: str) -> int:
    """Minutes of an ISO 8601 duration of the forms PnD, PTnH, PTnM."""
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", duration)
    assert match and any(match.groups()), f"not a duration: {duration}"
    days, hours, mins = (int(g or 0) for g in match.groups())
    return days * 1440 + hours * 60 + mins


def parameter_values(tree: dict[str, Any], name: str) -> list[Any]:
    """Every value a parameter can take: its @allowed list, else its @minValue..@maxValue range."""
    decorators = {d["type"]: d["argument"] for d in tree["parameters"][name]["decorators"]}
    if "allowed" in decorators:
        return list(decorators["allowed"])
    return list(range(decorators["min_value"], decorators["max_value"] + 1))


def expansions(tree: dict[str, Any], *templates: str) -> list[tuple[str, ...]]:
    """Strings with ${parameter} interpolations, for every combination of their parameters' values (a parameter used
    in several takes the same value in each)."""
    names = sorted({n for t in templates for n in re.findall(r"\$\{(\w+)\}", t)})
    combinations: list[dict[str, Any]] = [{}]
    for name in names:
        combinations = [{**c, name: v} for c in combinations for v in parameter_values(tree, name)]
    results = []
    for combination in combinations:
        filled = list(templates)
        for name, value in combination.items():
            filled = [t.replace("${" + name + "}", str(value)) for t in filled]
        results.append(tuple(filled))
    return results


def loop_entries(tree: dict[str, Any], resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects a resource loop runs over, through variables (and a `cond ? list : []` choice of one)."""
    detail = (resource["config"].get("loop_type") or {}).get("detail") or {}
    value: Any = detail["array_name"]
    variables = tree.get("variables") or {}
    while True:
        if isinstance(value, str) and value in variables:
            value = variables[value]["value"]
        elif isinstance(value, dict) and value.get("operator", {}).get("type") == "conditional":
            value = value["operator"]["operands"]["true_value"]
        else:
            break
    assert isinstance(value, list), f"cannot read the loop's items: {value}"
    return value


def item_field(properties: dict[str, Any], key: str, item: str, entry: dict[str, Any]) -> str:
    """A property's value for one loop item: `item.field` read from the item, anything else as written."""
    raw = properties[key]
    if isinstance(raw, str) and raw.startswith(item + "."):
        return str(entry[raw.split(".", 1)[1]])
    operands = raw.get("operator", {}).get("operands", {}) if isinstance(raw, dict) else {}
    if operands.get("operand_1") == item:  # pycep's form of item.field
        return str(entry[operands["operand_2"]])
    return str(raw)


SENTINEL_MIN, SENTINEL_MAX = 5, 14 * 1440


def rule_sentinel_schedules(trees: Trees) -> list[str]:
    problems = []
    for path, tree in trees.items():
        for name, resource in (tree.get("resources") or {}).items():
            if not resource["type"].lower().startswith("microsoft.securityinsights/alertrules"):
                continue
            properties = bicep.body(resource)["properties"]
            item = ((resource["config"].get("loop_type") or {}).get("detail") or {}).get("item_name", "")
            for entry in loop_entries(tree, resource) if item else [properties]:
                label = f"{path.name}:{name}:{entry.get('id', '')}"
                schedule = (item_field(properties, "queryFrequency", item, entry),
                            item_field(properties, "queryPeriod", item, entry))
                for frequency, period in expansions(tree, *schedule):
                    f, p = iso_minutes(frequency), iso_minutes(period)
                    if not (SENTINEL_MIN <= f <= SENTINEL_MAX and SENTINEL_MIN <= p <= SENTINEL_MAX and f <= p):
                        problems.append(f"{label}: queryFrequency {frequency}, queryPeriod {period}")
    return problems


def dotted(node: Any) -> str:
    """A property access (a.b.c) as its dotted text; anything else as its repr."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
        operands = node["operator"]["operands"]
        return f"{dotted(operands['operand_1'])}.{dotted(operands['operand_2'])}"
    return repr(node)


def resources_of(trees: Trees, type_: str) -> list[tuple[Path, str, dict[str, Any]]]:
    return [(path, name, r) for path, tree in trees.items() for name, r in (tree.get("resources") or {}).items()
            if r["type"].lower() == type_.lower() and not r["existing"]]


def module_calls(trees: Trees, module: str) -> list[dict[str, Any]]:
    return [bicep.body(m) for m in (trees[INFRA / "main.bicep"].get("modules") or {}).values()
            if m["detail"]["path"] == module]


def is_flex_site(resource: dict[str, Any]) -> bool:
    return "functionAppConfig" in (bicep.body(resource).get("properties") or {})


def rule_flex_no_ftps_state(trees: Trees) -> list[str]:
    problems = []
    for path, name, site in resources_of(trees, "Microsoft.Web/sites"):
        site_config = (bicep.body(site).get("properties") or {}).get("siteConfig") or {}
        if is_flex_site(site) and "ftpsState" in site_config:
            problems.append(f"{path.name}:{name}: siteConfig.ftpsState on a Flex Consumption site")
    return problems


def rule_flex_maximum_instance_count(trees: Trees) -> list[str]:
    """Every value maximumInstanceCount can take is at least 40: a literal, or a parameter whose @minValue (in the
    module and in main.bicep, which feeds it) is at least 40."""
    problems = []
    for path, name, site in resources_of(trees, "Microsoft.Web/sites"):
        if not is_flex_site(site):
            continue
        scale = bicep.body(site)["properties"]["functionAppConfig"].get("scaleAndConcurrency") or {}
        value = scale.get("maximumInstanceCount")
        sources: list[tuple[Path, Any]] = [(path, value)]
        module = path.relative_to(INFRA).as_posix()
        sources += [(INFRA / "main.bicep", call["params"].get(value)) for call in module_calls(trees, module)]
        for where, source in sources:
            if isinstance(source, int):
                low = source
            elif isinstance(source, str) and source in (trees[where].get("parameters") or {}):
                decorators = {d["type"]: d["argument"] for d in trees[where]["parameters"][source]["decorators"]}
                low = decorators.get("min_value", 1)
            else:
                problems.append(f"{where.name}: maximumInstanceCount of {name} is {source!r}: neither literal nor "
                                "parameter")
                continue
            if low < 40:
                problems.append(f"{where.name}: maximumInstanceCount of {name} can be {low}, below Flex's lowest 40")
    return problems


def rule_sentinel_onboarded_before_rules(trees: Trees) -> list[str]:
    """Alert rules on a workspace that is not onboarded are refused: the module onboards the workspace it creates
    (onboardingStates 'default' on the same workspace, the rules depending on it), and main.bicep onboards exactly a
    new workspace (an existing one must already be onboarded, docs/deploy.md)."""
    problems = []
    for path, tree in trees.items():
        resources = tree.get("resources") or {}
        rules = {n: r for n, r in resources.items() if r["type"].lower() == "microsoft.securityinsights/alertrules"}
        if not rules:
            continue
        onboarding = {n: r for n, r in resources.items()
                      if r["type"].lower() == "microsoft.securityinsights/onboardingstates" and not r["existing"]}
        if len(onboarding) != 1:
            problems.append(f"{path.name}: alert rules but {len(onboarding)} onboardingStates resources")
            continue
        ((onboarding_name, state),) = onboarding.items()
        config = bicep.body(state)
        if config.get("name") != "default":
            problems.append(f"{path.name}:{onboarding_name}: onboardingStates is named {config.get('name')!r}")
        for name, rule in rules.items():
            body = bicep.body(rule)
            if body.get("scope") != config.get("scope"):
                problems.append(f"{path.name}:{name}: scope {body.get('scope')} is not the onboarded workspace")
            if onboarding_name not in (body.get("dependsOn") or []):
                problems.append(f"{path.name}:{name}: does not depend on {onboarding_name}")
        module = path.relative_to(INFRA).as_posix()
        for call in module_calls(trees, module):
            onboard = call["params"].get("onboardWorkspace")
            if onboard != {"operator": {"type": "not", "operands": {"bool_value": "useExistingWorkspace"}}}:
                problems.append(f"main.bicep: {module} onboardWorkspace is {onboard!r}, not !useExistingWorkspace")
    return problems


def rule_logs_ingestion_endpoint(trees: Trees) -> list[str]:
    """The rule is of kind Direct (only then does Azure give it its own Logs Ingestion endpoint); a data collection
    endpoint exists only when private link needs one (vnetEnabled); LOGS_INGESTION_ENDPOINT is the rule's own endpoint,
    or the data collection endpoint's when there is one."""
    problems = []
    for path, name, rule in resources_of(trees, "Microsoft.Insights/dataCollectionRules"):
        if bicep.body(rule).get("kind") != "Direct":
            problems.append(f"{path.name}:{name}: kind {bicep.body(rule).get('kind')!r}, not Direct: no own endpoint")
        tree = trees[path]
        endpoints = [(n, r) for n, r in (tree.get("resources") or {}).items()
                     if r["type"].lower() == "microsoft.insights/datacollectionendpoints" and not r["existing"]]
        output = (tree.get("outputs") or {}).get("logsIngestionEndpoint", {}).get("value")
        if not endpoints:
            if dotted(output) != f"{name}.properties.endpoints.logsIngestion":
                problems.append(f"{path.name}: logsIngestionEndpoint is {dotted(output)}, not the rule's own")
            continue
        ((endpoint_name, endpoint),) = endpoints
        condition = endpoint["config"].get("condition")
        operands = (output or {}).get("operator", {}).get("operands", {}) if isinstance(output, dict) else {}
        if not condition or operands.get("condition") != condition:
            problems.append(f"{path.name}:{endpoint_name}: a data collection endpoint created without a condition, or "
                            "the endpoint output does not follow it")
        elif (dotted(operands["true_value"]) != f"{endpoint_name}.properties.logsIngestion.endpoint"
              or dotted(operands["false_value"]) != f"{name}.properties.endpoints.logsIngestion"):
            problems.append(f"{path.name}: logsIngestionEndpoint does not take the rule's own endpoint without the DCE")
        module = path.relative_to(INFRA).as_posix()
        for call in module_calls(trees, module):
            if call["params"].get(condition) != "vnetEnabled":
                problems.append(f"main.bicep: {module} {condition} is {call['params'].get(condition)!r}, not "
                                "vnetEnabled (private link)")
    return problems


def rule_identity_based_host_storage(trees: Trees) -> list[str]:
    """An identity-based AzureWebJobsStorage names the blob, queue and table service URIs (the platform's check for a
    configured host storage), and the identity may write the host's diagnostic-event table."""
    problems = []
    names: set[str] = set()
    for _, _, config in resources_of(trees, "Microsoft.Web/sites/config"):
        names |= setting_names(bicep.body(config).get("properties"))
    if "AzureWebJobsStorage__credential" in names and "AzureWebJobsStorage__accountName" not in names:
        for service in ("blob", "queue", "table"):
            if f"AzureWebJobsStorage__{service}ServiceUri" not in names:
                problems.append(f"AzureWebJobsStorage__{service}ServiceUri is not set")
    granted = set()
    for path, _, assignment in resources_of(trees, "Microsoft.Authorization/roleAssignments"):
        body = bicep.body(assignment)
        role = bicep.function_call(body["properties"]["roleDefinitionId"])
        key = dotted(role[1]["resource_name_1"]) if role else ""
        if body["properties"].get("principalId") == "principalId":
            granted.add((path.name, body.get("scope"), key))
    if ("role-assignments.bicep", "storage", "roles.storageTableDataContributor") not in granted:
        problems.append("the app's identity has no Storage Table Data Contributor on its storage account")
    return problems


def rule_key_vault_ip_rules_trimmed(trees: Trees) -> list[str]:
    """Key Vault's ipRules take an IPv4 address or CIDR range each: a comma-separated setting is split, each entry
    trimmed and empty entries dropped before it reaches the vault."""
    main = trees[INFRA / "main.bicep"]
    problems = []
    for call in module_calls(trees, "modules/keyvault.bicep"):
        text = repr(call["params"].get("allowedIpRanges"))
        variables = main.get("variables") or {}
        value = next((repr(v["value"]) for n, v in variables.items() if n in text), text)
        for needed in ("'split'", "'trim'", "'filter'", "'empty'"):
            if needed not in value:
                problems.append(f"main.bicep: allowedIpRanges of Key Vault has no {needed.strip(chr(39))}() of the "
                                "entries")
    return problems


def rule_microsoft_app_registration_documented(trees: Trees, docs: str | None = None) -> list[str]:
    """A subnet delegated to Microsoft.App/environments needs the Microsoft.App resource provider registered in the
    subscription, which a resource-group deployment cannot do: docs/deploy.md says how."""
    delegated = any("Microsoft.App/environments" in repr(tree) for tree in trees.values())
    docs = docs if docs is not None else (INFRA.parent / "docs" / "deploy.md").read_text(encoding="utf-8")
    if delegated and "az provider register --namespace Microsoft.App" not in docs:
        return ["docs/deploy.md does not say to register Microsoft.App for vnetEnabled"]
    return []


@dataclass(frozen=True)
class ServiceRule:
    rule: str
    source: str
    check: Callable[[Trees], list[str]]


SERVICE_RULES = [
    ServiceRule(
        "Log search alert windowSize is 5/10/15/30/45 min, 1-6 h, 1 or 2 days (the smallest holding the lookback); "
        "evaluationFrequency 1/5/10/15/30/45 min, 1-6 h or 1 day, not longer than the window; the query's lookback "
        "line exists for the rule to set",
        "learn.microsoft.com/azure/azure-monitor/alerts/alerts-create-log-alert-rule (Aggregation granularity, "
        "Frequency of evaluation); service error 'Supported granularities are: 5, 10, 15, 30, 45, 60, 120, 180, 240, "
        "300, 360, 1440, 2880'",
        rule_alert_windows,
    ),
    ServiceRule(
        "Data collection endpoint and rule are in the region of the Log Analytics workspace they send to",
        "learn.microsoft.com/azure/azure-monitor/essentials/data-collection-endpoint-overview (Regionality: the DCE "
        "must be in the same region as the workspace); logs-ingestion-api-overview",
        rule_data_collection_in_workspace_region,
    ),
    ServiceRule(
        "Only regions that offer the Flex Consumption plan are offered for location",
        "learn.microsoft.com/azure/azure-functions/flex-consumption-how-to (az functionapp "
        "list-flexconsumption-locations); Azure-Samples/functions-quickstart-python-http-azd infra/main.bicep @allowed "
        "(commit 7ed4638, 2025-11-24, less the canary eastus2euap)",
        rule_flex_consumption_regions,
    ),
    ServiceRule(
        "No app setting that the Flex Consumption plan does not support",
        "learn.microsoft.com/azure/azure-functions/flex-consumption-plan (Deprecated properties and settings); "
        "functions-app-settings ('not supported in the Flex Consumption plan')",
        rule_flex_consumption_settings,
    ),
    ServiceRule(
        "Microsoft Sentinel scheduled analytics rules run every 5 minutes to 14 days over a period of 5 minutes to 14 "
        "days, not shorter than the frequency, for every value of the parameters they use",
        "learn.microsoft.com/azure/sentinel/create-analytics-rules (Query scheduling: Run query every, Lookup data "
        "from the last); API Microsoft.SecurityInsights/alertRules 2025-09-01 queryFrequency/queryPeriod",
        rule_sentinel_schedules,
    ),
    ServiceRule(
        "Every role assignment names a built-in role by its id, and the name it is given is that role's",
        "learn.microsoft.com/azure/role-based-access-control/built-in-roles (role ids)",
        rule_built_in_role_ids,
    ),
    ServiceRule(
        "A Flex Consumption site sets no siteConfig.ftpsState (newer stamps refuse it, ARM error 51021)",
        "github.com/microsoft/azure-pipelines-tasks/issues/21032; github.com/Azure/terraform-azurerm-avm-res-web-site/"
        "issues/360; Azure-Samples/functions-quickstart-python-http-azd infra/app/api.bicep sets none",
        rule_flex_no_ftps_state,
    ),
    ServiceRule(
        "A Flex Consumption app's maximumInstanceCount is at least 40, for every value its parameters allow",
        "learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#set-instance-counts (the lowest maximum "
        "instance count is 40)",
        rule_flex_maximum_instance_count,
    ),
    ServiceRule(
        "Microsoft Sentinel analytics rules need the workspace onboarded (onboardingStates 'default') first; a new "
        "workspace is onboarded, an existing one must already be",
        "learn.microsoft.com/azure/sentinel/quickstart-onboard (onboard through the OnboardingStates API); "
        "learn.microsoft.com/rest/api/securityinsights/sentinel-onboarding-states/create; "
        "github.com/Azure/azure-quickstart-templates/issues/14256",
        rule_sentinel_onboarded_before_rules,
    ),
    ServiceRule(
        "Logs Ingestion through the rule's own endpoint (kind Direct); a data collection endpoint only for private "
        "link (vnetEnabled)",
        "learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview (an endpoint specified by the DCR, "
        "or a DCE if you're using private link); learn.microsoft.com/azure/azure-monitor/data-collection/"
        "data-collection-rule-structure (endpoints: created only if kind is Direct)",
        rule_logs_ingestion_endpoint,
    ),
    ServiceRule(
        "Identity-based AzureWebJobsStorage names blob, queue and table service URIs (or accountName), and the "
        "identity may write the host's diagnostic-event table",
        "learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity; "
        "learn.microsoft.com/azure/azure-functions/errors-diagnostics/diagnostic-events/azfd0003; "
        "github.com/Azure/azure-functions-host/issues/9349 and pull/10996",
        rule_identity_based_host_storage,
    ),
    ServiceRule(
        "Key Vault ipRules entries are addresses or CIDR ranges: a comma-separated setting is trimmed, empties dropped",
        "learn.microsoft.com/azure/key-vault/general/network-security (IP rules: IPv4 address ranges in CIDR form)",
        rule_key_vault_ip_rules_trimmed,
    ),
    ServiceRule(
        "A subnet delegated to Microsoft.App/environments needs the Microsoft.App provider registered, which Bicep at "
        "resource-group scope cannot do: the docs say how",
        "learn.microsoft.com/azure/azure-resource-manager/management/resource-providers-and-types (register a "
        "resource provider); learn.microsoft.com/azure/azure-functions/flex-consumption-how-to (virtual network "
        "integration, subnet delegated to Microsoft.App/environments)",
        rule_microsoft_app_registration_documented,
    ),
]


@pytest.mark.parametrize("service_rule", SERVICE_RULES, ids=lambda r: r.check.__name__)
def test_service_rule(service_rule: ServiceRule) -> None:
    problems = service_rule.check(parse_all())
    assert not problems, f"{service_rule.rule}\n(source: {service_rule.source})\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------------------------------------
# Each rule fails on a broken copy of the project's own Bicep.

ALERTS = INFRA / "modules" / "alerts.bicep"
MONITORING = INFRA / "modules" / "monitoring.bicep"
MAIN = INFRA / "main.bicep"
FUNCTION_APP = INFRA / "modules" / "function-app.bicep"
SENTINEL = INFRA / "modules" / "sentinel.bicep"


def mutant(path: Path, old: str, new: str) -> Trees:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}: update the mutant"
    return parse_all({path: text.replace(old, new, 1)})


@pytest.mark.parametrize(
    ("check", "path", "old", "new", "expected"),
    [
        (rule_alert_windows, ALERTS, "windowSize: windowSizeOfHours[string(runFailedWindowHours)]",
         "windowSize: 'PT12H'", "PT12H, not one the service accepts"),
        (rule_alert_windows, ALERTS, "'12': 'P1D'", "'12': 'P2D'", "smallest accepted window holding it is P1D"),
        (rule_alert_windows, ALERTS, "  48\n])\n@description('Hours of run records",
         "  48\n  72\n])\n@description('Hours of run records", "windowSize for 72 h is <missing>"),
        (rule_alert_windows, ALERTS, "evaluationFrequency: 'PT15M'", "evaluationFrequency: 'PT20M'",
         "evaluationFrequency PT20M"),
        (rule_alert_windows, ALERTS, "'let lookback = 6h;'", "'let lookback = 4h;'", "no 'let lookback = 4h;' line"),
        (rule_data_collection_in_workspace_region, MONITORING,
         "name: dataCollectionEndpointName\n  location: dataCollectionLocation",
         "name: dataCollectionEndpointName\n  location: location", "given {'location'}"),
        (rule_data_collection_in_workspace_region, MAIN, "dataCollectionLocation: workspaceLocation",
         "dataCollectionLocation: location", "not workspaceLocation"),
        (rule_flex_consumption_regions, MAIN, "  'westus3'\n", "  'westus3'\n  'chilecentral'\n", "chilecentral"),
        (rule_flex_consumption_settings, MAIN, "  COLLECTOR_SCHEDULE: collectorSchedule\n",
         "  COLLECTOR_SCHEDULE: collectorSchedule\n  FUNCTIONS_WORKER_RUNTIME: 'python'\n", "FUNCTIONS_WORKER_RUNTIME"),
        (rule_flex_consumption_settings, INFRA / "modules" / "function-app.bicep",
         "    AzureWebJobsStorage__credential: 'managedidentity'\n",
         "    AzureWebJobsStorage__credential: 'managedidentity'\n    WEBSITE_RUN_FROM_PACKAGE: '1'\n",
         "WEBSITE_RUN_FROM_PACKAGE"),
        (rule_sentinel_schedules, INFRA / "modules" / "sentinel.bicep", "    frequency: 'PT1H'\n    period: 'P14D'",
         "    frequency: 'PT1H'\n    period: 'P15D'", "queryPeriod P15D"),
        (rule_sentinel_schedules, INFRA / "modules" / "sentinel.bicep", "@maxValue(48)", "@maxValue(400)",
         "queryPeriod PT400H"),
        (rule_built_in_role_ids, INFRA / "modules" / "role-assignments.bicep",
         "storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'",
         "storageBlobDataOwner: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'", "is the id of Storage Blob Data Contributor"),
        (rule_built_in_role_ids, INFRA / "modules" / "role-assignments.bicep",
         "keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'",
         "keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e7'", "not a built-in role"),
        (rule_flex_no_ftps_state, FUNCTION_APP, "      http20Enabled: true\n",
         "      http20Enabled: true\n      ftpsState: 'Disabled'\n", "siteConfig.ftpsState on a Flex Consumption site"),
        (rule_flex_maximum_instance_count, MAIN, "@minValue(40)\n@maxValue(1000)\n@description('Maximum instance",
         "@minValue(1)\n@maxValue(1000)\n@description('Maximum instance", "can be 1, below Flex's lowest 40"),
        (rule_flex_maximum_instance_count, FUNCTION_APP, "@minValue(40)", "@minValue(39)", "can be 39"),
        (rule_sentinel_onboarded_before_rules, SENTINEL, "  dependsOn: [\n    onboarding\n  ]\n", "",
         "does not depend on onboarding"),
        (rule_sentinel_onboarded_before_rules, SENTINEL, "  name: 'default'\n  properties: {}", "  name: 'sentinel'\n"
         "  properties: {}", "is named 'sentinel'"),
        (rule_sentinel_onboarded_before_rules, MAIN, "onboardWorkspace: !useExistingWorkspace",
         "onboardWorkspace: false", "not !useExistingWorkspace"),
        (rule_logs_ingestion_endpoint, MONITORING, "  kind: 'Direct'\n", "", "not Direct"),
        (rule_logs_ingestion_endpoint, MONITORING, "= if (createDataCollectionEndpoint) {", "= {",
         "created without a condition"),
        (rule_logs_ingestion_endpoint, MAIN, "createDataCollectionEndpoint: vnetEnabled",
         "createDataCollectionEndpoint: true", "not vnetEnabled"),
        (rule_identity_based_host_storage, FUNCTION_APP,
         "    AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table\n", "",
         "AzureWebJobsStorage__tableServiceUri is not set"),
        (rule_identity_based_host_storage, INFRA / "modules" / "role-assignments.bicep",
         "roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
         "roles.storageTableDataContributor)",
         "roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
         "roles.storageBlobDataOwner)", "no Storage Table Data Contributor"),
        (rule_key_vault_ip_rules_trimmed, MAIN, "allowedIpRanges: vnetEnabled ? keyVaultAllowedIps : []",
         "allowedIpRanges: vnetEnabled ? split(keyVaultAllowedIpRanges, ',') : []", "no trim()"),
    ],
)
def test_service_rule_fails_on_broken_bicep(
    check: Callable[[Trees], list[str]], path: Path, old: str, new: str, expected: str
) -> None:
    problems = check(mutant(path, old, new))
    assert any(expected in p for p in problems), problems


def test_the_provider_registration_rule_fails_on_docs_without_it() -> None:
    docs = (INFRA.parent / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "az provider register --namespace Microsoft.App" in docs
    broken = docs.replace("az provider register --namespace Microsoft.App", "az provider show -n Microsoft.App")
    assert rule_microsoft_app_registration_documented(parse_all(), broken) == [
        "docs/deploy.md does not say to register Microsoft.App for vnetEnabled"]
