"""`python -m bench.memory`: a worker's resident memory over many runs (Redis + PostgreSQL).

Runs `--runs` 10-step workflows in batches on one worker and prints the resident set size of
its processes after every `--every` runs: it must stay flat (per-process caches, such as the
history cache, are bounded).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import redis

from .cases import finished_at
from .common import HERE, REPO, add_service_options, bench_env, fresh_schema, prebuild


def group_rss_mb(pgid: int) -> dict[int, float]:
    """Resident memory (MB) of each process of a process group."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if int(stat[2]) == pgid:
            kb = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
            )
            found[int(entry)] = kb / 1024
    return found


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    add_service_options(parser)
    args = parser.parse_args()

    prebuild()
    sys.path[:0] = [str(HERE), str(REPO)]
    import benchflows  # noqa: F401

    from .__main__ import serving

    redis.Redis.from_url(args.redis).flushdb()
    logs = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    env = bench_env(WORKFLOW_BROKER_URL=args.redis, WORKFLOW_HOME=str(logs),
                    WORKFLOW_DATABASE_URL=fresh_schema(args.postgres))  # fmt: skip
    samples: list[tuple[int, dict[int, float]]] = []
    with serving(env, logs / "worker.log", args.concurrency) as (_, client, worker):
        assert worker.proc is not None
        done = 0
        samples.append((0, group_rss_mb(worker.proc.pid)))
        while done < args.runs:
            ids = [client.start("tenstep", {}) for _ in range(min(args.batch, args.runs - done))]
            for run_id in ids:
                finished_at(client, run_id)
            done += len(ids)
            if done % args.every == 0 or done == args.runs:
                samples.append((done, group_rss_mb(worker.proc.pid)))
                print(f"  {done} runs", file=sys.stderr)
    print(f"\nworker RSS (MB) after N runs of 10 steps; {args.concurrency} pool processes\n")
    print(f"{'runs':>8} {'main':>8} {'children':>20} {'total':>8}")
    for done, rss in samples:
        main_pid = min(rss)
        children = sorted(v for pid, v in rss.items() if pid != main_pid)
        shown = " ".join(f"{v:.1f}" for v in children)
        print(f"{done:>8} {rss[main_pid]:>8.1f} {shown:>20} {sum(rss.values()):>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
