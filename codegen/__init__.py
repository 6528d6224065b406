"""The prebuild: reads a workflows package with `ast` and generates what the runtime needs.

`python -m codegen prebuild` writes `<package>/_manifest.json` (the call sites the runtime checks
against), `<package>/_generated.py` (typed workflow handles) and `workers/generated.py` (the
Celery tasks). User code is never imported.
"""

from .build import prebuild
from .cli import main
from .model import PrebuildError, Problem, RpcDef, ScanResult, StepCall, WorkflowDef
from .render import render, steps_version
from .scanner import scan

__all__ = [
    "PrebuildError",
    "Problem",
    "RpcDef",
    "ScanResult",
    "StepCall",
    "WorkflowDef",
    "main",
    "prebuild",
    "render",
    "scan",
    "steps_version",
]
