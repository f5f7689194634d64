"""The CLI drives the same services: migrate, user create, demo seeding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from textdesk.cli import app
from textdesk.services import demo
from textdesk.settings import get_settings
from textdesk.store.db import Database, make_engine
from textdesk.store.tables import campaigns, channels, contacts, users


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TEXTDESK_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


def test_migrate_and_user_create(cli_db: str) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "user",
            "create",
            "--email",
            "Boss@Example.test",
            "--org",
            "Example Co",
            "--new-org",
            "--role",
            "owner",
            "--password",
            "long-enough-password",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "created owner boss@example.test in Example Co (example-co)" in result.output
    again = runner.invoke(
        app,
        [
            "user",
            "create",
            "--email",
            "boss@example.test",
            "--org",
            "example-co",
            "--password",
            "long-enough-password",
        ],
    )
    assert again.exit_code == 1 and "already exists" in again.output
    missing = runner.invoke(
        app,
        [
            "user",
            "create",
            "--email",
            "x@example.test",
            "--org",
            "nope",
            "--password",
            "long-enough-password",
        ],
    )
    assert missing.exit_code == 1 and "no organization 'nope'" in missing.output


def test_demo_seed_is_idempotent(cli_db: str) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--no-serve"])
    assert first.exit_code == 0, first.output
    assert "Demo organization created" in first.output
    assert first.output.count("password: ") == 3
    second = runner.invoke(app, ["demo", "--no-serve"])
    assert "already there" in second.output and second.output.count("password: ") == 3
    db = Database(make_engine(cli_db))
    with db.read() as conn:
        count = lambda t: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()  # noqa: E731
        assert count(users) == 3 and count(channels) == 1
        assert count(contacts) == 200 and count(campaigns) == 2
        statuses = set(conn.execute(sa.select(campaigns.c.status)).scalars())
        assert statuses == {"active", "draft"}
    db.dispose()


def test_demo_passwords_work(cli_db: str) -> None:
    from textdesk.services import auth
    from textdesk.services.audit import RequestInfo

    db = Database(make_engine(cli_db))
    from textdesk.store import migrate

    migrate.upgrade(db.engine)
    result = demo.seed(db, contact_count=3)
    owner = next(x for x in result.logins if x.role.value == "owner")
    user = auth.authenticate(
        db,
        get_settings(),
        email=owner.email,
        password=owner.password,
        request=RequestInfo(ip="127.0.0.1"),
    )
    assert user.role.value == "owner"
    db.dispose()


def test_serve_with_several_processes(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "TEXTDESK_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
        "TEXTDESK_PORT": str(port),
        "TEXTDESK_WEB_WORKERS": "2",
        "TEXTDESK_EMBEDDED_WORKER": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "textdesk", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120  # a safety net: two workers start slowly under load
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("serve with 2 workers did not answer")
        assert r.json()["status"] == "ok"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert b"Started parent process" in err or b"Started server process" in err
