"""The data collection rule declared in infra/, read from the Bicep: its streams, each with its declared columns and
their types, and the table each flows into. The Logs Ingestion fake (tests/support/azure_fakes.py) accepts exactly
these.

The rule is in infra/modules/monitoring.bicep; its stream names and columns are parameters that main.bicep passes
from its variables (declared once there, for the tables and the rule alike); both are resolved here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from tests.support import bicep

MAIN = bicep.INFRA / "main.bicep"
DCR_TYPE = "microsoft.insights/datacollectionrules"


@dataclass(frozen=True)
class Stream:
    name: str
    columns: dict[str, str]  # column -> type (string, int, long, real, boolean, datetime, dynamic)
    output_table: str  # e.g. Custom-AwsIamAccessKeys_CL


@dataclass(frozen=True)
class DataCollectionRule:
    module: str  # the Bicep file that declares it
    streams: dict[str, Stream]


def _interpolate(text: str, scope: dict[str, Any]) -> str:
    for name, replacement in scope.items():
        token = "${" + name + "}"
        if token in text and isinstance(resolved := _resolve(replacement, scope), str):
            text = text.replace(token, resolved)
    return text


def _resolve(value: Any, scope: dict[str, Any]) -> Any:
    """Replace names and ${name} interpolations by their values in scope, recursively (object keys: only
    interpolations, as in Bicep)."""
    if isinstance(value, str):
        return _resolve(scope[value], scope) if value in scope else _interpolate(value, scope)
    if isinstance(value, list):
        return [_resolve(v, scope) for v in value]
    if isinstance(value, dict):
        return {_interpolate(k.strip("'"), scope): _resolve(v, scope) for k, v in value.items()}
    return value


@cache
def declared_rule() -> DataCollectionRule:
    """The one data collection rule the deployment creates (not an `existing` reference)."""
    main = bicep.parse(MAIN)
    main_scope = {name: var["value"] for name, var in (main.get("variables") or {}).items()}
    found = []
    for path in bicep.bicep_files():
        tree = bicep.parse(path)
        for resource in (tree.get("resources") or {}).values():
            if resource["type"].lower() != DCR_TYPE or resource["existing"]:
                continue
            module = path.relative_to(bicep.INFRA).as_posix()
            calls = [m for m in (main.get("modules") or {}).values() if m["detail"]["path"] == module]
            assert len(calls) == 1, f"main.bicep should call {module} once"
            params = {k: _resolve(v, main_scope) for k, v in bicep.body(calls[0])["params"].items()}
            scope = {**{name: var["value"] for name, var in (tree.get("variables") or {}).items()}, **params}
            properties = _resolve(bicep.body(resource)["properties"], scope)
            outputs = {s: flow["outputStream"] for flow in properties["dataFlows"] for s in flow["streams"]}
            streams = {
                name: Stream(name, {c["name"]: c["type"] for c in declaration["columns"]}, outputs[name])
                for name, declaration in properties["streamDeclarations"].items()
            }
            found.append(DataCollectionRule(module, streams))
    assert len(found) == 1, f"expected one data collection rule in infra/, found {len(found)}"
    return found[0]
