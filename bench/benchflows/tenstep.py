"""Ten remote steps, each its own call site (so each its own task and, by default, queue)."""

from __future__ import annotations

from orchestrator import WorkflowContext, rpc, workflow


@rpc("bench.noop")
def noop(data: dict[str, int]) -> dict[str, int]:
    return {"i": data["i"] + 1}


@workflow("tenstep")
def tenstep(ctx: WorkflowContext, data: dict[str, int]) -> dict[str, int]:
    out = ctx.do("s0", noop, {"i": 0})
    out = ctx.do("s1", noop, out)
    out = ctx.do("s2", noop, out)
    out = ctx.do("s3", noop, out)
    out = ctx.do("s4", noop, out)
    out = ctx.do("s5", noop, out)
    out = ctx.do("s6", noop, out)
    out = ctx.do("s7", noop, out)
    out = ctx.do("s8", noop, out)
    out = ctx.do("s9", noop, out)
    return out


@workflow("long")
def long(ctx: WorkflowContext, data: dict[str, int]) -> dict[str, int]:
    """`steps` remote steps in a row (the 500-step case): one call site, reached again."""
    out = {"i": 0}
    for _ in range(data["steps"]):
        out = ctx.do("step", noop, out)
    return out
