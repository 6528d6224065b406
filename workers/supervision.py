"""A worker's main process and its pool children.

When a pool child dies holding a workflow task, the main process knows at once (Celery's
`WorkerLostError`): it releases the lease the child held, so the requeued message
(`task_reject_on_worker_lost`) runs the step or pass again right away instead of after the
lease (30 s for a step). Only a whole worker dying, main process included, waits out the
lease. The child and its supervisor agree on the lease owner without talking: it is the
task's delivery id and the child's pid (`attempt_owner`).

SIGTERM sent to the whole process group (systemd's default KillMode, `kill -TERM -PGID`)
reaches the children too. Ended by it mid-write, a child can leave a queue the main process
needs to shut the pool down locked, and the worker then never exits. So pool children
ignore SIGTERM, as Celery already has them ignore SIGINT (a terminal's Ctrl-C reaches the
whole group too), except in a cold shutdown: in a warm one, the main process stops them in
order. Revoking a task with `terminate=True` therefore needs `signal="SIGKILL"` here.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from types import FrameType
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import Task, current_task, signals
from celery.worker.request import Request

from orchestrator.clock import utcnow
from orchestrator.dispatch import Dispatch, PassDispatch, StepDispatch
from orchestrator.engine import publish

log = logging.getLogger(__name__)


def attempt_owner(task_id: str, pid: int) -> str:
    """The lease owner of one delivery of a task in one process: a redelivery to another
    process is another owner, so two deliveries never share a claim."""
    return f"{task_id}@{pid}"


def current_owner() -> str | None:
    """The lease owner for the task this pool process is running (None outside a task)."""
    task = current_task
    task_id = task.request.id if task is not None else None
    return attempt_owner(task_id, os.getpid()) if task_id else None


class WorkflowRequest(Request):
    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)  # unwrap ExceptionWithTraceback
        if isinstance(exc, WorkerLostError) and self.worker_pid:
            release_lost(
                self.task.name, list(self.args), attempt_owner(self.id, int(self.worker_pid))
            )
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


class WorkflowTask(Task[..., Any]):
    """The base of every task of the workflows app."""

    Request = "workers.supervision:WorkflowRequest"


def release_lost(task: str, args: list[Any], owner: str) -> None:
    """Release every lease the dead child held: the received step or pass, and any that it
    ran eagerly after it (orchestrator.eager) under the same owner."""
    from .runtime import runtime

    try:
        current = runtime()
        steps, passes = current.store.release_owner(owner, utcnow())
        # Sent again at once: the received message comes back by itself (requeued), but a
        # step the child ran eagerly had no message of its own.
        messages: list[Dispatch] = [StepDispatch.of(s.step, s.workflow) for s in steps]
        messages += [PassDispatch(p.run_id, p.workflow) for p in passes]
        publish(current.sweeper.dispatcher, messages)
    except Exception as exc:  # the leases still lapse: recovery is only slower
        log.warning("releasing the leases of a lost %s failed: %s", task, exc)
        return
    if messages:
        run_id = args[0] if args else None
        log.warning(
            "the process running %s for run %s died; released %d lease(s) to run again now",
            task, run_id, len(messages), extra={"run_id": run_id},
        )  # fmt: skip


# Set by the main process when it begins a cold shutdown, read by its children: shared
# memory, made before the pool forks.
_cold = multiprocessing.RawValue("b", 0)
_handler_installed = False


@signals.worker_ready.connect
def _note_cold_shutdown(**_: Any) -> None:
    # Celery's cold shutdown (SIGQUIT) terminates the pool before it announces itself, so
    # the flag is raised first thing by wrapping its handler.
    celery_handler = signal.getsignal(signal.SIGQUIT)

    def cold(signum: int, frame: FrameType | None) -> None:
        _cold.value = 1
        if callable(celery_handler):
            celery_handler(signum, frame)

    signal.signal(signal.SIGQUIT, cold)


@signals.worker_process_init.connect
def _ignore_sigterm_in_children(**_: Any) -> None:
    # SIG_IGN for now: billiard replaces any handler with its own exit right after this
    # signal, and only leaves an ignored SIGTERM alone.
    global _handler_installed
    _handler_installed = False
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@signals.task_prerun.connect
def _sigterm_ends_a_child_only_in_a_cold_shutdown(**_: Any) -> None:
    # A busy child must still die when a cold shutdown terminates the pool (an idle one
    # leaves when the pool closes its pipes).
    global _handler_installed
    if not _handler_installed:
        signal.signal(signal.SIGTERM, _child_sigterm)
        _handler_installed = True


def _child_sigterm(signum: int, frame: FrameType | None) -> None:
    if _cold.value:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
