"""The prebuild end to end on the fixture project: golden outputs, reruns, `--check`, linting.

Set UPDATE_GOLDEN=1 to rewrite tests/golden/codegen_pkg/ from the current output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import run_ruff

from codegen import prebuild, render, scan
from codegen.cli import main

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "codegen_pkg"
GOLDEN = HERE / "golden" / "codegen_pkg"
REPO_ROOT = HERE.parent
OUTPUTS = ("workflows/_manifest.json", "workflows/_generated.py", "workers/generated.py")
PY_OUTPUTS = ("workflows/_generated.py", "workers/generated.py")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {rel: (root / rel).read_bytes() for rel in OUTPUTS}


def test_outputs_match_golden_files(project: Path) -> None:
    assert main(["prebuild", "--root", str(project)]) == 0
    update = os.environ.get("UPDATE_GOLDEN") == "1"
    for rel, actual in snapshot(project).items():
        golden = GOLDEN / rel
        if update:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_bytes(actual)
        assert actual == golden.read_bytes(), f"{rel} differs from {golden} (UPDATE_GOLDEN=1?)"


def test_cli_prints_what_it_wrote_then_up_to_date(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prebuild", "--root", str(project)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {rel}" for rel in OUTPUTS]
    assert main(["--root", str(project)]) == 0  # the command word is optional
    assert capsys.readouterr().out == "up to date\n"


def test_rerun_is_byte_identical(project: Path, tmp_path: Path) -> None:
    prebuild(project)
    first = snapshot(project)
    assert prebuild(project) == ()
    assert snapshot(project) == first
    # A second copy in another directory renders the same bytes: no absolute paths leak in.
    other = tmp_path / "elsewhere" / "copy"
    shutil.copytree(FIXTURE, other, ignore=shutil.ignore_patterns("__pycache__"))
    prebuild(other)
    assert snapshot(other) == first


def test_check_passes_when_fresh_and_fails_after_a_source_edit(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prebuild", "--root", str(project), "--check"]) == 1
    assert capsys.readouterr().out.splitlines() == [f"stale: {rel}" for rel in OUTPUTS]
    assert not (project / "workers").exists(), "--check must not write"

    assert main(["prebuild", "--root", str(project)]) == 0
    capsys.readouterr()
    assert main(["prebuild", "--root", str(project), "--check"]) == 0
    assert capsys.readouterr().out == "up to date\n"

    source = project / "workflows" / "onboarding.py"
    source.write_text(source.read_text().replace('"sendEmail"', '"sendWelcomeEmail"'))
    before = snapshot(project)
    assert main(["prebuild", "--root", str(project), "--check"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "stale: workflows/_manifest.json",
        "stale: workers/generated.py",
    ]
    assert snapshot(project) == before


def test_a_comment_edit_only_restales_the_manifest(project: Path) -> None:
    prebuild(project)
    source = project / "workflows" / "order.py"
    source.write_text(source.read_text() + "# a trailing comment\n")
    # The manifest carries the source hash, so the runtime can tell the module changed.
    assert prebuild(project, check=True) == ("workflows/_manifest.json",)


def test_scanning_never_imports_user_code(project: Path) -> None:
    (project / "workflows" / "explosive.py").write_text(
        "from orchestrator import rpc\n"
        "\n"
        'raise RuntimeError("the prebuild imported user code")\n'
        "\n"
        "\n"
        '@rpc("boom.detonate")\n'
        "def detonate() -> None: ...\n"
    )
    # A stale or broken generated module is skipped, not read.
    (project / "workflows" / "_generated.py").write_text("this is not python (\n")
    before = set(sys.modules)
    result = scan(project, "workflows")
    assert not {m for m in set(sys.modules) - before if m.startswith("workflows")}
    assert "boom.detonate" in {r.name for r in result.rpcs}
    assert "workflows.explosive" in result.modules


def test_generated_python_compiles(project: Path) -> None:
    for rel, text in render(scan(project, "workflows")).items():
        if rel.endswith(".py"):
            compile(text, rel, "exec")


def make_lint_sandbox(root: Path, outputs: dict[str, str], modules: list[str]) -> None:
    """A project where ruff classifies imports as it would in this repository."""
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    # ruff decides "first party" by finding the imported module under the project root.
    stubs = [
        "orchestrator/__init__.py",
        "orchestrator/handle.py",
        "orchestrator/manifest.py",
        "workers/__init__.py",
        "workers/app.py",
        "workers/tasks.py",
    ]
    stubs += [m.replace(".", "/") + ".py" for m in modules]
    for rel in stubs:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    for rel, text in outputs.items():
        (root / rel).write_text(text)


def test_generated_python_passes_ruff(project: Path, tmp_path: Path) -> None:
    result = scan(project, "workflows")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    make_lint_sandbox(sandbox, render(result), list(result.modules))
    run_ruff(sandbox, list(PY_OUTPUTS))


def test_python_dash_m_codegen(project: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        command = [sys.executable, "-m", "codegen", *args]
        return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)

    assert run("prebuild", "--check").returncode == 1
    done = run("prebuild")
    assert (done.returncode, done.stdout.count("wrote ")) == (0, 3), done.stderr
    assert run("prebuild", "--check", "--package", "workflows", "--root", ".").returncode == 0
