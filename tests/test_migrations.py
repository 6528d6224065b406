"""Schema migrations: a store created before migrations existed (kept as SQL fixtures) is
upgraded with its data; an outdated PostgreSQL store is refused with one line naming the
command; the migrations and the tables the code uses describe the same schema."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from orchestrator.cli import main
from orchestrator.errors import SchemaVersionError
from orchestrator.models import RunStatus, StepStatus
from orchestrator.store import PassClaim, RunStore
from orchestrator.store.postgres import normalize_url
from orchestrator.store.schema import BASELINE, current_revision, known_revisions, migrate
from orchestrator.store.tables import SCHEMA_REVISION, metadata

FIXTURES = Path(__file__).parent / "fixtures" / "schema_0001"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(url) if url.startswith("postgres") else url)


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    e = engine_for(url)
    yield e
    e.dispose()


def load_fixture(engine: sa.Engine) -> None:
    """The database as the code before migrations left it: tables, indexes and rows."""
    script = (FIXTURES / f"{engine.dialect.name}.sql").read_text()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "sqlite":
            cursor.executescript(script)  # type: ignore[attr-defined]
        else:
            cursor.execute(script)
        raw.commit()
    finally:
        raw.close()


def revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return current_revision(conn)


def schema_differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def test_the_code_s_revision_is_the_newest_migration() -> None:
    assert known_revisions()[0] == BASELINE
    assert known_revisions()[-1] == SCHEMA_REVISION


def test_migrating_an_empty_database_gives_the_tables_the_code_uses(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        assert migrate(conn) == (None, SCHEMA_REVISION)
    assert revision(engine) == SCHEMA_REVISION
    assert schema_differences(engine) == []


def test_a_store_opened_on_an_empty_database_is_stamped_current(
    url: str, engine: sa.Engine
) -> None:
    RunStore.from_url(url).close()
    assert revision(engine) == SCHEMA_REVISION
    assert schema_differences(engine) == []


def check_fixture_data(store: RunStore) -> None:
    """What the old code wrote reads back, and the store works on it."""
    done = store.get_run("run-completed")
    assert done is not None and done.status is RunStatus.COMPLETED
    assert done.output == {"charge_id": "ch-1"} and done.idempotency_key is None
    assert [(s.name, s.status, s.result) for s in done.steps] == [
        ("reserveStock", StepStatus.SUCCEEDED, {"reservation": "r-1"}),
        ("calcTax", StepStatus.SUCCEEDED, 0.2),
    ]
    failed = store.get_run("run-failed")
    assert failed is not None and failed.error is not None
    assert failed.error.type == "PaymentDeclined" and failed.step("chargeCard").errors
    assert [e.name for e in store.pending_events("run-paused")] == ["other"]
    now = datetime(2026, 11, 22, tzinfo=UTC)
    claim = store.claim_run("run-paused", "p", now, now + timedelta(seconds=30))
    assert isinstance(claim, PassClaim) and claim.run.step("approval").wake_at is not None
    # The new revision's columns are in use.
    assert store.purge_runs(now, [RunStatus.COMPLETED], 10) == 1
    assert store.get_run("run-completed") is None


def test_sqlite_from_before_migrations_upgrades_itself(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = engine_for(url)
    load_fixture(engine)
    assert revision(engine) == BASELINE
    store = RunStore.from_url(url)
    assert store.schema_upgrade == (BASELINE, SCHEMA_REVISION)
    assert revision(engine) == SCHEMA_REVISION
    assert schema_differences(engine) == []
    check_fixture_data(store)
    store.close()
    engine.dispose()


def test_postgres_from_before_migrations_is_refused_until_db_upgrade(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres_url
    engine = engine_for(url)
    load_fixture(engine)
    with pytest.raises(SchemaVersionError) as refused:
        RunStore.from_url(url)
    message = str(refused.value)
    assert "\n" not in message
    assert message.endswith(
        f"has schema revision {BASELINE}, this code needs {SCHEMA_REVISION}: "
        "run `workflow db upgrade`"
    )
    assert revision(engine) == BASELINE  # refused, untouched

    monkeypatch.setenv("WORKFLOW_DATABASE_URL", url)
    assert main(["runs", "list"]) == 2  # any command says the same, in one line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run `workflow db upgrade`" in err
    assert main(["db", "status"]) == 1
    assert "this code needs" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out == (
        f"upgraded the run store from schema {BASELINE} to {SCHEMA_REVISION}\n"
    )
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out == f"the run store is up to date (schema {SCHEMA_REVISION})\n"
    assert schema_differences(engine) == []
    store = RunStore.from_url(url)
    check_fixture_data(store)
    store.close()
    engine.dispose()


def test_a_schema_newer_than_the_code_is_refused(url: str, engine: sa.Engine) -> None:
    RunStore.from_url(url).close()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaVersionError, match="newer than this code knows"):
        RunStore.from_url(url)


def test_sqlite_can_be_told_not_to_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = engine_for(url)
    load_fixture(engine)
    with pytest.raises(SchemaVersionError, match="run `workflow db upgrade`"):
        RunStore.from_url(url, upgrade=False)
    assert revision(engine) == BASELINE
    engine.dispose()
