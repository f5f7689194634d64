"""Migration 0007: e-mails unique per organization, and nothing that points at a user is lost."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import PG_ENV
from textdesk.store import migrate
from textdesk.store.db import Database, make_engine
from textdesk.store.tables import campaigns, organizations, user_sessions, users, utcnow


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_admin_url: str | None
) -> Iterator[str]:
    """A database of this test's own with no schema yet (migrations are what is tested)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    if pg_admin_url is None:
        pytest.skip(f"set {PG_ENV} to run PostgreSQL tests")
    name = f"textdesk_mig_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(pg_admin_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _seed(conn: sa.Connection) -> int:
    now = utcnow()
    org_id = conn.execute(
        organizations.insert()
        .values(name="A", slug="a", created_at=now)
        .returning(organizations.c.id)
    ).scalar_one()
    user_id = conn.execute(
        users.insert()
        .values(
            org_id=org_id,
            email="ann@a.test",
            name="Ann",
            role="owner",
            password_hash="x",
            created_at=now,
        )
        .returning(users.c.id)
    ).scalar_one()
    conn.execute(
        user_sessions.insert().values(
            org_id=org_id,
            user_id=user_id,
            token_hash="t" * 64,
            csrf_token="c",
            created_at=now,
            expires_at=now,
        )
    )
    conn.execute(
        campaigns.insert().values(
            org_id=org_id, name="C", created_by=user_id, created_at=now, updated_at=now
        )
    )
    return int(user_id)


def test_upgrade_keeps_what_points_at_users(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        migrate.upgrade(engine, "0006")
        with engine.begin() as conn:
            user_id = _seed(conn)
        migrate.upgrade(engine)
        db = Database(engine)
        with db.read() as conn:
            assert conn.execute(sa.select(user_sessions.c.user_id)).scalars().all() == [user_id]
            assert conn.execute(sa.select(campaigns.c.created_by)).scalars().all() == [user_id]
            if db.is_sqlite:
                # Foreign keys are back on for the pooled connection the migration used.
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        # The same e-mail in a second organization is now a row of its own.
        with db.write() as conn:
            org_b = conn.execute(
                organizations.insert()
                .values(name="B", slug="b", created_at=utcnow())
                .returning(organizations.c.id)
            ).scalar_one()
            conn.execute(
                users.insert().values(
                    org_id=org_b,
                    email="ann@a.test",
                    name="Ann B",
                    role="owner",
                    password_hash="x",
                    created_at=utcnow(),
                )
            )
        with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
            conn.execute(
                users.insert().values(
                    org_id=org_b,
                    email="ann@a.test",
                    name="Ann again",
                    role="agent",
                    password_hash="x",
                    created_at=utcnow(),
                )
            )
    finally:
        engine.dispose()
