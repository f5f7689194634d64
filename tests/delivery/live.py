"""A real server in a thread: uvicorn, the app, the embedded worker and the simulator."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from textdesk.providers.simulator.config import SimulatorConfig
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.web.app import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(
    settings: Settings, db: Database, simulator: SimulatorConfig | None = None
) -> Iterator[tuple[Settings, httpx.Client]]:
    port = free_port()
    live = settings.model_copy(
        update={
            "base_url": f"http://127.0.0.1:{port}",
            "embedded_worker": True,
            "delivery_poll_seconds": 0.2,
        }
    )
    sim = simulator or SimulatorConfig(
        latency_ms=5, latency_jitter_ms=2, dlr_delay_ms=20, reply_delay_ms=50, seed=1
    )
    app = create_app(live, db, simulator=sim)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # a safety net
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=live.base_url, timeout=10) as client:
            yield live, client
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def wait_until(check: object, *, timeout: float = 120.0, every: float = 0.05) -> None:
    """Poll ``check``; the timeout is a safety net for a hung test, never a measurement."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")
