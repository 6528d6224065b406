"""docker-compose.yml cannot run here (no Docker engine): check that it parses, wires the
services together, and that every command names modules that exist."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def load() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def modules_named(command: str) -> list[str]:
    """The modules a shell command runs: `python -m X` and `celery -A X`."""
    words = shlex.split(command)
    if words[:2] == ["sh", "-c"]:
        words = [w for part in words[2:] for w in shlex.split(part.replace("&&", " ; "))]
    found = []
    for i, word in enumerate(words[:-1]):
        if word == "-m" or (word == "-A" and "celery" in words[:i]):
            found.append(words[i + 1])
    return found


def test_services_and_dependencies() -> None:
    services = load()["services"]
    assert {"redis", "postgres", "prebuild", "workers", "demo"} <= set(services)
    assert services["workers"]["depends_on"]["prebuild"]["condition"] == (
        "service_completed_successfully"
    )
    env = services["workers"]["environment"]
    assert env["WORKFLOW_BROKER_URL"].startswith("redis://redis:")
    assert env["WORKFLOW_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["WORKFLOW_DATABASE_URL"]


def test_commands_name_real_modules() -> None:
    services = load()["services"]
    named = {
        name: modules_named(svc["command"]) for name, svc in services.items() if "command" in svc
    }
    assert named["prebuild"] == ["codegen", "orchestrator"]
    assert "db upgrade" in services["prebuild"]["command"]
    assert named["workers"] == ["workers"]
    assert named["demo"] == ["workers.demo"]
    for modules in named.values():
        for module in modules:
            assert importlib.util.find_spec(module) is not None, module


def test_the_readme_lists_every_setting() -> None:
    """Every WORKFLOW_* variable the package reads has a row in the configuration table."""
    import re

    repo = COMPOSE.parent
    read = {
        name
        for folder in ("orchestrator", "workers", "codegen")
        for path in (repo / folder).rglob("*.py")
        for name in re.findall(r"\"(WORKFLOW_[A-Z_]+)\"", path.read_text())
    }
    table = (repo / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(WORKFLOW_[A-Z_]+)` \|", table, re.MULTILINE))
    assert read and read == documented
