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
    if step.status == "sleeping" and step.wake_at:
        return f"wakes {_when(step.wake_at)}"
    if step.target:
        return f"rpc {step.target}"
    return ""


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
            try:
                data = json.loads(args.input)
            except json.JSONDecodeError as exc:
                raise WorkflowError(f"--input is not valid JSON: {exc}") from None
            run_id = client.start(args.name, data, run_id=args.run_id)
            if not args.wait:
                out.write(run_id + "\n")
                return 0
            run = client.wait_for_run(run_id, timeout=args.timeout)
            show_run(run, out)
            return 0 if run.status is RunStatus.COMPLETED else 1
        client = client or default_client()
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
