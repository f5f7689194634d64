"""SIGTERM: a worker stops claiming, finishes the calls in flight, records them, exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel, people, queue, statuses
from tests.delivery.live import free_port
from tests.delivery.test_chaos import process, wait_http
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import messages

pytestmark = pytest.mark.xdist_group("chaos")


def test_sigterm_drains_in_flight_calls(
    db: Database, db_url: str, settings: Settings, acme: Org, tmp_path: Path
) -> None:
    sim_port = free_port()
    env = {
        **os.environ,
        "TEXTDESK_DATABASE_URL": db_url,
        "TEXTDESK_BASE_URL": "http://127.0.0.1:9",  # no one receives reports: not needed here
        "TEXTDESK_SIMULATOR_LATENCY_MS": "1500",  # long enough to catch calls in flight
        "TEXTDESK_SIMULATOR_LATENCY_JITTER_MS": "0",
        "TEXTDESK_SIMULATOR_DLR_DELAY_MS": "600000",
        "TEXTDESK_LOG_LEVEL": "WARNING",
    }
    channel(db, acme.admin.principal, rate=10_000, config={"url": f"http://127.0.0.1:{sim_port}"})
    ids = queue(db, settings, acme.admin.principal, people(db, acme.admin.principal, 20))
    with process(
        [sys.executable, "-m", "textdesk.providers.simulator", "--port", str(sim_port)],
        env,
        tmp_path / "sim.log",
    ):
        wait_http(f"http://127.0.0.1:{sim_port}/v1/stats")
        with (tmp_path / "worker.log").open("ab") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "textdesk", "worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120  # a safety net: start-up is slow on a loaded machine
        while time.monotonic() < deadline and "sending" not in statuses(db, ids).values():
            time.sleep(0.05)
        assert "sending" in statuses(db, ids).values()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 0, (tmp_path / "worker.log").read_text()
    with db.read() as conn:
        left = conn.execute(
            sa.select(sa.func.count()).select_from(messages).where(messages.c.status == "sending")
        ).scalar()
    assert left == 0, "every call in flight was finished and recorded before exiting"
    assert "sent" in statuses(db, ids).values()
