"""What the scanner reads from source: definitions, step call sites, and how targets resolve."""

from __future__ import annotations

import textwrap
from pathlib import Path

from codegen import ScanResult, StepCall, scan

HEADER = "from orchestrator import rpc, workflow\n"


def write_package(root: Path, files: dict[str, str], package: str = "workflows") -> Path:
    package_dir = root / package.replace(".", "/")
    package_dir.mkdir(parents=True, exist_ok=True)
    (package_dir / "__init__.py").touch()
    for rel, text in files.items():
        path = package_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def module(body: str) -> str:
    """A module importing the decorators on line 1, then `body` from line 2."""
    return HEADER + textwrap.dedent(body).lstrip("\n")


def steps(result: ScanResult, workflow: str) -> list[tuple[str, bool, str, str | None]]:
    (wf,) = [w for w in result.workflows if w.name == workflow]
    return [(s.name, s.dynamic, s.kind, s.rpc) for s in wf.steps]


LIB = """
    from orchestrator import rpc

    @rpc("lib.f")
    def f(data): ...

    @rpc("lib.g")
    def g(data): ...
"""


def test_rpc_targets_resolve_through_every_import_form(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "lib.py": LIB,
            "sub/__init__.py": "from orchestrator import rpc\n\n@rpc('sub.h')\ndef h(): ...\n",
            "flow.py": """
                import workflows.lib
                import workflows.lib as lib_module
                from orchestrator import rpc, workflow
                from workflows import sub
                from workflows.lib import f as renamed

                from . import lib
                from .lib import g

                @rpc("local")
                def local(data): ...

                def helper(data): ...

                @workflow("flow")
                def flow(ctx, data):
                    ctx.do("byName", "lib.f")
                    ctx.do("local", local)
                    ctx.do("renamed", renamed)
                    ctx.do("relative", g)
                    ctx.do("moduleAttr", lib.g)
                    ctx.do("aliasAttr", lib_module.f)
                    ctx.do("fullPath", workflows.lib.g)
                    ctx.do("subpackage", sub.h)
                    ctx.do("helper", helper)
                    ctx.do("unknownName", somewhere_else)
                    ctx.do("call", make_target())
                    ctx.do("missingAttr", lib.nothing)
            """,
        },
    )
    result = scan(tmp_path, "workflows")
    assert steps(result, "flow") == [
        ("byName", False, "remote", "lib.f"),
        ("local", False, "remote", "local"),
        ("renamed", False, "remote", "lib.f"),
        ("relative", False, "remote", "lib.g"),
        ("moduleAttr", False, "remote", "lib.g"),
        ("aliasAttr", False, "remote", "lib.f"),
        ("fullPath", False, "remote", "lib.g"),
        ("subpackage", False, "remote", "sub.h"),
        ("helper", False, "inline", None),
        ("unknownName", False, "inline", None),
        ("call", False, "inline", None),
        ("missingAttr", False, "inline", None),
    ]
    assert result.modules == ("workflows.flow", "workflows.lib", "workflows.sub")


def test_rpc_targets_follow_reexports(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "impl/__init__.py": "",
            "impl/deep.py": LIB,
            "api.py": "from workflows.impl.deep import f as exported\n",
            "flow.py": module(
                """
                from workflows.api import exported

                @workflow("flow")
                def flow(ctx, data):
                    ctx.do("reexported", exported)
            """
            ),
        },
    )
    (tmp_path / "workflows" / "__init__.py").write_text("from .impl.deep import g\n")
    (tmp_path / "workflows" / "flow.py").write_text(
        (tmp_path / "workflows" / "flow.py").read_text()
        + "    from workflows import g\n    ctx.do('viaInit', g)\n"
    )
    assert steps(scan(tmp_path, "workflows"), "flow") == [
        ("reexported", False, "remote", "lib.f"),
        ("viaInit", False, "remote", "lib.g"),
    ]


def test_decorator_spellings(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "flows.py": """
                import orchestrator
                import orchestrator as orch
                from orchestrator import rpc as remote, workflow as wf
                from orchestrator.definitions import workflow as defined_workflow
                from celery import shared_task as workflow  # someone else's "workflow"

                @orchestrator.rpc("a")
                def a(data): ...

                @orch.rpc(name="b")
                def b(data): ...

                @remote("c")
                def c(data): ...

                @orchestrator.workflow("w1")
                def w1(ctx, data): ...

                @wf(name="w2")
                def w2(ctx, data): ...

                @defined_workflow("w3")
                def w3(ctx, data): ...

                @workflow("not-ours")
                def not_ours(ctx, data): ...
            """,
            "bare.py": """
                from orchestrator import *

                @rpc("d")
                def d(data): ...

                @workflow("w4")
                def w4(ctx, data): ...
            """,
        },
    )
    result = scan(tmp_path, "workflows")
    assert [r.name for r in result.rpcs] == ["a", "b", "c", "d"]
    assert [w.name for w in result.workflows] == ["w1", "w2", "w3", "w4"]


def test_every_step_kind_and_name_form(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "flow.py": module(
                """
                @rpc("r")
                def r(data): ...

                @workflow("flow")
                def flow(c, data: "Input", /):
                    c.do(step_name="kw", target="r", data={})
                    c.do(f"plain", lambda: 1)
                    for i, item in enumerate(data):
                        c.do(f"n-{i!r}-{item['id']:>4}", r)
                    c.map("charge", r, data)
                    c.map(f"batch-{data.day}", target=lambda x: x, items=data)
                    c.sleep("nap", "2s")
                    c.wait_for_event(event_name="approved")
                    c.start_child("kid", "other", {})
                    a, b = c.gather(c.step("left", r), c.step("right", lambda: 2))
                    c.do("outer", lambda: c.do("inner", r))
                    if c.patched("v2"):
                        c.now()
                    other.do("notCtx", r)
            """
            ),
        },
    )
    result = scan(tmp_path, "workflows")
    (wf,) = result.workflows
    assert (wf.input_type, wf.ctx_param, wf.function, wf.line) == ("Input", "c", "flow", 6)
    assert steps(result, "flow") == [
        ("kw", False, "remote", "r"),
        ("plain", False, "inline", None),  # an f-string without placeholders is a literal
        ("n-{i}-{item['id']}", True, "remote", "r"),
        ("charge[{index}]", True, "remote", "r"),
        ("batch-{data.day}[{index}]", True, "inline", None),
        ("nap", False, "sleep", None),
        ("approved", False, "event", None),
        ("kid", False, "child", None),
        ("left", False, "remote", "r"),
        ("right", False, "inline", None),
        ("outer", False, "inline", None),
        ("inner", False, "remote", "r"),
    ]
    assert [s.line for s in wf.steps] == [7, 8, 10, 11, 12, 13, 14, 15, 16, 16, 17, 17]


def test_nested_defs_and_lambdas_are_walked_in_source_order(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "flow.py": module(
                """
                @workflow("flow")
                def flow(ctx, data):
                    def later():
                        return ctx.do("defined-first", lambda: 1)

                    ctx.do("called-first", lambda: 2)
                    return later()

                def not_a_workflow(ctx):
                    ctx.do("ignored", lambda: 3)
            """
            ),
        },
    )
    result = scan(tmp_path, "workflows")
    assert result.workflows[0].steps == (
        StepCall("defined-first", False, "inline", None, 5),
        StepCall("called-first", False, "inline", None, 7),
    )
    assert result.workflows[0].input_type is None


def test_dotted_package_and_skipped_files(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "flow.py": HEADER + '\n@workflow("flow")\ndef flow(ctx, data): ...\n',
            "plain.py": "VALUE = 1\n",
            "_generated.py": "not python (\n",
        },
        package="app.flows",
    )
    result = scan(tmp_path, "app.flows")
    (wf,) = result.workflows
    assert (wf.module, wf.file) == ("app.flows.flow", "app/flows/flow.py")
    assert result.modules == ("app.flows.flow",)
    assert result.package_dir == "app/flows"
