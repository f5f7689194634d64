"""Shared fixtures: the no-network guard, both databases, the app, and personas.

Every test that takes ``db`` runs twice: on SQLite and on PostgreSQL. PostgreSQL comes from
``TEXTDESK_TEST_POSTGRES_URL``; when CI=true it is required, never silently skipped.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from textdesk.domain.roles import Role
from textdesk.services import accounts, auth
from textdesk.services.auth import Principal
from textdesk.services.passwords import use_fast_hashing_for_tests
from textdesk.settings import Environment, Settings
from textdesk.store import migrate
from textdesk.store.db import Database, make_engine, normalize_url
from textdesk.store.tables import metadata
from textdesk.web.app import create_app

use_fast_hashing_for_tests()

PG_ENV = "TEXTDESK_TEST_POSTGRES_URL"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# --- no network beyond loopback ---------------------------------------------------------------

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address: Any) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _is_local(address):
        raise ConnectionRefusedError(f"tests may not reach {address!r}: loopback only")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not _is_local(address):
        raise ConnectionRefusedError(f"tests may not reach {address!r}: loopback only")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


# --- databases ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_admin_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        if IN_CI:
            pytest.fail(f"{PG_ENV} must be set when CI=true: PostgreSQL tests are not optional")
        return None
    return normalize_url(url)


@contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    """A migrated PostgreSQL database of its own (its URL), dropped at the end."""
    name = f"textdesk_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url(pg_admin_url: str | None) -> Iterator[str | None]:
    """A database of this test run's own, migrated once, dropped at the end."""
    if pg_admin_url is None:
        yield None
        return
    with pg_database(pg_admin_url) as url:
        yield url


_TRUNCATE = ", ".join(t.name for t in metadata.sorted_tables)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, pg_url: str | None
) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "textdesk.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    if pg_url is None:
        pytest.skip(f"set {PG_ENV} to run PostgreSQL tests")
    yield pg_url
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {_TRUNCATE} RESTART IDENTITY CASCADE")
    engine.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(make_engine(db_url, pool_size=5))
    yield database
    database.dispose()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(
        env=Environment.TEST,
        database_url=db_url,
        secret_key="test-secret-key-0123456789",
        embedded_worker=False,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db)) as c:
        yield c


# --- personas -----------------------------------------------------------------------------------

PASSWORD = "correct-horse-battery"


@dataclass
class Persona:
    user: accounts.User
    principal: Principal
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class Org:
    org: accounts.Organization
    owner: Persona
    admin: Persona
    agent: Persona


def make_org(db: Database, name: str) -> Org:
    org = accounts.create_organization(db, name)
    people: dict[Role, Persona] = {}
    owner_principal: Principal | None = None
    for role in (Role.OWNER, Role.ADMIN, Role.AGENT):
        user = accounts.create_user(
            db,
            org_id=org.id,
            email=f"{role.value}@{org.slug}.test",
            name=f"{name} {role.value}",
            role=role,
            password=PASSWORD,
            actor_role=None,
        )
        principal = Principal(org_id=org.id, role=role, user_id=user.id, name=user.name)
        owner_principal = owner_principal or principal
        # API keys carry the role of the person they stand for.
        _key, plain = auth.create_api_key(
            db, owner_principal, name=f"{role.value} key", role=min(role, Role.ADMIN, key=_rank)
        )
        people[role] = Persona(user, principal, plain)
    return Org(org, people[Role.OWNER], people[Role.ADMIN], people[Role.AGENT])


def _rank(role: Role) -> int:
    return role.rank


@pytest.fixture
def acme(db: Database) -> Org:
    return make_org(db, "Acme")


@pytest.fixture
def globex(db: Database) -> Org:
    """The other organization: an outsider to Acme."""
    return make_org(db, "Globex")
