"""DBOS (an optional extra: `pip install -e ".[bench]"`) on the same PostgreSQL server: the
same 10 steps, as DBOS runs them (workflows and steps in the calling process)."""

from __future__ import annotations

import time

from .common import STEPS, Figures, fresh_database


def bench_dbos(postgres: str, runs: int, batch: int) -> Figures | None:
    try:
        from dbos import DBOS
    except ImportError:
        return None
    import logging
    from importlib.metadata import version

    logging.getLogger("dbos").setLevel(logging.WARNING)
    with fresh_database(postgres) as url:
        DBOS(config={"name": "bench", "system_database_url": url, "run_admin_server": False})

        @DBOS.step()
        def noop(i: int) -> int:
            return i + 1

        @DBOS.workflow()
        def tenstep() -> int:
            x = 0
            for _ in range(STEPS):
                x = noop(x)
            return x

        DBOS.launch()
        try:
            tenstep()
            latency = []
            for _ in range(runs):
                t0 = time.perf_counter()
                tenstep()
                latency.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            handles = [DBOS.start_workflow(tenstep) for _ in range(batch)]
            for handle in handles:
                handle.get_result()
            took = time.perf_counter() - t0
        finally:
            DBOS.destroy()
    return Figures(f"DBOS {version('dbos')} (same PostgreSQL)", latency, took, batch)
