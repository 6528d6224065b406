"""`python -m codegen prebuild` (also `workflow-prebuild`).

Exit status: 0 done, 1 out of date (with `--check`), 2 problems in the source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .build import prebuild
from .model import PrebuildError
from .render import WORKERS_MODULE

EXIT_OK = 0
EXIT_STALE = 1
EXIT_ERRORS = 2


def _parser() -> argparse.ArgumentParser:
    invoked_as_module = Path(sys.argv[0]).name == "__main__.py"
    parser = argparse.ArgumentParser(
        prog="python -m codegen" if invoked_as_module else None,
        description="Scan the workflows package and generate the manifest, the typed workflow "
        "handles and the Celery tasks.",
    )
    # Optional so that the `workflow-prebuild` script works without repeating the command.
    parser.add_argument("command", nargs="?", choices=["prebuild"], default="prebuild")
    parser.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    parser.add_argument(
        "--package",
        default="workflows",
        help="package to scan, under the root (default: workflows)",
    )
    parser.add_argument(
        "--tasks-out",
        default=WORKERS_MODULE,
        help=f"where the Celery tasks module goes, under the root (default: {WORKERS_MODULE})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if any generated file is missing or out of date",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        changed = prebuild(args.root, args.package, check=args.check, tasks_out=args.tasks_out)
    except PrebuildError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"prebuild failed: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return EXIT_ERRORS
    if args.check and changed:
        for rel in changed:
            print(f"stale: {rel}")
        print("generated code is out of date: run `python -m codegen prebuild`", file=sys.stderr)
        return EXIT_STALE
    for rel in changed:
        print(f"wrote {rel}")
    if not changed:
        print("up to date")
    return EXIT_OK
