"""Test helpers: prebuilt fixture packages, and environments for real worker processes."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workers.process import WorkerProcess

__all__ = ["REPO", "WorkerProcess", "import_fixture", "prebuild_fixture", "run_ruff", "worker_env"]

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def prebuild_fixture(package: str, root: Path) -> Path:
    """Copy the fixture package under `root`, run the real prebuild on it, and return `root`
    (workers serve it with WORKFLOW_PACKAGE=<package>, from `root` or with it on PYTHONPATH)."""
    shutil.copytree(FIXTURES / package, root / package)
    prebuild(root, package)
    return root


def prebuild(root: Path, package: str) -> None:
    command = [sys.executable, "-m", "codegen", "prebuild", "--root", str(root)]
    subprocess.run([*command, "--package", package], check=True, cwd=REPO, capture_output=True)


def import_fixture(package: str, root: Path) -> object:
    prebuild_fixture(package, root)
    sys.path.insert(0, str(root))
    return importlib.import_module(package)


def worker_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [p for p in (overrides.pop("PYTHONPATH", ""), str(REPO)) if p]
    )
    env.update(overrides)
    return env


def run_ruff(root: Path, files: list[str]) -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed")
    for command in (["check", "--no-cache"], ["format", "--check", "--diff", "--no-cache"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command, *files],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"ruff {command[0]}:\n{done.stdout}{done.stderr}"
