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
from test_codegen_render import make_lint_sandbox

from codegen import prebuild, render, scan
from codegen.cli import main

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "codegen_pkg"
GOLDEN = HERE / "golden" / "codegen_pkg"
REPO_ROOT = HERE.parent
# The fixture's `__init__.py` is empty: the prebuild adds the handles import to it.
OUTPUTS = (
    "workflows/_manifest.json",
    "workflows/_generated.py",
    "workflows/_tasks.py",
    "workflows/__init__.py",
)
PY_OUTPUTS = ("workflows/_generated.py", "workflows/_tasks.py")


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
    assert prebuild(project).changed == ()
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
    assert not (project / "workflows" / "_tasks.py").exists(), "--check must not write"

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
        "stale: workflows/_tasks.py",
    ]
    assert snapshot(project) == before


def test_a_comment_edit_only_restales_the_manifest(project: Path) -> None:
    prebuild(project)
    source = project / "workflows" / "order.py"
    source.write_text(source.read_text() + "# a trailing comment\n")
    # The manifest carries the source hash, so the runtime can tell the module changed.
    assert prebuild(project, check=True).changed == ("workflows/_manifest.json",)


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


def test_generated_python_passes_ruff(project: Path, tmp_path: Path) -> None:
    result = scan(project, "workflows")
    outputs = render(result)
    for framework_here in (True, False):
        sandbox = tmp_path / f"sandbox-{framework_here}"
        sandbox.mkdir()
        make_lint_sandbox(sandbox, outputs, result.modules, framework_here)
        run_ruff(sandbox, list(PY_OUTPUTS))


def test_python_dash_m_codegen(project: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        command = [sys.executable, "-m", "codegen", *args]
        return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)

    assert run("prebuild", "--check").returncode == 1
    done = run("prebuild")
    assert (done.returncode, done.stdout.count("wrote ")) == (0, 4), done.stderr
    assert run("prebuild", "--check", "--package", "workflows", "--root", ".").returncode == 0


def test_the_package_comes_from_workflow_package_and_outputs_stay_inside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "project"
    shutil.copytree(FIXTURE / "workflows", root / "myapp" / "flows")
    (root / "myapp" / "__init__.py").write_text("")
    monkeypatch.setenv("WORKFLOW_PACKAGE", "myapp.flows")
    assert main(["--root", str(root)]) == 0
    written = capsys.readouterr().out.split()
    assert [w for w in written if w != "wrote"] == [
        "myapp/flows/_manifest.json",
        "myapp/flows/_generated.py",
        "myapp/flows/_tasks.py",
        "myapp/flows/__init__.py",
    ]
    assert sorted(p.name for p in root.iterdir()) == ["myapp"]  # nothing outside the package
    # A flag overrides the setting; a path is not a package name.
    assert main(["--root", str(root), "--package", "myapp/flows"]) == 2
    assert "--package must be a dotted module name" in capsys.readouterr().err
    monkeypatch.setenv("WORKFLOW_PACKAGE", "my-app")
    assert main(["--root", str(root)]) == 2
    assert "WORKFLOW_PACKAGE must be a dotted module name" in capsys.readouterr().err


def test_a_package_init_with_code_of_its_own_is_left_alone_with_advice(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init = project / "workflows" / "__init__.py"
    init.write_text("VERSION = 3\n")
    assert main(["--root", str(project)]) == 0
    assert init.read_text() == "VERSION = 3\n"
    captured = capsys.readouterr()
    assert "wrote workflows/__init__.py" not in captured.out
    assert "does not import the typed handles" in captured.err
    init.write_text("")  # empty: the prebuild adds the import, once
    assert main(["--root", str(project)]) == 0
    assert init.read_text().endswith("from ._generated import *  # noqa: F403\n")
    assert main(["--root", str(project)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_a_file_the_prebuild_did_not_write_is_never_overwritten(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = project / "workflows" / "_tasks.py"
    mine.write_text("# my own celery tasks\n")
    assert main(["--root", str(project)]) == 2
    assert "workflows/_tasks.py: exists and was not written by the prebuild" in (
        capsys.readouterr().err
    )
    assert mine.read_text() == "# my own celery tasks\n"
    assert not (project / "workflows" / "_manifest.json").exists()  # nothing half-written
