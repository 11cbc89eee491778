"""Bicep's grammar (tree-sitter-bicep) and the syntax errors the compiler's parser would report.

tree-sitter recovers from errors: a file that does not parse still yields a tree, with ERROR and MISSING nodes where
the text broke the grammar; each becomes a diagnostic with its line.

tree-sitter-bicep 1.1.0 reads some valid Bicep otherwise than the compiler, and the checks need the compiler's
reading, so the tree they walk (``Node``, built by ``tree``) is the grammar's tree repaired in two ways:
- ``.x``, ``[i]`` and ``::c`` bind tighter than any operator in Bicep, looser in the grammar (``a && b.c`` comes out
  as ``(a && b).c``, ``c ? x : y.z`` as ``(c ? x : y).z``, ``x => a[x]`` as ``(x => a)[x]``): they are moved onto
  the rightmost operand;
- the grammar ignores newlines, so it may split one array item into several (``[\\n  f('x')\\n]`` comes out as the
  items ``f`` and ``('x')``): items on one line without a comma are parsed again as one expression, at the same
  line and column; if they are not one expression, a separator is missing (BCP236).
The rules Bicep's parser enforces about newlines are checked on the tree: one statement per line (BCP019), commas
between properties on one line (BCP236). The grammar also accepts an assignment (``a = b``) as an expression, which
Bicep does not have.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple

import tree_sitter
import tree_sitter_bicep


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding: where (file, 1-based line and column), Bicep's diagnostic code when the compiler has one for it
    (else a name of this check's own rule), the symbol concerned and what is wrong."""

    path: Path
    line: int
    column: int
    code: str
    symbol: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.code} [{self.symbol}] {self.message}"


class Point(NamedTuple):
    row: int
    column: int


class Node:
    """A node of the repaired tree, with the part of tree-sitter's Node interface the checks use."""

    __slots__ = ("children", "end_byte", "end_point", "fields", "is_named", "parent", "source", "start_byte",
                 "start_point", "type")

    def __init__(self, kind: str, is_named: bool, children: list[Node], fields: dict[str, Node], source: bytes,
                 start: tuple[int, Point], end: tuple[int, Point]) -> None:
        self.type = kind
        self.is_named = is_named
        self.children = children
        self.fields = fields
        self.source = source
        self.start_byte, self.start_point = start
        self.end_byte, self.end_point = end
        self.parent: Node | None = None

    @property
    def named_children(self) -> list[Node]:
        return [c for c in self.children if c.is_named]

    def child_by_field_name(self, name: str) -> Node | None:
        return self.fields.get(name)

    @property
    def text(self) -> bytes:
        return self.source[self.start_byte : self.end_byte]

    def replaced(self, old: Node, new: Node, start: tuple[int, Point] | None = None,
                 end: tuple[int, Point] | None = None) -> Node:
        """A copy with one child replaced, spanning start..end (default: its own span)."""
        children = [new if c is old else c for c in self.children]
        fields = {k: new if v is old else v for k, v in self.fields.items()}
        return Node(self.type, self.is_named, children, fields, self.source,
                    start or (self.start_byte, self.start_point), end or (self.end_byte, self.end_point))


@cache
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


@cache
def parse(text: str) -> tree_sitter.Tree:
    """tree-sitter's tree of a text; cached by text, so each file (and each broken copy) is parsed once."""
    return _parser().parse(text.encode("utf-8"))


@dataclass
class Tree:
    root: Node
    unseparated: list[Node]  # array items on the line of the previous one, without a comma


@cache
def tree(source: str) -> Tree:
    """The repaired tree of a file's text (cached by text)."""
    unseparated: list[Node] = []
    root = _convert(parse(source).root_node, source.encode("utf-8"), unseparated)
    _set_parents(root)
    return Tree(root, unseparated)


def _set_parents(node: Node) -> None:
    for child in node.children:
        child.parent = node
        _set_parents(child)


ROTATED = {"binary_expression": "right", "unary_expression": "argument", "ternary_expression": "alternative",
           "lambda_expression": ""}
ACCESS = {"member_expression": "object", "subscript_expression": "object", "resource_expression": "object",
          "call_expression": "function"}


def _convert(ts: tree_sitter.Node, source: bytes, unseparated: list[Node]) -> Node:
    children = [_convert(c, source, unseparated) for c in ts.children]
    fields: dict[str, Node] = {}
    for index, child in enumerate(children):
        name = ts.field_name_for_child(index)
        if name:
            fields[name] = child
    node = Node(ts.type, ts.is_named, children, fields, source,
                (ts.start_byte, Point(*ts.start_point)), (ts.end_byte, Point(*ts.end_point)))
    if ts.is_missing:
        node.type = f"MISSING {ts.type}"
    if node.type == "array":
        node = _regroup(node, unseparated)
    return _rebind(node)


def _rebind(node: Node) -> Node:
    """``(a && b).c`` -> ``a && (b.c)``: an access to an operator's result applies to the operator's last operand."""
    field = ACCESS.get(node.type)
    inner = node.fields.get(field) if field else None
    if inner is None or inner.type not in ROTATED:
        return node
    operand = inner.fields.get(ROTATED[inner.type]) if ROTATED[inner.type] else inner.named_children[-1]
    if operand is None:
        return node
    access = _rebind(node.replaced(inner, operand, start=(operand.start_byte, operand.start_point)))
    return inner.replaced(operand, access, end=(node.end_byte, node.end_point))


def _regroup(node: Node, unseparated: list[Node]) -> Node:
    groups: list[list[Node]] = []
    previous: Node | None = None
    for child in node.children:
        if child.type == ",":
            previous = None
            continue
        if not child.is_named or child.type in ("comment", "diagnostic_comment", "decorators"):
            continue
        if previous is not None and previous.end_point.row == child.start_point.row:
            groups[-1].append(child)
        else:
            groups.append([child])
        previous = child
    for group in groups:
        if len(group) == 1:
            continue
        joined = _reparse(group[0], group[-1], unseparated)
        if joined is None:
            unseparated.extend(group[1:])
            continue
        first = node.children.index(group[0])
        last = node.children.index(group[-1])
        node.children[first : last + 1] = [joined]
    return node


def _reparse(first: Node, last: Node, unseparated: list[Node]) -> Node | None:
    row = first.start_point.row
    if row == 0:
        return None
    span = first.source[first.start_byte : last.end_byte].decode("utf-8")
    # The same text at the same line and column, as the value of a variable declared on the line before.
    again = "\n" * (row - 1) + "var _ =\n" + " " * first.start_point.column + span + "\n"
    ts = parse(again).root_node
    if ts.has_error or ts.named_child_count != 1 or ts.named_children[0].type != "variable_declaration":
        return None
    value = ts.named_children[0].named_children[-1]
    return _convert(value, again.encode("utf-8"), unseparated)


def position(node: Node) -> tuple[int, int]:
    return node.start_point.row + 1, node.start_point.column + 1


def text(node: Node) -> str:
    return node.text.decode("utf-8")


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "'": "'", "$": "$"}


def string_value(node: Node | None) -> str | None:
    """The value of a string literal node; None when it has ``${...}`` interpolations (or is no string)."""
    if node is None or node.type != "string":
        return None
    parts: list[str] = []
    multiline = text(node).startswith("'''")
    for child in node.children:
        if child.type == "interpolation":
            return None
        if child.type == "string_content":
            parts.append(text(child))
        elif child.type not in ("'", "'''") and not multiline:  # an escape sequence
            escaped = text(child)[1:]
            if escaped.startswith("u{"):
                parts.append(chr(int(escaped[2:-1], 16)))
            else:
                parts.append(_ESCAPES.get(escaped, escaped))
    value = "".join(parts)
    if multiline and value.startswith("\n"):  # the first line break after ''' is not part of the value
        value = value[1:]
    return value


def syntax_errors(path: Path, source: str) -> list[Diagnostic]:
    errors: list[Diagnostic] = []

    def report(node: Node, code: str, message: str) -> None:
        line, column = position(node)
        snippet = text(node).split("\n")[0][:40]
        errors.append(Diagnostic(path, line, column, code, snippet or node.type, message))

    def visit(node: Node) -> None:
        if node.type.startswith("MISSING "):
            report(node, "BCP018", f"Expected {node.type[8:]!r} at this location (the text ends or breaks off here).")
            return
        if node.type == "ERROR":
            report(node, "syntax", f"This text does not parse as Bicep: {_first_line(node)!r}.")
            return
        if node.type == "assignment_expression":
            report(node, "syntax", "Bicep has no assignment expression ('=' inside an expression); compare with '=='.")
        if node.type == "object":
            _separators(node, report)
        for child in node.children:
            visit(child)

    parsed = tree(source)
    visit(parsed.root)
    for item in parsed.unseparated:
        report(item, "BCP236", "Expected a new line or comma character at this location.")
    statements = [c for c in parsed.root.named_children if c.type not in ("comment", "diagnostic_comment")]
    for previous, current in itertools.pairwise(statements):
        if previous.type != "decorators" and previous.end_point.row == current.start_point.row:
            report(current, "BCP019", "Expected a new line character at this location (one statement per line).")
        if previous.type == "decorators" and current.type == "decorators":
            report(current, "syntax", "Decorators must be followed by the declaration they decorate.")
    if statements and statements[-1].type == "decorators":
        report(statements[-1], "syntax", "Decorators must be followed by the declaration they decorate.")
    return sorted(set(errors))


def _first_line(node: Node) -> str:
    return re.sub(r"\s+", " ", text(node).strip().split("\n")[0])[:60]


def _separators(node: Node, report: Callable[[Node, str, str], None]) -> None:
    """Properties of an object on the same line need a comma between them (BCP236)."""
    items = [c for c in node.children if c.is_named and c.type not in ("comment", "diagnostic_comment", "decorators")]
    for previous, current in itertools.pairwise(items):
        if previous.end_point.row != current.start_point.row:
            continue
        between = [c.type for c in node.children if previous.end_byte <= c.start_byte < current.start_byte]
        if "," not in between:
            report(current, "BCP236", "Expected a new line or comma character at this location.")
