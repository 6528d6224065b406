"""`python -m orchestrator` (also the `workflow` console script): start and inspect runs.

workflow start NAME --input JSON [--wait] [--timeout S]
workflow runs list [--workflow W] [--status S] [--limit N] [--json]
workflow runs show RUN_ID [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from pydantic import ValidationError

from .client import WorkflowClient, default_client
from .config import Settings
from .errors import WorkflowError
from .models import Run, RunStatus, StepRun


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    start = sub.add_parser("start", help="start a run of a workflow")
    start.add_argument("name", help="the workflow's name, as given to @workflow")
    start.add_argument("--input", default="{}", help="the input as JSON (default: {})")
    start.add_argument("--run-id", help="use this run id instead of a random one")
    start.add_argument("--idempotency-key", help="starting twice with one key gives one run")
    start.add_argument("--wait", action="store_true", help="wait for the run to finish")
    start.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits")

    runs = sub.add_parser("runs", help="inspect runs").add_subparsers(dest="action", required=True)
    ls = runs.add_parser("list", help="list runs, newest first")
    ls.add_argument("--workflow")
    ls.add_argument("--status", choices=[s.value for s in RunStatus])
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    show = runs.add_parser("show", help="a run and its steps")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")

    event = sub.add_parser("send-event", help="deliver an event to a run's wait_for_event")
    event.add_argument("run_id")
    event.add_argument("event")
    event.add_argument("--payload", default="null", help="the payload as JSON (default: null)")
    cancel = sub.add_parser("cancel", help="cancel a run and its children")
    cancel.add_argument("run_id")
    cancel.add_argument("--reason")
    resume = sub.add_parser("resume", help="continue a failed or cancelled run")
    resume.add_argument("run_id")
    fork = sub.add_parser("fork", help="a new run reusing results before a step")
    fork.add_argument("run_id")
    fork.add_argument("--from-step", required=True)
    return parser


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


def _list(runs: list[Run], out: TextIO) -> None:
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


def _json_arg(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"{flag} is not valid JSON: {exc}") from None


def _dump(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, default=str) + "\n")


def main(argv: Sequence[str] | None = None, client: WorkflowClient | None = None) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout
    try:
        if args.command == "start":
            # Registers the workflows (and their generated handles) in this process.
            importlib.import_module(Settings.from_env().package)
            client = client or default_client()
            data = _json_arg(args.input, "--input")
            run_id = client.start(
                args.name, data, run_id=args.run_id, idempotency_key=args.idempotency_key
            )
            if not args.wait:
                out.write(run_id + "\n")
                return 0
            run = client.wait_for_run(run_id, timeout=args.timeout)
            show_run(run, out)
            return 0 if run.status is RunStatus.COMPLETED else 1
        client = client or default_client()
        if args.command == "send-event":
            client.send_event(args.run_id, args.event, _json_arg(args.payload, "--payload"))
            out.write(f"sent {args.event!r} to {args.run_id}\n")
            return 0
        if args.command == "cancel":
            client.cancel_run(args.run_id, args.reason)
            out.write(f"cancelling {args.run_id}\n")
            return 0
        if args.command == "resume":
            out.write(f"resumed {client.resume_run(args.run_id).id}\n")
            return 0
        if args.command == "fork":
            out.write(client.fork_run(args.run_id, args.from_step).id + "\n")
            return 0
        if args.action == "list":
            runs = client.list_runs(args.workflow, args.status, args.limit)
            if args.json:
                _dump([r.model_dump(mode="json", exclude={"steps"}) for r in runs], out)
            else:
                _list(runs, out)
            return 0
        run = client.get_run(args.run_id)
        if args.json:
            _dump(run.model_dump(mode="json"), out)
        else:
            show_run(run, out)
        return 0
    except ValidationError as exc:
        sys.stderr.write(f"error: invalid input for workflow {args.name!r}:\n{exc}\n")
        return 2
    except WorkflowError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
