"""Submits left in doubt (no submit_sm_resp within ``submit_timeout``) are settled by what comes
after: the SMSC's late answer and the receipts of the message's parts, all reported under the
provisional id the failure carried. Against the real peer; the core's side (the id stored on
the unknown message, reports applied) is ``tests/delivery/test_in_doubt.py``."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel, people, queue, statuses, trail
from tests.providers.smpp.conftest import FakeSink, Peer, config_for, eventually
from tests.providers.smpp.test_peer import run_with, sms
from textdesk.delivery.dispatcher import Dispatcher
from textdesk.domain.states import MessageStatus
from textdesk.providers.base import AmbiguousFailure
from textdesk.providers.smpp.adapter import SmppProvider
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import messages

SLOW = "+15551230998"  # the peer answers these only after slow_resp_ms
LONG = "Part of a long reminder. " * 8  # two GSM-7 parts


def _reports(sink: FakeSink, doubt: str) -> list[tuple[MessageStatus, str | None]]:
    return [(r.status, r.error_code) for r in sink.statuses if r.provider_message_id == doubt]


def test_a_late_answer_and_its_receipt_settle_a_submit_in_doubt(peer: Peer) -> None:
    peer.configure(slow_resp_ms=1200)

    async def scenario(provider: SmppProvider, sink: FakeSink) -> str:
        with pytest.raises(AmbiguousFailure) as info:
            await provider.send(sms(SLOW))
        doubt = info.value.provider_message_id
        assert doubt is not None and doubt.startswith("smpp-doubt-")
        assert info.value.code == "smpp:timeout"
        await eventually(
            lambda: (MessageStatus.DELIVERED, None) in _reports(sink, doubt),
            timeout=15,
            message="the receipt, under the provisional id",
        )
        return doubt

    doubt = run_with(peer, scenario, submit_timeout=0.4)
    assert peer.events("slow_answer") and len(peer.submits()) == 1, "sent once, never again"
    assert doubt


def test_receipts_of_the_parts_accepted_settle_a_long_message_in_doubt(peer: Peer) -> None:
    """Part 1 accepted, part 2 unanswered in time: part 1's failed receipt fails the message
    (it cannot have arrived whole), reported under the provisional id."""
    peer.configure(slow_parts=[2], slow_resp_ms=60_000, stat_by_suffix={"0998": "UNDELIV"})

    async def scenario(provider: SmppProvider, sink: FakeSink) -> str:
        with pytest.raises(AmbiguousFailure) as info:
            await provider.send(sms(SLOW, LONG))
        doubt = info.value.provider_message_id
        assert doubt is not None
        await eventually(
            lambda: (MessageStatus.UNDELIVERED, "smpp:UNDELIV:001") in _reports(sink, doubt),
            timeout=15,
            message="part 1's receipt, under the provisional id",
        )
        return doubt

    run_with(peer, scenario, submit_timeout=0.4)
    assert len(peer.submits()) == 2


def test_a_delivered_part_makes_a_message_in_doubt_sent(peer: Peer) -> None:
    peer.configure(slow_parts=[2], slow_resp_ms=60_000)

    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        with pytest.raises(AmbiguousFailure) as info:
            await provider.send(sms(SLOW, LONG))
        doubt = info.value.provider_message_id
        assert doubt is not None
        await eventually(
            lambda: (MessageStatus.SENT, None) in _reports(sink, doubt),
            timeout=15,
            message="part 1 delivered: the SMSC has the message",
        )

    run_with(peer, scenario, submit_timeout=0.4)


def test_a_late_refusal_fails_the_message_in_doubt(peer: Peer) -> None:
    """The SMSC answers after the wait, and says no: nothing of it went out."""
    peer.configure(slow_resp_ms=1200, syserr_suffix="0998")

    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        with pytest.raises(AmbiguousFailure) as info:
            await provider.send(sms(SLOW))
        doubt = info.value.provider_message_id
        assert doubt is not None
        await eventually(
            lambda: (MessageStatus.FAILED, "smpp:0x08") in _reports(sink, doubt),
            timeout=15,
            message="the late refusal",
        )

    run_with(peer, scenario, submit_timeout=0.4)


def test_the_core_settles_the_unknown_message_by_its_provisional_id(
    db: Database, settings: Settings, acme: Org, peer: Peer
) -> None:
    """Through the worker, on both engines: the message goes ``unknown`` with the provisional
    id stored; the late answer (``sent``) and the receipt (``delivered``) that follow it find it
    by that id, ranks keeping their order however they land; it was submitted once."""
    peer.configure(slow_resp_ms=1500)
    live = settings.model_copy(update={"delivery_poll_seconds": 0.05, "reconcile_seconds": 0})
    admin = acme.admin.principal
    channel(db, admin, provider="smpp", config=config_for(peer, submit_timeout=0.4))
    [mid] = queue(db, live, admin, people(db, admin, 1, start=998))  # +12015550998: slow

    async def main() -> None:
        stop = asyncio.Event()
        worker = Dispatcher(live, db, worker_id="w-doubt")
        task = asyncio.create_task(worker.run(stop))
        try:
            await eventually(
                lambda: statuses(db, [mid]) == {mid: "delivered"}, timeout=30, message="receipt"
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    asyncio.run(main())
    with db.read() as conn:
        row = conn.execute(sa.select(messages).where(messages.c.id == mid)).one()
    assert row.provider_message_id.startswith("smpp-doubt-") and row.attempts == 1
    assert row.error_code is None, "the doubt's error went with it"
    moves = [(a, b) for a, b, _reason in trail(db, mid)]
    assert ("sending", "unknown") in moves
    assert moves[-1] in {("sent", "delivered"), ("unknown", "delivered")}
    assert len(peer.submits()) == 1, "never sent twice"
