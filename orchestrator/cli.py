"""`workflow` (also `python -m orchestrator`): start, inspect and manage runs.

workflow start NAME --input JSON [--wait] [--timeout S]
workflow runs list [--workflow W] [--status S] [--limit N] [--json]
workflow runs show RUN_ID [--json]
workflow runs purge --older-than 30d [--status completed]
workflow send-event | cancel | resume | fork ...
workflow db upgrade | db status

The workflows package is found from the current directory (`--package`, else
`WORKFLOW_PACKAGE`, else `workflows`). Mistakes are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from pydantic import ValidationError

from .client import WorkflowClient, default_client
from .config import Settings, check_package_name
from .display import show_run, show_runs
from .durations import parse_duration
from .errors import ConfigurationError, SchemaVersionError, WorkflowError
from .models import RunStatus
from .package import load_workflows
from .store import RunStore

EXIT_OK, EXIT_RUN_DID_NOT_COMPLETE, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141  # as a shell reports SIGINT and SIGPIPE


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the usage is one --help away.
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="workflow", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--package", help="the workflows package, dotted (default: $WORKFLOW_PACKAGE or workflows)"
    )
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
    ls.add_argument("--limit", type=_positive, default=50)
    ls.add_argument("--json", action="store_true")
    show = runs.add_parser("show", help="a run and its steps")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    purge = runs.add_parser("purge", help="delete finished runs older than a duration")
    purge.add_argument("--older-than", type=_duration, required=True, help="e.g. 30d, 12h")
    purge.add_argument(
        "--status",
        action="append",
        choices=["completed", "failed", "cancelled"],
        help="only runs that ended so (repeatable; default: all three)",
    )
    purge.add_argument("--batch-size", type=_positive, default=500, help="runs per transaction")

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

    db = sub.add_parser("db", help="the run store's schema").add_subparsers(
        dest="action", required=True
    )
    db.add_parser("upgrade", help="migrate the run store to this version's schema")
    db.add_parser("status", help="the run store's schema revision and this code's")
    return parser


def _json_arg(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{flag} is not valid JSON: {exc}") from None


def _dump(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, default=str) + "\n")


def main(argv: Sequence[str] | None = None, client: WorkflowClient | None = None) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout
    try:
        if args.package:
            # Through the environment, so the default client and its dispatcher agree.
            os.environ["WORKFLOW_PACKAGE"] = check_package_name(args.package, "--package")
        code = _run(args, out, client)
        out.flush()  # a closed pipe shows here, inside the handler below
        return code
    except ValidationError as exc:
        sys.stderr.write(f"error: invalid input for workflow {args.name!r}:\n{exc}\n")
    except WorkflowError as exc:
        sys.stderr.write(f"error: {exc}\n")
    except BrokenPipeError:
        # `workflow runs show ID | head`: the reader is gone; say nothing more, and stop
        # Python's own flush at exit from complaining about the same pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    return EXIT_ERROR


def _run(args: argparse.Namespace, out: TextIO, client: WorkflowClient | None) -> int:
    if args.command == "db":
        return _db(args.action, out)
    if args.command == "start":
        return _start(args, out, client)
    client = client or default_client()
    if args.command == "send-event":
        client.send_event(args.run_id, args.event, _json_arg(args.payload, "--payload"))
        out.write(f"sent {args.event!r} to {args.run_id}\n")
    elif args.command == "cancel":
        client.cancel_run(args.run_id, args.reason)
        out.write(f"cancelling {args.run_id}\n")
    elif args.command == "resume":
        out.write(f"resumed {client.resume_run(args.run_id).id}\n")
    elif args.command == "fork":
        out.write(client.fork_run(args.run_id, args.from_step).id + "\n")
    elif args.action == "list":
        runs = client.list_runs(args.workflow, args.status, args.limit)
        if args.json:
            _dump([r.model_dump(mode="json", exclude={"steps"}) for r in runs], out)
        else:
            show_runs(runs, out)
    elif args.action == "purge":
        count = client.purge_runs(args.older_than, args.status, batch_size=args.batch_size)
        out.write(f"purged {count} run{'s' if count != 1 else ''}\n")
    else:
        run = client.get_run(args.run_id)
        if args.json:
            _dump(run.model_dump(mode="json"), out)
        else:
            show_run(run, out)
    return EXIT_OK


def _start(args: argparse.Namespace, out: TextIO, client: WorkflowClient | None) -> int:
    # Registers the workflows (and their generated handles) in this process.
    load_workflows(Settings.from_env().package)
    client = client or default_client()
    data = _json_arg(args.input, "--input")
    run_id = client.start(args.name, data, run_id=args.run_id, idempotency_key=args.idempotency_key)
    out.write(run_id + "\n")
    if not args.wait:
        return EXIT_OK
    out.flush()
    try:
        run = client.wait_for_run(run_id, timeout=args.timeout)
    except KeyboardInterrupt:
        sys.stderr.write(
            f"interrupted: run {run_id} goes on; see it with `workflow runs show {run_id}`\n"
        )
        return EXIT_INTERRUPTED
    out.write("\n")
    show_run(run, out)
    return EXIT_OK if run.status is RunStatus.COMPLETED else EXIT_RUN_DID_NOT_COMPLETE


def _db(action: str, out: TextIO) -> int:
    settings = Settings.from_env()
    if action == "status":
        try:
            store = RunStore.from_settings(settings)
        except SchemaVersionError as exc:
            out.write(f"{exc}\n")
            return EXIT_RUN_DID_NOT_COMPLETE
        out.write(f"the run store is up to date (schema {store.schema_revision})\n")
        return EXIT_OK
    store = RunStore.from_settings(settings, upgrade=True)
    before, after = store.schema_upgrade or (store.schema_revision, store.schema_revision)
    if before == after:
        out.write(f"the run store is up to date (schema {after})\n")
    else:
        out.write(f"upgraded the run store from schema {before or 'empty'} to {after}\n")
    return EXIT_OK
