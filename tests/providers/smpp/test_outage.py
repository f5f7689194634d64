"""The SMSC goes away for ten minutes (the real peer closes every connection) and comes back:
every message queued meanwhile is delivered exactly once, and none used an attempt while the
bind was down. A bind refused for its credentials pauses the channel the same way, and a
password fixed at the SMSC is picked up without a restart.

The worker's clock is the test's (``tests/delivery/outage.py``); the SMPP session's own
reconnect backoff runs in real time, capped low here so the test takes seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import Org
from tests.delivery.helpers import channel, people, queue, statuses
from tests.delivery.outage import Clock, channel_row, live_through, message_rows, poll
from tests.providers.smpp.conftest import Peer, config_for
from textdesk.delivery.dispatcher import Dispatcher
from textdesk.providers.smpp import session
from textdesk.settings import Settings
from textdesk.store.db import Database

N = 10
#: Contacts from +12015550100 on: clear of the peer's scripted suffixes (0008, 0000, ...).
FIRST = 100


@pytest.fixture(autouse=True)
def _quick_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real seconds between the session's reconnect attempts; the worker's clock is the test's.
    monkeypatch.setattr(session, "BACKOFF_MAX", 0.3)


def _settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "circuit_breaker_pause_seconds": 60,
            "delivery_max_attempts": 2,
            "delivery_poll_seconds": 0.05,
            "reconcile_seconds": 0,
        }
    )


def _run(
    settings: Settings,
    db: Database,
    clock: Clock,
    scenario: Callable[[Dispatcher], Awaitable[None]],
) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        worker = Dispatcher(settings, db, worker_id="w-smpp", clock=clock)
        task = asyncio.create_task(worker.run(stop))
        try:
            await scenario(worker)
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)

    asyncio.run(main())


def test_a_ten_minute_smsc_outage_delivers_every_message_once(
    db: Database, settings: Settings, acme: Org, peer: Peer
) -> None:
    live = _settings(settings)
    admin = acme.admin.principal
    ch = channel(db, admin, provider="smpp", config=config_for(peer, submit_timeout=1))
    peer.outage(True)
    ids = [
        queue(db, live, admin, [cid], body=f"Reminder {n}")[0]
        for n, cid in enumerate(people(db, admin, N, start=FIRST))
    ]
    clock = Clock()

    async def scenario(worker: Dispatcher) -> None:
        await poll(lambda: channel_row(db, ch).paused_until is not None, what="the pause")
        await live_through(db, clock, 10 * 60)
        during = message_rows(db, ids)
        assert {r.status for r in during} == {"queued"}, "nothing failed while unbound"
        assert [r.attempts for r in during] == [0] * N, "no attempt used while unbound"
        assert {r.error_code for r in during} <= {"smpp:not_bound", "channel_paused"}
        assert "not bound" in channel_row(db, ch).pause_reason
        assert peer.submits() == [] and peer.events("refused_connection")

        peer.outage(False)
        await poll(lambda: peer.bound_sessions() >= 1, what="the rebind", timeout=60)
        await live_through(db, clock, 5 * 60)
        await poll(
            lambda: set(statuses(db, ids).values()) == {"delivered"},
            what="every receipt",
            timeout=60,
        )

    _run(live, db, clock, scenario)

    submits = peer.submits()
    assert len(submits) == N, "each message submitted exactly once"
    assert len({s["destination_addr"] for s in submits}) == N
    assert [r.attempts for r in message_rows(db, ids)] == [1] * N
    resumed = channel_row(db, ch)
    assert resumed.paused_until is None and resumed.pause_reason is None


def test_a_refused_bind_pauses_the_channel_until_the_password_works(
    db: Database, settings: Settings, acme: Org, peer: Peer
) -> None:
    """ESME_RINVPASWD: an authentication failure. The channel pauses at once with the reason,
    messages wait without using attempts; the SMSC accepts the password again (fixed at the
    SMSC) and the messages go, without a restart."""
    live = _settings(settings)
    admin = acme.admin.principal
    peer.configure(password="other")
    ch = channel(db, admin, provider="smpp", config=config_for(peer, submit_timeout=1))
    ids = [
        queue(db, live, admin, [cid], body=f"Hi {n}")[0]
        for n, cid in enumerate(people(db, admin, 3, start=FIRST))
    ]
    clock = Clock()

    async def scenario(worker: Dispatcher) -> None:
        await poll(lambda: channel_row(db, ch).paused_until is not None, what="the pause")
        await live_through(db, clock, 5 * 60)
        reason = channel_row(db, ch).pause_reason
        assert "refused the channel's credentials" in reason and "smpp:0x0E" in reason
        waiting = message_rows(db, ids)
        assert {r.status for r in waiting} == {"queued"}
        assert [r.attempts for r in waiting] == [0, 0, 0]
        assert "smpp:0x0E" in {r.error_code for r in waiting}

        peer.configure(password="secret")
        await poll(lambda: peer.bound_sessions() >= 1, what="the bind", timeout=60)
        await live_through(db, clock, 5 * 60)
        await poll(
            lambda: set(statuses(db, ids).values()) == {"delivered"}, what="receipts", timeout=60
        )

    _run(live, db, clock, scenario)

    assert len(peer.submits()) == 3
    assert [r.attempts for r in message_rows(db, ids)] == [1, 1, 1]
