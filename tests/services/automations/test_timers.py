"""Durable timers: a worker that dies between a claim and its commit leaves the step to be done
once by the next claim; two workers never do a step twice; an unexpected error is retried."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.services.automations.helpers import automation, history, outbound, post, run, sender
from textdesk.services import contacts
from textdesk.services.automations import timers
from textdesk.services.automations.events import EventInput
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import automation_runs

NOW = datetime(2026, 5, 5, 15, 0, tzinfo=UTC)  # 11:00 in New York
STEPS = [
    {"type": "send", "template": "Your order shipped."},
    {"type": "tag", "tags": ["shipped"]},
]
SRC = Path(__file__).resolve().parents[3] / "src"


class Crash(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs, no except catches it."""


def _shipped(db: Database, org: Org, n: int = 1) -> list[int]:
    admin = org.admin.principal
    sender(db, admin)
    automation(db, admin, STEPS, event_types=("order.shipped",))
    recorded = post(
        db,
        admin,
        *[EventInput(type="order.shipped", phone=f"+1201555{i:04d}") for i in range(n)],
        batch=True,
        now=NOW,
    )
    return [r.run_ids[0] for r in recorded]


def test_a_crash_after_the_effect_and_before_the_commit_leaves_the_step_to_do_once(
    db: Database, settings: Settings, acme: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    (run_id,) = _shipped(db, acme)

    def crash(_run_id: int, step: int) -> None:
        raise Crash

    monkeypatch.setattr(timers, "_after_step", crash)
    with pytest.raises(Crash):
        timers.run_due(db, settings, now=NOW)
    # The message was written, then rolled back with the claim: nothing is left of it.
    assert outbound(db) == []
    assert run(db, run_id).state == "waiting" and run(db, run_id).cursor == 0
    assert [h[0] for h in history(db, acme.org.id, run_id)] == ["started"]
    monkeypatch.undo()
    timers.run_due(db, settings, now=NOW)
    timers.run_due(db, settings, now=NOW + timedelta(hours=1))
    (message,) = outbound(db)
    assert message.idempotency_key == f"run:{run_id}:step:0"
    kinds = [h[0] for h in history(db, acme.org.id, run_id)]
    assert kinds == ["started", "send", "tag", "done"]
    with db.read() as conn:
        assert contacts.get_contact(conn, acme.org.id, message.contact_id).tags == ["shipped"]


def test_an_unexpected_error_rolls_back_that_run_alone_and_is_tried_again(
    db: Database, settings: Settings, acme: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, fine = _shipped(db, acme, 2)
    real = timers._send
    calls = {"n": 0}

    def flaky(conn: Any, settings: Settings, ctx: Any, *args: Any) -> Any:
        calls["n"] += 1
        if ctx.run.id == broken:
            raise RuntimeError("the disk is on fire")
        return real(conn, settings, ctx, *args)

    monkeypatch.setattr(timers, "_send", flaky)
    timers.run_due(db, settings, now=NOW)
    assert run(db, fine).state == "done"
    assert run(db, broken).state == "waiting" and run(db, broken).attempts == 1
    assert run(db, broken).due_at == NOW + timedelta(seconds=30)
    assert history(db, acme.org.id, broken)[-1][:2] == ("error", "error")
    assert "the disk is on fire" in history(db, acme.org.id, broken)[-1][2]
    assert len(outbound(db)) == 1
    # Still broken: after MAX_ATTEMPTS it fails for good, and says so.
    now = NOW
    for _ in range(timers.MAX_ATTEMPTS):
        now += timedelta(hours=2)
        timers.run_due(db, settings, now=now)
    assert run(db, broken).state == "failed"
    assert (
        f"gave up after {timers.MAX_ATTEMPTS} attempts" in history(db, acme.org.id, broken)[-1][2]
    )
    monkeypatch.undo()
    assert len(outbound(db)) == 1


def test_two_workers_claiming_at_once_do_every_step_exactly_once(
    db: Database, settings: Settings, acme: Org
) -> None:
    ids = _shipped(db, acme, 60)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            while timers.run_due(db, settings, now=NOW, limit=7).claimed:
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    sent = outbound(db)
    assert len(sent) == 60
    assert sorted(m.idempotency_key for m in sent) == sorted(f"run:{i}:step:0" for i in ids)
    for run_id in ids:
        kinds = [h[0] for h in history(db, acme.org.id, run_id)]
        assert kinds == ["started", "send", "tag", "done"]


_CHILD = """
import sys
from datetime import datetime
from textdesk.services.automations import timers
from textdesk.settings import Environment, Settings
from textdesk.store.db import Database, make_engine

url, now = sys.argv[1], datetime.fromisoformat(sys.argv[2])

def hang(run_id, step):
    print("effect written", flush=True)
    sys.stdin.readline()  # never answered: the parent kills us here, before COMMIT

timers._after_step = hang
settings = Settings(env=Environment.TEST, database_url=url, secret_key="x" * 32,
                    embedded_worker=False, _env_file=None)
timers.run_due(Database(make_engine(url)), settings, now=now)
"""


def test_a_sigkilled_worker_between_claim_and_commit_loses_and_doubles_nothing(
    db: Database, db_url: str, settings: Settings, acme: Org
) -> None:
    (run_id,) = _shipped(db, acme)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, db_url, NOW.isoformat()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(child.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=120), "the worker never reached its step"
        assert child.stdout.readline().strip() == "effect written"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    if db.dialect == "postgresql":
        # The server rolls the dead connection's transaction back and releases its row lock;
        # taking the lock ourselves (without SKIP LOCKED) waits for exactly that.
        with db.write() as conn:
            conn.execute(
                sa.select(automation_runs.c.id)
                .where(automation_runs.c.id == run_id)
                .with_for_update()
            ).one()
    assert outbound(db) == []
    assert run(db, run_id).state == "waiting"
    assert timers.run_due(db, settings, now=NOW).claimed == 1
    assert timers.run_due(db, settings, now=NOW).claimed == 0
    (message,) = outbound(db)
    kinds = [h[0] for h in history(db, acme.org.id, run_id)]
    assert kinds == ["started", "send", "tag", "done"]
    assert message.idempotency_key == f"run:{run_id}:step:0"


def test_an_opt_out_does_not_wait_for_a_worker_holding_one_of_the_contacts_runs(
    db: Database, settings: Settings, acme: Org
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer: a running worker holds the whole database")
    from textdesk.services import consent

    admin = acme.admin.principal
    sender(db, admin)
    automation(db, admin, [{"type": "wait", "duration": "1d"}], event_types=("order.shipped",))
    busy, idle = (
        r.run_ids[0]
        for r in post(
            db,
            admin,
            EventInput(type="order.shipped", phone="+12015550111", key="1"),
            EventInput(type="order.shipped", phone="+12015550111", key="2"),
            batch=True,
            now=NOW,
        )
    )
    contact_id = run(db, busy).contact_id
    done = threading.Event()
    # A worker in the middle of the busy run: it holds the run's row.
    with db.engine.connect() as worker, worker.begin():
        worker.execute(
            sa.select(automation_runs.c.id).where(automation_runs.c.id == busy).with_for_update()
        ).one()
        opt_out = threading.Thread(
            target=lambda: (consent.agent_opt_out(db, admin, contact_id), done.set())
        )
        opt_out.start()
        finished = done.wait(timeout=30)
    opt_out.join()
    assert finished, "the opt-out waited for the worker's lock"
    assert run(db, idle).state == "cancelled"
    assert run(db, busy).state == "waiting"  # the gate refuses whatever it sends next


def test_the_worker_embedded_in_serve_runs_the_due_steps(
    db: Database, settings: Settings, acme: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from textdesk.delivery.worker import EmbeddedWorker

    admin = acme.admin.principal
    automation(db, admin, [{"type": "tag", "tags": ["seen"]}], event_types=("order.shipped",))
    (recorded,) = post(db, admin, EventInput(type="order.shipped", phone="+12015550111"))
    ran = threading.Event()
    real = timers.run_due

    def watched(*args: Any, **kwargs: Any) -> timers.Tick:
        tick = real(*args, **kwargs)
        if tick.claimed:
            ran.set()
        return tick

    monkeypatch.setattr(timers, "run_due", watched)

    async def serve() -> bool:
        worker = EmbeddedWorker(settings, db)
        worker.start()
        try:
            return await asyncio.to_thread(ran.wait, 60)
        finally:
            await worker.stop()

    assert asyncio.run(serve()), "the embedded worker never ran the due run"
    assert run(db, recorded.run_ids[0]).state == "done"
