"""A deliver_sm the SMSC delivers again is stored once; the same text sent twice is stored
twice. Through the worker and the real peer, on both engines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel
from tests.providers.smpp.conftest import Peer, config_for, eventually
from textdesk.delivery.dispatcher import Dispatcher
from textdesk.providers.smpp.text import gsm_encode
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import messages


def _inbound(db: Database) -> list[str]:
    with db.read() as conn:
        return list(
            conn.execute(
                sa.select(messages.c.body)
                .where(messages.c.direction == "in")
                .order_by(messages.c.id)
            ).scalars()
        )


def _answered(peer: Peer, kind: str) -> int:
    return sum(1 for e in peer.events("deliver_sm_resp") if e["kind"] == kind and e["status"] == 0)


def _with_worker(settings: Settings, db: Database, peer: Peer, steps: Callable[[], object]) -> None:
    live = settings.model_copy(update={"delivery_poll_seconds": 0.05, "reconcile_seconds": 0})

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(Dispatcher(live, db, worker_id="w-mo").run(stop))
        try:
            await eventually(lambda: peer.bound_sessions() >= 1, timeout=20, message="bind")
            await steps()  # type: ignore[misc]
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    asyncio.run(main())


def test_a_deliver_sm_delivered_again_is_stored_once(
    db: Database, settings: Settings, acme: Org, peer: Peer
) -> None:
    channel(db, acme.admin.principal, provider="smpp", config=config_for(peer))

    async def steps() -> None:
        # The same PDU twice (one sequence number): the SMSC did not get our answer in time.
        peer.deliver(gsm_encode("Yes please"), sequence_number=4242, repeat=2)
        await eventually(lambda: _answered(peer, "repeat") == 2, timeout=20, message="answers")
        # The SMSC's own id on a message from a phone, delivered twice with two sequence numbers.
        for _ in range(2):
            peer.deliver(gsm_encode("Call me"), tlvs={"receipted_message_id": "MO-77"})
        await eventually(lambda: _answered(peer, "inbound") == 2, timeout=20, message="answers")
        # A person who really sends the same text twice.
        for _ in range(2):
            peer.deliver(gsm_encode("ok"))
        await eventually(lambda: _answered(peer, "inbound") == 4, timeout=20, message="answers")

    _with_worker(settings, db, peer, steps)
    assert sorted(_inbound(db)) == ["Call me", "Yes please", "ok", "ok"]
