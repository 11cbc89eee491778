"""infra/modules/sentinel.bicep: every alert of the product as a Microsoft Sentinel scheduled analytics rule, plus
hunting queries for the usage join, deployed only when asked.

The module is parsed (pycep) and its rule table evaluated; property names and values are checked against Azure's own
resource type data (tests/data/azure-types/, the files the Bicep compiler uses), entity mappings and custom details
against the columns the loaded query projects.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

pycep = pytest.importorskip("pycep")

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "infra" / "modules" / "sentinel.bicep"
QUERIES = ROOT / "queries"
TYPES = ROOT / "tests" / "data" / "azure-types"

# Sentinel's entity identifiers for the entity types the rules map (Microsoft Sentinel entity reference).
ENTITY_IDENTIFIERS = {
    "Account": {"Name", "FullName", "NTDomain", "DnsDomain", "UPNSuffix", "Sid", "AadTenantId", "AadUserId", "PUID",
                "IsDomainJoined", "DisplayName", "ObjectGuid", "CloudAppAccountId"},
    "IP": {"Address"},
}


@cache
def parsed() -> dict[str, Any]:
    result: dict[str, Any] = pycep.BicepParser().parse(text=MODULE.read_text(encoding="utf-8"))
    return result


def variables() -> dict[str, Any]:
    return {name: v["value"] for name, v in parsed()["variables"].items()}


def parameter_defaults() -> dict[str, Any]:
    return {name: p.get("default") for name, p in parsed()["parameters"].items()}


def evaluate(node: Any) -> Any:
    """The value of a variable's expression as far as the module uses them: literals, variable references,
    loadTextContent, replace and union of objects; ${param} interpolation with the parameters' defaults."""
    names = variables()
    if isinstance(node, str):
        if node in names:
            return evaluate(names[node])
        return re.sub(r"\$\{(\w+)\}", lambda m: str(parameter_defaults()[m[1]]), node)
    if isinstance(node, list):
        return [evaluate(n) for n in node]
    if isinstance(node, dict) and "function" in node:
        function = node["function"]
        params = function["parameters"]
        if function["type"] == "load_text_content":
            return (MODULE.parent / params["file_path"]).resolve()
        if function["type"] == "replace":
            return ("replace", evaluate(params["original_string"]), evaluate(params["old_string"]),
                    evaluate(params["new_string"]))
        if function["type"] == "union":
            merged: dict[str, Any] = {}
            for value in params.values():
                merged.update(evaluate(value))
            return merged
        raise AssertionError(f"cannot evaluate {function['type']}")
    if isinstance(node, dict):
        return {k: evaluate(v) for k, v in node.items()}
    return node


def query_path(query: Any) -> Path:
    return query[1] if isinstance(query, tuple) else query


def rules() -> list[dict[str, Any]]:
    return list(evaluate("rules"))


def hunting_queries() -> list[dict[str, Any]]:
    return list(evaluate("huntingQueries"))


@cache
def type_nodes(file_name: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = json.loads((TYPES / file_name).read_text(encoding="utf-8"))
    return nodes


def object_type(file_name: str, name: str) -> dict[str, Any]:
    (found,) = [t for t in type_nodes(file_name) if t.get("$type") == "ObjectType" and t.get("name") == name]
    return found


def node(file_name: str, ref: dict[str, str]) -> dict[str, Any]:
    return type_nodes(file_name)[int(ref["$ref"].removeprefix("#/"))]


def allowed_values(file_name: str, ref: dict[str, str]) -> set[str]:
    """The string literals a union type names. Azure's "extensible enums" also admit any string; the rules use only
    the named values, which the service knows."""
    union = node(file_name, ref)
    if union["$type"] == "ArrayType":
        return allowed_values(file_name, union["itemType"])
    assert union["$type"] == "UnionType", union
    members = [node(file_name, element) for element in union["elements"]]
    return {m["value"] for m in members if m["$type"] == "StringLiteralType"}


SECURITY_INSIGHTS = "securityinsights__microsoft.securityinsights__2025-09-01.json"
OPERATIONAL_INSIGHTS = "operationalinsights__microsoft.operationalinsights__2023-09-01.json"


def accessor(value: Any) -> str | None:
    """`rule.x` -> "x"."""
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        operands = value["operator"]["operands"]
        return str(operands["operand_2"])
    return None


# --------------------------------------------------------------------------------------------------------------------


def test_nothing_is_deployed_unless_the_workspace_is_a_sentinel_workspace() -> None:
    assert parameter_defaults()["sentinelWorkspace"] is False
    resources = parsed()["resources"]
    loops = {name: r["config"]["loop_type"]["detail"]["array_name"] for name, r in resources.items()
             if not r["existing"] and r["config"].get("loop_type")}
    assert loops == {"analyticsRules": "deployedRules", "hunting": "deployedHuntingQueries"}
    # the one resource outside the loops: onboarding, only for a Sentinel workspace this deployment creates
    others = {name: r["config"].get("condition") for name, r in resources.items()
              if not r["existing"] and not r["config"].get("loop_type")}
    assert others == {"onboarding": {"operator": {"type": "and", "operands": {
        "operand_1": "sentinelWorkspace", "operand_2": "onboardWorkspace"}}}}
    assert parameter_defaults()["onboardWorkspace"] is False
    for name, source in (("deployedRules", "rules"), ("deployedHuntingQueries", "huntingQueries")):
        condition = variables()[name]["operator"]
        assert condition["type"] == "conditional"
        assert condition["operands"] == {"condition": "sentinelWorkspace", "true_value": source, "false_value": []}


def test_every_alert_of_the_product_is_a_rule() -> None:
    loaded = {query_path(rule["query"]) for rule in rules()}
    alerts = {p.resolve() for p in QUERIES.glob("alert-*.kql")}
    assert loaded == alerts
    assert len({rule["id"] for rule in rules()}) == len(rules())


def rule_resource() -> dict[str, Any]:
    resource = parsed()["resources"]["analyticsRules"]
    assert resource["type"] == "Microsoft.SecurityInsights/alertRules" and resource["api_version"] == "2025-09-01"
    config: dict[str, Any] = resource["config"]["config"]
    return config


def test_rule_properties_are_those_of_a_scheduled_rule_of_api_2025_09_01() -> None:
    config = rule_resource()
    assert config["kind"] == "Scheduled" and config["scope"] == "workspace"
    assert config["name"]["function"]["type"] == "guid"  # a stable rule id per workspace and rule
    schema = object_type(SECURITY_INSIGHTS, "ScheduledAlertRuleProperties")["properties"]
    properties = config["properties"]
    assert set(properties) <= set(schema), set(properties) - set(schema)
    required = {name for name, p in schema.items() if p.get("flags", 0) & 1}
    assert required <= set(properties), required - set(properties)
    assert properties["enabled"] is True
    incident = object_type(SECURITY_INSIGHTS, "IncidentConfiguration")["properties"]
    assert set(properties["incidentConfiguration"]) <= set(incident)
    grouping = object_type(SECURITY_INSIGHTS, "GroupingConfiguration")["properties"]
    assert set(properties["incidentConfiguration"]["groupingConfiguration"]) <= set(grouping)
    assert properties["incidentConfiguration"]["groupingConfiguration"]["matchingMethod"] in allowed_values(
        SECURITY_INSIGHTS, grouping["matchingMethod"]["type"])


def test_every_rule_value_is_one_azure_accepts() -> None:
    schema = object_type(SECURITY_INSIGHTS, "ScheduledAlertRuleProperties")["properties"]
    properties = rule_resource()["properties"]
    field = {name: accessor(value) for name, value in properties.items()}
    severities = allowed_values(SECURITY_INSIGHTS, schema["severity"]["type"])
    operators = allowed_values(SECURITY_INSIGHTS, schema["triggerOperator"]["type"])
    tactics = allowed_values(SECURITY_INSIGHTS, schema["tactics"]["type"])
    mapping = object_type(SECURITY_INSIGHTS, "EntityMapping")["properties"]
    entity_types = allowed_values(SECURITY_INSIGHTS, mapping["entityType"]["type"])
    for rule in rules():
        assert rule[field["severity"]] in severities
        assert rule[field["triggerOperator"]] in operators
        assert isinstance(rule[field["triggerThreshold"]], int)
        assert set(rule[field["tactics"]]) <= tactics, rule["id"]
        assert all(re.fullmatch(r"T\d{4}", t) for t in rule[field["techniques"]]), rule["id"]
        for entity in rule["entities"]:
            assert entity["entityType"] in entity_types
            identifiers = {m["identifier"] for m in entity["fieldMappings"]}
            assert identifiers <= ENTITY_IDENTIFIERS[entity["entityType"]], rule["id"]
        assert all(re.fullmatch(r"[A-Za-z0-9]{1,20}", name) for name in rule["details"]), rule["id"]


def iso_minutes(duration: str) -> int:
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", duration)
    assert m and any(m.groups()), duration
    days, hours, minutes = (int(g or 0) for g in m.groups())
    return days * 1440 + hours * 60 + minutes


def test_frequency_and_period_are_within_sentinels_limits() -> None:
    for rule in rules():
        frequency, period = iso_minutes(rule["frequency"]), iso_minutes(rule["period"])
        assert 5 <= frequency <= period <= 14 * 1440, rule["id"]


def output_columns(query: str) -> str:
    """The query's own statement (after its last let): where its output columns are named."""
    return query[query.rindex(";\n") + 2:] if ";\n" in query else query


@pytest.mark.parametrize("index", range(9))
def test_entities_details_and_names_use_columns_the_query_returns(index: int) -> None:
    rule = rules()[index]
    text = query_path(rule["query"]).read_text(encoding="utf-8")
    tail = output_columns(text)
    columns = [m["columnName"] for e in rule["entities"] for m in e["fieldMappings"]]
    columns += list(rule["details"].values())
    columns += re.findall(r"\{\{(\w+)\}\}", rule["nameFormat"])
    for column in columns:
        assert re.search(rf"\b{column}\b", tail), f"{rule['id']}: {column} is not in the query's output"


# Sentinel's strong identifier pairs for an Account (entities reference): a user name alone, FullName or DisplayName
# alone, or the AWS account *name* are weak: alerts of different AWS accounts merge on them, and a playbook matching
# by them can act on a same-named user of another account.
STRONG_ACCOUNT_PAIRS = ({"Name", "UPNSuffix"}, {"Name", "NTDomain"}, {"Name", "DnsDomain"})


def account_mappings_are_strong_and_carry_the_aws_account_id(rule: dict[str, Any]) -> list[str]:
    """What is wrong with one rule's entities (empty: nothing): every Account entity is identified by the user's name
    together with the AWS account id (the column AccountId) as a strong pair, never by a name alone; at most three
    identifiers per entity; a rule whose query returns a source IP maps it."""
    problems = []
    for entity in rule["entities"]:
        mapped = {m["identifier"]: m["columnName"] for m in entity["fieldMappings"]}
        if len(entity["fieldMappings"]) > 3:
            problems.append(f"{entity['entityType']}: more than three identifiers")
        if entity["entityType"] != "Account":
            continue
        if not any(pair <= set(mapped) for pair in STRONG_ACCOUNT_PAIRS):
            problems.append(f"Account mapped by weak identifiers only: {sorted(mapped)}")
        if "AccountId" not in mapped.values():
            problems.append("Account does not carry the AWS account id")
        if mapped.get("Name") != "UserName":
            problems.append(f"Account Name is {mapped.get('Name')}, not the user name")
        if "AccountName" in mapped.values():
            problems.append("Account maps the renamable AWS account name")
    text = query_path(rule["query"]).read_text(encoding="utf-8")
    if re.search(r"\bSourceIpAddress\b", output_columns(text)) and not any(
            e["entityType"] == "IP" for e in rule["entities"]):
        problems.append("the query returns SourceIpAddress but no IP entity is mapped")
    return problems


def test_every_rule_maps_the_account_with_the_aws_account_id_and_the_user_never_a_name_alone() -> None:
    for rule in rules():
        if rule["perResult"]:  # a rule alerting per key has a user to map; the collector's own rules have none
            assert rule["entities"], rule["id"]
        assert account_mappings_are_strong_and_carry_the_aws_account_id(rule) == [], rule["id"]
    by_id = {rule["id"]: rule for rule in rules()}
    (ip,) = [e for e in by_id["new-source"]["entities"] if e["entityType"] == "IP"]
    assert ip["fieldMappings"] == [{"identifier": "Address", "columnName": "SourceIpAddress"}]


def test_a_new_workspace_is_onboarded_before_any_rule_an_existing_one_is_not() -> None:
    onboarding = parsed()["resources"]["onboarding"]
    assert onboarding["type"] == "Microsoft.SecurityInsights/onboardingStates"
    assert onboarding["api_version"] == "2025-09-01"
    config = onboarding["config"]["config"]
    assert (config["scope"], config["name"], config["properties"]) == ("workspace", "default", {})
    assert "onboarding" in rule_resource()["dependsOn"]
    main = pycep.BicepParser().parse(text=(ROOT / "infra" / "main.bicep").read_text(encoding="utf-8"))
    (module,) = [m for m in main["modules"].values() if m["detail"]["path"] == "modules/sentinel.bicep"]
    assert module["config"]["config"]["params"]["onboardWorkspace"] == {
        "operator": {"type": "not", "operands": {"bool_value": "useExistingWorkspace"}}}
    # checked against Azure's type data: the resource type exists at that version with a 'properties' object
    body = object_type(SECURITY_INSIGHTS, "Microsoft.SecurityInsights/onboardingStates")["properties"]
    assert {"name", "properties"} <= set(body)


@pytest.mark.parametrize("broken, expected", [
    # the mappings this module had before: a user name alone, the account name for root keys
    ([{"entityType": "Account", "fieldMappings": [{"identifier": "Name", "columnName": "UserName"}]}],
     "weak identifiers only"),
    ([{"entityType": "Account", "fieldMappings": [{"identifier": "Name", "columnName": "AccountName"}]}],
     "renamable AWS account name"),
    # FullName is not a strong identifier, even with the ARN in it
    ([{"entityType": "Account", "fieldMappings": [{"identifier": "Name", "columnName": "UserName"},
                                                  {"identifier": "FullName", "columnName": "UserArn"}]}],
     "weak identifiers only"),
    # a strong pair, but of the user name and something other than the AWS account id
    ([{"entityType": "Account", "fieldMappings": [{"identifier": "Name", "columnName": "UserName"},
                                                  {"identifier": "UPNSuffix", "columnName": "AccountName"}]}],
     "does not carry the AWS account id"),
    # the new-source rule without its IP
    ([{"entityType": "Account", "fieldMappings": [{"identifier": "Name", "columnName": "UserName"},
                                                  {"identifier": "UPNSuffix", "columnName": "AccountId"}]}],
     "no IP entity"),
])
def test_the_entity_check_catches_weak_mappings(broken: list[dict[str, Any]], expected: str) -> None:
    rule = {**{r["id"]: r for r in rules()}["new-source"], "entities": broken}
    assert any(expected in problem for problem in account_mappings_are_strong_and_carry_the_aws_account_id(rule))


def test_the_silent_rule_fires_on_a_row_and_event_rules_each_run_once() -> None:
    by_id = {rule["id"]: rule for rule in rules()}
    silent = by_id["collector-silent"]
    # The query returns a row when the collector reported before and then fell silent; none before the first run.
    assert (silent["operator"], silent["threshold"]) == ("GreaterThan", 0)
    assert silent["period"] == "P14D"  # it must see the newest run record: the longest period a rule takes
    for rule_id in ("new-key", "new-source", "usage-mismatch", "key-for-another-user"):
        rule = by_id[rule_id]
        text = query_path(rule["query"]).read_text(encoding="utf-8")
        window = re.search(r"^let reportWindow = (\d+)h;", text, re.M)
        assert window and iso_minutes(rule["frequency"]) == int(window[1]) * 60, rule_id
    failed = by_id["run-failed"]
    assert failed["frequency"] == failed["period"]


def test_hunting_queries_are_saved_searches_of_the_usage_join() -> None:
    resource = parsed()["resources"]["hunting"]
    assert resource["type"] == "Microsoft.OperationalInsights/workspaces/savedSearches"
    config = resource["config"]["config"]
    assert config["parent"] == "workspace"
    schema = object_type(OPERATIONAL_INSIGHTS, "SavedSearchProperties")["properties"]
    properties = config["properties"]
    assert set(properties) <= set(schema)
    assert {name for name, p in schema.items() if p.get("flags", 0) & 1} <= set(properties)
    assert properties["category"] == "Hunting Queries"
    assert {tag["name"] for tag in properties["tags"]} == {"description", "tactics", "techniques"}
    queries = {query_path(h["query"]).stem: h["query"] for h in hunting_queries()}
    assert set(queries) == {"kill-first", "key-usage", "alert-key-new-source", "alert-key-usage-mismatch"}
    for name in ("alert-key-new-source", "alert-key-usage-mismatch"):
        kind, path, old, new = queries[name]
        assert kind == "replace" and old in path.read_text(encoding="utf-8")  # the replacement applies
        assert (old, new) == ("let reportWindow = 1h;", "let reportWindow = 7d;")
    rule_schema = object_type(SECURITY_INSIGHTS, "ScheduledAlertRuleProperties")["properties"]
    tactics = allowed_values(SECURITY_INSIGHTS, rule_schema["tactics"]["type"])
    for hunt in hunting_queries():
        assert set(hunt["tactics"].split(",")) <= tactics


def test_queries_fit_load_text_content_and_sentinels_rule_limit() -> None:
    for path in {query_path(r["query"]) for r in rules()} | {query_path(h["query"]) for h in hunting_queries()}:
        assert len(path.read_text(encoding="utf-8")) < 131_072, path.name
    for rule in rules():  # an analytics rule's query is at most 10,000 characters
        assert len(query_path(rule["query"]).read_text(encoding="utf-8")) <= 10_000, rule["id"]


def test_alert_names_use_at_most_three_parameters() -> None:
    """Sentinel's alert name format takes up to three {{column}} parameters."""
    for rule in rules():
        assert len(re.findall(r"\{\{\w+\}\}", rule["nameFormat"])) <= 3, rule["id"]
        assert len(rule["nameFormat"]) <= 256


def test_main_deploys_the_module_only_when_asked() -> None:
    main = pycep.BicepParser().parse(text=(ROOT / "infra" / "main.bicep").read_text(encoding="utf-8"))
    assert main["parameters"]["sentinelWorkspace"]["default"] is False
    (module,) = [m for m in main["modules"].values() if m["detail"]["path"] == "modules/sentinel.bicep"]
    assert module["config"]["condition"] == "sentinelWorkspace"
    params = module["config"]["config"]["params"]
    assert params["sentinelWorkspace"] == "sentinelWorkspace"  # and the module's own loops run over nothing
    assert params["workspaceName"] == "workspaceName"
    assert params["collectorSilentAfterHours"] == "collectorSilentAfterHours"  # the same windows as alerts.bicep
    assert params["runFailedWindowHours"] == "runFailedWindowHours"
    scope = module["config"]["config"]["scope"]["function"]
    assert scope["type"] == "resource_group"  # the workspace's resource group, as the tables
    parameters = json.loads((ROOT / "infra" / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert parameters["sentinelWorkspace"]["value"] == "${SENTINEL_WORKSPACE=false}"
