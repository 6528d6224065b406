"""Name resolution across the scanned modules, from their import statements alone.

The prebuild never imports user code, so "is this name an `@rpc` function?" is answered by
following `import` / `from ... import` bindings statically, including re-exports.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field

# Re-export chains longer than this are either absurd or cyclic.
_MAX_REEXPORT_HOPS = 16


def dotted(expr: ast.expr) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; None for anything but a chain of names."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.append(expr.id)
    return parts[::-1]


@dataclass
class ModuleSymbols:
    """The module-level names of one scanned module that can refer to other modules' code."""

    name: str  # dotted module name
    is_package: bool  # an `__init__.py`: relative imports resolve against the module itself
    imports: dict[str, str] = field(default_factory=dict)  # local name -> qualified name
    functions: set[str] = field(default_factory=set)  # top-level `def` names

    @classmethod
    def from_tree(cls, name: str, is_package: bool, tree: ast.Module) -> ModuleSymbols:
        symbols = cls(name, is_package)
        top_level = {id(stmt) for stmt in tree.body}
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                symbols.functions.add(stmt.name)
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                symbols.imports.update(symbols._bindings(stmt))
        # Imports inside functions or `if` blocks count too, unless a top-level one binds the name.
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top_level:
                for local, target in symbols._bindings(node).items():
                    symbols.imports.setdefault(local, target)
        return symbols

    def _bindings(self, stmt: ast.Import | ast.ImportFrom) -> dict[str, str]:
        bound: dict[str, str] = {}
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    # `import a.b.c` binds `a`; attribute access walks down from there.
                    head = alias.name.split(".", 1)[0]
                    bound[head] = head
            return bound
        base = self._from_base(stmt)
        if base is None:
            return bound
        for alias in stmt.names:
            if alias.name != "*":
                bound[alias.asname or alias.name] = f"{base}.{alias.name}" if base else alias.name
        return bound

    def _from_base(self, stmt: ast.ImportFrom) -> str | None:
        if stmt.level == 0:
            return stmt.module or ""
        parts = self.name.split(".")
        if not self.is_package:
            parts = parts[:-1]
        drop = stmt.level - 1
        if drop > len(parts):
            return None
        parts = parts[: len(parts) - drop]
        if stmt.module:
            parts.append(stmt.module)
        return ".".join(parts) or None

    def qualify(self, expr: ast.expr) -> str | None:
        """The fully qualified name `expr` refers to, if its head is imported or defined here."""
        parts = dotted(expr)
        if parts is None:
            return None
        head, rest = parts[0], parts[1:]
        if head in self.imports:
            base = self.imports[head]
        elif head in self.functions:
            base = f"{self.name}.{head}"
        else:
            return None
        return ".".join([base, *rest])


def follow_reexports(
    qualname: str, modules: Mapping[str, ModuleSymbols], targets: Mapping[str, str]
) -> str | None:
    """`targets[qualname]`, following `from x import f` re-exports through scanned modules."""
    for _ in range(_MAX_REEXPORT_HOPS):
        if qualname in targets:
            return targets[qualname]
        module, _, attr = qualname.rpartition(".")
        symbols = modules.get(module)
        if symbols is None or attr not in symbols.imports:
            return None
        qualname = symbols.imports[attr]
    return None
