"""The shape of shared/: layers that only import downwards (LAYERS below), adapter families that do not import each
other, no import circle (type-checking imports and imports inside functions count too), no azure.functions (only
function_app.py wires the Function), and a transport module that imports nothing from the project. Read from the
source with ast, so the check sees every import, whether or not it runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "shared"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / "shared").rglob("*.py"))}


def imported_names(path: Path, root: Path = ROOT) -> set[str]:
    """Every module name an import statement anywhere in the file names: top level, under TYPE_CHECKING, inside a
    function. ``from a import b`` names a and, when b is a module, a.b."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .a import b
                name = module_name(path, root)
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """shared module -> the shared modules it imports (packages' __init__ left out unless imported by name)."""
    known = modules(root)
    return {name: {m for m in imported_names(path, root) if m in known and m != name} for name, path in known.items()}


# The layers, lowest first: a module imports only from its own layer or a lower one. The folders are the map
# (docs/architecture.md): what every part uses at the bottom, the findings catalogue above it, the settings, domain
# and ports above that, then the adapters (AWS, Azure, delivery), the run, the readers and the owner digests (which
# read records like the readers and talk to Azure like the adapters), the composition root, and the tools.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("shared.identifiers", "shared.redaction", "shared.errors", "shared.records", "shared.deadline", "shared.jsonl",
     "shared.memory", "shared.config.transport", "shared.__init__"),
    ("shared.findings",),
    ("shared.domain", "shared.ports", "shared.config"),
    ("shared.aws", "shared.azure", "shared.delivery"),
    ("shared.collection", "shared.insight", "shared.notify"),
    ("shared.composition",),
    ("shared.tools", "shared.__main__"),
)
# Adapter families stand side by side: none imports another (the composition root puts them together).
INDEPENDENT = ("shared.aws", "shared.azure", "shared.delivery")
# The run and the readers know ports, not adapters: the run is tested in memory, the readers read records only.
MAY_NOT_IMPORT = {
    "shared.collection": ("shared.aws", "shared.azure"),
    "shared.insight": ("shared.aws", "shared.azure", "shared.delivery", "shared.collection"),
    # The digests get their rows and mail through their own two adapters (query, email); sinks come as ports.
    "shared.notify": ("shared.aws", "shared.azure", "shared.delivery", "shared.collection"),
}


def unit_of(module: str, units: tuple[str, ...]) -> str | None:
    """The longest entry of ``units`` that is ``module`` or a package holding it."""
    matches = [u for u in units if module == u or module.startswith(u + ".")]
    if module == "shared" and "shared.__init__" in units:
        matches.append("shared.__init__")
    return max(matches, key=len) if matches else None


def layer_of(module: str) -> int:
    units = tuple(u for layer in LAYERS for u in layer)
    unit = unit_of(module, units)
    assert unit is not None, f"{module} is in no layer: add its folder to LAYERS (and docs/architecture.md)"
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            if layer_of(target) > layer_of(module):
                found.append(f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})")
            here, there = unit_of(module, INDEPENDENT), unit_of(target, INDEPENDENT)
            if here and there and here != there:
                found.append(f"{module} imports {target}: adapter families do not import each other")
            for unit, forbidden in MAY_NOT_IMPORT.items():
                if unit_of(module, (unit,)) and unit_of(target, forbidden):
                    found.append(f"{module} imports {target}: {unit} knows ports, not {unit_of(target, forbidden)}")
    return found


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


def test_every_module_imports_only_its_own_or_a_lower_layer() -> None:
    assert layer_violations(import_graph()) == []


def _copy_of_shared(tmp_path: Path) -> Path:
    for path in PACKAGE.rglob("*.py"):
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("shared/collection/collector.py", "from shared.aws.iam import BotocoreIamReader", "imports shared.aws.iam"),
        ("shared/findings/catalogue.py", "from shared.insight.snapshot import Row", "imports shared.insight.snapshot"),
        ("shared/records.py", "import shared.composition", "imports shared.composition"),
        ("shared/delivery/file_sink.py", "from shared.azure.keyvault import SECRET_SETTINGS", "adapter families"),
        ("shared/notify/run.py", "from shared.delivery.file_sink import FileSink", "knows ports, not shared.delivery"),
        ("shared/config/notify.py", "from shared.notify.digest import is_open_key", "imports shared.notify.digest"),
    ],
)
def test_the_layer_check_fails_on_a_broken_copy(tmp_path: Path, module: str, line: str, expected: str) -> None:
    root = _copy_of_shared(tmp_path)
    path = root / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n\ndef _planted() -> None:\n    {line}\n", encoding="utf-8")
    found = layer_violations(import_graph(root))
    assert any(expected in v and module.removesuffix(".py").replace("/", ".") in v for v in found), found


def test_a_new_folder_must_be_placed_in_a_layer() -> None:
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("shared.newfolder.thing")


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
    imported = imported_names(modules()["shared.config.transport"])
    assert not {m for m in imported if m == "shared" or m.startswith("shared.")}


SDK_PREFIXES = ("botocore", "boto3", "azure", "requests")


def transitive_imports(name: str, root: Path = ROOT) -> set[str]:
    """Every module ``name`` reaches through shared/ modules, third-party ones included (not followed further)."""
    known = modules(root)
    seen: set[str] = set()
    todo = [name]
    found: set[str] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for imported in imported_names(known[current], root):
            found.add(imported)
            if imported in known:
                todo.append(imported)
    return found


@pytest.mark.parametrize("name", ["shared.collection.collector", "shared.collection.inventory"])
def test_collector_and_inventory_know_only_the_ports(name: str) -> None:
    """The run's own logic (budget, partial failure, spooling, ordering) is testable in memory: neither it nor
    anything it imports pulls in botocore or an Azure SDK; the real adapters are chosen in the composition root."""
    sdk = {m for m in transitive_imports(name) if m.split(".")[0] in SDK_PREFIXES}
    assert sdk == set(), f"{name} reaches {sorted(sdk)}"


@pytest.mark.parametrize("name", ["shared.notify.digest", "shared.notify.render", "shared.notify.run"])
def test_the_digest_rules_and_the_digest_run_reach_no_sdk(name: str) -> None:
    """The due/overdue rule and the rendering are pure, and the run knows ports: only shared/notify/query.py and
    shared/notify/email.py (chosen by the composition root) talk to Azure."""
    sdk = {m for m in transitive_imports(name) if m.split(".")[0] in SDK_PREFIXES}
    assert sdk == set(), f"{name} reaches {sorted(sdk)}"


def test_the_sdk_check_sees_an_sdk_reached_through_another_module(tmp_path: Path) -> None:
    """The broken copy: the pure rule imports the query adapter (and through it azure-monitor-query)."""
    root = _copy_of_shared(tmp_path)
    path = root / "shared" / "notify" / "render.py"
    path.write_text(path.read_text(encoding="utf-8") + "\n\nfrom shared.notify import query  # noqa\n",
                    encoding="utf-8")
    assert "azure.monitor.query" in transitive_imports("shared.notify.render", root)
    assert not {m for m in transitive_imports("shared.notify.render") if m.startswith("azure")}
