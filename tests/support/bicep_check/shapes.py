"""The little of Bicep's type system this check needs: what an expression's value looks like when the file says so.

A shape is ANY (not known: every use is accepted), a primitive (string, int, bool, with its literal values or bounds
when known), an array of item shapes, an object with known property names (closed: any other name is an error, as
for the compiler's object types; open: other names are accepted), or a union of shapes (a ternary, an array of mixed
items). Objects read from Azure's resource type data are built lazily, property by property.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.support import azure_types


class Shape:
    """Base of the shapes; ANY is the unknown one."""

    def describe(self) -> str:
        return "any"


@dataclass(frozen=True)
class Any_(Shape):  # noqa: N801 - mirrors Bicep's 'any'
    pass


ANY = Any_()


@dataclass(frozen=True)
class Prim(Shape):
    kind: str  # string, int, bool, null
    literals: frozenset[Any] | None = None  # the only values it can have, when known
    low: int | None = None  # int bounds (@minValue/@maxValue) or length bounds for strings
    high: int | None = None
    exact: bool = True  # False: read from Azure's type data, which Bicep itself only warns about

    def describe(self) -> str:
        if self.literals is not None:
            return " | ".join(sorted(repr(v) if isinstance(v, str) else json.dumps(v) for v in self.literals))
        return self.kind


STRING, INT, BOOL, NULL = Prim("string"), Prim("int"), Prim("bool"), Prim("null")


def literal(value: Any) -> Prim:
    kind = {bool: "bool", int: "int", str: "string", type(None): "null"}[type(value)]
    return Prim(kind, frozenset([value]))


@dataclass(frozen=True)
class Arr(Shape):
    item: Shape = ANY

    def describe(self) -> str:
        return "array"


@dataclass
class Obj(Shape):
    name: str
    props: dict[str, Shape] = field(default_factory=dict)
    open: bool = False  # other property names allowed (additional properties, computed keys)
    origin: str = ""  # where the shape comes from, for messages

    def describe(self) -> str:
        return self.name

    def property_names(self) -> list[str]:
        return sorted(self.props)

    def get(self, name: str) -> Shape | None:
        """The property's shape; None when the object has no such property and takes no others."""
        if name in self.props:
            return self.props[name]
        return ANY if self.open else None


@dataclass(frozen=True)
class Union(Shape):
    members: tuple[Shape, ...]

    def describe(self) -> str:
        return " | ".join(m.describe() for m in self.members) or "never"


NEVER = Union(())  # the type of fail(): a branch that never yields a value
OBJECT = Obj("object", {}, open=True)  # a parameter or output of type object: any property


def union(*shapes: Shape) -> Shape:
    members: list[Shape] = []
    for shape in shapes:
        for member in shape.members if isinstance(shape, Union) else (shape,):
            if isinstance(member, Any_):
                return ANY
            if member not in members:
                members.append(member)
    prims = [m for m in members if isinstance(m, Prim)]
    if prims and len(prims) == len(members) and len({p.kind for p in prims}) == 1:
        if all(p.literals is not None for p in prims):
            return Prim(prims[0].kind, frozenset().union(*(p.literals or () for p in prims)),
                        exact=all(p.exact for p in prims))
        return Prim(prims[0].kind, exact=all(p.exact for p in prims))
    return members[0] if len(members) == 1 else Union(tuple(members))


def from_json(value: Any, name: str, origin: str) -> Shape:
    """The shape of a JSON value, as the compiler types a loadJsonContent() result: objects closed."""
    if isinstance(value, dict):
        return Obj(name, {k: from_json(v, k, origin) for k, v in value.items()}, open=False, origin=origin)
    if isinstance(value, list):
        return Arr(union(*(from_json(v, name, origin) for v in value)) if value else ANY)
    if isinstance(value, float):
        return ANY
    return literal(value)


class AzureObj(Obj):
    """An ObjectType of Azure's resource type data; its properties are converted when first read."""

    def __init__(self, type_file: azure_types.TypeFile, node: dict[str, Any], name: str, extra: dict[str, Shape]):
        super().__init__(name, {}, open="additionalProperties" in node, origin="Azure resource type data")
        self.type_file = type_file
        self.node = node
        self.extra = extra

    def property_names(self) -> list[str]:
        return sorted(set(self.node.get("properties", {})) | set(self.extra))

    def get(self, name: str) -> Shape | None:
        declared = self.node.get("properties", {})
        if name in declared:
            return from_type_data(self.type_file, declared[name]["type"], name)
        if name in self.extra:
            return self.extra[name]
        if "additionalProperties" in self.node:
            return from_type_data(self.type_file, self.node["additionalProperties"], name)
        return None


def from_type_data(type_file: azure_types.TypeFile, ref: dict[str, Any], name: str) -> Shape:
    node = type_file.node(ref)
    kind = node["$type"]
    if kind == "ObjectType":
        return AzureObj(type_file, node, node.get("name", name), {})
    if kind in ("StringType", "StringLiteralType"):
        return Prim("string", exact=False)
    if kind == "IntegerType":
        return Prim("int", exact=False)
    if kind == "BooleanType":
        return Prim("bool", exact=False)
    if kind == "ArrayType":
        return Arr(from_type_data(type_file, node["itemType"], name))
    if kind == "UnionType":
        return union(*(from_type_data(type_file, e, name) for e in node["elements"]))
    return ANY  # AnyType, DiscriminatedObjectType (the compiler too gives 'any' there), functions


# Properties every resource has (the compiler adds them when a type does not declare them) and whose reading the
# compiler accepts on any resource.
RESOURCE_FALLBACK = {"id": STRING, "name": STRING, "type": STRING, "apiVersion": STRING, "location": STRING,
                     "tags": Obj("tags", {}, open=True), "properties": ANY, "sku": ANY, "kind": STRING,
                     "managedBy": STRING, "managedByExtended": Arr(STRING), "identity": ANY, "zones": ANY,
                     "plan": ANY, "scale": ANY, "extendedLocation": ANY, "etag": STRING}


def resource_shape(type_and_version: str, discriminator: str | None = None) -> Shape:
    """What a resource symbol reads as: its type's body from the type data (closed), ANY when the data lacks it. A
    body with variants (e.g. alert rules by kind) reads as the variant its declaration's literal ``kind`` picks."""
    found = azure_types.resource_types().get(type_and_version.lower())
    if found is None:
        return ANY
    type_file, node = found
    name = type_and_version.split("@")[0]
    if node["$type"] == "DiscriminatedObjectType":
        variant = node["elements"].get(discriminator or "")
        if variant is None:
            return ANY
        base = {k: from_type_data(type_file, v["type"], k) for k, v in node.get("baseProperties", {}).items()}
        return AzureObj(type_file, type_file.node(variant), name, {**RESOURCE_FALLBACK, **base})
    if node["$type"] != "ObjectType":
        return ANY
    return AzureObj(type_file, node, name, RESOURCE_FALLBACK)
