"""SQLite: the embedded default. WAL for concurrent readers; writers serialized up front.

`sqlite://` (or `memory://`) is the same store in memory, for tests and the in-process mode:
one connection that every thread shares, one transaction at a time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.pool import StaticPool

from ..errors import StoreUnavailableError
from .sql import SqlStore, display_url


def in_memory(url: str) -> bool:
    return sa.make_url(url).database in (None, "", ":memory:")


class SqliteStore(SqlStore):
    dialect_insert = staticmethod(insert)

    def __init__(self, url: str, *, create_folder: bool = False, upgrade: bool = True) -> None:
        self._memory_lock: threading.RLock | None = None
        options: dict[str, Any] = {}
        if in_memory(url):
            # Each connection to :memory: is a database of its own: keep exactly one, and
            # serialize its transactions (SQLite has no concurrent ones on one connection).
            self._memory_lock = threading.RLock()
            options["poolclass"] = StaticPool
        else:
            database = sa.make_url(url).database
            assert database is not None
            folder = Path(database).parent
            if create_folder:
                folder.mkdir(parents=True, exist_ok=True)
            elif not folder.is_dir():
                raise StoreUnavailableError(
                    f"run store {display_url(url)}: folder {folder} does not exist"
                )
        engine = sa.create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **options
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below issue BEGIN, instead of pysqlite's own.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            # A deferred transaction that reads then writes can fail with "database is
            # locked" without waiting; IMMEDIATE takes the write lock first and queues.
            immediate = conn.get_execution_options().get("sqlite_immediate", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        # Embedded: by default the store upgrades its own schema (one host, no other
        # deployment to coordinate with).
        super().__init__(engine, url, upgrade=upgrade)

    def _serialized(self) -> contextlib.AbstractContextManager[Any]:
        return self._memory_lock or contextlib.nullcontext()

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._serialized(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._serialized(), self.engine.connect() as conn:
            conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    def detach_after_fork(self) -> None:
        if self._memory_lock is None:
            super().detach_after_fork()
            return
        # In memory, the child's database is its own copy: keep the connection, but not a
        # lock some other thread of the parent may have held at the fork.
        self._memory_lock = threading.RLock()
