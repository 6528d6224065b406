"""Run stores: `RunStore.from_url(url)` picks the backend."""

from .base import ClaimRefused, PassClaim, PassNeeded, RunStore, StepNeeded

__all__ = ["ClaimRefused", "PassClaim", "PassNeeded", "RunStore", "StepNeeded"]
