"""`WorkflowContext`: what a workflow function calls to take durable steps.

Each orchestrator pass replays the workflow from the top. A step already finished returns its
recorded result (or re-raises its recorded failure); the first unfinished one is scheduled and
the pass ends by raising the pause signal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from .definitions import RpcFunction
from .dispatch import Dispatch, PassDispatch, StepDispatch
from .durations import Duration, parse_duration
from .errors import (
    ConfigurationError,
    NonDeterminismError,
    StaleBuildError,
    StepFailedError,
    WorkflowAsyncException,
)
from .manifest import WorkflowManifest
from .models import ErrorInfo, Run, StepKind, StepRun, StepStatus
from .serialization import model_dump, to_jsonable


@dataclass
class PassState:
    """What one pass has decided so far; the engine commits it."""

    run: Run
    now: Callable[[], datetime]
    commit_now: Callable[[list[StepRun]], None]  # commits writes at once (inline steps)
    writes: list[StepRun] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps = {s.name: s for s in self.run.steps}
        self.by_seq = {s.seq: s for s in self.run.steps}

    def record(self, step: StepRun) -> None:
        self.steps[step.name] = step
        self.by_seq[step.seq] = step
        self.writes.append(step)

    def flush(self) -> None:
        if self.writes:
            self.commit_now(self.writes)
            self.writes = []


def _describe(kind: StepKind | str, name: str) -> str:
    return f"{StepKind(kind).value} step {name!r}"


class WorkflowContext:
    """Passed to every workflow function as its first argument."""

    def __init__(self, state: PassState, manifest: WorkflowManifest) -> None:
        self._state = state
        self._manifest = manifest
        self._seen: Counter[str] = Counter()
        self._seq = 0
        self.current_step: str | None = None
        self.paused: WorkflowAsyncException | None = None
        # Errors that must fail the run even if user code catches them.
        self.fatal: Exception | None = None

    @property
    def run_id(self) -> str:
        return self._state.run.id

    @property
    def workflow(self) -> str:
        return self._state.run.workflow

    # -- the public step API ---------------------------------------------------------------

    def do(
        self, step_name: str, target: str | Callable[..., Any], data: Any = None, **options: Any
    ) -> Any:
        """Run a durable step and return its result.

        `target` is an RPC name or an `@rpc` function (a remote step: its own Celery task), or
        any other callable (an inline step, run here once: called with `data` if given,
        else with no arguments). A failed step raises `StepFailedError`.
        """
        self._guard()
        if options:
            raise ConfigurationError(f"step {step_name!r}: unknown option(s) {sorted(options)}")
        kind, rpc_name = self._classify(step_name, target)
        name, seq = self._position(step_name, kind)
        recorded = self._state.steps.get(name)
        if recorded is not None:
            if recorded.status.finished:
                return self._outcome(recorded)
            self._pause(f"step:{name}")
        if kind is StepKind.REMOTE:
            self._schedule(name, seq, rpc_name, data)
            self._pause(f"step:{name}")
        assert callable(target)
        return self._run_inline(name, seq, target, data)

    def sleep(self, step_name: str, duration: Duration) -> None:
        """Pause durably for `duration` ("500ms", "5s", "3m", "2h", "1d", seconds, timedelta)."""
        self._guard()
        delta = parse_duration(duration)
        name, seq = self._position(step_name, StepKind.SLEEP)
        now = self._state.now()
        step = self._state.steps.get(name)
        if step is None:
            step = StepRun(
                run_id=self.run_id,
                name=name,
                kind=StepKind.SLEEP,
                status=StepStatus.SLEEPING,
                seq=seq,
                created_at=now,
                started_at=now,
                wake_at=now + delta,
            )
            self._state.record(step)
        if step.status.finished:
            return
        assert step.wake_at is not None
        if step.wake_at <= now:
            self._state.record(
                step.model_copy(update={"status": StepStatus.SUCCEEDED, "completed_at": now})
            )
            return
        self._state.dispatches.append(PassDispatch(self.run_id, self.workflow, eta=step.wake_at))
        self._pause(f"timer:{name}", wake_at=step.wake_at)

    # -- replay bookkeeping ----------------------------------------------------------------

    def _guard(self) -> None:
        # Once paused (or broken), every later ctx call pauses too: user code that swallowed
        # the signal with a bare `except:` must not run on past an unfinished step.
        if self.fatal is not None:
            raise WorkflowAsyncException("fatal")
        if self.paused is not None:
            raise self.paused

    def _fail_hard(self, exc: Exception) -> NoReturn:
        self.fatal = exc
        raise exc

    def _classify(self, step_name: str, target: object) -> tuple[StepKind, str | None]:
        if isinstance(target, str):
            return StepKind.REMOTE, target
        if isinstance(target, RpcFunction):
            return StepKind.REMOTE, target.name
        if callable(target):
            return StepKind.INLINE, None
        raise ConfigurationError(
            f"step {step_name!r}: target must be an RPC name, an @rpc function or a callable, "
            f"not {type(target).__name__}"
        )

    def _position(self, step_name: str, kind: StepKind) -> tuple[str, int]:
        """Give the step its stable name and position, and check both against history."""
        if not isinstance(step_name, str) or not step_name or "#" in step_name:
            raise ConfigurationError(f"invalid step name {step_name!r}: non-empty, without '#'")
        # A name reached again in one run (a loop) gets an ordinal suffix: name, name#1, ...
        count = self._seen[step_name]
        self._seen[step_name] += 1
        name = step_name if count == 0 else f"{step_name}#{count}"
        seq = self._seq
        self._seq += 1
        self.current_step = name
        try:
            self._manifest.site_for(name, kind.value)
        except StaleBuildError as exc:
            self._fail_hard(exc)
        expected = self._state.by_seq.get(seq)
        recorded = self._state.steps.get(name)
        if expected is not None and (expected.name, expected.kind) != (name, kind):
            self._fail_hard(
                NonDeterminismError(
                    seq, _describe(expected.kind, expected.name), _describe(kind, name)
                )
            )
        if recorded is not None and expected is None:
            self._fail_hard(
                NonDeterminismError(
                    seq,
                    f"no step at #{seq}",
                    _describe(kind, name) + f" (recorded at #{recorded.seq})",
                )
            )
        return name, seq

    def _pause(self, waiting_for: str, **detail: Any) -> NoReturn:
        self.paused = WorkflowAsyncException(waiting_for, **detail)
        raise self.paused

    @staticmethod
    def _outcome(step: StepRun) -> Any:
        if step.status is StepStatus.SUCCEEDED:
            return step.result
        error = step.error or ErrorInfo(type="Error", message="unknown failure")
        raise StepFailedError(step.name, error.type, error.message)

    def _schedule(self, name: str, seq: int, rpc_name: str | None, data: Any) -> None:
        site = self._manifest.site_for(name, StepKind.REMOTE.value)
        if site.rpc != rpc_name:
            self._fail_hard(
                StaleBuildError(
                    f"step {name!r} calls RPC {rpc_name!r} but the prebuild saw {site.rpc!r}"
                )
            )
        assert site.task is not None
        step = StepRun(
            run_id=self.run_id,
            name=name,
            kind=StepKind.REMOTE,
            status=StepStatus.SCHEDULED,
            seq=seq,
            target=rpc_name,
            task=site.task,
            input=to_jsonable(model_dump(data), f"input of step {name!r}"),
            created_at=self._state.now(),
        )
        self._state.record(step)
        self._state.dispatches.append(StepDispatch(self.run_id, name, site.task))

    def _run_inline(self, name: str, seq: int, fn: Callable[..., Any], data: Any) -> Any:
        started = self._state.now()
        result: Any = None
        error: ErrorInfo | None = None
        try:
            value = fn() if data is None else fn(data)
            result = to_jsonable(value, f"result of step {name!r}")
        except Exception as exc:
            error = ErrorInfo.from_exception(exc, name)
        step = StepRun(
            run_id=self.run_id,
            name=name,
            kind=StepKind.INLINE,
            status=StepStatus.FAILED if error else StepStatus.SUCCEEDED,
            seq=seq,
            result=result,
            error=error,
            attempts=1,
            created_at=started,
            started_at=started,
            completed_at=self._state.now(),
        )
        # Committed before the workflow goes on: an inline step never runs twice on replay.
        self._state.record(step)
        self._state.flush()
        return self._outcome(step)
