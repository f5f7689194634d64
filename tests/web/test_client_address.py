"""Whose address a request is: X-Forwarded-For only from TEXTDESK_TRUSTED_PROXIES."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tests.conftest import PASSWORD, Org
from tests.delivery.live import free_port
from textdesk.cli import uvicorn_options
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import audit_log
from textdesk.web.app import create_app

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SPOOF = "203.0.113.66"


def _login(client: httpx.Client | TestClient, email: str, password: str, **headers: str) -> int:
    page = client.get("/login", headers=headers)
    token = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        headers=headers,
        follow_redirects=False,
    )
    return r.status_code


def _failed_login_ips(db: Database) -> list[str | None]:
    with db.read() as conn:
        return list(
            conn.execute(
                sa.select(audit_log.c.ip)
                .where(audit_log.c.action == "auth.login_failed")
                .order_by(audit_log.c.id)
            ).scalars()
        )


@contextmanager
def _client(settings: Settings, db: Database, peer: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db), client=(peer, 40000)) as client:
        yield client


def test_forwarded_for_is_ignored_without_trusted_proxies(
    db: Database, settings: Settings, acme: Org
) -> None:
    assert settings.trusted_proxies == []
    with _client(settings, db, "127.0.0.1") as client:
        status = _login(client, acme.owner.user.email, "wrong-pw", **{"X-Forwarded-For": SPOOF})
    assert status == 401
    assert _failed_login_ips(db) == ["127.0.0.1"]


def test_a_trusted_proxy_names_the_client(db: Database, settings: Settings, acme: Org) -> None:
    settings = settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"]})
    # The rightmost hop that is not a trusted proxy is the client; what it sent is not trusted.
    chain = f"{SPOOF}, 198.51.100.5, 10.0.0.3"
    with _client(settings, db, "10.0.0.2") as client:
        _login(client, acme.owner.user.email, "wrong-pw", **{"X-Forwarded-For": chain})
    with _client(settings, db, "192.0.2.50") as client:  # not a trusted proxy
        _login(client, acme.owner.user.email, "wrong-pw", **{"X-Forwarded-For": SPOOF})
    assert _failed_login_ips(db) == ["198.51.100.5", "192.0.2.50"]


def test_behind_a_proxy_each_client_has_its_own_lockout(
    db: Database, settings: Settings, acme: Org
) -> None:
    settings = settings.model_copy(update={"trusted_proxies": ["10.0.0.2"]})
    email = acme.owner.user.email
    with _client(settings, db, "10.0.0.2") as client:
        for _ in range(settings.login_max_attempts):
            assert _login(client, email, "wrong-pw", **{"X-Forwarded-For": SPOOF}) == 401
        assert _login(client, email, PASSWORD, **{"X-Forwarded-For": SPOOF}) == 429
        client.cookies.clear()
        assert _login(client, email, PASSWORD, **{"X-Forwarded-For": "198.51.100.5"}) == 303


def test_trusted_proxies_setting_is_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEXTDESK_TRUSTED_PROXIES", " 10.0.0.1, 172.16.0.0/12,, fd00::/8 ")
    assert Settings(_env_file=None).trusted_proxies == [  # type: ignore[call-arg]
        "10.0.0.1",
        "172.16.0.0/12",
        "fd00::/8",
    ]
    monkeypatch.setenv("TEXTDESK_TRUSTED_PROXIES", "10.0.0.1,proxy.internal")
    with pytest.raises(ValidationError, match=r"TEXTDESK_TRUSTED_PROXIES: 'proxy\.internal'"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_serve_does_not_trust_loopback_peers(db: Database, settings: Settings, acme: Org) -> None:
    """`textdesk serve`'s own uvicorn options: a loopback peer cannot pick its address."""
    port = free_port()
    live = settings.model_copy(update={"host": "127.0.0.1", "port": port})
    server = uvicorn.Server(uvicorn.Config(create_app(live, db), **uvicorn_options(live)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            headers = {"X-Forwarded-For": SPOOF}
            assert _login(client, acme.owner.user.email, "wrong-pw", **headers) == 401
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert _failed_login_ips(db) == ["127.0.0.1"]
