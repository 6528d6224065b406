"""PostgreSQL through psycopg 3."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from .sql import SqlStore

# Any fixed key: serializes concurrent schema creation by workers starting together.
_SCHEMA_LOCK_KEY = 0x5746_4C4F


def normalize_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and use the psycopg 3 driver by default."""
    scheme, rest = url.split("://", 1)
    if "+" not in scheme:
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


class PostgresStore(SqlStore):
    dialect_insert = staticmethod(insert)

    def __init__(self, url: str, *, upgrade: bool = False) -> None:
        # No pool_pre_ping: it costs a round trip per checkout (several per step). A connection
        # that went stale fails its one operation; that message is re-driven like any other.
        engine = sa.create_engine(normalize_url(url), pool_size=5)
        # One statement on its own needs no BEGIN and COMMIT: two round trips fewer.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        # A shared database is migrated by `workflow db upgrade`, a deploy step, not by
        # whichever worker happens to start first.
        super().__init__(engine, url, upgrade=upgrade)

    @contextmanager
    def _single(self) -> Iterator[sa.Connection]:
        with self._translated(), self._autocommit.connect() as conn:
            yield conn

    def _lock_schema(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
