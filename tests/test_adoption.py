"""A newcomer's first steps, as they take them: the built wheel installed in a fresh virtualenv
running a project of their own (outside this repository, with no flags and no settings but
WORKFLOW_PACKAGE), and the README's first set-up command on a fresh clone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest
from harness import REPO

from workers.process import WorkerProcess

pytestmark = pytest.mark.integration

BILLING = """
from pydantic import BaseModel

from orchestrator import WorkflowContext, rpc, workflow


class Invoice(BaseModel):
    customer: str
    amount_cents: int


@rpc("billing.charge")
def charge(data: Invoice) -> dict[str, str]:
    return {"charge_id": f"ch-{data.customer}-{data.amount_cents}"}


@workflow("billing")
def billing(ctx: WorkflowContext, data: Invoice) -> dict[str, object]:
    charged = ctx.do("charge", charge, data)
    total = ctx.do("total", lambda: data.amount_cents * 1.2)  # inline
    ctx.sleep("settle", "200ms")
    return {**charged, "total": total}
"""

# App code: starts and inspects runs; never imports the generated Celery tasks.
APP = """
import sys

import {package}

run = {package}.billing.run({{"customer": "acme", "amount_cents": 1000}}, timeout=60)
assert "{package}._tasks" not in sys.modules
print(run.status.value, run.output)
"""


def clean_env(**extra: str) -> dict[str, str]:
    """A user's shell: no WORKFLOW_* settings, nothing of this repository on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKFLOW_")}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return {**env, **extra}


def fresh_checkout(dest: Path) -> Path:
    """What `git clone` gives: the files git tracks or would track, nothing it ignores (no
    generated code, no .venv, no state), taken from the working tree under test."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, listed):
        source = REPO / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    return dest


def new_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin"


def pip(bin_dir: Path, *args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *args],
        cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def site_files(bin_dir: Path) -> dict[str, float]:
    """The installed framework's files and their modification times."""
    site = next((bin_dir.parent / "lib").glob("python3*/site-packages"))
    return {
        str(p.relative_to(site)): p.stat().st_mtime
        for package in ("orchestrator", "workers", "codegen")
        for p in (site / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkout = fresh_checkout(tmp_path_factory.mktemp("checkout"))
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), "."],
        cwd=checkout, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel in a fresh virtualenv, outside this repository; returns its bin folder."""
    bin_dir = new_venv(tmp_path_factory.mktemp("user") / "venv")
    pip(bin_dir, str(wheel))
    return bin_dir


def test_the_wheel_ships_the_framework_and_not_the_examples(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"orchestrator", "workers", "codegen"}
    for needed in (
        "orchestrator/py.typed",
        "orchestrator/store/migrations/env.py",
        "orchestrator/store/migrations/versions/0001_baseline.py",
        "orchestrator/store/migrations/script.py.mako",
    ):
        assert needed in names
    assert not [n for n in names if "_generated" in n or "_tasks.py" in n]


@pytest.mark.parametrize("package", ["workflows", "myapp.flows"])
def test_a_users_own_project_runs_on_the_installed_wheel(
    installed: Path, tmp_path: Path, package: str
) -> None:
    project = tmp_path / "project"
    folder = project / package.replace(".", "/")
    folder.mkdir(parents=True)
    for parent in list(folder.relative_to(project).parents)[:-1]:
        (project / parent / "__init__.py").touch()
    (folder / "__init__.py").touch()  # empty is enough
    (folder / "billing.py").write_text(textwrap.dedent(BILLING))
    # WORKFLOW_PACKAGE alone chooses another package; nothing else is set anywhere.
    env = clean_env(**({"WORKFLOW_PACKAGE": package} if package != "workflows" else {}))
    before = site_files(installed)

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            command, cwd=project, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
        return done

    run(str(installed / "workflow-prebuild"))
    generated = sorted(p.name for p in folder.iterdir() if p.name.startswith("_"))
    assert generated == ["__init__.py", "_generated.py", "_manifest.json", "_tasks.py"]
    # The `celery` console script, as a user types it: it finds the package from here.
    worker = WorkerProcess(
        env, tmp_path / "worker.log", cwd=project, celery=[str(installed / "celery")]
    )
    with worker:
        app = run(str(installed / "python"), "-c", APP.format(package=package))
        assert app.stdout.startswith("completed {'charge_id': 'ch-acme-1000', 'total': 1200.0}")
        listed = run(str(installed / "workflow"), "runs", "list").stdout
    assert re.search(r"\sbilling\s+completed\s", listed), listed
    assert (project / ".workflows" / "state.sqlite").exists()  # embedded, in the project
    assert site_files(installed) == before, "the installed framework was written to"
    log = worker.log.read_text()
    assert "Traceback" not in log and "wf.default" not in log


def test_the_readme_first_command_on_a_fresh_clone(tmp_path: Path) -> None:
    clone = fresh_checkout(tmp_path / "clone")
    assert not (clone / "workflows" / "_generated.py").exists()
    readme = (clone / "README.md").read_text()
    block = readme.split("## Set up (two commands)", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    first = block.strip().splitlines()[0].split("#", 1)[0].strip()
    assert first == "pip install -e . && python -m workers.demo"
    bin_dir = new_venv(tmp_path / "venv")
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    env = clean_env(PATH=path, VIRTUAL_ENV=str(bin_dir.parent))
    done = subprocess.run(
        ["bash", "-c", f"{first} --timeout 60"], cwd=clone, env=env, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, tail
    assert "5 runs finished in" in done.stdout, tail
    assert "completed, completed, completed, failed, completed" in done.stdout
