"""How the CLI prints runs: a run with its steps and attempt errors, and run lists."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from .models import Run, StepRun


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if value else "-"


def _seconds(start: datetime | None, end: datetime | None) -> str:
    return f"{(end - start).total_seconds():.3f}s" if start and end else "-"


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def _step_detail(step: StepRun) -> str:
    if step.error:
        return f"{step.error.type}: {step.error.message}"
    if step.kind == "remote" and step.status == "scheduled" and step.wake_at and step.errors:
        return f"retry at {_when(step.wake_at)} (last: {step.errors[-1].type})"
    if step.status in ("sleeping", "waiting") and step.wake_at:
        return f"until {_when(step.wake_at)}"
    if step.kind == "child" and isinstance(step.input, dict):
        return f"child run {step.input.get('run_id')} ({step.target})"
    if step.kind == "event":
        return f"event {step.target}"
    if step.target:
        return f"rpc {step.target}"
    return ""


def _attempt_errors(steps: Sequence[StepRun], out: TextIO) -> None:
    """Each failed attempt of each step, so retries are visible."""
    lines = [
        f"  {s.name} attempt {i}: {e.type}: {e.message}"
        for s in steps
        for i, e in enumerate(s.errors, start=1)
    ]
    if lines:
        out.write("\nattempt errors\n" + "\n".join(lines) + "\n")


def show_run(run: Run, out: TextIO) -> None:
    status = run.status.value + (f" ({run.waiting_for})" if run.waiting_for else "")
    out.write(f"run       {run.id}\nworkflow  {run.workflow}  version {run.version or '-'}\n")
    out.write(f"status    {status}\n")
    out.write(
        f"created   {_when(run.created_at)}   started {_when(run.started_at)}   "
        f"completed {_when(run.completed_at)}   took {_seconds(run.created_at, run.completed_at)}\n"
    )
    out.write(f"input     {json.dumps(run.input)}\n")
    if run.idempotency_key:
        out.write(f"key       {run.idempotency_key}\n")
    if run.output is not None:
        out.write(f"output    {json.dumps(run.output)}\n")
    if run.error:
        where = f" at step {run.error.step!r}" if run.error.step else ""
        out.write(f"error     {run.error.type}{where}: {run.error.message}\n")
    if run.cancel_requested and run.status.value != "cancelled":
        out.write(f"cancel    requested: {run.cancel_requested}\n")
    if run.parent_run_id:
        out.write(f"parent    {run.parent_run_id} (step {run.parent_step})\n")
    if run.steps:
        rows = [["#", "STEP", "KIND", "STATUS", "ATTEMPTS", "DURATION", "DETAIL"]]
        rows += [
            [
                str(s.seq),
                s.name,
                s.kind.value,
                s.status.value,
                str(s.attempts),
                _seconds(s.started_at, s.completed_at),
                _step_detail(s),
            ]
            for s in run.steps
        ]
        out.write("\n")
        _table(rows, out)
        _attempt_errors(run.steps, out)


def show_runs(runs: Sequence[Run], out: TextIO) -> None:
    if not runs:
        out.write("no runs\n")
        return
    rows = [["RUN", "WORKFLOW", "STATUS", "CREATED", "TOOK"]]
    rows += [
        [
            r.id,
            r.workflow,
            r.status.value + (f" ({r.waiting_for})" if r.waiting_for else ""),
            _when(r.created_at),
            _seconds(r.created_at, r.completed_at),
        ]
        for r in runs
    ]
    _table(rows, out)
