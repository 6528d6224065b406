"""Rendering: manifest contents, generated identifiers, and ruff-clean layout at the edges."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import shutil
from pathlib import Path

import pytest
from harness import run_ruff

from codegen import RpcDef, ScanResult, StepCall, WorkflowDef, render, steps_version
from codegen.pysource import identifier, py_str
from orchestrator.manifest import Manifest

REPO_ROOT = Path(__file__).parent.parent
TASKS = "workflows/_tasks.py"


def workflow(
    name: str, steps: list[StepCall] | None = None, module: str = "workflows.flows", **kw: str
) -> WorkflowDef:
    return WorkflowDef(
        name=name,
        module=module,
        function=kw.get("function", identifier(name)),
        file=module.replace(".", "/") + ".py",
        line=1,
        input_type=None,
        ctx_param="ctx",
        source_sha256="0" * 64,
        steps=tuple(steps or ()),
    )


def remote(name: str, rpc: str = "r", dynamic: bool = False, line: int = 1) -> StepCall:
    return StepCall(name, dynamic, "remote", rpc, line)


def result(
    workflows: list[WorkflowDef], rpcs: list[RpcDef] | None = None, package: str = "workflows"
) -> ScanResult:
    rpcs = rpcs or []
    return ScanResult(
        package=package,
        workflows=tuple(sorted(workflows, key=lambda w: w.name)),
        rpcs=tuple(sorted(rpcs, key=lambda r: r.name)),
        modules=tuple(sorted({w.module for w in workflows} | {r.module for r in rpcs})),
    )


def rpc(name: str, module: str) -> RpcDef:
    return RpcDef(name, module, "fn", module.replace(".", "/") + ".py", 1)


def test_steps_version_hashes_kind_name_and_rpc_in_order() -> None:
    steps = [remote("a", "r1"), StepCall("b-{i}", True, "inline", None, 2)]
    expected = hashlib.sha256(b'[["remote","a","r1"],["inline","b-{i}",null]]').hexdigest()[:16]
    assert steps_version(steps) == expected
    assert steps_version(steps[::-1]) != expected
    assert steps_version([remote("a", "r2"), steps[1]]) != expected
    # Line numbers are not part of the graph: moving code around keeps the version.
    assert steps_version([remote("a", "r1", line=40), steps[1]]) == expected


def test_manifest_sites_match_the_runtime_step_names() -> None:
    wf = workflow(
        "shop",
        [
            remote("charge[{index}]", dynamic=True),
            remote("ship-{i}", dynamic=True),
            StepCall("nap", False, "sleep", None, 3),
        ],
    )
    text = render(result([wf], [rpc("r", "workflows.flows")]))["workflows/_manifest.json"]
    manifest = Manifest.model_validate_json(text)
    entry = manifest.workflow("shop")
    assert entry.orchestrator_task == entry.orchestrator_queue == "wf.shop.orchestrator"
    assert entry.site_for("charge[2]", "remote").task == "wf.shop.charge[{index}]"
    assert entry.site_for("ship-7#1", "remote").queue == "wf.shop.ship-{i}"
    assert entry.site_for("nap", "sleep").task is None
    assert entry.version == steps_version(list(wf.steps))
    assert manifest.rpcs["r"].module == "workflows.flows"


def handles(text: str) -> dict[str, str]:
    """handle name -> `alias.function` it wraps, read back from `_generated.py`."""
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            (target,) = node.targets
            if isinstance(target, ast.Name) and ast.unparse(node.value.func) == "WorkflowHandle":
                found[target.id] = ast.unparse(node.value.args[0])
    return found


def test_handle_names_are_identifiers_that_never_collide() -> None:
    names = ["a-b", "a_b", "class", "1st", "install", "Path", "order.refund", "_flows_module"]
    text = render(result([workflow(n, function=f"f{i}") for i, n in enumerate(names)]))[
        "workflows/_generated.py"
    ]
    assert handles(text) == {
        "a_b_2": "_flows_module.f0",
        "a_b": "_flows_module.f1",  # already an identifier, so it keeps its name
        "class_": "_flows_module.f2",
        "_1st": "_flows_module.f3",
        "install_2": "_flows_module.f4",
        "Path_2": "_flows_module.f5",
        "order_refund": "_flows_module.f6",
        "_flows_module_2": "_flows_module.f7",
    }


def test_task_function_names_are_unique() -> None:
    scanned = result([workflow("a-b", [remote("x")]), workflow("a_b", [remote("x"), remote("x!")])])
    text = render(scanned)[TASKS]
    functions = [n.name for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)]
    assert functions == [
        "a_b__orchestrator",
        "a_b__x",
        "a_b__orchestrator_2",
        "a_b__x_2",
        "a_b__x_",
    ]


@pytest.mark.parametrize(
    "value",
    ["plain", "it's", 'say "hi"', "mix\"'", "back\\slash", "tab\tnew\nline", "zero\u200bwidth"],
)
def test_py_str_round_trips(value: str) -> None:
    assert ast.literal_eval(py_str(value)) == value


# -- ruff: the generated files pass `ruff check` and `ruff format --check` as written ------------


def make_lint_sandbox(
    root: Path, outputs: dict[str, str], modules: tuple[str, ...], framework_here: bool
) -> None:
    """`framework_here`: as in this repository, where ruff's isort counts the framework as
    first party; otherwise as in a user's project, where it is an installed third party."""
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    stubs = [m.replace(".", "/") + ".py" for m in modules]
    if framework_here:
        stubs += ["orchestrator/handle.py", "orchestrator/manifest.py", "workers/app.py"]
        stubs += ["workers/tasks.py"]
    for rel in stubs:
        path = root / rel
        # ruff decides "first party" by finding the imported module under the project root.
        for parent in reversed(path.relative_to(root).parents[:-1]):
            (root / parent).mkdir(exist_ok=True)
            (root / parent / "__init__.py").touch()
        path.touch()
    for rel, text in outputs.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def assert_ruff_clean(tmp_path: Path, scanned: ScanResult) -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed")
    outputs = render(scanned)
    for framework_here in (True, False):
        sandbox = tmp_path / ("repository" if framework_here else "user-project")
        sandbox.mkdir()
        make_lint_sandbox(sandbox, outputs, scanned.modules, framework_here)
        run_ruff(sandbox, [rel for rel in outputs if rel.endswith(".py")])


def test_ruff_clean_with_nothing_to_generate(tmp_path: Path) -> None:
    assert_ruff_clean(tmp_path, result([]))


def test_ruff_clean_with_only_rpcs_and_inline_steps(tmp_path: Path) -> None:
    inline = StepCall("calc", False, "inline", None, 1)
    assert_ruff_clean(tmp_path, result([], [rpc("r", "workflows.services.email")]))
    other = tmp_path / "other"
    other.mkdir()
    assert_ruff_clean(other, result([workflow("calc", [inline])], package="aflows"))


ODD_NAMES = ["it's", 'say "hi"', "mix\"'", "b\\s", "zw\u200bsp"]


def test_ruff_clean_at_every_line_length(tmp_path: Path) -> None:
    """Names of every length around the 100-column limit, odd characters and module names."""
    workflows = []
    # Up to where "wf.<workflow>.orchestrator" alone no longer fits a line (E501 then).
    for k in range(1, 76):
        step_len = (k * 7) % (87 - k) + 1
        steps = [remote("s" * step_len, "r." + "x" * ((k * 13) % 88))]
        if k % 10 == 0:
            steps.append(remote(ODD_NAMES[(k // 10) % len(ODD_NAMES)]))
        workflows.append(workflow("w" * k, steps, function="fn_" + "x" * (k % 50)))
    modules = ["Zeta", "alpha", "mod10", "mod9", "a.b", "a_b", "CONST", "B2b", "sub.deep.leaf"]
    modules += ["m" * k for k in range(28, 38)]
    for i, name in enumerate(modules):
        workflows.append(workflow(f"in-{i}", module=f"workflows.{name}"))
    rpcs = [rpc(f"only-{k}", "workflows.rpc_only." + "q" * k) for k in range(20, 38, 2)]
    scanned = result(workflows, rpcs)
    assert_ruff_clean(tmp_path, scanned)
    text = render(scanned)[TASKS]
    assert max(len(line) for line in text.splitlines()) > 100  # the limit was really exercised


def test_every_defining_module_is_imported_under_a_dotted_package() -> None:
    scanned = result(
        [workflow("a", module="my.flows.x.y")], [rpc("r", "my.flows.z")], package="my.flows"
    )
    outputs = render(scanned)
    assert sorted(outputs) == [
        "my/flows/_generated.py",
        "my/flows/_manifest.json",
        "my/flows/_tasks.py",
    ]
    handles_text = outputs["my/flows/_generated.py"]
    # Relative: the generated code does not depend on where the package sits on sys.path.
    assert "from .x import y as _x_y_module\n" in handles_text
    assert "from . import z as _z_module  # noqa: F401" in handles_text
    assert "\nfrom . import _generated  # noqa: F401" in outputs["my/flows/_tasks.py"]
