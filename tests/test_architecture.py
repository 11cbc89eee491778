"""The shape of shared/: no import circle (type-checking imports and imports inside functions count too), no
azure.functions (only function_app.py wires the Function), and a transport module that imports nothing from the
project. Read from the source with ast, so the check sees every import, whether or not it runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "shared"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path) -> set[str]:
    """Every module name an import statement anywhere in the file names: top level, under TYPE_CHECKING, inside a
    function. ``from a import b`` names a and, when b is a module, a.b."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .a import b
                name = module_name(path)
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """shared module -> the shared modules it imports (packages' __init__ left out unless imported by name)."""
    known = modules()
    return {name: {m for m in imported_names(path) if m in known and m != name} for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted: the import circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_in_shared() -> None:
    assert cycles(import_graph()) == []


def test_the_circle_check_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_type_checking_and_function_level_imports_count(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from shared.composition import ClientOptions\n"
        "def f():\n    import shared.azure\n",
        encoding="utf-8",
    )
    assert {"shared.composition", "shared.azure"} <= imported_names(source)


@pytest.mark.parametrize("name", sorted(modules()))
def test_shared_never_imports_azure_functions(name: str) -> None:
    imported = imported_names(modules()[name])
    assert not {m for m in imported if m == "azure.functions" or m.startswith("azure.functions.")}, name


def test_transport_imports_nothing_from_the_project() -> None:
    imported = imported_names(modules()["shared.transport"])
    assert not {m for m in imported if m == "shared" or m.startswith("shared.")}


SDK_PREFIXES = ("botocore", "boto3", "azure", "requests")


def transitive_imports(name: str) -> set[str]:
    """Every module ``name`` reaches through shared/ modules, third-party ones included (not followed further)."""
    known = modules()
    seen: set[str] = set()
    todo = [name]
    found: set[str] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for imported in imported_names(known[current]):
            found.add(imported)
            if imported in known:
                todo.append(imported)
    return found


@pytest.mark.parametrize("name", ["shared.collector", "shared.inventory"])
def test_collector_and_inventory_know_only_the_ports(name: str) -> None:
    """The run's own logic (budget, partial failure, spooling, ordering) is testable in memory: neither it nor
    anything it imports pulls in botocore or an Azure SDK; the real adapters are chosen in the composition root."""
    sdk = {m for m in transitive_imports(name) if m.split(".")[0] in SDK_PREFIXES}
    assert sdk == set(), f"{name} reaches {sorted(sdk)}"
