"""Finding and loading the user's workflows package.

Workers and the CLI look for it from the current directory, as `celery -A` and `python -m` do,
so a project needs no PYTHONPATH: `WORKFLOW_PACKAGE` (default `workflows`) names it, dotted.
What gets imported is the prebuild's `_generated` module, not the package's `__init__`, so an
empty `__init__.py` is enough for workers and the CLI.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

from .errors import ConfigurationError, StaleBuildError
from .manifest import Manifest, installed

HANDLES_MODULE = "_generated"  # typed handles; imports the definitions, installs the manifest
TASKS_MODULE = "_tasks"  # the Celery tasks (workers only)
MANIFEST_FILE = "_manifest.json"


def search_current_directory() -> None:
    """Put the current directory first on `sys.path`, as `python -m` does (a console script
    starts with its own bin folder there instead)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def find_package(package: str) -> None:
    """`ConfigurationError` naming the package and where it was looked for, if it is not
    importable."""
    search_current_directory()
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:  # a parent package of a dotted name is missing
        spec = None
    if spec is None or spec.submodule_search_locations is None:
        what = "module, not a package" if spec is not None else "not found"
        raise ConfigurationError(
            f"workflow package {package!r}: {what} in {os.getcwd()} or on sys.path "
            "(run from your project's root, or set WORKFLOW_PACKAGE=your.package)"
        )


def import_generated(package: str, module: str) -> ModuleType:
    """Import `<package>.<module>` (one of the prebuild's outputs)."""
    find_package(package)
    name = f"{package}.{module}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise StaleBuildError(f"{name} is missing") from None


def load_workflows(package: str) -> Manifest:
    """Import the package's workflows and `@rpc` functions (through its generated handles)
    and return the manifest of everything this process now serves."""
    import_generated(package, HANDLES_MODULE)
    return installed()


def load_worker_tasks(package: str) -> Manifest:
    """Like `load_workflows`, and also register the package's generated Celery tasks."""
    manifest = load_workflows(package)
    import_generated(package, TASKS_MODULE)
    return manifest
