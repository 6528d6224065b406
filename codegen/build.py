"""Run the prebuild: scan, render, and write (or, with `check`, only compare) the outputs."""

from __future__ import annotations

import os
from pathlib import Path

from .render import WORKERS_MODULE, render
from .scanner import scan


def prebuild(
    root: Path = Path("."),
    package: str = "workflows",
    *,
    check: bool = False,
    tasks_out: str = WORKERS_MODULE,
) -> tuple[str, ...]:
    """Regenerate the outputs under `root`; return the relative paths that changed.

    With `check`, nothing is written and the returned paths are the stale ones. Raises
    `PrebuildError` listing every problem found in the source.
    """
    outputs = render(scan(root, package), tasks_out)
    changed = tuple(rel for rel, text in outputs.items() if _read(root / rel) != text.encode())
    if not check:
        for rel in changed:
            _write(root / rel, outputs[rel].encode())
    return changed


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
