"""Check Bicep resource declarations against Azure's published resource type data (bicep-types-az), the data the
Bicep compiler itself checks against, without the compiler.

``tests/data/azure-types/*.json`` are copies of ``generated/<folder>/<namespace>/<api-version>/types.json``
(scripts/refresh_azure_types.sh). A ``ResourceType`` node names ``Type@apiVersion`` and points at the ObjectType of
its body; property flags: 1 Required, 2 ReadOnly, 4 WriteOnly, 8 DeployTimeConstant, 16 Identifier.

``check_file`` reports, for every ``resource`` block of a Bicep file:
- a type@apiVersion absent from the data,
- a property name the type does not declare (at any depth, through arrays and discriminated objects),
- a literal value the type does not accept (string literal / enum, integer bounds, string length and pattern,
  boolean, object vs array),
- a read-only property set, a required property missing.
Values computed at deployment (parameters, variables, function calls, interpolations) are not literals and are
checked only where they are objects or arrays written out in the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.support import bicep

TYPES_DIR = Path(__file__).resolve().parents[1] / "data" / "azure-types"
REQUIRED, READ_ONLY = 1, 2
# Words of a resource declaration's body that are Bicep's, not the resource type's.
BICEP_KEYWORDS = {"scope", "parent", "dependsOn"}


@dataclass(frozen=True)
class TypeFile:
    nodes: list[dict[str, Any]]

    def node(self, ref: dict[str, Any]) -> dict[str, Any]:
        return self.nodes[int(ref["$ref"].split("/")[-1])]


@cache
def resource_types() -> dict[str, tuple[TypeFile, dict[str, Any]]]:
    """'type@apiversion' (lower case) -> (its file, its body ObjectType node)."""
    index: dict[str, tuple[TypeFile, dict[str, Any]]] = {}
    for path in sorted(TYPES_DIR.glob("*.json")):
        type_file = TypeFile(json.loads(path.read_text(encoding="utf-8")))
        for node in type_file.nodes:
            if node["$type"] == "ResourceType":
                index[node["name"].lower()] = (type_file, type_file.node(node["body"]))
    return index


def _is_expression(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("operator", "function")


def _key(name: str) -> str:
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] == "'" else name


class _Checker:
    def __init__(self, type_file: TypeFile, names: set[str], where: str) -> None:
        self.file = type_file
        self.names = names
        self.where = where
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{self.where}: {path}: {message}")

    def literal(self, value: Any) -> bool:
        return bicep.is_literal(value, self.names)

    def value(self, value: Any, ref: dict[str, Any], path: str) -> None:
        node = self.file.node(ref)
        kind = node["$type"]
        if _is_expression(value) or kind == "AnyType" or (isinstance(value, str) and not self.literal(value)):
            return
        if isinstance(value, dict) and "loop_type" in value:  # [for x in xs: {...}]: check one item
            if kind == "ArrayType":
                self.value(value["config"], node["itemType"], f"{path}[]")
            return
        if kind == "UnionType":
            self.union(value, node, path)
        elif kind == "ObjectType":
            self.object(value, node, path) if isinstance(value, dict) else self.error(path, "expects an object")
        elif kind == "DiscriminatedObjectType":
            self.discriminated(value, node, path) if isinstance(value, dict) else self.error(path, "expects an object")
        elif kind == "ArrayType":
            if not isinstance(value, list):
                self.error(path, "expects an array")
                return
            for index, item in enumerate(value):
                self.value(item, node["itemType"], f"{path}[{index}]")
        elif kind == "StringLiteralType":
            if value != node["value"]:
                self.error(path, f"{value!r} is not allowed; expected {node['value']!r}")
        elif kind == "StringType":
            self.string(value, node, path)
        elif kind == "IntegerType":
            if isinstance(value, bool) or not isinstance(value, int):
                self.error(path, f"{value!r} is not an integer")
            elif not node.get("minValue", value) <= value <= node.get("maxValue", value):
                self.error(path, f"{value} is outside {node.get('minValue')}..{node.get('maxValue')}")
        elif kind == "BooleanType" and not isinstance(value, bool):
            self.error(path, f"{value!r} is not a boolean")
        # ResourceFunctionType and other node kinds carry no constraint on a declaration.

    def string(self, value: Any, node: dict[str, Any], path: str) -> None:
        if not isinstance(value, str):
            self.error(path, f"{value!r} is not a string")
            return
        if "minLength" in node and len(value) < node["minLength"]:
            self.error(path, f"{value!r} is shorter than {node['minLength']}")
        if "maxLength" in node and len(value) > node["maxLength"]:
            self.error(path, f"{value!r} is longer than {node['maxLength']}")
        if "pattern" in node and not re.search(node["pattern"], value):
            self.error(path, f"{value!r} does not match {node['pattern']}")

    def union(self, value: Any, node: dict[str, Any], path: str) -> None:
        attempts = []
        for element in node["elements"]:
            trial = _Checker(self.file, self.names, self.where)
            trial.value(value, element, path)
            if not trial.errors:
                return
            attempts.append(trial.errors)
        literals = [self.file.node(e).get("value") for e in node["elements"]]
        if all(isinstance(v, str) for v in literals) and isinstance(value, str):
            self.error(path, f"{value!r} is not one of {literals}")
        else:
            self.errors.extend(min(attempts, key=len))

    def object(
        self, value: dict[str, Any], node: dict[str, Any], path: str, extra: dict[str, Any] | None = None
    ) -> None:
        properties = {**(extra or {}), **node.get("properties", {})}
        for raw_name, item in value.items():
            name = _key(raw_name)
            if "${" in name:  # a computed key: only an open map can take it
                if "additionalProperties" in node:
                    self.value(item, node["additionalProperties"], f"{path}[{name}]")
                continue
            if name in properties:
                if properties[name]["flags"] & READ_ONLY:
                    self.error(f"{path}.{name}", "is read-only")
                self.value(item, properties[name]["type"], f"{path}.{name}")
            elif "additionalProperties" in node:
                self.value(item, node["additionalProperties"], f"{path}.{name}")
            else:
                similar = [p for p in properties if p.lower() == name.lower()]
                hint = f" (did you mean {similar[0]!r}?)" if similar else ""
                self.error(f"{path}.{name}", f"is not a property of {node.get('name', 'this object')}{hint}")
        given = {_key(k) for k in value}
        for name, prop in properties.items():
            if prop["flags"] & REQUIRED and not prop["flags"] & READ_ONLY and name not in given:
                self.error(f"{path}.{name}", f"is required by {node.get('name', 'this object')}")

    def discriminated(self, value: dict[str, Any], node: dict[str, Any], path: str) -> None:
        discriminator = node["discriminator"]
        elements = node["elements"]
        chosen = value.get(discriminator)
        if isinstance(chosen, str) and self.literal(chosen):
            if chosen not in elements:
                self.error(f"{path}.{discriminator}", f"{chosen!r} is not one of {sorted(elements)}")
                return
            self.object(value, self.file.node(elements[chosen]), path, node.get("baseProperties"))
            return
        if discriminator not in value:
            self.error(f"{path}.{discriminator}", f"is required (one of {sorted(elements)})")
            return
        # A computed discriminator: the value must fit one of the variants.
        attempts = []
        for ref in elements.values():
            trial = _Checker(self.file, self.names, self.where)
            trial.object(value, self.file.node(ref), path, node.get("baseProperties"))
            if not trial.errors:
                return
            attempts.append(trial.errors)
        self.errors.extend(min(attempts, key=len))


def check_resource(where: str, resource: dict[str, Any], names: set[str]) -> list[str]:
    type_name = f"{resource['type']}@{resource['api_version']}"
    found = resource_types().get(type_name.lower())
    if found is None:
        return [f"{where}: {type_name} is not in the Azure type data ({TYPES_DIR}); add it with "
                "scripts/refresh_azure_types.sh or use an API version it has"]
    if resource["existing"]:
        return []
    type_file, node = found
    declaration = {k: v for k, v in bicep.body(resource).items() if k not in BICEP_KEYWORDS}
    checker = _Checker(type_file, names | bicep.loop_names(resource), f"{where} ({type_name})")
    if node["$type"] == "DiscriminatedObjectType":  # e.g. sites/config, by name
        checker.discriminated(declaration, node, "resource")
    else:
        checker.object(declaration, node, "resource")
    return checker.errors


def check_text(path: Path, text: str | None = None) -> list[str]:
    """Every error of every resource block of one Bicep file."""
    tree = bicep.parse(path, text)
    names = bicep.declared_names(tree)
    errors: list[str] = []
    for name, resource in (tree.get("resources") or {}).items():
        errors += check_resource(f"{path.name}:{name}", resource, names)
    return errors
