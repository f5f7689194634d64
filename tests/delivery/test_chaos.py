"""Chaos: 5,000 messages through the simulator while worker processes are SIGKILLed at random.

Afterwards every message is final or ``unknown``, none is lost, and the carrier accepted no
message twice. Real processes throughout: a standalone simulator, a ``textdesk serve`` for the
delivery reports, and ``textdesk worker`` processes that are killed and replaced.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel
from tests.delivery.live import free_port
from textdesk.services import messaging
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import contacts, messages

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("chaos")]

MESSAGES = 5_000
KILLS = 12
FINAL = {"delivered", "undelivered", "failed", "blocked", "expired", "unknown"}


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def _seed(db: Database, settings: Settings, acme: Org, sim_url: str) -> None:
    admin = acme.admin.principal
    channel(db, admin, rate=10_000, config={"url": sim_url})
    now = messaging.utcnow()
    with db.write() as conn:
        conn.execute(
            contacts.insert(),
            [
                {
                    "org_id": admin.org_id,
                    "phone_e164": f"+1202555{i:04d}",
                    "fields": {},
                    "tags": [],
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(MESSAGES)
            ],
        )
        ids = conn.execute(sa.select(contacts.c.id).order_by(contacts.c.id)).scalars().all()
        for cid in ids:
            messaging.queue_outbound(
                conn,
                settings,
                org_id=admin.org_id,
                contact_id=cid,
                body="Chaos check",
                actor="test",
            )


def test_sigkilled_workers_lose_and_duplicate_nothing(
    db: Database, db_url: str, settings: Settings, acme: Org, tmp_path: Path
) -> None:
    rng = random.Random(20261127)
    sim_port, web_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    web_url = f"http://127.0.0.1:{web_port}"
    env = {
        **os.environ,
        "TEXTDESK_DATABASE_URL": db_url,
        "TEXTDESK_BASE_URL": web_url,
        "TEXTDESK_PORT": str(web_port),
        "TEXTDESK_EMBEDDED_WORKER": "false",
        "TEXTDESK_SIMULATOR_ENABLED": "false",
        "TEXTDESK_SIMULATOR_LATENCY_MS": "20",
        "TEXTDESK_SIMULATOR_LATENCY_JITTER_MS": "20",
        "TEXTDESK_SIMULATOR_DLR_DELAY_MS": "50",
        "TEXTDESK_SIMULATOR_REPLY_DELAY_MS": "100",
        "TEXTDESK_SIMULATOR_SEED": "7",
        "TEXTDESK_SIMULATOR_HANG_MS": "0",
        "TEXTDESK_DELIVERY_LEASE_SECONDS": "5",
        "TEXTDESK_DELIVERY_CONCURRENCY": "64",
        "TEXTDESK_LOG_LEVEL": "WARNING",
    }
    started = time.monotonic()
    _seed(db, settings, acme, sim_url)
    print(f"seeded in {time.monotonic() - started:.1f} s")
    logs = tmp_path
    python = sys.executable
    with (
        process(
            [python, "-m", "textdesk.providers.simulator", "--port", str(sim_port)],
            env,
            logs / "sim.log",
        ),
        process([python, "-m", "textdesk", "serve"], env, logs / "web.log"),
    ):
        wait_http(f"{sim_url}/v1/stats")
        wait_http(f"{web_url}/healthz")
        workers: list[subprocess.Popen[bytes]] = []

        def start_worker() -> None:
            with (logs / "workers.log").open("ab") as out:
                workers.append(
                    subprocess.Popen(
                        [python, "-m", "textdesk", "worker"],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

        try:
            start_worker()
            start_worker()
            kills = 0
            print(f"workers started at {time.monotonic() - started:.1f} s")
            while kills < KILLS:
                time.sleep(rng.uniform(0.2, 0.8))
                victim = rng.choice([w for w in workers if w.poll() is None])
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                kills += 1
                start_worker()
            print(f"kills done at {time.monotonic() - started:.1f} s")
            # Let the survivors drain (leases of killed workers run out after 5 s).
            deadline = time.monotonic() + 180
            quiet = 0
            while time.monotonic() < deadline and quiet < 3:
                with db.read() as conn:
                    left = conn.execute(
                        sa.select(sa.func.count())
                        .select_from(messages)
                        .where(messages.c.status.not_in(FINAL | {"received"}))
                    ).scalar()
                pending = httpx.get(f"{sim_url}/v1/stats").json()["pending_callbacks"]
                # Done when nothing is in flight on either side (customer replies to the
                # simulated STOP/HELP messages arrive after their delivery reports).
                quiet = quiet + 1 if left == 0 and pending == 0 else 0
                time.sleep(0.5)
            print(f"drained {time.monotonic() - started:.1f} s after start")
            stats = httpx.get(f"{sim_url}/v1/stats").json()
        finally:
            for w in workers:
                if w.poll() is None:
                    w.terminate()
            for w in workers:
                try:
                    w.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    w.kill()

    outbound = messages.c.direction == "out"
    ours = sa.and_(outbound, messages.c.purpose != "compliance")  # not the STOP/HELP answers
    with db.read() as conn:
        answers = (
            conn.execute(
                sa.select(messages.c.status).where(outbound, messages.c.purpose == "compliance")
            )
            .scalars()
            .all()
        )
        by_status = dict(
            conn.execute(
                sa.select(messages.c.status, sa.func.count())
                .where(ours)
                .group_by(messages.c.status)
            ).all()
        )
        with_id = conn.execute(
            sa.select(sa.func.count())
            .select_from(messages)
            .where(outbound, messages.c.provider_message_id.is_not(None))
        ).scalar()
        distinct_ids = conn.execute(
            sa.select(sa.func.count(sa.distinct(messages.c.provider_message_id))).where(outbound)
        ).scalar()
        # Why messages failed or were blocked, for the assertion messages below.
        failures = conn.execute(
            sa.select(
                messages.c.id, messages.c.attempts, messages.c.error_code, messages.c.error_detail
            ).where(ours, messages.c.status == "failed")
        ).all()
        blocked = conn.execute(
            sa.select(messages.c.id, messages.c.attempts, messages.c.gate_code).where(
                ours, messages.c.status == "blocked"
            )
        ).all()
    assert sum(by_status.values()) == MESSAGES, "no message lost"
    assert set(answers) <= FINAL, "the simulated STOP/HELP replies were answered, too"
    assert set(by_status) <= FINAL, f"all final or unknown: {by_status}\n{stats}"
    assert kills >= 10
    # The carrier accepted each message at most once (re-sends after a crash were recognized by
    # their idempotency key), and every acceptance is a message we know.
    assert stats["accepted"] == stats["distinct_keys"], stats
    assert stats["accepted"] <= MESSAGES
    assert with_id == distinct_ids
    delivered = by_status.get("delivered", 0) + answers.count("delivered")
    # A message whose re-send the gate stopped (its contact answered STOP to the attempt a
    # killed worker made) is unknown: the carrier may have it, and it may not be re-sent.
    unsure = by_status.get("unknown", 0)
    assert delivered <= stats["delivered"] <= delivered + unsure, (
        by_status,
        answers,
        stats,
        failures,
        blocked,
    )
