"""Run the prebuild: scan, render, and write (or, with `check`, only compare) the outputs."""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.package import HANDLES_MODULE, MANIFEST_FILE

from .model import PrebuildError, Problem
from .render import HEADER, render
from .scanner import scan

# Appended to a package `__init__.py` that has no code of its own, so that
# `import workflows; workflows.<name>.start(...)` finds the typed handles.
INIT_IMPORT = (
    "# Added by the prebuild: the typed handles, `{package}.<name>.start(...)`.\n"
    f"from .{HANDLES_MODULE} import *  # noqa: F403\n"
)


@dataclass
class Outcome:
    changed: tuple[str, ...]  # relative paths written (or, with `check`, stale)
    notes: list[str] = field(default_factory=list)  # advice that is not an error


def prebuild(root: Path = Path("."), package: str = "workflows", *, check: bool = False) -> Outcome:
    """Regenerate the outputs under `root`; report the relative paths that changed.

    With `check`, nothing is written and the paths reported are the stale ones. Raises
    `PrebuildError` listing every problem found in the source, or naming a file the prebuild
    would overwrite that it did not generate.
    """
    result = scan(root, package)
    outputs = render(result)
    init_rel = f"{result.package_dir}/__init__.py"
    init_text, note = _package_init(_read(root / init_rel), package)
    if init_text is not None:
        outputs[init_rel] = init_text
    changed = tuple(rel for rel, text in outputs.items() if _read(root / rel) != text.encode())
    _refuse_foreign(root, [rel for rel in changed if rel != init_rel])
    if not check:
        for rel in changed:
            _write(root / rel, outputs[rel].encode())
    return Outcome(changed, [note] if note else [])


def _package_init(data: bytes | None, package: str) -> tuple[str | None, str | None]:
    """The package `__init__.py` with the handles import added if it has no code at all
    (empty, comments, a docstring); otherwise (None, advice if it lacks the import)."""
    text = (data or b"").decode("utf-8", errors="replace")
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None, None  # the scan reports it
    body = tree.body
    if any(_imports_handles(node) for node in ast.walk(tree)):
        return None, None
    docstring_only = all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body
    )
    if docstring_only:
        kept = text.rstrip()
        return (kept + "\n\n" if kept else "") + INIT_IMPORT.format(package=package), None
    rel = package.replace(".", "/") + "/__init__.py"
    return None, (
        f"note: {rel} does not import the typed handles; add "
        f"`from .{HANDLES_MODULE} import *` to use `{package}.<name>.start()`"
    )


def _imports_handles(node: ast.AST) -> bool:
    return isinstance(node, ast.ImportFrom) and (
        (node.level == 1 and node.module == HANDLES_MODULE)
        or (node.level == 0 and (node.module or "").endswith(f".{HANDLES_MODULE}"))
    )


def _refuse_foreign(root: Path, rels: list[str]) -> None:
    """A file in the way of an output that the prebuild did not write is the user's: never
    overwrite it."""
    problems = [
        Problem(rel, 0, "exists and was not written by the prebuild: rename it, or delete it")
        for rel in rels
        if (data := _read(root / rel)) is not None and not _generated(rel, data)
    ]
    if problems:
        raise PrebuildError(problems)


def _generated(rel: str, data: bytes) -> bool:
    if not rel.endswith(MANIFEST_FILE):
        return data.startswith(HEADER.encode())
    try:
        parsed = json.loads(data)
    except ValueError:
        return False
    return isinstance(parsed, dict) and {"format", "workflows"} <= parsed.keys()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write(path: Path, data: bytes) -> None:
    # Replace rather than rewrite in place: a worker importing the file mid-write would see a
    # truncated module.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
