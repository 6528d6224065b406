"""Operational mistakes at the `workflow` CLI: one line on stderr and a non-zero exit, never a
traceback; and nothing stored that should not be. Each runs the real command in a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness import REPO, worker_env

from orchestrator.models import Run, RunPatch, RunStatus, StepKind, StepRun, StepStatus
from orchestrator.store import PassClaim, RunStore

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The embedded default under a fresh WORKFLOW_HOME; the examples are found from REPO."""
    return worker_env(WORKFLOW_HOME=str(tmp_path / "home"))


@pytest.fixture
def store(env: dict[str, str]) -> Iterator[RunStore]:
    s = RunStore.from_url(f"sqlite:///{env['WORKFLOW_HOME']}/state.sqlite", create_folder=True)
    yield s
    s.close()


def cli(
    env: dict[str, str], *args: str, check: int | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if check is not None:
        assert done.returncode == check, done.stderr
    return done


def one_line_error(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr
    return done.stderr


def stored_run(store: RunStore, run_id: str, status: RunStatus, **fields: object) -> None:
    store.create_run(
        Run(id=run_id, workflow="order", status=RunStatus.PENDING, created_at=T0, updated_at=T0,
            **fields)  # type: ignore[arg-type]
    )  # fmt: skip
    if status is RunStatus.PENDING:
        return
    claim = store.claim_run(run_id, "p", T0, T0)
    assert isinstance(claim, PassClaim)
    step = StepRun(run_id=run_id, name="reserveStock", kind=StepKind.INLINE, seq=0,
                   status=StepStatus.SUCCEEDED, created_at=T0)  # fmt: skip
    patch = RunPatch(status=status, completed_at=T0)
    store.commit_pass(run_id, "p", T0, T0, [step], patch, release=claim.requested)


def test_a_store_that_cannot_be_reached(env: dict[str, str], postgres_url: str) -> None:
    env["WORKFLOW_DATABASE_URL"] = "postgresql://nobody:secret@127.0.0.1:9/test"
    err = one_line_error(cli(env, "runs", "list"), "error: run store postgresql://nobody:***@")
    assert "secret" not in err and "refused" in err.lower()
    env["WORKFLOW_DATABASE_URL"] = postgres_url.replace("/test?", "/no_such_database?")
    one_line_error(cli(env, "runs", "list"), 'database "no_such_database" does not exist')


def test_a_sqlite_path_whose_folder_does_not_exist(env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "state.sqlite"
    env["WORKFLOW_DATABASE_URL"] = f"sqlite:///{missing}"
    one_line_error(cli(env, "runs", "list"), f"folder {missing.parent} does not exist")
    assert not missing.parent.exists()  # no empty store made somewhere else
    # The embedded default is another matter: its folder is made on first use.
    del env["WORKFLOW_DATABASE_URL"]
    assert cli(env, "runs", "list", check=0).stdout == "no runs\n"


def test_bad_arguments(env: dict[str, str]) -> None:
    one_line_error(cli(env, "runs", "list", "--limit", "-1"), "--limit: must be at least 1")
    one_line_error(cli(env, "runs", "purge", "--older-than", "soon"), "invalid duration 'soon'")
    one_line_error(cli(env, "runs", "purge", "--older-than", "1d", "--status", "paused"))
    one_line_error(cli(env, "start", "onboarding", "--input", "{"), "--input is not valid JSON")
    one_line_error(cli(env, "--package", "my/flows", "runs", "list"), "dotted module name")


def test_run_ids_longer_than_the_store_keeps(env: dict[str, str], store: RunStore) -> None:
    long_id = "r" * 65
    one_line_error(cli(env, "runs", "show", long_id), f"no run with id '{long_id}'")
    one_line_error(
        cli(env, "start", "onboarding", "--input", '{"email": "a@b.c"}', "--run-id", long_id),
        "invalid run id", "65 characters, at most 64",
    )  # fmt: skip
    one_line_error(cli(env, "send-event", long_id, "approval"), "no run with id")
    assert store.list_runs() == []


def test_fork_from_an_unknown_step_and_resume_of_a_completed_run(
    env: dict[str, str], store: RunStore
) -> None:
    stored_run(store, "done-1", RunStatus.COMPLETED)
    one_line_error(
        cli(env, "fork", "done-1", "--from-step", "shipIt"),
        "error: run done-1 has no step 'shipIt' (its steps: reserveStock)",
    )
    one_line_error(
        cli(env, "resume", "done-1"),
        "error: run done-1 has completed: only a failed or cancelled run can be resumed",
    )
    assert [r.id for r in store.list_runs()] == ["done-1"]  # the failed fork stored nothing


def test_output_closed_early_is_not_an_error_worth_a_traceback(
    env: dict[str, str], store: RunStore
) -> None:
    # Far more than a pipe holds, so the write itself meets the closed pipe.
    stored_run(store, "big", RunStatus.PENDING, input={"blob": "x" * 400_000})
    pipeline = f"set -o pipefail; {sys.executable} -m orchestrator runs show big | head -c 10"
    done = subprocess.run(
        ["bash", "-c", pipeline], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "run       "
    assert done.stderr == ""
    assert done.returncode == 141  # as for a process killed by SIGPIPE


def test_ctrl_c_while_waiting_leaves_the_run_going(env: dict[str, str], store: RunStore) -> None:
    # No worker: the run stays pending, so --wait waits until interrupted.
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "start", "onboarding", "--input",
         '{"email": "a@b.c"}', "--wait"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()  # printed first, before waiting
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err == f"interrupted: run {run_id} goes on; see it with `workflow runs show {run_id}`\n"
    run = store.get_run(run_id)
    assert run is not None and run.status is RunStatus.PENDING


def test_start_with_the_broker_down_stores_the_run_and_warns_once(
    env: dict[str, str], store: RunStore
) -> None:
    env["WORKFLOW_BROKER_URL"] = "redis://127.0.0.1:9/0"
    started = time.monotonic()
    done = cli(env, "start", "onboarding", "--input", '{"email": "a@b.c"}', check=0)
    assert time.monotonic() - started < 15
    run_id = done.stdout.strip()
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"run {run_id} was stored, but could not publish" in done.stderr
    assert "the sweeper of a worker serving the workflow will send them" in done.stderr
    run = store.get_run(run_id)
    assert run is not None and run.status is RunStatus.PENDING


def test_an_idempotency_key_reused_with_other_input(env: dict[str, str], store: RunStore) -> None:
    env["WORKFLOW_BROKER_URL"] = "redis://127.0.0.1:9/0"  # publishing does not matter here
    key = ["--idempotency-key", "signup-7"]
    first = cli(env, "start", "onboarding", "--input", '{"email": "a@b.c"}', *key, check=0)
    again = cli(env, "start", "onboarding", "--input", '{"email": "a@b.c"}', *key, check=0)
    assert first.stdout == again.stdout  # the same request: the same run
    one_line_error(
        cli(env, "start", "onboarding", "--input", '{"email": "other@b.c"}', *key),
        "idempotency key 'signup-7' was already used for run",
        "with other input",
    )
    shown = cli(env, "runs", "show", first.stdout.strip(), check=0).stdout
    assert "key       signup-7" in shown
    assert len(store.list_runs()) == 1


def test_purge_from_the_command_line(env: dict[str, str], store: RunStore) -> None:
    stored_run(store, "old-done", RunStatus.COMPLETED)
    stored_run(store, "old-failed", RunStatus.FAILED)
    stored_run(store, "waiting", RunStatus.PENDING)
    done = cli(env, "runs", "purge", "--older-than", "7d", "--status", "completed", check=0)
    assert done.stdout == "purged 1 run\n"
    assert cli(env, "runs", "purge", "--older-than", "7d", check=0).stdout == "purged 1 run\n"
    assert [r.id for r in store.list_runs()] == ["waiting"]


def test_no_workflows_package_here(env: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "start", "onboarding"],
        env={**env, "PYTHONPATH": os.pathsep.join(p for p in sys.path if "site-packages" in p)},
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    one_line_error(done, "workflow package 'workflows': not found in", str(tmp_path))


@pytest.mark.parametrize(
    ("setup", "args", "expected"),
    [
        ("nothing", [], "error: workflow package 'workflows': not found in"),
        ("package", [], "error: workflows._generated is missing; run `python -m codegen prebuild`"),
        ("package", ["--workflow-package=my-app"], "error: --workflow-package must be a dotted"),
    ],
)
def test_a_worker_that_cannot_serve_its_package_says_why_and_exits(
    tmp_path: Path, setup: str, args: list[str], expected: str
) -> None:
    if setup == "package":
        (tmp_path / "workflows").mkdir()
        (tmp_path / "workflows" / "__init__.py").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKFLOW_")}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", "worker", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(expected), done.stderr
