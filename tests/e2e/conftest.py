"""Browser tests: Playwright driving Debian's Chromium against a real server process."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import IN_CI
from textdesk.providers.simulator import signing
from textdesk.providers.simulator.adapter import DEFAULT_WEBHOOK_SECRET

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Playwright's assertions retry until this (5 s by default). A page updated over server-sent
#: events can take longer than that on a loaded machine; an assertion still returns as soon as
#: it holds, so this is a safety net, not a wait.
expect.set_options(timeout=60_000)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Flags from shared/reference/tooling.md: without the networking ones Chromium floods the
# closed network with connection attempts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DemoServer:
    url: str
    logins: dict[str, str]  # e-mail -> password
    log: Path


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """`textdesk demo` in a subprocess, exactly as `make demo` runs it, on a free port."""
    workdir = tmp_path_factory.mktemp("demo")
    port = _free_port()
    env = {
        **os.environ,
        "TEXTDESK_DATABASE_URL": f"sqlite:///{workdir / 'demo.db'}",
        "TEXTDESK_PORT": str(port),
        "TEXTDESK_BASE_URL": f"http://127.0.0.1:{port}",
    }
    log = workdir / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "textdesk", "demo"],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # a safety net: start-up is slow on a loaded machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"textdesk demo exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"textdesk demo did not answer within 180 s:\n{log.read_text()}")
    logins = dict(re.findall(r"(\S+@\S+)\s+password: (\S+)", log.read_text()))
    try:
        yield DemoServer(url, logins, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Per test: sync Playwright runs an event loop in this thread while it is open, which
    would break every later test of the same worker that starts its own loop."""
    if not Path(CHROMIUM).exists():
        message = (
            "Debian's chromium is not installed (make test installs it: scripts/ensure-chromium.sh)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    yield pg
    context.close()


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --- helpers shared by the agent's-desk tests ---------------------------------------------------


def login(page: Page, server: DemoServer, email: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(server.logins[email])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/home")


def owner_api_key(page: Page, server: DemoServer, name: str) -> str:
    """An API key created the way an owner does it (settings page); the page is signed out."""
    login(page, server, "owner@demo.textdesk.test")
    page.goto(f"{server.url}/settings")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    assert key.startswith("td_")
    page.context.clear_cookies()
    return key


def api_client(server: DemoServer, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def send_inbound(server: DemoServer, sender: str, body: str) -> None:
    """What the carrier does when a customer texts us: a signed inbound webhook."""
    with sqlite3.connect(server.log.parent / "demo.db") as conn:
        channel_id, phone = conn.execute(
            "SELECT id, phone_e164 FROM channels WHERE provider = 'simulator' ORDER BY id LIMIT 1"
        ).fetchone()
    raw = json.dumps(
        {"id": f"e2e-{uuid.uuid4().hex}", "from": sender, "to": phone, "body": body}
    ).encode()
    response = httpx.post(
        f"{server.url}/webhooks/simulator/{channel_id}/inbound",
        content=raw,
        headers={
            "Content-Type": "application/json",
            **signing.headers(DEFAULT_WEBHOOK_SECRET, int(time.time()), raw),
        },
    )
    assert response.status_code == 200, response.text
