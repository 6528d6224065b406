"""Read a workflows package with `ast` (never importing it) into a `ScanResult`.

Importing user code would run it, and the prebuild has to work on code that cannot run yet
(missing services, settings, even the generated modules themselves), so everything here is
read from the syntax tree alone.
"""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orchestrator.manifest import source_sha256
from orchestrator.package import HANDLES_MODULE, TASKS_MODULE

from .model import (
    PrebuildError,
    Problem,
    RpcDef,
    ScanResult,
    WorkflowDef,
    orchestrator_task_name,
    step_task_name,
)
from .steps import StepScanner
from .symbols import ModuleSymbols, dotted

DecoratorKind = Literal["workflow", "rpc"]

# The prebuild's own outputs are never read back as source.
GENERATED_MODULES = frozenset({f"{HANDLES_MODULE}.py", f"{TASKS_MODULE}.py"})


@dataclass
class _Module:
    file: str  # relative to the root, forward slashes
    tree: ast.Module
    sha256: str
    symbols: ModuleSymbols

    @property
    def name(self) -> str:
        return self.symbols.name


@dataclass
class _PendingWorkflow:
    name: str
    module: _Module
    node: ast.FunctionDef | ast.AsyncFunctionDef


def scan(root: Path, package: str = "workflows") -> ScanResult:
    """Scan `root/<package>` and return what it defines, or raise `PrebuildError`."""
    package_dir = root / package.replace(".", "/")
    if not package_dir.is_dir():
        rel = package.replace(".", "/")
        raise PrebuildError([Problem(rel, 0, "package directory not found")])
    problems: list[Problem] = []
    modules = _parse_package(root, package_dir, package, problems)

    rpcs: dict[str, RpcDef] = {}
    pending: dict[str, _PendingWorkflow] = {}
    for module in modules:
        _collect_definitions(module, package, rpcs, pending, problems)

    step_scanner = StepScanner(
        modules={m.name: m.symbols for m in modules},
        rpc_names=set(rpcs),
        rpc_by_qualname={f"{r.module}.{r.function}": r.name for r in rpcs.values()},
        problems=problems,
    )
    workflows = [_workflow(p, step_scanner, problems) for p in pending.values()]
    _check_task_names(workflows, problems)
    if problems:
        raise PrebuildError(problems)
    return ScanResult(
        package=package,
        workflows=tuple(sorted((w for w in workflows if w is not None), key=lambda w: w.name)),
        rpcs=tuple(sorted(rpcs.values(), key=lambda r: r.name)),
        modules=tuple(
            sorted({r.module for r in rpcs.values()} | {p.module.name for p in pending.values()})
        ),
    )


def _parse_package(
    root: Path, package_dir: Path, package: str, problems: list[Problem]
) -> list[_Module]:
    files = sorted(
        (
            p
            for p in package_dir.rglob("*.py")
            if not (p.parent == package_dir and p.name in GENERATED_MODULES)
        ),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    modules: list[_Module] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        try:
            tree = ast.parse(data, filename=rel)
        except SyntaxError as exc:
            problems.append(Problem(rel, exc.lineno or 0, f"syntax error: {exc.msg}"))
            continue
        except ValueError as exc:  # null bytes, on Pythons that do not call it a SyntaxError
            problems.append(Problem(rel, 0, f"cannot parse: {exc}"))
            continue
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join([package, *parts])
        symbols = ModuleSymbols.from_tree(name, is_package, tree)
        modules.append(_Module(rel, tree, source_sha256(data), symbols))
    return modules


def _collect_definitions(
    module: _Module,
    package: str,
    rpcs: dict[str, RpcDef],
    pending: dict[str, _PendingWorkflow],
    problems: list[Problem],
) -> None:
    top_level = {id(stmt) for stmt in module.tree.body}
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            kind = _decorator_kind(decorator, module.symbols)
            if kind is None:
                continue
            name = _decorator_name(decorator, kind, module, problems)
            if name is None:
                continue
            if id(node) not in top_level:
                message = f"@{kind} must decorate a module-level function"
                problems.append(Problem(module.file, node.lineno, message))
            elif not _importable(module, package, kind, problems, node.lineno):
                pass
            elif kind == "rpc":
                rpc = RpcDef(name, module.name, node.name, module.file, node.lineno)
                _add_rpc(rpc, rpcs, problems)
            else:
                _add_workflow(_PendingWorkflow(name, module, node), pending, problems)


def _decorator_kind(decorator: ast.expr, symbols: ModuleSymbols) -> DecoratorKind | None:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    raw = ".".join(dotted(target) or [])
    resolved = symbols.qualify(target)
    kinds: tuple[DecoratorKind, ...] = ("workflow", "rpc")
    for kind in kinds:
        accepted = {f"orchestrator.{kind}", f"orchestrator.definitions.{kind}"}
        # A bare `@workflow` with no visible import is still ours: the import may be a star one.
        if resolved in accepted or (resolved is None and raw in {kind, f"orchestrator.{kind}"}):
            return kind
    return None


def _decorator_name(
    decorator: ast.expr, kind: DecoratorKind, module: _Module, problems: list[Problem]
) -> str | None:
    if not isinstance(decorator, ast.Call):
        problems.append(
            Problem(module.file, decorator.lineno, f'@{kind} needs a name: @{kind}("name")')
        )
        return None
    arg: ast.expr | None = decorator.args[0] if decorator.args else None
    for kw in decorator.keywords:
        if kw.arg == "name":
            arg = kw.value
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        problems.append(
            Problem(
                module.file,
                decorator.lineno,
                f"cannot read the name of @{kind}(...): use a string literal",
            )
        )
        return None
    name = arg.value
    if not name or any(c.isspace() for c in name):
        problems.append(
            Problem(module.file, decorator.lineno, f"@{kind} needs a non-empty name without spaces")
        )
        return None
    return name


def _importable(
    module: _Module, package: str, kind: DecoratorKind, problems: list[Problem], line: int
) -> bool:
    # The generated code imports the defining module; these are the modules it cannot import.
    if module.name == package:
        message = (
            f"@{kind} in the package's __init__.py: define it in a module of the package "
            "(the generated code is imported from __init__.py)"
        )
    elif not all(p.isidentifier() and not keyword.iskeyword(p) for p in module.name.split(".")):
        message = f"@{kind} in a module whose path is not an importable name ({module.name})"
    else:
        return True
    problems.append(Problem(module.file, line, message))
    return False


def _add_rpc(rpc: RpcDef, rpcs: dict[str, RpcDef], problems: list[Problem]) -> None:
    first = rpcs.get(rpc.name)
    if first is None:
        rpcs[rpc.name] = rpc
        return
    problems.append(
        Problem(
            rpc.file,
            rpc.line,
            f"RPC name {rpc.name!r} is defined twice: {first.file}:{first.line} "
            f"({first.module}.{first.function}) and {rpc.file}:{rpc.line} "
            f"({rpc.module}.{rpc.function})",
        )
    )


def _add_workflow(
    wf: _PendingWorkflow, pending: dict[str, _PendingWorkflow], problems: list[Problem]
) -> None:
    first = pending.get(wf.name)
    if first is None:
        pending[wf.name] = wf
        return
    problems.append(
        Problem(
            wf.module.file,
            wf.node.lineno,
            f"workflow name {wf.name!r} is defined twice: {first.module.file}:{first.node.lineno} "
            f"and {wf.module.file}:{wf.node.lineno}",
        )
    )


def _workflow(
    wf: _PendingWorkflow, step_scanner: StepScanner, problems: list[Problem]
) -> WorkflowDef | None:
    params = [*wf.node.args.posonlyargs, *wf.node.args.args]
    if len(params) < 2:
        problems.append(
            Problem(
                wf.module.file,
                wf.node.lineno,
                f"workflow {wf.name!r} must take two parameters (ctx, data), "
                f"{wf.node.name}() takes {len(params)}",
            )
        )
        return None
    ctx, data = params[0], params[1]
    steps = step_scanner.scan(wf.name, wf.node, ctx.arg, wf.module.file, wf.module.symbols)
    return WorkflowDef(
        name=wf.name,
        module=wf.module.name,
        function=wf.node.name,
        file=wf.module.file,
        line=wf.node.lineno,
        input_type=_annotation_text(data.annotation),
        ctx_param=ctx.arg,
        source_sha256=wf.module.sha256,
        steps=steps,
    )


def _annotation_text(annotation: ast.expr | None) -> str | None:
    if annotation is None:
        return None
    # A quoted forward reference is recorded as the type it names.
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value
    return ast.unparse(annotation)


def _check_task_names(workflows: list[WorkflowDef | None], problems: list[Problem]) -> None:
    # Task names are `wf.<workflow>.<step>`, so distinct workflows and steps can still collide
    # ("a.b" + "c" and "a" + "b.c"; a remote step named "orchestrator").
    seen: dict[str, tuple[str, int]] = {}
    for wf in sorted((w for w in workflows if w is not None), key=lambda w: (w.file, w.line)):
        sites = [(orchestrator_task_name(wf.name), wf.line)]
        sites += [(step_task_name(wf.name, s.name), s.line) for s in wf.steps if s.kind == "remote"]
        for task, line in sites:
            if task not in seen:
                seen[task] = (wf.file, line)
                continue
            first = seen[task]
            problems.append(
                Problem(
                    wf.file,
                    line,
                    f"Celery task name {task!r} is also generated for {first[0]}:{first[1]}: "
                    "rename the workflow or step",
                )
            )
