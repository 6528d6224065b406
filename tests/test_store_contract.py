"""One contract for every run store backend: memory, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.errors import (
    InvalidTransitionError,
    LeaseLostError,
    RunExistsError,
    RunFinishedError,
    RunNotFoundError,
    StepNotFoundError,
)
from orchestrator.models import ErrorInfo, Run, RunPatch, RunStatus, StepKind, StepRun, StepStatus
from orchestrator.store import ClaimRefused, PassClaim, PassNeeded, RunStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = RunStore.from_url(url)
    yield s
    s.close()


def new_run(store: RunStore, run_id: str = "r1", workflow: str = "wf", at: datetime = T0) -> Run:
    run = Run(
        id=run_id,
        workflow=workflow,
        status=RunStatus.PENDING,
        input={"email": "a@b.c", "n": [1, 2], "é": "ü"},
        version="v1",
        created_at=at,
        updated_at=at,
    )
    store.create_run(run)
    return run


def remote(name: str, seq: int, status: StepStatus = StepStatus.SCHEDULED) -> StepRun:
    return StepRun(
        run_id="r1",
        name=name,
        kind=StepKind.REMOTE,
        status=status,
        seq=seq,
        target="users.create",
        task=f"wf.wf.{name}",
        input={"x": seq},
        created_at=T0,
    )


def claim(store: RunStore, owner: str = "p1", at: datetime = T0) -> PassClaim:
    result = store.claim_run("r1", owner, at, at + LEASE)
    assert isinstance(result, PassClaim), result
    return result


def test_create_get_and_round_trip_json(store: RunStore) -> None:
    new_run(store)
    run = store.get_run("r1")
    assert run is not None
    assert run.status is RunStatus.PENDING
    assert run.input == {"email": "a@b.c", "n": [1, 2], "é": "ü"}
    assert run.created_at == T0 and run.created_at.tzinfo is not None
    assert run.steps == []
    assert store.get_run("nope") is None


def test_duplicate_run_id_is_refused(store: RunStore) -> None:
    new_run(store)
    with pytest.raises(RunExistsError):
        new_run(store)


def test_list_runs_filters_newest_first_without_steps(store: RunStore) -> None:
    new_run(store, "r1", "a", T0)
    new_run(store, "r2", "b", T0 + timedelta(seconds=1))
    new_run(store, "r3", "a", T0 + timedelta(seconds=2))
    assert [r.id for r in store.list_runs()] == ["r3", "r2", "r1"]
    assert [r.id for r in store.list_runs(workflow="a")] == ["r3", "r1"]
    assert [r.id for r in store.list_runs(status=RunStatus.RUNNING)] == []
    assert [r.id for r in store.list_runs(limit=1)] == ["r3"]


def test_claim_marks_running_and_excludes_a_second_pass(store: RunStore) -> None:
    new_run(store)
    first = claim(store)
    assert first.run.status is RunStatus.RUNNING and first.run.started_at == T0
    assert first.requested == 1
    assert store.claim_run("r1", "p2", T0, T0 + LEASE) is ClaimRefused.BUSY
    assert store.claim_run("missing", "p2", T0, T0 + LEASE) is ClaimRefused.MISSING


def test_a_lapsed_pass_lease_can_be_taken_over(store: RunStore) -> None:
    new_run(store)
    claim(store, "p1")
    later = T0 + LEASE + timedelta(seconds=1)
    assert isinstance(store.claim_run("r1", "p2", later, later + LEASE), PassClaim)
    with pytest.raises(LeaseLostError):
        store.commit_pass("r1", "p1", later, later + LEASE, [remote("a", 0)])
    run = store.get_run("r1")
    assert run is not None and run.steps == []


def test_commit_pass_writes_steps_patch_and_releases(store: RunStore) -> None:
    new_run(store)
    c = claim(store)
    patch = RunPatch(status=RunStatus.PAUSED, waiting_for="step:a")
    assert store.commit_pass("r1", "p1", T0, T0 + LEASE, [remote("a", 0)], patch, c.requested)
    run = store.get_run("r1")
    assert run is not None
    assert (run.status, run.waiting_for) == (RunStatus.PAUSED, "step:a")
    assert [(s.name, s.status, s.input) for s in run.steps] == [
        ("a", StepStatus.SCHEDULED, {"x": 0})
    ]
    # Released: another pass may claim at once.
    assert isinstance(store.claim_run("r1", "p2", T0, T0 + LEASE), PassClaim)


def test_commit_pass_validates_the_transition(store: RunStore) -> None:
    new_run(store)
    claim(store)
    with pytest.raises(InvalidTransitionError):
        store.commit_pass("r1", "p1", T0, T0 + LEASE, patch=RunPatch(status=RunStatus.PENDING))


def test_finished_runs_cannot_be_claimed(store: RunStore) -> None:
    new_run(store)
    c = claim(store)
    done = RunPatch(status=RunStatus.COMPLETED, output={"ok": True}, completed_at=T0)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, patch=done, release=c.requested)
    assert store.claim_run("r1", "p2", T0, T0 + LEASE) is ClaimRefused.FINISHED
    run = store.get_run("r1")
    assert run is not None and run.output == {"ok": True} and run.completed_at == T0


def test_a_finished_step_is_never_overwritten(store: RunStore) -> None:
    new_run(store)
    claim(store)
    done = remote("a", 0, StepStatus.SUCCEEDED).model_copy(update={"result": 1})
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [done])
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [remote("a", 0)])
    step = store.get_step("r1", "a")
    assert step is not None and (step.status, step.result) == (StepStatus.SUCCEEDED, 1)


def test_news_during_a_pass_makes_its_release_report_unanswered(store: RunStore) -> None:
    new_run(store)
    c = claim(store)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [remote("a", 0)])
    assert store.claim_step("r1", "a", "w1", T0, T0 + LEASE) is not None
    assert store.finish_step("r1", "a", T0, result={"id": 1})
    patch = RunPatch(status=RunStatus.PAUSED, waiting_for="step:a")
    assert not store.commit_pass("r1", "p1", T0, T0 + LEASE, patch=patch, release=c.requested)
    # The lease is free and the unanswered request is visible to the sweeper.
    later = T0 + timedelta(seconds=60)
    needing = store.runs_needing_pass(later, later - timedelta(seconds=30))
    assert [n.run_id for n in needing] == ["r1"]


def test_step_claims_are_exclusive_and_count_attempts(store: RunStore) -> None:
    new_run(store)
    claim(store)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [remote("a", 0)])
    step = store.claim_step("r1", "a", "w1", T0, T0 + LEASE)
    assert step is not None and step.attempts == 1 and step.input == {"x": 0}
    assert step.status is StepStatus.RUNNING
    assert store.claim_step("r1", "a", "w2", T0, T0 + LEASE) is None
    assert store.renew_step_lease("r1", "a", "w1", T0 + 2 * LEASE)
    assert not store.renew_step_lease("r1", "a", "w2", T0 + 2 * LEASE)
    lapsed = T0 + 3 * LEASE
    again = store.claim_step("r1", "a", "w2", lapsed, lapsed + LEASE)
    assert again is not None and again.attempts == 2
    assert store.claim_step("r1", "missing", "w2", lapsed, lapsed + LEASE) is None


def test_finish_step_first_write_wins(store: RunStore) -> None:
    new_run(store)
    claim(store)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [remote("a", 0)])
    store.claim_step("r1", "a", "w1", T0, T0 + LEASE)
    assert store.finish_step("r1", "a", T0, result={"v": 1})
    error = ErrorInfo(type="ValueError", message="late", step="a")
    assert not store.finish_step("r1", "a", T0, error=error)
    step = store.get_step("r1", "a")
    assert step is not None
    assert (step.status, step.result, step.error) == (StepStatus.SUCCEEDED, {"v": 1}, None)
    assert store.claim_step("r1", "a", "w3", T0, T0 + LEASE) is None


def test_failed_step_keeps_its_error(store: RunStore) -> None:
    new_run(store)
    claim(store)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [remote("a", 0)])
    error = ErrorInfo(type="PaymentDeclined", message="no", step="a", traceback="tb")
    assert store.finish_step("r1", "a", T0, error=error)
    step = store.get_step("r1", "a")
    assert step is not None and step.status is StepStatus.FAILED and step.error == error


def test_steps_of_finished_runs_are_not_claimed(store: RunStore) -> None:
    new_run(store)
    c = claim(store)
    store.commit_pass(
        "r1",
        "p1",
        T0,
        T0 + LEASE,
        [remote("a", 0)],
        RunPatch(status=RunStatus.CANCELLED, completed_at=T0),
        c.requested,
    )
    assert store.claim_step("r1", "a", "w1", T0, T0 + LEASE) is None


def test_sweeper_reclaims_lapsed_steps_once(store: RunStore) -> None:
    new_run(store)
    claim(store)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [remote("a", 0), remote("b", 1)])
    store.claim_step("r1", "a", "w1", T0, T0 + LEASE)
    assert store.reclaim_lapsed_steps(T0 + LEASE / 2) == []
    lapsed = T0 + 2 * LEASE
    reclaimed = store.reclaim_lapsed_steps(lapsed)
    assert [(n.workflow, n.step.name, n.step.status, n.step.task) for n in reclaimed] == [
        ("wf", "a", StepStatus.SCHEDULED, "wf.wf.a")
    ]
    assert store.reclaim_lapsed_steps(lapsed) == []


def test_sweeper_redispatches_stale_scheduled_steps_once_per_period(store: RunStore) -> None:
    new_run(store)
    claim(store)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [remote("a", 0)])
    assert store.stale_scheduled_steps(T0, T0 - LEASE) == []
    later = T0 + 2 * LEASE
    assert [n.step.name for n in store.stale_scheduled_steps(later, later - LEASE)] == ["a"]
    assert store.stale_scheduled_steps(later, later - LEASE) == []


def test_sweeper_wakes_due_timers(store: RunStore) -> None:
    new_run(store)
    c = claim(store)
    sleep = StepRun(
        run_id="r1",
        name="nap",
        kind=StepKind.SLEEP,
        status=StepStatus.SLEEPING,
        seq=0,
        created_at=T0,
        wake_at=T0 + timedelta(hours=2),
    )
    patch = RunPatch(status=RunStatus.PAUSED, waiting_for="timer:nap")
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [sleep], patch, c.requested)
    assert store.wake_due_timers(T0, T0) == []
    due = T0 + timedelta(hours=3)
    assert [w.run_id for w in store.wake_due_timers(due, due)] == ["r1"]
    # A request is now pending: not woken twice.
    assert store.wake_due_timers(due, due) == []


def test_runs_needing_pass_skips_held_runs_and_is_exclusive(store: RunStore) -> None:
    new_run(store)  # created with one pass requested
    assert store.runs_needing_pass(T0, T0) == []  # too recent
    later = T0 + timedelta(minutes=5)
    claim(store, "p1", later)
    assert store.runs_needing_pass(later, later) == []  # held by a live pass
    much_later = later + 2 * LEASE  # the pass died: its lease lapsed
    assert [n.workflow for n in store.runs_needing_pass(much_later, much_later)] == ["wf"]
    assert store.runs_needing_pass(much_later, much_later) == []


def test_request_pass_ignores_finished_and_missing_runs(store: RunStore) -> None:
    assert not store.request_pass("missing", T0)
    new_run(store)
    assert store.request_pass("r1", T0)


def test_concurrent_claims_have_one_winner(store: RunStore) -> None:
    new_run(store)
    results: list[object] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        results.append(store.claim_run("r1", f"p{i}", T0, T0 + LEASE))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, PassClaim) for r in results) == 1
    assert all(r is ClaimRefused.BUSY for r in results if not isinstance(r, PassClaim))


def test_concurrent_step_claims_have_one_winner(store: RunStore) -> None:
    new_run(store)
    claim(store)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [remote("a", 0)])
    results: list[StepRun | None] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        results.append(store.claim_step("r1", "a", f"w{i}", T0, T0 + LEASE))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1


def test_a_forked_child_gets_its_own_connections(store: RunStore) -> None:
    """The parent's pooled connections survive a child that detaches them and exits."""
    import os

    new_run(store)
    assert store.get_run("r1") is not None  # a pooled connection now exists
    pid = os.fork()
    if pid == 0:  # the child: detach, use and close its own connections, exit
        ok = False
        try:
            store.detach_after_fork()
            ok = store.get_run("r1") is not None
            store.close()  # had it kept the parent's connections, this would end them
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get_run("r1") is not None  # the parent's pooled connection still works


# -- issue 3: retries, events, cancel, resume, fork, children -----------------------------


def scheduled_and_claimed(store: RunStore, name: str = "a") -> StepRun:
    new_run(store)
    claim(store)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [remote(name, 0)])
    step = store.claim_step("r1", name, "w1", T0, T0 + LEASE)
    assert step is not None
    return step


def test_retry_step_records_the_error_and_waits_for_the_delay(store: RunStore) -> None:
    scheduled_and_claimed(store)
    error = ErrorInfo(type="ConnectionError", message="down", step="a")
    retry_at = T0 + timedelta(seconds=10)
    assert not store.retry_step("r1", "a", "not-the-owner", T0, error, retry_at)
    assert store.retry_step("r1", "a", "w1", T0, error, retry_at)
    step = store.get_step("r1", "a")
    assert step is not None
    assert (step.status, step.errors, step.wake_at) == (StepStatus.SCHEDULED, [error], retry_at)
    assert store.claim_step("r1", "a", "w2", T0, T0 + LEASE) is None  # too early
    assert store.stale_scheduled_steps(T0, T0) == []
    later = retry_at + timedelta(seconds=1)
    # Its countdown message counts from when it falls due: not overdue yet one second later.
    assert store.stale_scheduled_steps(later, later - LEASE) == []
    assert store.due_retries(later, later) == []  # a message carries it
    overdue = retry_at + 2 * LEASE
    assert [n.step.name for n in store.stale_scheduled_steps(overdue, overdue - LEASE)] == ["a"]
    again = store.claim_step("r1", "a", "w2", later, later + LEASE)
    assert again is not None and again.attempts == 2
    final = ErrorInfo(type="ConnectionError", message="still down", step="a")
    assert store.finish_step("r1", "a", later, error=final)
    step = store.get_step("r1", "a")
    assert step is not None and step.errors == [error, final] and step.error == final


def test_events_are_kept_until_consumed(store: RunStore) -> None:
    new_run(store)
    assert store.add_event("r1", "approval", {"ok": True}, T0) == "wf"
    store.add_event("r1", "approval", {"ok": False}, T0)
    store.add_event("r1", "other", None, T0)
    pending = store.pending_events("r1")
    assert [(e.name, e.payload) for e in pending] == [
        ("approval", {"ok": True}),
        ("approval", {"ok": False}),
        ("other", None),
    ]
    c = claim(store)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, consumed=[(pending[0].id, "approval")])
    assert [e.payload for e in store.pending_events("r1")] == [{"ok": False}, None]
    done = RunPatch(status=RunStatus.COMPLETED, completed_at=T0)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, patch=done, release=c.requested)
    with pytest.raises(RunFinishedError, match="has already completed"):
        store.add_event("r1", "approval", {}, T0)
    with pytest.raises(RunNotFoundError):
        store.add_event("nope", "approval", {}, T0)


def child_of(parent: str, step: str, run_id: str) -> Run:
    return Run(
        id=run_id,
        workflow="child",
        status=RunStatus.PENDING,
        parent_run_id=parent,
        parent_step=step,
        parent_workflow="wf",
        created_at=T0,
        updated_at=T0,
    )


def waiting_child_step(name: str, seq: int) -> StepRun:
    return StepRun(
        run_id="r1",
        name=name,
        kind=StepKind.CHILD,
        status=StepStatus.WAITING,
        seq=seq,
        target="child",
        created_at=T0,
    )


def test_a_finished_child_run_finishes_its_parent_step(store: RunStore) -> None:
    new_run(store)
    c = claim(store)
    kids = [child_of("r1", "kid", "c1"), child_of("r1", "kid2", "c2")]
    steps = [waiting_child_step("kid", 0), waiting_child_step("kid2", 1)]
    patch = RunPatch(status=RunStatus.PAUSED, waiting_for="child:kid")
    store.commit_pass("r1", "p1", T0, T0 + LEASE, steps, patch, c.requested, children=kids)
    # Creating children is idempotent: a retried pass does not duplicate them.
    store.claim_run("r1", "p2", T0, T0 + LEASE)
    store.commit_pass("r1", "p2", T0, T0 + LEASE, children=kids, release=0)
    for child_id, patch in [
        ("c1", RunPatch(status=RunStatus.COMPLETED, output={"n": 1}, completed_at=T0)),
        ("c2", RunPatch(status=RunStatus.FAILED, completed_at=T0,
                        error=ErrorInfo(type="ValueError", message="bad"))),
    ]:  # fmt: skip
        cc = store.claim_run(child_id, "cp", T0, T0 + LEASE)
        assert isinstance(cc, PassClaim) and cc.run.parent_run_id == "r1"
        store.commit_pass(child_id, "cp", T0, T0 + LEASE, patch=patch, release=cc.requested)
    run = store.get_run("r1")
    assert run is not None
    assert (run.step("kid").status, run.step("kid").result) == (StepStatus.SUCCEEDED, {"n": 1})
    failed = run.step("kid2")
    assert failed.status is StepStatus.FAILED and failed.error is not None
    assert failed.error.type == "ChildWorkflowFailed" and "bad" in failed.error.message
    later = T0 + timedelta(minutes=5)
    assert [n.run_id for n in store.runs_needing_pass(later, later)] == ["r1"]


def paused_on_a_child(store: RunStore) -> None:
    """Run r1 waits on step "kid" for its child run c1."""
    new_run(store)
    c = claim(store)
    store.commit_pass(
        "r1", "p1", T0, T0 + LEASE, [waiting_child_step("kid", 0)],
        RunPatch(status=RunStatus.PAUSED, waiting_for="child:kid"), c.requested,
        children=[child_of("r1", "kid", "c1")],
    )  # fmt: skip


def test_cancel_flags_the_run_and_its_children(store: RunStore) -> None:
    paused_on_a_child(store)
    flagged = store.request_cancel("r1", "no longer needed", T0)
    assert sorted(f.run_id for f in flagged) == ["c1", "r1"]
    run, child = store.get_run("r1"), store.get_run("c1")
    assert run is not None and child is not None
    assert run.cancel_requested == child.cancel_requested == "no longer needed"
    with pytest.raises(RunNotFoundError):
        store.request_cancel("nope", "x", T0)


def test_resume_keeps_succeeded_steps_and_forgets_the_rest(store: RunStore) -> None:
    new_run(store)
    c = claim(store)
    ok = remote("a", 0, StepStatus.SUCCEEDED).model_copy(update={"result": 1})
    failed = remote("b", 1, StepStatus.FAILED).model_copy(
        update={"error": ErrorInfo(type="E", message="m")}
    )
    patch = RunPatch(status=RunStatus.FAILED, error=failed.error, completed_at=T0)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [ok, failed], patch, c.requested)
    resumed = store.resume_run("r1", T0)
    assert (resumed.status, resumed.error, resumed.completed_at) == (RunStatus.PENDING, None, None)
    assert [s.name for s in resumed.steps] == ["a"]
    assert isinstance(store.claim_run("r1", "p2", T0, T0 + LEASE), PassClaim)
    with pytest.raises(InvalidTransitionError):
        store.resume_run("r1", T0)  # running, not failed or cancelled
    with pytest.raises(RunNotFoundError):
        store.resume_run("nope", T0)


def test_fork_copies_finished_steps_before_the_given_one(store: RunStore) -> None:
    new_run(store)
    claim(store)
    done = [
        remote(n, i, StepStatus.SUCCEEDED).model_copy(update={"result": i})
        for i, n in enumerate(["a", "b", "c"])
    ]
    store.commit_pass("r1", "p1", T0, T0 + LEASE, done)
    fork = store.fork_run("r1", "r2", "c", T0)
    assert (fork.id, fork.status, fork.input) == ("r2", RunStatus.PENDING, new_run_input())
    stored = store.get_run("r2")
    assert stored is not None and [(s.name, s.result) for s in stored.steps] == [("a", 0), ("b", 1)]
    with pytest.raises(StepNotFoundError) as refused:
        store.fork_run("r1", "r3", "zzz", T0)
    assert (refused.value.run_id, refused.value.step) == ("r1", "zzz")
    assert str(refused.value) == "run r1 has no step 'zzz' (its steps: a, b, c)"
    assert store.get_run("r3") is None


def new_run_input() -> dict[str, object]:
    return {"email": "a@b.c", "n": [1, 2], "é": "ü"}


def test_a_pass_that_dies_is_redriven_even_when_nothing_else_was_requested(
    store: RunStore,
) -> None:
    """A timer's message claims a quiet run (no request outstanding); the pass then dies."""
    new_run(store)
    c = claim(store)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, patch=RunPatch(status=RunStatus.PAUSED),
                      release=c.requested)  # fmt: skip
    later = T0 + timedelta(minutes=5)
    assert store.runs_needing_pass(later, later) == []  # quiet
    claim(store, "timer-pass", later)  # ...and this pass never commits
    lapsed = later + 2 * LEASE
    assert [n.run_id for n in store.runs_needing_pass(lapsed, lapsed)] == ["r1"]


@pytest.mark.parametrize("parent_cancelling", [False, True])
def test_a_cancelled_child_fails_its_step_unless_the_parent_is_cancelling(
    store: RunStore, parent_cancelling: bool
) -> None:
    paused_on_a_child(store)
    store.request_cancel("r1" if parent_cancelling else "c1", "stop", T0)
    cc = store.claim_run("c1", "cp", T0, T0 + LEASE)
    assert isinstance(cc, PassClaim)
    cancelled = RunPatch(status=RunStatus.CANCELLED, completed_at=T0)
    store.commit_pass("c1", "cp", T0, T0 + LEASE, patch=cancelled, release=cc.requested)
    kid = store.get_step("r1", "kid")
    assert kid is not None
    if parent_cancelling:
        assert kid.status is StepStatus.WAITING  # the parent stops at its own cancellation
    else:
        assert kid.status is StepStatus.FAILED and kid.error is not None
        assert kid.error.type == "ChildWorkflowCancelled"
    later = T0 + timedelta(minutes=5)
    assert [n.run_id for n in store.runs_needing_pass(later, later)] == ["r1"]


# -- issue 6: resume wording, purge, lighter reads, one store for several services ---------


def finish(store: RunStore, run_id: str, status: RunStatus, at: datetime) -> None:
    c = store.claim_run(run_id, "p", at, at + LEASE)
    assert isinstance(c, PassClaim)
    store.commit_pass(
        run_id,
        "p",
        at,
        at,
        [remote("a", 0, StepStatus.SUCCEEDED).model_copy(update={"run_id": run_id})],
        RunPatch(status=status, completed_at=at),
        release=c.requested,
    )


def test_resuming_a_completed_run_says_so(store: RunStore) -> None:
    new_run(store)
    finish(store, "r1", RunStatus.COMPLETED, T0)
    with pytest.raises(RunFinishedError, match="r1 has completed: only a failed or cancelled"):
        store.resume_run("r1", T0)


def test_get_run_without_steps(store: RunStore) -> None:
    new_run(store)
    finish(store, "r1", RunStatus.COMPLETED, T0)
    run = store.get_run("r1", steps=False)
    assert run is not None and run.status is RunStatus.COMPLETED and run.steps == []
    full = store.get_run("r1")
    assert full is not None and [s.name for s in full.steps] == ["a"]


def test_purge_deletes_old_finished_runs_in_batches_and_nothing_else(store: RunStore) -> None:
    day = timedelta(days=1)
    for i, status in enumerate([RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED]):
        new_run(store, f"old-{i}")
        finish(store, f"old-{i}", status, T0 - 40 * day)
    new_run(store, "recent")
    finish(store, "recent", RunStatus.COMPLETED, T0 - day)
    new_run(store, "paused-for-ever", at=T0 - 90 * day)  # old, but not finished
    store.add_event("paused-for-ever", "x", 1, T0)
    cutoff = T0 - 30 * day
    assert store.purge_runs(cutoff, [RunStatus.FAILED], 10) == 1
    assert store.get_run("old-1") is None
    # An unfinished status is never purged, whatever the caller asks.
    assert store.purge_runs(cutoff, [RunStatus.PENDING, RunStatus.PAUSED], 10) == 0
    assert store.purge_runs(cutoff, [RunStatus.COMPLETED, RunStatus.CANCELLED], 1) == 1
    assert store.purge_runs(cutoff, [RunStatus.COMPLETED, RunStatus.CANCELLED], 1) == 1
    assert store.purge_runs(cutoff, [RunStatus.COMPLETED, RunStatus.CANCELLED], 1) == 0
    left = {r.id for r in store.list_runs()}
    assert left == {"recent", "paused-for-ever"}
    assert [e.name for e in store.pending_events("paused-for-ever")] == ["x"]
    assert store.get_step("old-0", "a") is None  # steps went with their run


def test_recovery_queries_see_only_the_workflows_asked_for(store: RunStore) -> None:
    """Two services on one store: each sweeper re-drives its own runs only."""
    for run_id, workflow in (("mine", "billing"), ("theirs", "shipping")):
        new_run(store, run_id, workflow)
    later = T0 + 2 * LEASE
    assert store.runs_needing_pass(later, later, workflows=["billing"]) == [
        PassNeeded("mine", "billing")
    ]
    assert store.runs_needing_pass(later, later, workflows=["billing"]) == []
    assert store.runs_needing_pass(later, later, workflows=[]) == []
    assert store.runs_needing_pass(later, later) == [PassNeeded("theirs", "shipping")]


def test_a_retry_too_long_for_a_countdown_is_sent_by_the_sweeper_when_due(store: RunStore) -> None:
    scheduled_and_claimed(store)
    error = ErrorInfo(type="ConnectionError", message="down", step="a")
    retry_at = T0 + timedelta(hours=2)
    assert store.retry_step("r1", "a", "w1", T0, error, retry_at, sent=False)
    assert store.due_retries(T0 + timedelta(hours=1), T0 + timedelta(hours=1)) == []
    due = [n.step.name for n in store.due_retries(retry_at, retry_at)]
    assert due == ["a"]
    assert store.due_retries(retry_at, retry_at) == []  # sent now: once only


def test_a_claim_repeated_by_its_owner_is_the_same_claim(store: RunStore) -> None:
    """What a retry after a dropped connection does when the first try had landed."""
    new_run(store)
    first = claim(store, owner="p1")
    again = claim(store, owner="p1")
    assert again.requested == first.requested
    assert store.claim_run("r1", "p2", T0, T0 + LEASE) is ClaimRefused.BUSY
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [remote("a", 0)])
    step = store.claim_step("r1", "a", "w1", T0, T0 + LEASE)
    repeated = store.claim_step("r1", "a", "w1", T0, T0 + LEASE)
    assert step is not None and repeated is not None and repeated.attempts == step.attempts == 1
    assert store.claim_step("r1", "a", "w2", T0, T0 + LEASE) is None


def test_a_duplicate_pass_message_is_refused_without_a_replay(store: RunStore) -> None:
    new_run(store)
    c = claim(store, owner="p1")
    assert store.commit_pass("r1", "p1", T0, T0, [remote("a", 0)], release=c.requested)
    # Every request answered: another message is a duplicate, unless a timer sent it.
    assert store.claim_run("r1", "p2", T0, T0 + LEASE, timer=False) is ClaimRefused.ANSWERED
    assert isinstance(store.claim_run("r1", "p2", T0, T0 + LEASE, timer=True), PassClaim)


def test_steps_of_a_run_being_cancelled_are_never_claimed_or_redriven(store: RunStore) -> None:
    new_run(store)
    claim(store)
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [remote("a", 0), remote("b", 1)])
    assert store.claim_step("r1", "b", "w1", T0, T0 + LEASE) is not None  # running when...
    store.request_cancel("r1", "changed our mind", T0)  # ...the cancel comes
    assert store.claim_step("r1", "a", "w2", T0, T0 + LEASE) is None  # queued: a no-op now
    later = T0 + 3 * LEASE
    assert store.reclaim_lapsed_steps(later) == []
    assert store.stale_scheduled_steps(later, later - LEASE) == []
    assert store.finish_step("r1", "b", T0, result=1)  # the running one may still finish


def test_a_step_held_by_a_process_that_died_is_released_by_its_owner_only(
    store: RunStore,
) -> None:
    scheduled_and_claimed(store)
    assert store.release_owner("somebody-else", T0) == ([], [])
    released, passes = store.release_owner("w1", T0)
    assert [(r.workflow, r.step.name, r.step.status) for r in released] == [
        ("wf", "a", StepStatus.SCHEDULED)
    ] and passes == []
    step = store.claim_step("r1", "a", "w2", T0, T0 + LEASE)  # at once, not after the lease
    assert step is not None and step.attempts == 2


def test_the_backlog_counts_what_waits_in_queues(store: RunStore) -> None:
    new_run(store, "r1")
    new_run(store, "r2", at=T0 + LEASE)
    c = claim(store)
    store.commit_pass("r1", "p1", T0, T0, [remote("a", 0)], release=c.requested)
    now = T0 + 2 * LEASE
    found = {(b.workflow, b.task): (b.pending, b.overdue) for b in store.backlog(now, T0 + LEASE)}
    # r2's first pass (requested at T0 + LEASE: not before the cutoff) and r1's step a.
    assert found == {("wf", None): (1, 0), ("wf", "wf.wf.a"): (1, 1)}


def test_releasing_an_owner_drops_its_pass_lease_too(store: RunStore) -> None:
    new_run(store)
    claim(store, owner="dead")
    assert store.release_owner("dead", T0) == ([], [PassNeeded("r1", "wf")])
    assert isinstance(store.claim_run("r1", "next", T0, T0 + LEASE), PassClaim)  # at once


def test_finishing_a_step_can_claim_the_pass_it_requests(store: RunStore) -> None:
    """Eager execution's fold: PostgreSQL does it in one statement, SQLite in a transaction;
    both must leave the same state."""
    scheduled_and_claimed(store)
    c = claim(store)  # the run is held by p1: the claim is refused, the request stays
    store.commit_pass("r1", "p1", T0, T0 + LEASE, [], release=None)
    recorded, refused = store.finish_step_and_claim("r1", "a", T0, {"v": 1}, None, "w", T0)
    assert (recorded, refused) == (True, ClaimRefused.BUSY)
    assert not store.commit_pass("r1", "p1", T0, T0, [], release=c.requested)  # news came
    new_step = remote("b", 1)
    c2 = claim(store, owner="p2")
    store.commit_pass("r1", "p2", T0, T0, [new_step], release=c2.requested)
    assert store.claim_step("r1", "b", "w", T0, T0 + LEASE) is not None
    recorded, claimed = store.finish_step_and_claim("r1", "b", T0, [1, 2], None, "w", T0 + LEASE)
    assert recorded and isinstance(claimed, PassClaim) and not claimed.history_loaded
    assert claimed.requested == c2.requested + 1
    assert claimed.run.status is RunStatus.RUNNING
    assert [(s.name, s.status, s.result) for s in store.load_steps("r1")] == [
        ("a", StepStatus.SUCCEEDED, {"v": 1}),
        ("b", StepStatus.SUCCEEDED, [1, 2]),
    ]
    # A repeat finds it recorded already (first write wins), and claims nothing.
    assert store.finish_step_and_claim("r1", "b", T0, 3, None, "x", T0 + LEASE) == (
        False,
        ClaimRefused.ANSWERED,
    )
    error = ErrorInfo(type="E", message="m", step="b")
    assert not store.finish_step_and_claim("r1", "b", T0, None, error, "x", T0 + LEASE)[0]
