"""Browser tests: Playwright driving Debian's Chromium against a real server process."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import IN_CI

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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
    deadline = time.monotonic() + 60
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
        pytest.fail(f"textdesk demo did not answer within 60 s:\n{log.read_text()}")
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
