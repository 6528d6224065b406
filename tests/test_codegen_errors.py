"""Problems the prebuild reports: each as `path:line: message`, all of them at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from codegen import PrebuildError, scan
from codegen.cli import main

HEADER = "from orchestrator import rpc, workflow\n"


def write_project(root: Path, files: dict[str, str]) -> Path:
    (root / "workflows").mkdir(parents=True, exist_ok=True)
    (root / "workflows" / "__init__.py").touch()
    for rel, text in files.items():
        path = root / "workflows" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def module(body: str) -> str:
    """A module importing the decorators on line 1, then `body` from line 2."""
    return HEADER + textwrap.dedent(body).lstrip("\n")


def problems(root: Path) -> list[str]:
    with pytest.raises(PrebuildError) as info:
        scan(root, "workflows")
    return [str(p) for p in info.value.problems]


def test_duplicate_literal_step_name(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "flow.py": module(
                """
            @workflow("flow")
            def flow(ctx, data):
                ctx.do("charge", lambda: 1)
                ctx.sleep("wait", 5)
                ctx.do("charge", lambda: 2)
            """
            )
        },
    )
    assert problems(tmp_path) == [
        "workflows/flow.py:6: step name 'charge' is used twice in workflow 'flow': lines 4 and 6"
    ]


def test_duplicate_dynamic_template(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "flow.py": module(
                """
            @workflow("flow")
            def flow(ctx, data):
                for i in range(3):
                    ctx.do(f"ship-{i}", lambda: 1)
                for i in range(3):
                    ctx.do(f"ship-{i}", lambda: 2)
            """
            )
        },
    )
    assert problems(tmp_path) == [
        "workflows/flow.py:7: step name template 'ship-{i}' is used twice in workflow 'flow': "
        "lines 5 and 7"
    ]


def test_unknown_rpc_name(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "flow.py": module(
                """
            @rpc("users.create")
            def create_user(data): ...

            @workflow("flow")
            def flow(ctx, data):
                ctx.do("create", "users.create")
                ctx.do("remove", "users.delete", {"id": 1})
            """
            )
        },
    )
    assert problems(tmp_path) == [
        "workflows/flow.py:8: unknown RPC name 'users.delete': no @rpc defines it"
    ]


@pytest.mark.parametrize(
    "call",
    [
        'ctx.do(name, "users.create")',
        'ctx.do("step-" + suffix, lambda: 1)',
        "ctx.do(make_name(), lambda: 1)",
        "ctx.sleep(name, 5)",
        "ctx.do(*args)",
    ],
)
def test_unreadable_step_name(tmp_path: Path, call: str) -> None:
    method = call.split("(")[0]
    write_project(
        tmp_path,
        {
            "flow.py": module(
                f"""
                @rpc("users.create")
                def create_user(data): ...

                @workflow("flow")
                def flow(ctx, data):
                    name = "x"
                    {call}
                """
            )
        },
    )
    assert problems(tmp_path) == [
        f"workflows/flow.py:8: cannot read the step name of {method}(...): "
        "use a string literal or an f-string"
    ]


def test_invalid_literal_step_names(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "flow.py": module(
                """
            @workflow("flow")
            def flow(ctx, data):
                ctx.do("", lambda: 1)
                ctx.do("a#1", lambda: 1)
            """
            )
        },
    )
    assert problems(tmp_path) == [
        "workflows/flow.py:4: invalid step name '': non-empty, without '#'",
        "workflows/flow.py:5: invalid step name 'a#1': non-empty, without '#'",
    ]


def test_duplicate_rpc_names_name_both_places(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "a.py": HEADER + '\n@rpc("users.create")\ndef create(data): ...\n',
            "b.py": HEADER + '\n\n@rpc(name="users.create")\ndef make_user(data): ...\n',
        },
    )
    assert problems(tmp_path) == [
        "workflows/b.py:5: RPC name 'users.create' is defined twice: workflows/a.py:4 "
        "(workflows.a.create) and workflows/b.py:5 (workflows.b.make_user)"
    ]


def test_duplicate_workflow_names_and_too_few_parameters(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "a.py": HEADER + '\n@workflow("flow")\ndef flow(ctx, data): ...\n',
            "b.py": HEADER + '\n@workflow("flow")\ndef other(ctx, data): ...\n'
            '\n@workflow("lonely")\ndef lonely(ctx): ...\n',
        },
    )
    assert problems(tmp_path) == [
        "workflows/b.py:4: workflow name 'flow' is defined twice: workflows/a.py:4 and "
        "workflows/b.py:4",
        "workflows/b.py:7: workflow 'lonely' must take two parameters (ctx, data), "
        "lonely() takes 1",
    ]


def test_definition_problems(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "defs.py": module(
                """
            import orchestrator

            @workflow
            def no_name(ctx, data): ...

            @orchestrator.rpc(NAME)
            def computed(data): ...

            @rpc("has space")
            def spaced(data): ...

            class Holder:
                @rpc("nested")
                def method(self, data): ...
            """
            ),
            "my-module.py": HEADER + '\n@rpc("dash")\ndef dash(data): ...\n',
        },
    )
    (tmp_path / "workflows" / "__init__.py").write_text(HEADER + '@rpc("init")\ndef f(): ...\n')
    assert problems(tmp_path) == [
        "workflows/__init__.py:3: @rpc in the package's __init__.py: define it in a module of "
        "the package (the generated code is imported from __init__.py)",
        'workflows/defs.py:4: @workflow needs a name: @workflow("name")',
        "workflows/defs.py:7: cannot read the name of @rpc(...): use a string literal",
        "workflows/defs.py:10: @rpc needs a non-empty name without spaces",
        "workflows/defs.py:15: @rpc must decorate a module-level function",
        "workflows/my-module.py:4: @rpc in a module whose path is not an importable name "
        "(workflows.my-module)",
    ]


def test_colliding_task_names(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "flow.py": module(
                """
            @rpc("r")
            def r(data): ...

            @workflow("a")
            def a(ctx, data):
                ctx.do("orchestrator", r)
                ctx.do("b.c", r)

            @workflow("a.b")
            def ab(ctx, data):
                ctx.do("c", "r")
            """
            )
        },
    )
    assert problems(tmp_path) == [
        "workflows/flow.py:7: Celery task name 'wf.a.orchestrator' is also generated for "
        "workflows/flow.py:6: rename the workflow or step",
        "workflows/flow.py:12: Celery task name 'wf.a.b.c' is also generated for "
        "workflows/flow.py:8: rename the workflow or step",
    ]


def test_every_problem_is_reported_together_sorted_by_path_and_line(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "b_flow.py": module(
                """
            @workflow("b")
            def b(ctx, data):
                ctx.do(data.name, lambda: 1)
                ctx.do("x", "nope")
                ctx.do("x", lambda: 1)
            """
            ),
            "a_flow.py": module(
                """
            @rpc("dup")
            def one(data): ...

            @rpc("dup")
            def two(data): ...
            """
            ),
            "broken.py": "def broken(:\n",
        },
    )
    assert problems(tmp_path) == [
        "workflows/a_flow.py:6: RPC name 'dup' is defined twice: workflows/a_flow.py:3 "
        "(workflows.a_flow.one) and workflows/a_flow.py:6 (workflows.a_flow.two)",
        "workflows/b_flow.py:4: cannot read the step name of ctx.do(...): "
        "use a string literal or an f-string",
        "workflows/b_flow.py:5: unknown RPC name 'nope': no @rpc defines it",
        "workflows/b_flow.py:6: step name 'x' is used twice in workflow 'b': lines 5 and 6",
        "workflows/broken.py:1: syntax error: invalid syntax",
    ]


def test_cli_exits_2_and_prints_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_project(
        tmp_path,
        {
            "flow.py": module(
                """
            @workflow("flow")
            def flow(ctx, data):
                ctx.do(data, lambda: 1)
                ctx.do("r", "missing")
            """
            )
        },
    )
    assert main(["prebuild", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "workflows/flow.py:4: cannot read the step name of ctx.do(...): "
        "use a string literal or an f-string",
        "workflows/flow.py:5: unknown RPC name 'missing': no @rpc defines it",
        "prebuild failed: 2 problems",
    ]
    assert not (tmp_path / "workers").exists()
    assert main(["prebuild", "--root", str(tmp_path), "--check"]) == 2


def test_missing_package_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prebuild", "--root", str(tmp_path), "--package", "flows"]) == 2
    assert capsys.readouterr().err.splitlines()[0] == "flows: package directory not found"
