"""Fixture workflows package for the codegen tests: scanned, never imported."""

# Added by the prebuild: the typed handles, `workflows.<name>.start(...)`.
from ._generated import *  # noqa: F403
