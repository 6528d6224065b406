"""The step histories of runs this process passed last, so that the next pass of a run in an
eager chain (orchestrator.eager) replays without reading every step row again: reading them
made each pass cost in proportion to the run's length, and a long run's total quadratic.

The history a pass leaves is exact once its commit answered every request of the run. Any
news for a run (a step's outcome, an event, a cancel, a child's end, a resume) is a new
request, so when the next claim finds exactly one request more, and it was made by the step
this process just recorded (whose outcome it knows), the history is the remembered one plus
that outcome. Anything else, and the history is read from the store as usual.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from .models import StepRun


@dataclass(frozen=True)
class _Entry:
    answered: int  # the request count the pass that left it answered
    steps: dict[str, StepRun]


class HistoryCache:
    def __init__(self, size: int = 256) -> None:
        self.size = size  # runs kept (least recently passed dropped first): memory stays flat
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, run_id: str, answered: int, steps: dict[str, StepRun]) -> None:
        with self._lock:
            self._entries[run_id] = _Entry(answered, dict(steps))
            self._entries.move_to_end(run_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._entries.pop(run_id, None)

    def recall(self, run_id: str, requested: int, recorded: StepRun) -> list[StepRun] | None:
        """The history for a pass claimed at `requested` right after this process recorded
        `recorded` (one request more than the remembered pass answered), else None."""
        with self._lock:
            entry = self._entries.pop(run_id, None)
        if entry is None or requested != entry.answered + 1:
            return None
        steps = {**entry.steps, recorded.name: recorded}
        return sorted(steps.values(), key=lambda s: (s.seq, s.name))
