"""Workflow definitions and the RPC functions they call.

`python -m codegen prebuild` reads these modules (without importing them) and generates the
typed handles imported below: `workflows.onboarding.start({...})`.
"""

try:
    from workflows._generated import *  # noqa: F403
except ModuleNotFoundError as exc:
    if exc.name != "workflows._generated":
        raise
    raise ImportError(
        "workflows._generated is missing: run `python -m codegen prebuild` first"
    ) from None
