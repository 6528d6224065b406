"""Two services, each its own project with its own `workflows` package and its own worker,
sharing one Redis and one PostgreSQL: each completes its own runs (a lost one included),
no message is left in any queue, and neither worker ever receives the other's messages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from orchestrator.models import RunStatus
from orchestrator.store import RunStore
from workers.process import WorkerProcess

pytestmark = pytest.mark.integration

SERVICES = {
    "billing": """
        from orchestrator import WorkflowContext, rpc, workflow


        @rpc("billing.charge")
        def charge(data: dict[str, int]) -> int:
            return data["cents"]


        @workflow("invoice")
        def invoice(ctx: WorkflowContext, data: dict[str, int]) -> int:
            first = ctx.do("charge", charge, data)
            return first + ctx.do("chargeAgain", charge, data)
    """,
    "shipping": """
        from orchestrator import WorkflowContext, rpc, workflow


        @rpc("shipping.label")
        def label(data: dict[str, str]) -> str:
            return f"label-{data['to']}"


        @workflow("shipment")
        def shipment(ctx: WorkflowContext, data: dict[str, str]) -> str:
            ctx.sleep("wait", "100ms")
            return ctx.do("label", label, data)
    """,
}
INPUTS = {"billing": ("invoice", '{"cents": 5}'), "shipping": ("shipment", '{"to": "oslo"}')}


def test_two_services_share_a_store_and_a_broker(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKFLOW_")}
    env.pop("PYTHONPATH", None)
    env.update(
        WORKFLOW_BROKER_URL=redis_url,
        WORKFLOW_DATABASE_URL=postgres_url,
        WORKFLOW_SWEEP_INTERVAL="1s",
        WORKFLOW_REDRIVE_AFTER="3s",
    )
    projects = {}
    for service, source in SERVICES.items():
        project = tmp_path / service
        (project / "workflows").mkdir(parents=True)
        (project / "workflows" / "__init__.py").touch()
        (project / "workflows" / "flows.py").write_text(textwrap.dedent(source))
        subprocess.run([sys.executable, "-m", "codegen", "prebuild"], cwd=project, env=env,
                       check=True, capture_output=True)  # fmt: skip
        projects[service] = project

    def start(service: str, **override: str) -> str:
        name, data = INPUTS[service]
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", "start", name, "--input", data],
            cwd=projects[service], env={**env, **override}, capture_output=True, text=True,
            check=True, timeout=60,
        )  # fmt: skip
        return done.stdout.strip()

    store = RunStore.from_url(postgres_url)
    workers = {
        service: WorkerProcess(env, tmp_path / f"{service}.log", name=service, cwd=project)
        for service, project in projects.items()
    }
    try:
        for worker in workers.values():
            worker.start()
        runs = {service: [start(service) for _ in range(3)] for service in SERVICES}
        # Stored, never published: only a sweeper of the run's own service may send it.
        for service in SERVICES:
            runs[service].append(start(service, WORKFLOW_BROKER_URL="redis://127.0.0.1:9/0"))
        deadline = time.monotonic() + 60
        for run_id in (r for ids in runs.values() for r in ids):
            while (run := store.get_run(run_id, steps=False)) is None or run.status not in (
                RunStatus.COMPLETED,
                RunStatus.FAILED,
            ):
                assert time.monotonic() < deadline, f"{run_id} did not finish"
                time.sleep(0.1)
            assert run.status is RunStatus.COMPLETED, run.error
            assert run.output == {"billing": 10, "shipping": "label-oslo"}[service_of(runs, run_id)]
        time.sleep(0.5)  # the last acks
        left = leftover_messages(redis_url)
    finally:
        for worker in workers.values():
            worker.stop()
        store.close()
    assert left == {}, left
    billing_log = workers["billing"].log.read_text()
    shipping_log = workers["shipping"].log.read_text()
    assert "wf.shipment." not in billing_log and "shipment" not in billing_log
    assert "wf.invoice." not in shipping_log and "invoice" not in shipping_log
    assert "wf.invoice.orchestrator" in billing_log and "wf.shipment.label" in shipping_log
    # Each lost run, re-driven by its own service's sweeper.
    assert "stalled_runs=1, workflows=('invoice',)" in billing_log
    assert "stalled_runs=1, workflows=('shipment',)" in shipping_log
    for log in (billing_log, shipping_log):
        assert "wf.default" not in log and "Traceback" not in log


def service_of(runs: dict[str, list[str]], run_id: str) -> str:
    return next(service for service, ids in runs.items() if run_id in ids)


def leftover_messages(url: str) -> dict[str, int]:
    """Every queue (list) or unacked hash in the broker's database that still holds something."""
    client = redis.Redis.from_url(url)
    try:
        left = {}
        for key in client.scan_iter():
            kind = client.type(key)
            size = {b"list": client.llen, b"hash": client.hlen}.get(kind, lambda _: 0)(key)
            if size and not key.startswith(b"_kombu.binding"):
                left[key.decode(errors="replace")] = size
        return left
    finally:
        client.close()
