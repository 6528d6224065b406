"""Replay bookkeeping for one orchestrator pass: what history holds, what the pass decided,
and the checks that keep a replay faithful to its history."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .dispatch import Dispatch, PassDispatch
from .errors import ConfigurationError, EventTimeout, NonDeterminismError, StepFailedError
from .manifest import WorkflowManifest
from .models import ErrorInfo, Event, Run, StepKind, StepRun
from .retry import RetryPolicy, StepPolicy

# Kinds the prebuild records as call sites (markers come from ctx.patched, not a site).
_SITE_KINDS = {StepKind.REMOTE, StepKind.INLINE, StepKind.SLEEP, StepKind.EVENT, StepKind.CHILD}


@dataclass
class PassState:
    """What history holds and what this pass has decided; the engine commits it."""

    run: Run
    manifest: WorkflowManifest
    now: Callable[[], datetime]
    # Commits steps, child runs and consumed events at once (an inline step's outcome).
    commit_now: Callable[[list[StepRun], list[Run], list[tuple[int, str]]], None]
    load_events: Callable[[], list[Event]]
    # (workflow, input, step) -> (the child run, whether it is new and must be created)
    child_run: Callable[[str, Any, str], tuple[Run, bool]]
    resume_child: Callable[[str], None]
    default_retry: RetryPolicy | None = None
    writes: list[StepRun] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)
    children: list[Run] = field(default_factory=list)
    consumed: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps = {s.name: s for s in self.run.steps}
        self.by_seq = {s.seq: s for s in self.run.steps}
        self.max_seq = max(self.by_seq, default=-1)
        self._events: list[Event] | None = None
        self._taken: set[int] = set()  # events consumed in this pass, flushed or not

    @property
    def cancelling(self) -> str | None:
        return self.run.cancel_requested

    def record(self, step: StepRun) -> None:
        self.steps[step.name] = step
        self.by_seq[step.seq] = step
        # One write per step per commit (a wait created and satisfied in the same pass): a
        # batch upsert must not touch one row twice.
        self.writes = [w for w in self.writes if w.name != step.name] + [step]

    def flush(self) -> None:
        # Children and consumed events go with the steps that refer to them: a crash after
        # this commit must not leave a child step whose child run was never created.
        self.commit_now(self.writes, self.children, self.consumed)
        self.writes, self.children, self.consumed = [], [], []

    def wake_at(self, when: datetime) -> None:
        self.dispatches.append(PassDispatch(self.run.id, self.run.workflow, eta=when))

    def take_event(self, name: str) -> Event | None:
        """The oldest event of that name not consumed yet (loaded once per pass, when a wait
        first needs it)."""
        if self._events is None:
            self._events = self.load_events()
        for event in self._events:
            if event.name == name and event.id not in self._taken:
                self._taken.add(event.id)
                return event
        return None


def describe(kind: StepKind | str, name: str) -> str:
    return f"{StepKind(kind).value} step {name!r}"


class Positions:
    """Stable names and positions of the steps a replay reaches, checked against history."""

    def __init__(self, state: PassState) -> None:
        self.state = state
        self.seen: Counter[str] = Counter()
        self.next_seq = 0

    def replayed(self, step_name: str, kind: StepKind) -> StepRun | None:
        """The fast path of a replay: if history has this step, of this kind, finished at the
        next position, take the position and return it; otherwise take nothing (the caller
        goes the long way, `take`). Its call site was checked when it was first reached, and
        the module's source hash on every pass."""
        count = self.seen.get(step_name, 0)
        name = step_name if count == 0 else f"{step_name}#{count}"
        step = self.state.by_seq.get(self.next_seq)
        if step is None or step.name != name or step.kind is not kind or not step.status.finished:
            return None
        self.seen[step_name] = count + 1
        self.next_seq += 1
        return step

    def take(self, step_name: str, kind: StepKind) -> tuple[str, int]:
        """Name (with an ordinal suffix if reached before: name#1...) and position, or
        `StaleBuildError` / `NonDeterminismError`."""
        count = self.seen[step_name]
        self.seen[step_name] += 1
        name = step_name if count == 0 else f"{step_name}#{count}"
        seq = self.next_seq
        self.next_seq += 1
        if kind in _SITE_KINDS:
            self.state.manifest.site_for(name, kind.value)
        expected = self.state.by_seq.get(seq)
        recorded = self.state.steps.get(name)
        if expected is not None and (expected.name, expected.kind) != (name, kind):
            raise NonDeterminismError(
                seq, describe(expected.kind, expected.name), describe(kind, name)
            )
        if recorded is not None and expected is None:
            raise NonDeterminismError(
                seq, f"no step at #{seq}", f"{describe(kind, name)} (recorded at #{recorded.seq})"
            )
        return name, seq


def check_name(step_name: object) -> str:
    if not isinstance(step_name, str) or not step_name or "#" in step_name:
        raise ConfigurationError(f"invalid step name {step_name!r}: non-empty, without '#'")
    return step_name


def policy_of(step_name: str, options: dict[str, Any], default: RetryPolicy | None) -> StepPolicy:
    unknown = set(options) - {"retry", "timeout", "on_error"}
    if unknown:
        raise ConfigurationError(f"step {step_name!r}: unknown option(s) {sorted(unknown)}")
    return StepPolicy(
        retry=options.get("retry", default),
        timeout=options.get("timeout"),
        on_error=options.get("on_error", "fail"),
    )


def outcome(step: StepRun, policy: StepPolicy | None) -> Any:
    """A finished step's result, or its failure raised (None with on_error="continue")."""
    if step.status.value == "succeeded":
        return step.result
    if policy is not None and policy.on_error == "continue":
        return None
    error = step.error or ErrorInfo(type="Error", message="unknown failure")
    cls = EventTimeout if error.type == "EventTimeout" else StepFailedError
    raise cls(step.name, error.type, error.message)
