"""`python -m codegen prebuild` (also `workflow-prebuild`).

Exit status: 0 done, 1 out of date (with `--check`), 2 problems in the source or settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.config import check_package_name, workflow_package
from orchestrator.errors import ConfigurationError

from .build import prebuild
from .model import PrebuildError

EXIT_OK = 0
EXIT_STALE = 1
EXIT_ERRORS = 2


def _parser() -> argparse.ArgumentParser:
    invoked_as_module = Path(sys.argv[0]).name == "__main__.py"
    parser = argparse.ArgumentParser(
        prog="python -m codegen" if invoked_as_module else None,
        description="Scan the workflows package and generate, inside it, the manifest, the "
        "typed workflow handles and the Celery tasks.",
    )
    # Optional so that the `workflow-prebuild` script works without repeating the command.
    parser.add_argument("command", nargs="?", choices=["prebuild"], default="prebuild")
    parser.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    parser.add_argument(
        "--package",
        help="the workflows package, dotted, under the root (default: $WORKFLOW_PACKAGE, "
        "else workflows)",
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
        package = (
            check_package_name(args.package, "--package") if args.package else workflow_package()
        )
        outcome = prebuild(args.root, package, check=args.check)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERRORS
    except PrebuildError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"prebuild failed: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return EXIT_ERRORS
    for note in outcome.notes:
        print(note, file=sys.stderr)
    if args.check and outcome.changed:
        for rel in outcome.changed:
            print(f"stale: {rel}")
        print("generated code is out of date: run `python -m codegen prebuild`", file=sys.stderr)
        return EXIT_STALE
    for rel in outcome.changed:
        print(f"wrote {rel}")
    if not outcome.changed:
        print("up to date")
    return EXIT_OK
