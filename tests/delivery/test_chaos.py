"""Chaos: 5,000 messages through the simulator while worker processes are SIGKILLed at random.

Afterwards the whole batch has gone through: every message is final, each has the outcome the
carrier's script gives its number (delivered, for all but a few), and the only exceptions are
messages ``unknown`` for the reason the outbox allows (an attempt that may have reached the
carrier, then a re-send the gate stopped or retries that ran out). None is lost, and the
carrier's own counters show that no recipient got a message twice and that every repeat
submission was a re-send the database knows about. Real processes throughout: a standalone
simulator, a ``textdesk serve`` for the delivery reports, and ``textdesk worker`` processes
that are killed and replaced.

Nothing here is timed: the test waits for the end state, with generous deadlines only as a
safety net for a hung run, so a loaded machine makes it slower, never red.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel
from tests.delivery.live import free_port
from textdesk.delivery.outbox import MAYBE_SENT_REASONS
from textdesk.providers.simulator import script
from textdesk.services import messaging
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import contacts, message_events, messages

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("chaos")]

MESSAGES = 5_000
KILLS = 12
#: A kill comes at most 0.3 s after its victim is seen sending, so the batch goes out only
#: during those moments until the last kill: at this rate, a few thousand messages at most,
#: however slow the machine. The batch is still going out when the last worker is killed.
RATE = 200
FINAL = {"delivered", "undelivered", "failed", "blocked", "expired", "unknown"}
#: Safety nets, not measurements: the drain normally takes well under a minute.
STALL_SECONDS = 300  # nothing moved in the database or at the carrier for this long
DRAIN_SECONDS = 1_800
#: What the carrier's script does to a number (``script.py``); every other one is delivered.
EXPECTED = {
    **{suffix: "failed" for suffix in script.SEND_FAILURES},  # 0429/0500: retries run out
    **{suffix: status for suffix, (status, _code, _message) in script.DLR_OUTCOMES.items()},
}


def _expected(phone: str) -> str:
    return EXPECTED.get(script.suffix(phone), "delivered")


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


def wait_http(url: str, timeout: float = 120, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait for a server to answer; the timeout is a safety net (start-up under load is slow)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process serving {url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=10)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up within {timeout:g} s")


def _seed(db: Database, settings: Settings, acme: Org, sim_url: str) -> None:
    admin = acme.admin.principal
    channel(db, admin, rate=RATE, config={"url": sim_url})
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


def _not_final(db: Database) -> int:
    with db.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(messages)
                .where(messages.c.direction == "out", messages.c.status.not_in(FINAL))
            ).scalar_one()
        )


def _leased_by(db: Database, pid: int) -> set[int]:
    """Messages a worker process has claimed and not yet settled (its id holds its pid)."""
    with db.read() as conn:
        return set(
            conn.execute(
                sa.select(messages.c.id).where(
                    messages.c.status == "sending", messages.c.leased_by.like(f"%-{pid}-%")
                )
            ).scalars()
        )


def _a_sending_worker(
    db: Database, workers: list[subprocess.Popen[bytes]], rng: random.Random
) -> subprocess.Popen[bytes]:
    deadline = time.monotonic() + STALL_SECONDS
    while True:
        busy = [w for w in workers if w.poll() is None and _leased_by(db, w.pid)]
        if busy:
            return rng.choice(busy)
        assert _not_final(db), "the batch went out before the kills were done"
        assert time.monotonic() < deadline, f"no worker sent anything for {STALL_SECONDS} s"
        time.sleep(0.02)


def _progress(db: Database) -> tuple[Any, ...]:
    """Everything that moves while the batch drains (to tell a stalled run from a slow one)."""
    with db.read() as conn:
        counts = conn.execute(
            sa.select(messages.c.status, sa.func.count(), sa.func.sum(messages.c.attempts))
            .group_by(messages.c.status)
            .order_by(messages.c.status)
        ).all()
        events = conn.execute(sa.select(sa.func.count()).select_from(message_events)).scalar()
    return tuple(map(tuple, counts)), events


def _carrier_stats(sim_url: str) -> dict[str, int]:
    response = httpx.get(f"{sim_url}/v1/stats", timeout=60)
    response.raise_for_status()
    stats: dict[str, int] = response.json()
    return stats


def _drain(db: Database, sim_url: str) -> dict[str, int]:
    """Wait until the batch is through, and return the carrier's counters at that moment.

    The carrier is asked first: with no callback pending there, every report and reply it
    made has been stored (a webhook answers 2xx only after its commit), and a reply that
    queued an answer left a non-final message; so if the database then shows nothing in
    flight, nothing more will happen."""
    deadline = time.monotonic() + DRAIN_SECONDS
    last, moved = _progress(db), time.monotonic()
    while True:
        stats = _carrier_stats(sim_url)
        if stats["pending_callbacks"] == 0 and _not_final(db) == 0:
            return stats
        now = time.monotonic()
        if (seen := _progress(db)) != last:
            last, moved = seen, now
        assert now - moved < STALL_SECONDS, f"nothing moved for {STALL_SECONDS} s: {last} {stats}"
        assert now < deadline, f"not drained within {DRAIN_SECONDS} s: {last} {stats}"
        time.sleep(0.5)


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
        # A loaded machine may answer a webhook slowly: the carrier must not give up on a
        # report (a dropped one would leave its message `sent` for good).
        "TEXTDESK_SIMULATOR_CALLBACK_TIMEOUT_S": "60",
        "TEXTDESK_SIMULATOR_CALLBACK_RETRIES": "8",
        "TEXTDESK_DELIVERY_LEASE_SECONDS": "5",
        "TEXTDESK_DELIVERY_CONCURRENCY": "64",
        "TEXTDESK_LOG_LEVEL": "WARNING",
    }
    _seed(db, settings, acme, sim_url)
    logs = tmp_path
    python = sys.executable
    with (
        process(
            [python, "-m", "textdesk.providers.simulator", "--port", str(sim_port)],
            env,
            logs / "sim.log",
        ) as simulator,
        process([python, "-m", "textdesk", "serve"], env, logs / "web.log") as web,
    ):
        wait_http(f"{sim_url}/v1/stats", proc=simulator)
        wait_http(f"{web_url}/healthz", proc=web)
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
            # Kill workers that are sending, and count only kills that left claimed messages
            # behind (a worker killed while starting or between claims interrupts nothing).
            abandoned: set[int] = set()
            kills = interrupting = 0
            while interrupting < KILLS:
                assert kills < 4 * KILLS, f"{kills} kills, {interrupting} interrupted sends"
                victim = _a_sending_worker(db, workers, rng)
                time.sleep(rng.uniform(0, 0.3))  # the chaos's pace, not a synchronisation
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                kills += 1
                left_behind = _leased_by(db, victim.pid)
                interrupting += bool(left_behind)
                abandoned |= left_behind
                start_worker()
            stats = _drain(db, sim_url)
        finally:
            for w in workers:
                if w.poll() is None:
                    w.terminate()
            for w in workers:
                try:
                    w.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    w.kill()

    outbound = messages.c.direction == "out"
    ours = sa.and_(outbound, messages.c.purpose != "compliance")  # not the STOP/HELP answers
    with db.read() as conn:
        rows = conn.execute(
            sa.select(
                messages.c.id,
                contacts.c.phone_e164,
                messages.c.status,
                messages.c.attempts,
                messages.c.error_code,
                messages.c.provider_message_id,
            )
            .join(contacts, contacts.c.id == messages.c.contact_id)
            .where(ours)
        ).all()
        answers = list(
            conn.execute(
                sa.select(messages.c.status).where(outbound, messages.c.purpose == "compliance")
            ).scalars()
        )
        attempts = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(messages.c.attempts), 0)).where(outbound)
        ).scalar_one()
        received = conn.execute(
            sa.select(sa.func.count()).select_from(messages).where(messages.c.direction == "in")
        ).scalar_one()
        with_id = conn.execute(
            sa.select(sa.func.count())
            .select_from(messages)
            .where(outbound, messages.c.provider_message_id.is_not(None))
        ).scalar_one()
        distinct_ids = conn.execute(
            sa.select(sa.func.count(sa.distinct(messages.c.provider_message_id))).where(outbound)
        ).scalar_one()
        # Returns to the queue after an attempt that may have reached the carrier: the only
        # reason a message may be submitted again, and the only way to end `unknown`.
        maybe_sent = Counter(
            conn.execute(
                sa.select(message_events.c.message_id)
                .join(messages, messages.c.id == message_events.c.message_id)
                .where(outbound, message_events.c.reason.in_(MAYBE_SENT_REASONS))
            ).scalars()
        )
    by_status = Counter(r.status for r in rows)
    context = (dict(by_status), answers, stats)
    print(f"{kills} kills left {len(abandoned)} messages claimed; {attempts} attempts; {context}")

    assert len(rows) == MESSAGES, "no message lost"
    assert set(answers) <= FINAL, "the simulated STOP/HELP replies were answered, too"
    # What the killed workers left claimed went back to the queue as "may have been sent".
    assert abandoned and abandoned <= set(maybe_sent), abandoned - set(maybe_sent)

    # The progress floor: the whole batch went through, each message to its scripted outcome.
    unsure = [r for r in rows if r.status == "unknown"]
    assert all(maybe_sent[r.id] for r in unsure), [r for r in unsure if not maybe_sent[r.id]]
    wrong = [r for r in rows if r.status not in {_expected(r.phone_e164), "unknown"}]
    assert wrong == [], (wrong[:20], context)
    should_deliver = [r for r in rows if _expected(r.phone_e164) == "delivered"]
    unsure_of_those = sum(1 for r in should_deliver if r.status == "unknown")
    assert by_status["delivered"] == len(should_deliver) - unsure_of_those, context

    # The carrier's view. Nobody got a text twice (under any idempotency key, or none) ...
    assert stats["repeats_accepted"] == 0, stats
    assert stats["accepted"] == stats["distinct_keys"], stats
    # ... every repeat submission was a re-send after an attempt that may have reached it ...
    assert stats["duplicates_suppressed"] <= sum(maybe_sent.values()), (stats, maybe_sent)
    assert stats["max_sends_per_key"] <= max(r.attempts for r in rows), stats
    # ... every submission is an attempt the database counted ...
    submissions = stats["accepted"] + stats["duplicates_suppressed"] + stats["rejected"]
    assert submissions <= attempts, (stats, attempts)
    # ... every acceptance is a message we know (an `unknown` one may lack the carrier's id) ...
    assert with_id == distinct_ids
    unknown = by_status["unknown"] + answers.count("unknown")
    assert with_id <= stats["accepted"] <= with_id + unknown, (with_id, stats)
    # ... and every report and reply reached us, once.
    assert stats["callbacks_failed"] == 0, stats
    assert received == stats["replies_sent"], (received, stats)
    delivered = by_status["delivered"] + answers.count("delivered")
    assert delivered <= stats["delivered"] <= delivered + unknown, context
