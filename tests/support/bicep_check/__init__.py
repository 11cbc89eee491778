"""A Bicep check as close to the compiler as a machine without the Bicep compiler allows.

Each .bicep file is parsed with tree-sitter-bicep's grammar (once per text: broken copies are parsed anew) and
checked for what `bicep build` would refuse, with the compiler's diagnostic codes where it has one:

- syntax: ERROR and MISSING nodes of the grammar, one statement per line (BCP019), commas between items on one line
  (BCP236);
- names: every identifier resolves to a parameter, variable, resource (``existing`` too), module, type, function,
  import, loop or lambda variable, or a built-in (sys/az) function or decorator (BCP057/BCP082); outputs and types
  are not values (BCP063/BCP288); duplicates (BCP028); function arities (BCP071); parameter defaults read only
  parameters (BCP072); no self-reference or cycle (BCP079/BCP080); load*Content() files exist (BCP091);
- property access where the shape is known: loadJsonContent() results, object literals, module outputs, user-defined
  types, resources (Azure's type data), sys/az scope functions (BCP053/BCP083/BCP055);
- module calls: the module file exists and has no errors (BCP091/BCP104), no unknown parameter (BCP037), every
  parameter without a default given (BCP035), values of known type fit the parameter's type, @allowed values and
  bounds (BCP036, BCP327-BCP333);
- decorators: known names, attached to the right types (BCP124), min <= max (BCP331), defaults within @allowed,
  bounds and lengths (BCP033, BCP327-BCP333);
- this project's rule: a variable calling fail() is read by something deployed (else Bicep never evaluates it).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from tests.support.bicep_check.checker import FileChecker, model
from tests.support.bicep_check.syntax import Diagnostic

__all__ = ["Diagnostic", "check_file", "check_text"]


@cache
def _check(path: Path, source: str) -> tuple[Diagnostic, ...]:
    return tuple(FileChecker(model(path, source), _module_errors).run())


def _module_errors(path: Path) -> list[Diagnostic]:
    return check_file(path)


def check_text(path: Path, source: str) -> list[Diagnostic]:
    """Every error of one file given its text (path locates its modules and loaded files)."""
    return list(_check(path.resolve(), source))


def check_file(path: Path) -> list[Diagnostic]:
    """Every error of one file; its modules are checked too (their errors surface as BCP104 here)."""
    return check_text(path, path.resolve().read_text(encoding="utf-8"))
