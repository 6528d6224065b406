"""PostgreSQL through psycopg 3."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from ..models import ErrorInfo
from ..serialization import dumps
from .base import ClaimRefused, PassClaim
from .pg_statements import SUCCEED_AND_CLAIM
from .rows import run_from_row
from .sql import SqlStore, reconnecting, writes_budget

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

    @reconnecting(writes_budget)
    def finish_step_and_claim(
        self,
        run_id: str,
        name: str,
        now: datetime,
        result: object,
        error: ErrorInfo | None,
        owner: str,
        lease_until: datetime,
    ) -> tuple[bool, PassClaim | ClaimRefused]:
        if error is not None:  # rarer, and it appends to the attempt errors: the long way
            return super().finish_step_and_claim(
                run_id, name, now, result, error, owner, lease_until
            )
        values = {
            "p_run_id": run_id, "p_name": name, "p_now": now, "p_owner": owner,
            "p_lease_until": lease_until, "p_result": None if result is None else dumps(result),
        }  # fmt: skip
        with self._single() as conn:
            row = conn.execute(SUCCEED_AND_CLAIM, values).mappings().one()
        if not row["recorded"]:
            return False, ClaimRefused.ANSWERED
        if row["lease_owner"] != owner:
            return True, ClaimRefused.BUSY  # the request is made, for whoever holds the run
        return True, PassClaim(run_from_row(row), row["requested"], history_loaded=False)

    def _lock_schema(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
