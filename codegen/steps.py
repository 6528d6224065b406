"""Find the step call sites (`ctx.do(...)`, `ctx.sleep(...)`...) in one workflow function."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass

from .model import Problem, StepCall, StepKind
from .symbols import ModuleSymbols, follow_reexports

# ctx method -> the keyword its first (name) argument may be passed as.
_NAME_KEYWORDS = {
    "do": "step_name",
    "step": "step_name",
    "map": "step_name",
    "sleep": "step_name",
    "wait_for_event": "event_name",
    "start_child": "step_name",
}
_FIXED_KINDS: dict[str, StepKind] = {
    "sleep": "sleep",
    "wait_for_event": "event",
    "start_child": "child",
}


def step_name(expr: ast.expr) -> tuple[str, bool] | None:
    """(name or template, dynamic) for a string literal or an f-string; None otherwise."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value, False
    if not isinstance(expr, ast.JoinedStr):
        return None
    parts: list[str] = []
    dynamic = False
    for value in expr.values:
        if isinstance(value, ast.FormattedValue):
            # Conversions and format specs are dropped: the template only has to match names.
            parts.append("{" + ast.unparse(value.value) + "}")
            dynamic = True
        elif isinstance(value, ast.Constant) and isinstance(value.value, str):
            parts.append(value.value)
        else:  # pragma: no cover - JoinedStr holds only the two node types above
            return None
    return "".join(parts), dynamic


def _argument(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    # After a `*args` the positions are unknown.
    if any(isinstance(arg, ast.Starred) for arg in call.args[: index + 1]):
        return None
    return call.args[index] if len(call.args) > index else None


@dataclass
class StepScanner:
    modules: Mapping[str, ModuleSymbols]
    rpc_names: set[str]
    rpc_by_qualname: Mapping[str, str]  # "workflows.users.create_user" -> "users.create"
    problems: list[Problem]

    def scan(
        self,
        workflow: str,
        function: ast.FunctionDef | ast.AsyncFunctionDef,
        ctx: str,
        file: str,
        symbols: ModuleSymbols,
    ) -> tuple[StepCall, ...]:
        calls = sorted(
            (
                (node, method)
                for stmt in function.body
                for node in ast.walk(stmt)
                if isinstance(node, ast.Call) and (method := _ctx_method(node, ctx))
            ),
            key=lambda found: (found[0].lineno, found[0].col_offset),
        )
        steps: list[StepCall] = []
        first_line: dict[str, int] = {}
        for call, method in calls:
            step = self._step(call, ctx, method, file, symbols)
            if step is None:
                continue
            if step.kind == "event" and step.name in first_line:
                # Waiting twice for one event is legitimate: each wait takes the next event
                # of that name (recorded as name, name#1); one call site entry serves both.
                continue
            if step.name in first_line:
                what = "step name template" if step.dynamic else "step name"
                self.problems.append(
                    Problem(
                        file,
                        step.line,
                        f"{what} {step.name!r} is used twice in workflow {workflow!r}: "
                        f"lines {first_line[step.name]} and {step.line}",
                    )
                )
                continue
            first_line[step.name] = step.line
            steps.append(step)
        return tuple(steps)

    def _step(
        self, call: ast.Call, ctx: str, method: str, file: str, symbols: ModuleSymbols
    ) -> StepCall | None:
        name_arg = _argument(call, 0, _NAME_KEYWORDS[method])
        read = step_name(name_arg) if name_arg is not None else None
        if read is None:
            what = "event name" if method == "wait_for_event" else "step name"
            self.problems.append(
                Problem(
                    file,
                    call.lineno,
                    f"cannot read the {what} of {ctx}.{method}(...): "
                    "use a string literal or an f-string",
                )
            )
            return None
        name, dynamic = read
        if not name or "#" in name:
            # The runtime reserves '#' for the ordinal suffix of a name reached again (name#1).
            self.problems.append(
                Problem(file, call.lineno, f"invalid step name {name!r}: non-empty, without '#'")
            )
            return None
        if method in _FIXED_KINDS:
            return StepCall(name, dynamic, _FIXED_KINDS[method], None, call.lineno)
        if method == "map":
            # One step per item: the runtime names them "<name>[<index>]".
            name, dynamic = f"{name}[{{index}}]", True
        target = _argument(call, 1, "target")
        if target is None:
            self.problems.append(
                Problem(file, call.lineno, f"cannot read the target of {ctx}.{method}(...)")
            )
            return None
        rpc = self._rpc(target, call, file, symbols)
        return StepCall(name, dynamic, "remote" if rpc else "inline", rpc, call.lineno)

    def _rpc(
        self, target: ast.expr, call: ast.Call, file: str, symbols: ModuleSymbols
    ) -> str | None:
        """The RPC name `target` calls remotely, or None for an inline callable."""
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            if target.value not in self.rpc_names:
                self.problems.append(
                    Problem(
                        file,
                        call.lineno,
                        f"unknown RPC name {target.value!r}: no @rpc defines it",
                    )
                )
            return target.value
        qualname = symbols.qualify(target)
        if qualname is None:
            return None
        return follow_reexports(qualname, self.modules, self.rpc_by_qualname)


def _ctx_method(call: ast.Call, ctx: str) -> str | None:
    func = call.func
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == ctx
        and func.attr in _NAME_KEYWORDS
    ):
        return func.attr
    return None
