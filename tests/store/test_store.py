"""Storage: migrations match the models, and both engines behave the same."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from textdesk.store import migrate
from textdesk.store.db import Database, make_engine, normalize_url
from textdesk.store.tables import include_object, metadata, organizations


def test_migrations_match_models(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_object}
        )
        diff = compare_metadata(context, metadata)
    assert diff == [], f"models and migrations drifted; write a migration for: {diff}"


def test_downgrade_then_upgrade(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate.upgrade(engine)
    head = migrate.current_revision(engine)
    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == head


def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(make_engine(f"sqlite:///{tmp_path / 'p.db'}"))
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000


def test_datetimes_come_back_aware_utc(db: Database) -> None:
    eastern = timezone(timedelta(hours=-5))
    stamp = datetime(2026, 3, 8, 1, 59, 30, tzinfo=eastern)
    with db.write() as conn:
        conn.execute(organizations.insert().values(name="T", slug="t", created_at=stamp))
    with db.read() as conn:
        got = conn.execute(sa.select(organizations.c.created_at)).scalar_one()
    assert got == stamp and got.tzinfo is not None and got.utcoffset() == timedelta(0)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), db.write() as conn:
        conn.execute(
            organizations.insert().values(name="U", slug="u", created_at=datetime(2026, 1, 1))
        )


def test_foreign_keys_enforced(db: Database) -> None:
    from textdesk.store.tables import users

    with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
        conn.execute(
            users.insert().values(
                org_id=999,
                email="a@b.c",
                name="a",
                role="agent",
                password_hash="x",
                created_at=datetime.now(UTC),
            )
        )


def test_write_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.execute(
            organizations.insert().values(name="R", slug="r", created_at=datetime.now(UTC))
        )
        raise RuntimeError("boom")
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(organizations)).scalar() == 0


def test_concurrent_read_modify_write_loses_nothing(db: Database) -> None:
    """Eight threads each add 1 twenty times via read-then-write transactions. With SQLite's
    deferred BEGIN this raises 'database is locked'; BEGIN IMMEDIATE (and PostgreSQL's row
    lock via FOR UPDATE) make it a wait instead."""
    with db.write() as conn:
        conn.execute(
            organizations.insert().values(
                name="C", slug="c", settings={"n": 0}, created_at=datetime.now(UTC)
            )
        )
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(20):
                with db.write() as conn:
                    query = sa.select(organizations.c.settings).where(organizations.c.slug == "c")
                    if not db.is_sqlite:
                        query = query.with_for_update()
                    current = conn.execute(query).scalar_one()
                    conn.execute(
                        sa.update(organizations)
                        .where(organizations.c.slug == "c")
                        .values(settings={"n": current["n"] + 1})
                    )
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read() as conn:
        assert conn.execute(sa.select(organizations.c.settings)).scalar_one() == {"n": 160}


def test_postgres_url_forms() -> None:
    assert normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
