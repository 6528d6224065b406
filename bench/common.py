"""What the benchmarks share: servers, workers, the measured figures and the table."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEPS = 10
CHAIN_QUEUE = "bench.chain"


@dataclass
class Figures:
    label: str
    latency_ms: list[float]  # one run at a time, start to completion
    batch_s: float  # wall seconds for `batch` runs started at once
    batch: int
    steps: int = STEPS  # per run

    @property
    def p50(self) -> float:
        return statistics.median(self.latency_ms)

    @property
    def p95(self) -> float:
        return sorted(self.latency_ms)[int(0.95 * (len(self.latency_ms) - 1))]

    @property
    def ms_per_step(self) -> float:
        return self.p50 / self.steps

    @property
    def steps_per_s(self) -> float:
        return self.batch * self.steps / self.batch_s if self.batch_s else float("nan")


def table(rows: Sequence[Figures], base: Figures) -> str:
    """The figures, and each one's latency and throughput against `base` (the chain)."""
    columns = ("p50 ms", "p95 ms", "ms/step", "steps/s")
    head = f"{'':42} " + " ".join(f"{c:>8}" for c in columns) + f" {'p50 x':>7} {'thru x':>7}"
    lines = [head, "-" * len(head)]
    for f in rows:
        ratio = f.ms_per_step / base.ms_per_step
        thru = f.steps_per_s / base.steps_per_s
        lines.append(
            f"{f.label:42} {f.p50:8.1f} {f.p95:8.1f} {f.ms_per_step:8.2f} {f.steps_per_s:8.0f} "
            f"{ratio:6.2f}x {thru:6.2f}x"
        )
    return "\n".join(lines)


def prebuild() -> None:
    subprocess.run(
        [sys.executable, "-m", "codegen", "prebuild", "--root", str(HERE), "--package",
         "benchflows"],
        check=True, cwd=REPO, capture_output=True,
    )  # fmt: skip


def add_service_options(parser: argparse.ArgumentParser) -> None:
    """--redis and --postgres (BENCH_REDIS_URL, BENCH_POSTGRES_URL): the servers benched on."""
    parser.add_argument(
        "--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test"),
    )


def _admin(base: str) -> sa.Engine:
    return sa.create_engine(
        base.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )


def fresh_schema(base: str) -> str:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    engine = _admin(base)
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return f"{base}?options=-csearch_path%3D{schema}"


@contextmanager
def fresh_database(base: str) -> Iterator[str]:
    """A database of its own on the same server (DBOS wants one), dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    engine = _admin(base)
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
        engine.dispose()


def bench_env(**settings: str) -> dict[str, str]:
    """The environment of the bench's worker processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKFLOW_")}
    return {**env, "PYTHONPATH": f"{HERE}:{REPO}", "WORKFLOW_PACKAGE": "benchflows", **settings}


def group_cpu_seconds(pgid: int) -> float:
    """User and system CPU time used so far by every process of a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick
