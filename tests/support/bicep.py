"""Reading infra/*.bicep without a Bicep compiler: pycep-parser's tree, plus the few helpers several tests need.

pycep drops the quotes of string literals, so a string in its tree is either a literal or an expression (a
parameter, variable, resource or module name, or a literal with ``${...}`` interpolations); ``is_literal`` tells
them apart by the names the file declares.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pycep

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def bicep_files() -> list[Path]:
    """Every Bicep file the project deploys (main.bicep and every module, present and future)."""
    return sorted(INFRA.rglob("*.bicep"))


@cache
def _parse_cached(path: Path, text: str) -> dict[str, Any]:
    return dict(pycep.BicepParser().parse(text=text))


def parse(path: Path, text: str | None = None) -> dict[str, Any]:
    return _parse_cached(path, path.read_text(encoding="utf-8") if text is None else text)


def declared_names(tree: dict[str, Any]) -> set[str]:
    """Names an expression in this file can refer to."""
    names: set[str] = set()
    for section in ("parameters", "variables", "resources", "modules", "outputs"):
        names |= set(tree.get(section) or {})
    return names


def is_literal(value: Any, names: set[str]) -> bool:
    """Whether a pycep value is a literal written in the file (not an expression computed at deployment)."""
    if isinstance(value, bool | int | float) or value is None:
        return True
    if isinstance(value, str):
        return "${" not in value and value.split(".")[0].split("[")[0] not in names
    return False


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """The object of a resource or module declaration, through an ``if (...)`` condition and a ``for`` loop."""
    config = resource["config"]
    while isinstance(config, dict) and "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return dict(config)


def loop_names(resource: dict[str, Any]) -> set[str]:
    """The item and index names a ``for`` loop declares (expressions may use them)."""
    loop = resource["config"].get("loop_type") if isinstance(resource["config"], dict) else None
    detail = (loop or {}).get("detail") or {}
    return {str(v) for k, v in detail.items() if k in ("item_name", "index_name") and v}


def walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, str(index)))


def function_call(value: Any) -> tuple[str, dict[str, Any]] | None:
    """(name, parameters) of a pycep function-call value, else None."""
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        function = value["function"]
        return str(function["type"]), dict(function.get("parameters") or {})
    return None


def loaded_text(value: Any, base: Path, variables: dict[str, Any]) -> str | None:
    """The text a Bicep expression evaluates to at build time, when it is a loadTextContent() (optionally inside a
    replace(): applied when its strings are literals, otherwise the file's own text is what the checks compile), a
    variable holding one, or a plain literal; None when it is none of these."""
    if isinstance(value, str) and value in variables:
        return loaded_text(variables[value]["value"], base, variables)
    call = function_call(value)
    if call is None:
        return value if isinstance(value, str) and "${" not in value else None
    name, params = call
    if name == "load_text_content":
        return (base.parent / params["file_path"]).read_text(encoding="utf-8")
    if name == "replace":
        original = loaded_text(params["original_string"], base, variables)
        old, new = (literal_text(params[k], variables) for k in ("old_string", "new_string"))
        if original is not None and old is not None and new is not None:
            return original.replace(old, new)  # a replacement fixed in the file: the text Azure gets
        return original
    return None


def literal_text(value: Any, variables: dict[str, Any]) -> str | None:
    """A string literal, directly or through a variable; None for anything computed (e.g. '${parameter}h')."""
    if isinstance(value, str) and value in variables:
        return literal_text(variables[value]["value"], variables)
    return value if isinstance(value, str) and "${" not in value else None
