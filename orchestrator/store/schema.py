"""Schema versions, managed with Alembic (`migrations/`).

Every store checks the schema when it opens, inside its first write transaction (serialized
across processes: an advisory lock on PostgreSQL, `BEGIN IMMEDIATE` on SQLite):
- an empty database gets the current tables, stamped with the current revision;
- an older schema is upgraded where the store may (the embedded SQLite store), and refused
  elsewhere with one line naming `workflow db upgrade` (upgrading a shared PostgreSQL is a
  deploy step, not something the first worker to start should do behind the others' backs);
- a newer schema than this code knows is refused.
The steady-state check is one `SELECT` on `alembic_version`; Alembic itself is imported only
to create, stamp or upgrade.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import SchemaVersionError
from .tables import SCHEMA_REVISION, metadata, runs

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# A database with our tables but no version table predates migrations: revision 0001.
BASELINE = "0001"
UPGRADE_COMMAND = "workflow db upgrade"


def _alembic_config(conn: sa.Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def current_revision(conn: sa.Connection) -> str | None:
    """The database's revision; None for an empty database."""
    inspector = sa.inspect(conn)
    if inspector.has_table("alembic_version"):
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return BASELINE if inspector.has_table(runs.name) else None


def known_revisions() -> list[str]:
    """Every revision this code has a migration for, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS))
    return [s.revision for s in reversed(list(script.walk_revisions()))]


def prepare(conn: sa.Connection, where: str, *, upgrade: bool) -> tuple[str | None, str] | None:
    """Make `conn`'s database usable by this code, or raise `SchemaVersionError`. Returns
    (revision before, after) if it changed the schema."""
    current = current_revision(conn)
    if current == SCHEMA_REVISION:
        return None
    if current is None:
        metadata.create_all(conn)
        _stamp(conn, SCHEMA_REVISION)
        log.info("created the run store's tables at %s (schema %s)", where, SCHEMA_REVISION)
        return None, SCHEMA_REVISION
    if current not in known_revisions():
        raise SchemaVersionError(
            f"the run store at {where} has schema revision {current}, newer than this code "
            f"knows ({SCHEMA_REVISION}): upgrade this package"
        )
    if not upgrade:
        raise SchemaVersionError(
            f"the run store at {where} has schema revision {current}, this code needs "
            f"{SCHEMA_REVISION}: run `{UPGRADE_COMMAND}`"
        )
    change = migrate(conn)
    log.info("upgraded the run store at %s from schema %s to %s", where, *change)
    return change


def migrate(conn: sa.Connection) -> tuple[str | None, str]:
    """Upgrade to the current revision (creating the tables if the database is empty);
    return (revision before, revision after)."""
    from alembic import command

    before = current_revision(conn)
    if before == BASELINE and not sa.inspect(conn).has_table("alembic_version"):
        _stamp(conn, BASELINE)
    with _quiet_alembic():
        command.upgrade(_alembic_config(conn), "head")
    return before, SCHEMA_REVISION


def _stamp(conn: sa.Connection, revision: str) -> None:
    from alembic import command

    with _quiet_alembic():
        command.stamp(_alembic_config(conn), revision)


@contextlib.contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic logs its plugins and dialect at INFO; a worker's log only needs our one line
    about what changed."""
    logger = logging.getLogger("alembic")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)
