"""The checks of one Bicep file, on its tree-sitter tree: names, property access, module calls, decorators and fail()
guards. See tests/support/bicep_check/__init__.py for what is checked and docs/deploy.md for what is not.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tests.support import azure_types
from tests.support.bicep_check import builtins as bi
from tests.support.bicep_check import shapes as sh
from tests.support.bicep_check.syntax import Diagnostic, Node, position, string_value, syntax_errors, text, tree

LIST_METHOD = re.compile(r"^list[a-zA-Z]*$")
MODULE_BODY_KEYS = ("name", "params", "scope", "dependsOn", "identity", "extensionConfigs")


@dataclass(eq=False)
class Decl:
    kind: str  # param, var, resource, module, output, type, func, import, metadata, assert
    name: str
    node: Node
    name_node: Node
    decorators: list[Node] = field(default_factory=list)  # the call_expression of each decorator
    value: Node | None = None  # default, value, body (if/for/object), type expression
    type_node: Node | None = None
    resource_type: str = ""
    existing: bool = False
    module_path: str = ""

    def body(self) -> Node | None:
        """A resource's or module's object, through its ``if (...)`` and ``[for ...]``."""
        node = self.value
        while node is not None and node.type in ("if_statement", "for_statement"):
            node = node.child_by_field_name("body") if node.type == "for_statement" else node.named_children[-1]
        return node if node is not None and node.type == "object" else None

    def is_loop(self) -> bool:
        return self.value is not None and self.value.type == "for_statement"

    def decorator(self, name: str) -> Node | None:
        for call in self.decorators:
            if decorator_name(call) == name:
                return call
        return None


@dataclass
class Binding:
    kind: str  # a Decl's kind, or loop, lambda, funcparam
    decl: Decl | None = None
    shape: Callable[[], sh.Shape] = lambda: sh.ANY
    node: Node | None = None


class Scope:
    def __init__(self, names: dict[str, Binding], parent: Scope | None = None) -> None:
        self.names = names
        self.parent = parent

    def lookup(self, name: str) -> Binding | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None

    def all_names(self) -> set[str]:
        return set(self.names) | (self.parent.all_names() if self.parent else set())


class NotConstantError(Exception):
    pass


def constant(node: Node) -> Any:
    """The value of a literal expression (string, number, bool, null, array and object of those)."""
    kind = node.type
    if kind == "string":
        value = string_value(node)
        if value is None:
            raise NotConstantError
        return value
    if kind == "number":
        return int(text(node))
    if kind == "boolean":
        return text(node) == "true"
    if kind == "null":
        return None
    if kind == "unary_expression" and text(node).startswith("-") and node.named_children[-1].type == "number":
        return -int(text(node.named_children[-1]))
    if kind == "array":
        return [constant(c) for c in items(node)]
    if kind == "object":
        return {property_key(p): constant(property_value(p)) for p in object_properties(node)}  # type: ignore[arg-type]
    if kind == "parenthesized_expression" and len(node.named_children) == 1:
        return constant(node.named_children[0])
    raise NotConstantError


def decorator_name(call: Node) -> str:
    function = call.child_by_field_name("function")
    name = text(function) if function is not None else ""
    return name[4:] if name.startswith("sys.") else name


def arguments(call: Node) -> list[Node]:
    args = call.child_by_field_name("arguments")
    return [c for c in args.named_children if c.type not in ("comment", "diagnostic_comment")] if args else []


def object_properties(node: Node) -> list[Node]:
    return [c for c in node.named_children if c.type == "object_property"]


def property_key(prop: Node) -> str | None:
    """The literal name of an object property; None when computed (``'${x}': ...``) or a nested resource."""
    key = prop.children[0]
    if key.type == "string":
        return string_value(key)
    if key.type == "compatible_identifier":
        return text(key).rstrip("?")
    if key.type == "identifier" or not key.is_named:
        return text(key)
    return None


def property_value(prop: Node) -> Node | None:
    seen_colon = False
    for child in prop.children:
        if seen_colon and child.is_named and child.type not in ("comment", "diagnostic_comment"):
            return child
        seen_colon = seen_colon or child.type == ":"
    return None


def find_property(obj: Node | None, name: str) -> Node | None:
    for prop in object_properties(obj) if obj is not None else []:
        if property_key(prop) == name:
            return prop
    return None


def items(array: Node) -> list[Node]:
    return [c for c in array.named_children if c.type not in ("comment", "diagnostic_comment", "decorators")]


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def is_fail_call(node: Node) -> bool:
    function = node.child_by_field_name("function") if node.type == "call_expression" else None
    return function is not None and text(function) in ("fail", "sys.fail")


def suggestion(name: str, candidates: set[str] | list[str]) -> str | None:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
    if close:
        return close[0]
    folded = [c for c in candidates if c.lower() == name.lower()]
    return folded[0] if folded else None


def quoted(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(f'"{n}"' for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class FileModel:
    """One file's declarations, in order, and its syntax errors."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.source = source
        self.root = tree(source).root
        self.syntax = syntax_errors(path, source)
        self.decls: list[Decl] = []
        self.target_scope = "resourceGroup"
        pending: list[Node] = []
        for node in self.root.named_children:
            if node.type == "decorators":
                pending = [d.named_children[0] for d in node.named_children if d.type == "decorator"]
                continue
            if node.type == "target_scope_assignment":
                self.target_scope = string_value(node.named_children[0]) or self.target_scope
            for decl in self._declarations(node):
                decl.decorators = pending
                self.decls.append(decl)
            if node.type not in ("comment", "diagnostic_comment"):
                pending = []

    @staticmethod
    def _declarations(node: Node) -> list[Decl]:
        kind = {"parameter_declaration": "param", "variable_declaration": "var", "resource_declaration": "resource",
                "module_declaration": "module", "output_declaration": "output", "type_declaration": "type",
                "user_defined_function": "func", "metadata_declaration": "metadata",
                "assert_statement": "assert"}.get(node.type)
        if kind is None:
            if node.type == "import_functionality":
                names = [c for c in node.named_children if c.type == "identifier"]
                # `{ a as b }`: b is declared; `{ a }`: a; `* as ns`: ns.
                declared, skip = [], False
                for i, child in enumerate(node.children):
                    if child.type == "identifier" and not skip:
                        following = node.children[i + 1] if i + 1 < len(node.children) else None
                        if following is not None and following.type == "as":
                            skip = True
                            continue
                        declared.append(child)
                    elif child.type == "identifier":
                        declared.append(child)
                        skip = False
                return [Decl("import", text(n), node, n) for n in declared or names[-1:]]
            return []
        name_node = node.child_by_field_name("name") or node.named_children[0]
        decl = Decl(kind, text(name_node), node, name_node)
        named = node.named_children
        if kind in ("param", "output"):
            decl.type_node = named[1]
            decl.value = named[2] if len(named) > 2 else None
        elif kind == "resource":
            decl.resource_type = string_value(named[1]) or ""
            decl.existing = any(c.type == "existing" for c in node.children)
            decl.value = named[-1]
        elif kind == "module":
            decl.module_path = string_value(named[1]) or ""
            decl.value = named[-1]
        elif kind == "func":
            decl.type_node = node.child_by_field_name("returns")
            decl.value = named[-1]
        else:
            decl.value = named[-1] if len(named) > 1 else None
        return [decl]


@cache
def _model(path: Path, source: str) -> FileModel:
    return FileModel(path, source)


def model(path: Path, source: str | None = None) -> FileModel:
    return _model(path, path.read_text(encoding="utf-8") if source is None else source)


class FileChecker:
    def __init__(self, model: FileModel, module_errors: Callable[[Path], list[Diagnostic]]) -> None:
        self.model = model
        self.path = model.path
        self.module_errors = module_errors
        self.diagnostics: list[Diagnostic] = []
        self.refs: dict[Decl, set[str]] = {}  # the global names each declaration reads
        self.owner: Decl | None = None
        self.in_param_default = False
        self._var_shapes: dict[str, sh.Shape] = {}
        self._type_shapes: dict[str, sh.Shape] = {}
        self._module_shapes: dict[str, sh.Shape] = {}
        self._busy: set[str] = set()
        self.decls: dict[str, Decl] = {}  # what expressions can name
        self.outputs: dict[str, Decl] = {}  # outputs have names of their own (they may repeat a parameter's)
        for decl in model.decls:
            if decl.kind in ("metadata", "assert"):
                continue
            table = self.outputs if decl.kind == "output" else self.decls
            if decl.name in table:
                code = "BCP145" if decl.kind == "output" else "BCP028"
                self.error(decl.name_node, code, decl.name,
                           f'Identifier "{decl.name}" is declared multiple times. Remove or rename the duplicates.')
                continue
            if decl.name in ("sys", "az"):
                self.error(decl.name_node, "BCP084", decl.name, f'The symbolic name "{decl.name}" is reserved for '
                           "a namespace. Please use a different symbolic name.")
            table[decl.name] = decl
        self.globals = Scope({name: Binding(d.kind, d) for name, d in self.decls.items()})

    # -- reporting

    def error(self, node: Node, code: str, symbol: str, message: str) -> None:
        line, column = position(node)
        self.diagnostics.append(Diagnostic(self.path, line, column, code, symbol, message))

    # -- entry point

    def run(self) -> list[Diagnostic]:
        if self.model.syntax:
            return list(self.model.syntax)
        for decl in self.model.decls:
            self.owner = decl
            self.refs.setdefault(decl, set())
            self.check_declaration(decl)
        self.owner = None
        self.check_references()
        return sorted(set(self.diagnostics))

    def check_declaration(self, decl: Decl) -> None:
        for call in decl.decorators:
            self.check_decorator(call, decl)
        if decl.kind == "param":
            self.visit_type(decl.type_node, self.globals)
            if decl.value is not None:
                self.in_param_default = True
                self.visit(decl.value, self.globals)
                self.in_param_default = False
            self.check_param(decl)
        elif decl.kind == "output":
            self.visit_type(decl.type_node, self.globals)
            if decl.value is not None:
                self.visit(decl.value, self.globals)
                self.check_assignment(decl.value, self.declared_shape(decl.type_node), decl.name, "BCP033",
                                      f'output "{decl.name}"')
        elif decl.kind == "type":
            self.visit_type(decl.value, self.globals)
        elif decl.kind == "func":
            params = decl.node.named_children[1]
            bound = {text(p.named_children[0]): Binding("funcparam", shape=self._shape_of_type(p.named_children[1]))
                     for p in params.named_children if p.type == "parameter"}
            scope = Scope(bound, self.globals)
            for p in params.named_children:
                if p.type == "parameter":
                    self.visit_type(p.named_children[1], self.globals)
            self.visit_type(decl.type_node, self.globals)
            if decl.value is not None:
                self.visit(decl.value, scope)
        elif decl.kind in ("var", "resource", "module", "metadata", "assert"):
            if decl.value is not None:
                self.visit(decl.value, self.globals)
            if decl.kind == "module":
                self.check_module(decl)
            if decl.kind in ("resource", "module"):
                self.check_depends_on(decl)

    def _shape_of_type(self, node: Node | None) -> Callable[[], sh.Shape]:
        return lambda: self.declared_shape(node)

    # -- names

    def visit(self, node: Node | None, scope: Scope) -> None:
        if node is None:
            return
        kind = node.type
        if kind in ("comment", "diagnostic_comment"):
            return
        if kind == "identifier":
            self.reference(node, scope)
        elif kind == "array":
            for item in items(node):
                self.visit(item, scope)
        elif kind == "member_expression":
            obj = node.child_by_field_name("object")
            if not (obj is not None and obj.type == "identifier" and text(obj) in ("sys", "az")
                    and scope.lookup(text(obj)) is None):
                self.visit(obj, scope)
                self.check_member(node, scope)
        elif kind == "subscript_expression":
            self.visit(node.child_by_field_name("object"), scope)
            self.visit(node.child_by_field_name("index"), scope)
            self.check_index(node, scope)
        elif kind == "resource_expression":
            self.visit(node.child_by_field_name("object"), scope)
            self.check_nested(node, scope)
        elif kind == "call_expression":
            self.check_call(node, scope)
        elif kind == "object":
            nested = {text(c.named_children[0].named_children[0]): Binding("resource", node=c.named_children[0])
                      for c in object_properties(node)
                      if c.named_children and c.named_children[0].type == "resource_declaration"}
            scope = Scope(nested, scope) if nested else scope
            for child in node.named_children:
                if child.type == "object_property":
                    self.visit_property(child, scope)
                elif child.type == "decorators":
                    for decorator in child.named_children:
                        self.visit_arguments(decorator.named_children[0], scope)
        elif kind == "for_statement":
            iterable, _, body = self.loop_parts(node)
            self.visit(iterable, scope)
            self.visit(body, self.loop_scope(node, scope))
        elif kind == "lambda_expression":
            self.visit(node.named_children[-1], self.lambda_params(node, scope))
        elif kind in ("type", "primitive_type", "array_type", "nullable_type", "union_type", "parameterized_type"):
            self.visit_type(node, scope)
        else:
            for child in node.named_children:
                self.visit(child, scope)

    @staticmethod
    def lambda_params(node: Node, scope: Scope) -> Scope:
        params = node.named_children[0]
        bound = [params] if params.type == "identifier" else [c for c in params.named_children
                                                              if c.type == "identifier"]
        return Scope({text(p): Binding("lambda", node=p) for p in bound}, scope)

    def check_nested(self, node: Node, scope: Scope) -> None:
        """parent::child names a resource declared inside parent's body."""
        parent = node.child_by_field_name("object")
        child = node.child_by_field_name("resource")
        binding = scope.lookup(text(parent)) if parent is not None and parent.type == "identifier" else None
        declaration = (binding.decl.node if binding.decl else binding.node) if binding is not None else None
        if declaration is None or child is None or parent is None or binding is None or binding.kind != "resource":
            return
        body: Node | None = declaration.named_children[-1]
        while body is not None and body.type in ("if_statement", "for_statement"):
            body = body.child_by_field_name("body") if body.type == "for_statement" else body.named_children[-1]
        properties = object_properties(body) if body is not None else []
        names = [text(p.named_children[0].named_children[0]) for p in properties
                 if p.named_children and p.named_children[0].type == "resource_declaration"]
        if text(child) not in names:
            self.error(child, "BCP057", text(node), f'The resource "{text(parent)}" declares no nested resource '
                       f'"{text(child)}"{(" (it declares " + quoted(names) + ")") if names else ""}.')

    def visit_property(self, prop: Node, scope: Scope) -> None:
        if prop.named_children and prop.named_children[0].type == "resource_declaration":
            nested = prop.named_children[0]
            outer = self.owner
            self.owner = Decl("resource", text(nested.named_children[0]), nested, nested.named_children[0])
            self.refs[self.owner] = set()
            self.visit(nested.named_children[-1], scope)
            self.owner = outer
            return
        key = prop.children[0]
        if key.type == "string":
            self.visit(key, scope)  # its interpolations
        self.visit(property_value(prop), scope)

    def visit_arguments(self, call: Node, scope: Scope) -> None:
        for arg in arguments(call):
            self.visit(arg, scope)

    def loop_parts(self, node: Node) -> tuple[Node | None, list[Node], Node | None]:
        names: list[Node] = []
        items = None
        after_in = False
        for child in node.children:
            if child.type == "for_loop_parameters":
                names = [c for c in child.named_children if c.type in ("loop_variable", "loop_enumerator")]
            elif child.type == "identifier" and not after_in:
                names = [child]
            elif child.type == "in":
                after_in = True
            elif after_in and child.is_named and items is None and child.type != "comment":
                items = child
        return items, names, node.child_by_field_name("body")

    def loop_scope(self, node: Node, scope: Scope) -> Scope:
        items, names, _ = self.loop_parts(node)
        bound: dict[str, Binding] = {}
        for name in names:
            if name.type == "loop_enumerator":
                bound[text(name)] = Binding("loop", shape=lambda: sh.INT, node=name)
            else:
                bound[text(name)] = Binding("loop", shape=lambda: self.item_shape(self.infer(items, scope)), node=name)
        return Scope(bound, scope)

    def reference(self, node: Node, scope: Scope) -> None:
        name = text(node)
        binding = scope.lookup(name)
        if binding is None:
            if name in ("sys", "az"):
                return
            if name in self.outputs:
                self.error(node, "BCP063", name,
                           f'The name "{name}" is an output: outputs cannot be referenced in expressions.')
                return
            if name in bi.SYS_FUNCTIONS or name in bi.AZ_FUNCTIONS:
                self.error(node, "BCP063", name, f'The name "{name}" is a function: call it, "{name}(...)".')
                return
            close = suggestion(name, scope.all_names())
            if close:
                self.error(node, "BCP082", name,
                           f'The name "{name}" does not exist in the current context. Did you mean "{close}"?')
            else:
                self.error(node, "BCP057", name, f'The name "{name}" does not exist in the current context.')
            return
        if binding.decl is not None and self.owner is not None and binding.decl is self.decls.get(name):
            self.refs[self.owner].add(name)
        if binding.kind == "type":
            self.error(node, "BCP288", name, f"'{name}' refers to a type but is being used as a value here.")
        elif binding.kind == "func":
            self.error(node, "BCP063", name, f'The name "{name}" is a function: call it, "{name}(...)".')
        elif self.in_param_default and binding.kind not in ("param", "loop", "lambda"):
            self.error(node, "BCP072", name, "This symbol cannot be referenced here. Only other parameters can be "
                       "referenced in parameter default values.")

    def visit_type(self, node: Node | None, scope: Scope) -> None:
        if node is None:
            return
        if node.type == "identifier":
            name = text(node)
            binding = scope.lookup(name)
            if name == "*" or (binding is not None and binding.kind in ("type", "import")):
                if self.owner is not None:
                    self.refs[self.owner].add(name)
                return
            if binding is None and name in bi.TYPE_NAMES:
                return
            types = sorted(bi.TYPE_NAMES | {n for n, d in self.decls.items() if d.kind == "type"})
            self.error(node, "BCP302", name, f'The name "{name}" is not a valid type. Please specify one of the '
                       f"following types: {quoted(types, 20)}.")
            return
        if node.type in ("member_expression", "parameterized_type", "string", "number", "boolean", "null"):
            return  # sys.string, resource<'...'>, literal types
        if node.type == "object":
            for prop in object_properties(node):
                self.visit_type(property_value(prop), scope)
            return
        if node.type == "decorators":
            for decorator in node.named_children:
                self.visit_arguments(decorator.named_children[0], scope)
            return
        for child in node.named_children:
            self.visit_type(child, scope)

    # -- calls

    def check_call(self, node: Node, scope: Scope) -> None:
        function = node.child_by_field_name("function")
        args = arguments(node)
        for arg in args:
            self.visit(arg, scope)
        if function is None:
            return
        if function.type == "identifier":
            name = text(function)
            binding = scope.lookup(name)
            if binding is not None:
                if binding.kind == "func":
                    if self.owner is not None:
                        self.refs[self.owner].add(name)
                    expected = len([p for p in binding.decl.node.named_children[1].named_children  # type: ignore[union-attr]
                                    if p.type == "parameter"])
                    self.check_arity(function, name, len(args), (expected, expected))
                elif binding.kind != "import":
                    self.error(function, "BCP059", name, f'The name "{name}" is not a function.')
                return
            self.check_builtin(function, name, args, None)
        elif function.type == "member_expression":
            obj = function.child_by_field_name("object")
            prop = function.child_by_field_name("property")
            name = text(prop) if prop is not None else ""
            if obj is not None and obj.type == "identifier" and text(obj) in ("sys", "az") \
                    and scope.lookup(text(obj)) is None:
                self.check_builtin(function, name, args, text(obj))
                return
            self.visit(obj, scope)
            self.check_method(function, obj, name, len(args), scope)
        else:
            self.visit(function, scope)

    def check_builtin(self, node: Node, name: str, args: list[Node], namespace: str | None) -> None:
        tables = {"sys": [bi.SYS_FUNCTIONS], "az": [bi.AZ_FUNCTIONS], None: [bi.SYS_FUNCTIONS, bi.AZ_FUNCTIONS]}
        arity = next((t[name] for t in tables[namespace] if name in t), None)
        if arity is None and namespace in ("az", None) and LIST_METHOD.match(name):
            arity = bi.LIST_FUNCTION_ARGS
        if arity is None:
            if namespace is not None:
                self.error(node, "BCP107", f"{namespace}.{name}",
                           f'The function "{name}" does not exist in namespace "{namespace}".')
            else:
                close = suggestion(name, set(bi.SYS_FUNCTIONS) | set(bi.AZ_FUNCTIONS))
                hint = f' Did you mean "{close}"?' if close else ""
                self.error(node, "BCP057", name, f'The name "{name}" does not exist in the current context.{hint}')
            return
        self.check_arity(node, name, len(args), arity)
        if name in bi.PARAM_DEFAULT_ONLY and not self.in_param_default:
            self.error(node, "BCP065", name, f'Function "{name}" is not valid at this location. It can only be used '
                       "as a parameter default value.")
        if name in ("loadJsonContent", "loadTextContent", "loadYamlContent", "loadFileAsBase64") and args:
            relative = string_value(args[0])
            if relative is None:
                self.error(args[0], "BCP032", name, f"The first argument of {name}() must be a string literal "
                           "(a compile-time constant path).")
            elif not (self.path.parent / relative).is_file():
                self.error(args[0], "BCP091", relative, f"An error occurred reading file. Could not find file "
                           f"\"{(self.path.parent / relative)}\" ({name}() reads it at compile time).")
            elif name == "loadJsonContent":
                try:
                    load_json((self.path.parent / relative).read_text(encoding="utf-8"))
                except ValueError as exc:
                    self.error(args[0], "BCP186", relative, f"Unable to parse literal JSON value: {exc}.")

    def check_arity(self, node: Node, name: str, count: int, arity: tuple[int, int | None]) -> None:
        low, high = arity
        if count < low or (high is not None and count > high):
            expected = (f"{low} argument{'s' * (low != 1)}" if low == high
                        else f"{low} to {high} arguments" if high is not None else f"at least {low} arguments")
            self.error(node, "BCP071", name, f'Function "{name}": expected {expected}, but got {count}.')

    def check_method(self, node: Node, obj: Node | None, name: str, count: int, scope: Scope) -> None:
        decl = self.resource_of(obj, scope)
        if decl is None:
            base = self.infer(obj, scope) if obj is not None else sh.ANY
            if isinstance(base, sh.Prim | sh.Arr) and getattr(base, "exact", True):
                self.error(node, "BCP067", text(node),
                           f'Cannot call functions on type "{base.describe()}". An "object" type is required.')
            return
        if LIST_METHOD.match(name):
            self.check_arity(node, name, count, bi.RESOURCE_LIST_METHOD_ARGS)
            return
        if name == "getSecret" and decl.resource_type.lower().startswith("microsoft.keyvault/vaults@"):
            self.check_arity(node, name, count, (1, 2))
            return
        functions = resource_functions(decl.resource_type)
        if name not in functions:
            self.error(node, "BCP109", text(node), f'The type "{decl.resource_type}" does not contain function '
                       f'"{name}". Available: list*(){", " if functions else ""}{", ".join(sorted(functions))}.')

    def resource_of(self, node: Node | None, scope: Scope) -> Decl | None:
        if node is not None and node.type == "subscript_expression":
            node = node.child_by_field_name("object")
        if node is None or node.type != "identifier":
            return None
        binding = scope.lookup(text(node))
        return binding.decl if binding is not None and binding.kind == "resource" else None

    # -- decorators

    def check_decorator(self, call: Node, decl: Decl) -> None:
        name = decorator_name(call)
        function = call.child_by_field_name("function")
        for arg in arguments(call):
            self.visit(arg, self.globals)
        if name not in bi.DECORATORS:
            close = suggestion(name, bi.DECORATORS)
            hint = f' Did you mean "@{close}"?' if close else ""
            self.error(function or call, "BCP057", f"@{name}",
                       f'The decorator "{name}" does not exist.{hint}')
            return
        one_argument = {"allowed", "description", "maxLength", "maxValue", "metadata", "minLength", "minValue",
                        "discriminator", "batchSize", "validate"}
        no_argument = {"secure", "export", "sealed", "onlyIfNotExists", "nullIfNotFound"}
        count = len(arguments(call))
        if (name in one_argument and count != 1) or (name in no_argument and count):
            self.check_arity(function or call, f"@{name}", count, (1, 1) if name in one_argument else (0, 0))
        if decl.kind not in ("param", "output", "type") and name in (
                "allowed", "minValue", "maxValue", "minLength", "maxLength", "secure", "sealed"):
            code = {"resource": "BCP126", "module": "BCP128", "var": "BCP127"}.get(decl.kind, "BCP152")
            self.error(function or call, code, f"@{name}", f'Function "{name}" cannot be used as a {decl.kind} '
                       "decorator.")
            return
        if decl.kind not in ("param", "output"):
            return
        base = self.declared_shape(decl.type_node, with_decorators=False)
        kind = base.kind if isinstance(base, sh.Prim) else "array" if isinstance(base, sh.Arr) else "object"
        if isinstance(base, sh.Any_):
            return
        attachable = {"minValue": ("int",), "maxValue": ("int",), "minLength": ("string", "array"),
                      "maxLength": ("string", "array"), "secure": ("string", "object")}.get(name)
        if attachable and kind not in attachable:
            self.error(function or call, "BCP124", f"@{name}", f'The decorator "{name}" can only be attached to '
                       f'targets of type "{" | ".join(attachable)}", but the target has type "{kind}".')

    def check_param(self, decl: Decl) -> None:
        bounds: dict[str, Any] = {}
        for name in ("minValue", "maxValue", "minLength", "maxLength", "allowed"):
            call = decl.decorator(name)
            if call is None or len(arguments(call)) != 1:
                continue
            try:
                bounds[name] = constant(arguments(call)[0])
            except NotConstantError:
                self.error(arguments(call)[0], "BCP032", f"@{name}", f"The value of @{name}() must be a "
                           "compile-time constant.")
        for low, high in (("minValue", "maxValue"), ("minLength", "maxLength")):
            if isinstance(bounds.get(low), int) and isinstance(bounds.get(high), int) and bounds[low] > bounds[high]:
                self.error(decl.decorator(low) or decl.name_node, "BCP331", decl.name,
                           f'A type\'s "{low}" must be less than or equal to its "{high}", but a minimum of '
                           f"{bounds[low]} and a maximum of {bounds[high]} were specified.")
        if "allowed" in bounds and (not isinstance(bounds["allowed"], list) or not bounds["allowed"]):
            self.error(decl.decorator("allowed") or decl.name_node, "BCP033", decl.name,
                       "@allowed() takes a non-empty array of the values allowed.")
        nullable = decl.type_node is not None and decl.type_node.named_children \
            and decl.type_node.named_children[0].type == "nullable_type"
        if decl.value is None:
            return
        if nullable:
            self.error(decl.value, "BCP326", decl.name, "Nullable-typed parameters may not be assigned default "
                       "values. They have an implicit default of 'null' that cannot be overridden.")
        self.check_assignment(decl.value, self.param_shape(decl), decl.name, "BCP033",
                              f'the default value of parameter "{decl.name}"')

    def check_assignment(self, value: Node, target: sh.Shape, symbol: str, code: str, what: str) -> None:
        problem = incompatibility(self.infer(value, self.globals), target)
        if problem is not None:
            self.error(value, problem[0] or code, symbol, f"{what}: {problem[1]}")

    # -- property access

    def check_member(self, node: Node, scope: Scope) -> None:
        obj = node.child_by_field_name("object")
        prop = node.child_by_field_name("property")
        if obj is None or prop is None:
            return
        safe = any(c.type == ".?" for c in node.children)
        self.check_property(node, prop, self.infer(obj, scope), text(prop), safe)

    def check_index(self, node: Node, scope: Scope) -> None:
        index = node.child_by_field_name("index")
        obj = node.child_by_field_name("object")
        key = string_value(index) if index is not None else None
        if key is not None and obj is not None:
            base = self.infer(obj, scope)
            if not isinstance(base, sh.Arr):
                self.check_property(node, index, base, key, safe=False)  # type: ignore[arg-type]

    def check_property(self, node: Node, at: Node, base: sh.Shape, name: str, safe: bool) -> None:
        if safe:
            return
        result, failures = member(base, name)
        if result is not None:
            return
        symbol = text(node).replace("\n", " ")
        for failed in failures:
            if isinstance(failed, sh.Obj):
                names = failed.property_names()
                close = suggestion(name, names)
                origin = f" ({failed.origin})" if failed.origin else ""
                note = " The compiler only warns here; ARM fails the deployment when it evaluates the reference." \
                    if isinstance(failed, sh.AzureObj) else ""
                if close:
                    self.error(at, "BCP083", symbol, f'The type "{failed.describe()}"{origin} does not contain '
                               f'property "{name}". Did you mean "{close}"?{note}')
                elif names:
                    self.error(at, "BCP053", symbol, f'The type "{failed.describe()}"{origin} does not contain '
                               f'property "{name}". Available properties include {quoted(names)}.{note}')
                else:
                    self.error(at, "BCP052", symbol, f'The type "{failed.describe()}"{origin} does not contain '
                               f'property "{name}".')
                return
            self.error(at, "BCP055", symbol, f'Cannot access properties of type "{failed.describe()}". An "object" '
                       "type is required.")
            return

    # -- shapes

    def infer(self, node: Node | None, scope: Scope) -> sh.Shape:
        if node is None:
            return sh.ANY
        kind = node.type
        if kind in ("string", "number", "boolean", "null"):
            try:
                return sh.literal(constant(node))
            except NotConstantError:
                return sh.STRING
        if kind == "object":
            props: dict[str, sh.Shape] = {}
            computed = False
            for prop in object_properties(node):
                key = property_key(prop)
                if key is None:
                    computed = True
                else:
                    props[key] = self.infer(property_value(prop), scope)
            return sh.Obj("object", props, open=computed)
        if kind == "array":
            elements = items(node)
            return sh.Arr(sh.union(*(self.infer(i, scope) for i in elements)) if elements else sh.NEVER)
        if kind == "identifier":
            return self.symbol_shape(scope.lookup(text(node)))
        if kind == "member_expression":
            name = node.child_by_field_name("property")
            result, _ = member(self.infer(node.child_by_field_name("object"), scope), text(name) if name else "")
            return result or sh.ANY
        if kind == "subscript_expression":
            base = self.infer(node.child_by_field_name("object"), scope)
            index = node.child_by_field_name("index")
            key = string_value(index) if index is not None else None
            return index_shape(base, key)
        if kind == "call_expression":
            return self.call_shape(node, scope)
        if kind == "ternary_expression":
            return sh.union(self.infer(node.child_by_field_name("consequence"), scope),
                            self.infer(node.child_by_field_name("alternative"), scope))
        if kind == "binary_expression":
            operator = node.child_by_field_name("operator")
            op = text(operator) if operator is not None else ""
            if op == "??":
                return sh.union(self.infer(node.child_by_field_name("left"), scope),
                                self.infer(node.child_by_field_name("right"), scope))
            return sh.INT if op in ("+", "-", "*", "/", "%") else sh.BOOL
        if kind == "unary_expression":
            try:
                return sh.literal(constant(node))
            except NotConstantError:
                return sh.BOOL if text(node).startswith("!") else sh.INT
        if kind == "parenthesized_expression" and len(node.named_children) == 1:
            return self.infer(node.named_children[0], scope)
        if kind == "for_statement":
            return sh.Arr(self.infer(node.child_by_field_name("body"), self.loop_scope(node, scope)))
        if kind == "if_statement":
            return self.infer(node.named_children[-1], scope)
        return sh.ANY

    def symbol_shape(self, binding: Binding | None) -> sh.Shape:
        if binding is None:
            return sh.ANY
        decl = binding.decl
        if decl is None:
            return binding.shape()
        if decl.kind == "param":
            return self.param_shape(decl)
        if decl.kind == "var":
            if decl.name in self._var_shapes:
                return self._var_shapes[decl.name]
            if decl.name in self._busy:
                return sh.ANY  # a cycle, reported elsewhere
            self._busy.add(decl.name)
            shape = self.infer(decl.value, self.globals)
            self._busy.discard(decl.name)
            self._var_shapes[decl.name] = shape
            return shape
        if decl.kind == "resource":
            node = azure_types.resource_types().get(decl.resource_type.lower(), (None, {}))[1]
            kind = find_property(decl.body(), node.get("discriminator", "")) if node else None
            shape = sh.resource_shape(decl.resource_type, string_value(property_value(kind)) if kind else None)
            return sh.Arr(shape) if decl.is_loop() else shape
        if decl.kind == "module":
            shape = self.module_shape(decl)
            return sh.Arr(shape) if decl.is_loop() else shape
        return sh.ANY

    def param_shape(self, decl: Decl) -> sh.Shape:
        return self.declared_shape(decl.type_node, decorators=decl)

    def declared_shape(
        self, node: Node | None, decorators: Decl | None = None, with_decorators: bool = True
    ) -> sh.Shape:
        shape = self.type_shape(node)
        if decorators is None or not with_decorators:
            return shape
        values: dict[str, Any] = {}
        for name in ("allowed", "minValue", "maxValue", "minLength", "maxLength"):
            call = decorators.decorator(name)
            if call is not None and len(arguments(call)) == 1:
                with contextlib.suppress(NotConstantError):
                    values[name] = constant(arguments(call)[0])
        allowed = values.get("allowed")
        if isinstance(allowed, list) and allowed and all(isinstance(v, str | int | bool) for v in allowed):
            literals = sh.union(*(sh.literal(v) for v in allowed))
            return sh.Arr(literals) if isinstance(shape, sh.Arr) else literals
        if isinstance(shape, sh.Prim) and shape.kind == "int":
            return sh.Prim("int", low=values.get("minValue"), high=values.get("maxValue"))
        if isinstance(shape, sh.Prim) and shape.kind == "string":
            return sh.Prim("string", low=values.get("minLength"), high=values.get("maxLength"))
        return shape

    def type_shape(self, node: Node | None) -> sh.Shape:
        if node is None:
            return sh.ANY
        kind = node.type
        if kind in ("type", "parenthesized_type") and node.named_children:
            return self.type_shape(node.named_children[0])
        if kind == "primitive_type" or kind == "identifier":
            name = text(node)
            simple = {"string": sh.STRING, "secureString": sh.STRING, "int": sh.INT, "bool": sh.BOOL,
                      "array": sh.Arr(sh.ANY), "object": sh.OBJECT, "secureObject": sh.OBJECT}.get(name)
            decl = self.decls.get(name)
            if kind == "identifier" and decl is not None and decl.kind == "type":
                if name in self._type_shapes:
                    return self._type_shapes[name]
                if name in self._busy:
                    return sh.ANY
                self._busy.add(name)
                shape = self.type_shape(decl.value)
                self._busy.discard(name)
                if type(shape) is sh.Obj and not shape.origin:
                    shape = sh.Obj(name, shape.props, shape.open, f"type {name}")
                self._type_shapes[name] = shape
                return shape
            return simple or sh.ANY
        if kind == "array_type":
            return sh.Arr(self.type_shape(node.named_children[0]))
        if kind == "nullable_type":
            return self.type_shape(node.named_children[0])
        if kind == "union_type":
            return sh.union(*(self.type_shape(c) for c in node.named_children))
        if kind in ("string", "number", "boolean", "null"):
            try:
                return sh.literal(constant(node))
            except NotConstantError:
                return sh.STRING
        if kind == "unary_expression":
            try:
                return sh.literal(constant(node))
            except NotConstantError:
                return sh.ANY
        if kind == "object":
            props: dict[str, sh.Shape] = {}
            is_open = False
            for prop in object_properties(node):
                key = property_key(prop)
                if key == "*" or key is None:
                    is_open = True
                else:
                    props[key] = self.type_shape(property_value(prop))
            return sh.Obj("object", props, open=is_open)
        if kind == "member_expression":
            member_name = node.child_by_field_name("property")
            known = member_name is not None and text(member_name) in bi.TYPE_NAMES
            return self.type_shape(member_name) if known else sh.ANY
        if kind == "property_identifier":
            return {"string": sh.STRING, "int": sh.INT, "bool": sh.BOOL, "array": sh.Arr(sh.ANY)}.get(text(node),
                                                                                                     sh.ANY)
        return sh.ANY

    def item_shape(self, shape: sh.Shape) -> sh.Shape:
        if isinstance(shape, sh.Arr):
            return shape.item
        if isinstance(shape, sh.Union):
            return sh.union(*(self.item_shape(m) for m in shape.members))
        return sh.ANY

    def call_shape(self, node: Node, scope: Scope) -> sh.Shape:
        function = node.child_by_field_name("function")
        if function is None:
            return sh.ANY
        name = text(function)
        if function.type == "member_expression":
            obj = function.child_by_field_name("object")
            if obj is None or text(obj) not in ("sys", "az") or scope.lookup(text(obj)) is not None:
                return sh.ANY  # a resource's list*() and the like
            name = name.split(".", 1)[1]
        elif function.type != "identifier":
            return sh.ANY
        else:
            binding = scope.lookup(name)
            if binding is not None:
                if binding.kind == "func" and binding.decl is not None:
                    return self.type_shape(binding.decl.type_node)
                return sh.ANY
        args = arguments(node)
        if name == "fail":
            return sh.NEVER
        if name == "loadJsonContent" and len(args) == 1:
            relative = string_value(args[0])
            return json_shape(self.path.parent / relative) if relative is not None else sh.ANY
        scoped = bi.scope_function_shape(name, self.model.target_scope)
        if scoped is not None:
            return scoped
        simple = bi.simple_return_shape(name)
        if simple is not None:
            return simple
        shapes = [self.infer(a, scope) for a in args]
        if name in ("min", "max"):
            return sh.INT
        if name == "concat" and shapes:
            if all(isinstance(s, sh.Arr) for s in shapes):
                return sh.Arr(sh.union(*(s.item for s in shapes)))  # type: ignore[attr-defined]
            if all(isinstance(s, sh.Prim) and s.kind == "string" for s in shapes):
                return sh.STRING
            return sh.ANY
        if name == "union" and shapes and all(type(s) is sh.Obj for s in shapes):
            merged: dict[str, sh.Shape] = {}
            for shape in shapes:
                merged.update(shape.props)  # type: ignore[attr-defined]
            return sh.Obj("object", merged, open=any(s.open for s in shapes))  # type: ignore[attr-defined]
        if name in ("first", "last") and shapes:
            return self.item_shape(shapes[0]) if isinstance(shapes[0], sh.Arr) else sh.ANY
        if name in ("skip", "take", "filter", "sort") and shapes:
            return shapes[0]
        if name == "items":
            return sh.Arr(sh.Obj("item", {"key": sh.STRING, "value": sh.ANY}))
        if name == "array":
            return sh.Arr(sh.ANY)
        return sh.ANY

    def module_shape(self, decl: Decl) -> sh.Shape:
        if decl.name not in self._module_shapes:
            self._module_shapes[decl.name] = self._module_shape(decl)
        return self._module_shapes[decl.name]

    def _module_shape(self, decl: Decl) -> sh.Shape:
        target = self.module_file(decl)
        if target is None:
            return sh.ANY
        other = FileChecker(model(target), self.module_errors)
        outputs = {d.name: other.declared_shape(d.type_node) for d in other.model.decls if d.kind == "output"}
        relative = decl.module_path
        return sh.Obj("module", {"name": sh.STRING,
                                 "outputs": sh.Obj("outputs", outputs, origin=f"the outputs {relative} declares")},
                      origin=f"module {relative}")

    def module_file(self, decl: Decl) -> Path | None:
        if not decl.module_path or re.match(r"^(br|ts)[:/]", decl.module_path):
            return None
        target = (self.path.parent / decl.module_path).resolve()
        return target if target.is_file() else None

    # -- modules

    def check_module(self, decl: Decl) -> None:
        path_node = decl.node.named_children[1]
        if not decl.module_path or re.match(r"^(br|ts)[:/]", decl.module_path):
            return
        target = self.module_file(decl)
        if target is None:
            self.error(path_node, "BCP091", decl.module_path, f"An error occurred reading file. Could not find file "
                       f'"{(self.path.parent / decl.module_path)}" (module {decl.name}).')
            return
        errors = self.module_errors(target)
        if errors:
            self.error(path_node, "BCP104", decl.name, f"The referenced module has errors ({len(errors)} in "
                       f"{decl.module_path}, the first: {errors[0]}).")
        other = FileChecker(model(target), self.module_errors)
        body = decl.body()
        if body is None:
            return
        for prop in object_properties(body):
            key = property_key(prop)
            if key is not None and key not in MODULE_BODY_KEYS:
                self.error(prop, "BCP037", f"{decl.name}.{key}", f'The property "{key}" is not allowed on objects '
                           f'of type "module". Permissible properties include {quoted(list(MODULE_BODY_KEYS))}.')
        params_prop = find_property(body, "params")
        params_node = property_value(params_prop) if params_prop is not None else None
        declared = {d.name: d for d in other.model.decls if d.kind == "param"}
        if params_node is not None and params_node.type != "object":
            return  # params from an expression: not checked here
        given: dict[str, Node] = {}
        for prop in object_properties(params_node) if params_node is not None else []:
            key = property_key(prop)
            value = property_value(prop)
            if key is None or value is None:
                continue
            given[key] = prop
            if key not in declared:
                close = suggestion(key, list(declared))
                hint = f' Did you mean "{close}"?' if close else \
                    f" Permissible properties include {quoted(sorted(declared))}."
                self.error(prop, "BCP037", f"{decl.name}.params.{key}", f'The property "{key}" is not allowed on '
                           f'objects of type "params" of module {decl.module_path}: it declares no parameter '
                           f'"{key}".{hint}')
                continue
            target_shape = other.param_shape(declared[key])
            problem = incompatibility(self.infer(value, self.module_scope(value)), target_shape)
            if problem is not None:
                self.error(value, problem[0] or "BCP036", f"{decl.name}.params.{key}",
                           f'The property "{key}" of module {decl.module_path}: {problem[1]}')
        missing = sorted(name for name, param in declared.items() if param.value is None and name not in given
                         and not (param.type_node is not None and param.type_node.named_children
                                  and param.type_node.named_children[0].type == "nullable_type"))
        if missing:
            self.error(params_node or body, "BCP035", f"{decl.name}.params",
                       f'The specified "params" declaration of module {decl.name} ({decl.module_path}) is missing '
                       f"the following required properties: {quoted(missing)} (parameters without a default).")

    def module_scope(self, value: Node) -> Scope:
        """The scope at a module's parameter value: the module's loop variables, when it has a loop."""
        scope = self.globals
        ancestors = []
        node = value.parent
        while node is not None:
            ancestors.append(node)
            node = node.parent
        for ancestor in reversed(ancestors):
            if ancestor.type == "for_statement":
                scope = self.loop_scope(ancestor, scope)
        return scope

    def check_depends_on(self, decl: Decl) -> None:
        prop = find_property(decl.body(), "dependsOn")
        value = property_value(prop) if prop is not None else None
        if value is None or value.type != "array":
            return
        for item in items(value):
            base = item
            while base.type in ("subscript_expression", "resource_expression"):
                base = base.child_by_field_name("object")  # type: ignore[assignment]
            binding = self.globals.lookup(text(base)) if base.type == "identifier" else None
            if binding is not None and binding.kind not in ("resource", "module"):
                self.error(item, "BCP034", text(item), 'The enclosing array expected an item of type "module[] | '
                           f'(resource | module) | resource[]", but the provided item was a {binding.kind}.')

    # -- whole-file rules

    def check_references(self) -> None:
        evaluated = ("var", "resource", "module")
        graph = {d.name: {r for r in refs if r in self.decls and self.decls[r].kind in evaluated}
                 for d, refs in self.refs.items() if d.kind in evaluated and self.decls.get(d.name) is d}
        for name, refs in graph.items():
            if name in refs:
                self.error(self.decls[name].name_node, "BCP079", name,
                           "This expression is referencing its own declaration, which is not allowed.")
        for cycle in find_cycles({n: r - {n} for n, r in graph.items()}):
            self.error(self.decls[cycle[0]].name_node, "BCP080", cycle[0], 'The expression is involved in a cycle ("'
                       + '" -> "'.join([*cycle, cycle[0]]) + '").')
        self.check_fail_guards()

    def check_fail_guards(self) -> None:
        """A variable whose value can call fail() only refuses a deployment if something deployed reads it."""
        reached: set[str] = set()
        todo = [n for d in self.refs if d.kind in ("resource", "module", "output") for n in self.refs[d]]
        while todo:
            name = todo.pop()
            if name in reached or name not in self.decls:
                continue
            reached.add(name)
            todo.extend(self.refs.get(self.decls[name], set()))
        for name, decl in self.decls.items():
            if decl.kind != "var" or name in reached or decl.value is None:
                continue
            fail = next((n for n in walk(decl.value) if is_fail_call(n)), None)
            if fail is not None:
                readers = sorted(d.name for d, r in self.refs.items() if name in r)
                via = f" (only {', '.join(readers)} read it, and nothing deployed reads them)" if readers else ""
                self.error(decl.name_node, "fail-guard", name, f'The variable "{name}" calls fail() but no resource, '
                           f"module or output reads it, directly or through other variables{via}: Bicep never "
                           "evaluates it, so the deployment it should refuse goes ahead. Read it where it takes "
                           "effect, e.g. in the tags of the first resource created.")


def member(base: sh.Shape, name: str) -> tuple[sh.Shape | None, list[sh.Shape]]:
    """(the shape of base.name, []) or (None, the shapes that lack it) when no member of base has it."""
    if isinstance(base, sh.Any_):
        return sh.ANY, []
    if isinstance(base, sh.Obj):
        found = base.get(name)
        return (found, []) if found is not None else (None, [base])
    if isinstance(base, sh.Union):
        results: list[sh.Shape] = []
        failures: list[sh.Shape] = []
        for m in base.members:
            result, failed = member(m, name)
            if result is None:
                failures.extend(failed)
            else:
                results.append(result)
        if results or not base.members:
            return sh.union(*results) if results else sh.ANY, []
        return None, failures
    if isinstance(base, sh.Prim) and not base.exact:
        return sh.ANY, []
    return None, [base]


def index_shape(base: sh.Shape, key: str | None) -> sh.Shape:
    if isinstance(base, sh.Arr):
        return base.item
    if isinstance(base, sh.Union):
        return sh.union(*(index_shape(m, key) for m in base.members))
    if isinstance(base, sh.Obj) and key is not None:
        return base.get(key) or sh.ANY
    return sh.ANY


def incompatibility(value: sh.Shape, target: sh.Shape) -> tuple[str, str] | None:
    """(Bicep's code or '' for the caller's, why) when a value of this shape cannot be given where target is
    expected; None when it fits or either side is not known well enough to tell."""
    if isinstance(value, sh.Any_) or isinstance(target, sh.Any_):
        return None
    if isinstance(value, sh.Union):
        for m in value.members:
            problem = incompatibility(m, target)
            if problem is not None:
                return problem
        return None
    if isinstance(target, sh.Union):
        if any(incompatibility(value, m) is None for m in target.members):
            return None
        return "", f'expected a value of type "{target.describe()}" but the provided value is of type ' \
                   f'"{value.describe()}".'
    if isinstance(value, sh.Prim) and (not value.exact or value.kind == "null"):
        return None
    if isinstance(target, sh.Prim):
        if not isinstance(value, sh.Prim):
            return "", f'expected a value of type "{target.describe()}" but the provided value is of type ' \
                       f'"{value.describe()}".'
        if value.kind != target.kind:
            return "", f'expected a value of type "{target.describe()}" but the provided value is of type ' \
                       f'"{value.describe()}".'
        if target.literals is not None and value.literals is not None and not value.literals <= target.literals:
            outside = sorted(value.literals - target.literals, key=str)
            return "", f'expected a value of type "{target.describe()}" (its @allowed values) but the provided ' \
                       f'value is of type "{value.describe()}": {", ".join(map(repr, outside))} is not allowed.'
        if target.literals is not None and value.literals is None and target.kind != "string":
            return None
        return bounds_problem(value, target)
    if isinstance(target, sh.Arr):
        if isinstance(value, sh.Prim | sh.Obj):
            return "", f'expected a value of type "array" but the provided value is of type "{value.describe()}".'
        if isinstance(value, sh.Arr):
            return incompatibility(value.item, target.item)
        return None
    if isinstance(target, sh.Obj) and isinstance(value, sh.Prim | sh.Arr):
        return "", f'expected a value of type "{target.describe()}" but the provided value is of type ' \
                   f'"{value.describe()}".'
    return None


def bounds_problem(value: sh.Prim, target: sh.Prim) -> tuple[str, str] | None:
    if target.low is None and target.high is None:
        return None
    if value.kind == "int":
        if value.literals is not None:
            low, high = min(value.literals), max(value.literals)
        else:
            low, high = value.low, value.high
        if low is not None and target.high is not None and low > target.high:
            return "BCP327", f"the provided value (which will always be greater than or equal to {low}) is too " \
                             f"large to assign to a target for which the maximum allowable value is {target.high}."
        if high is not None and target.low is not None and high < target.low:
            return "BCP328", f"the provided value (which will always be less than or equal to {high}) is too " \
                             f"small to assign to a target for which the minimum allowable value is {target.low}."
        if high is not None and target.high is not None and high > target.high:
            return "BCP330", f"the provided value can be as large as {high} and may be too large to assign to a " \
                             f"target with a configured maximum of {target.high} (the compiler warns; ARM " \
                             "refuses the deployment for such a value)."
        if low is not None and target.low is not None and low < target.low:
            return "BCP329", f"the provided value can be as small as {low} and may be too small to assign to a " \
                             f"target with a configured minimum of {target.low} (the compiler warns; ARM refuses " \
                             "the deployment for such a value)."
    if value.kind == "string" and value.literals is not None:
        for literal in value.literals:
            if target.high is not None and len(literal) > target.high:
                return "BCP332", f"the provided value ({literal!r}, length {len(literal)}) is too long to assign " \
                                 f"to a target for which the maximum allowable length is {target.high}."
            if target.low is not None and len(literal) < target.low:
                return "BCP333", f"the provided value ({literal!r}, length {len(literal)}) is too short to assign " \
                                 f"to a target for which the minimum allowable length is {target.low}."
    return None


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle once, by its first name in declaration order."""
    cycles: list[list[str]] = []
    seen_members: set[str] = set()
    for start in graph:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        visited: set[str] = set()
        while stack:
            name, path = stack.pop()
            for nxt in graph.get(name, set()):
                if nxt == start and start not in seen_members:
                    cycles.append(path)
                    seen_members.update(path)
                elif nxt not in visited and nxt in graph:
                    visited.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return cycles


_JSON_TOKENS = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/', re.DOTALL)


def load_json(source: str) -> Any:
    """JSON as loadJsonContent() reads it: comments allowed."""
    return json.loads(_JSON_TOKENS.sub(lambda m: m.group(0) if m.group(0).startswith('"') else " ", source))


@cache
def json_shape(path: Path) -> sh.Shape:
    try:
        value = load_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return sh.ANY
    shape = sh.from_json(value, path.name, f"loadJsonContent('{path.name}'), the keys of {path}")
    if isinstance(shape, sh.Obj):
        shape.name = path.name
    return shape


@cache
def _resource_functions() -> dict[str, frozenset[str]]:
    index: dict[str, set[str]] = {}
    files = {id(f): f for f, _ in azure_types.resource_types().values()}
    for type_file in files.values():
        for node in type_file.nodes:
            if node["$type"] == "ResourceFunctionType":
                key = f"{node['resourceType']}@{node['apiVersion']}".lower()
                index.setdefault(key, set()).add(node["name"])
    return {k: frozenset(v) for k, v in index.items()}


def resource_functions(type_and_version: str) -> frozenset[str]:
    """The functions (POST actions) Azure's type data declares for a resource type and API version."""
    return _resource_functions().get(type_and_version.lower(), frozenset())
