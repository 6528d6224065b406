"""Alembic's environment for the run store.

The store and `workflow db upgrade` pass their own connection (inside their transaction) in
`config.attributes["connection"]`; a developer's `alembic -c orchestrator/store/migrations/
alembic.ini revision --autogenerate` connects to `WORKFLOW_DATABASE_URL` instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from orchestrator.config import Settings
from orchestrator.store.tables import metadata


def run(connection: sa.Connection) -> None:
    # Batch mode: SQLite can ALTER little in place; Alembic copies the table when it must.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    from orchestrator.store.postgres import normalize_url

    url = Settings.from_env().database_url
    engine = sa.create_engine(normalize_url(url) if url.startswith("postgres") else url)
    with engine.begin() as connection:
        run(connection)
