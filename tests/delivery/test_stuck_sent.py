"""A ``sent`` message whose delivery report never comes is reconciled after
``TEXTDESK_SENT_RECONCILE_AFTER_SECONDS``: looked up where the provider can be asked (its answer
applied like a report, a bounded number of times), else marked ``unknown`` with the reason, a
late report still settling it. Both engines."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel, people, queue, statuses, trail
from tests.delivery.outage import Clock, poll, settled
from textdesk.delivery import outbox, reconcile
from textdesk.delivery.dispatcher import Dispatcher
from textdesk.delivery.outbox import Sent
from textdesk.domain.states import MessageStatus as S
from textdesk.providers.base import StatusReport
from textdesk.services import messaging
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import message_events, messages, utcnow

WAIT = timedelta(hours=1)
SMPP = {"host": "127.0.0.1", "port": 1, "system_id": "x", "password": "y"}


class Asked:
    """An adapter's ``lookup`` that answers from a script and counts the questions."""

    def __init__(self, answer: Callable[[str], StatusReport | None]) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def lookup(self, provider_message_id: str) -> StatusReport | None:
        self.asked.append(provider_message_id)
        return self.answer(provider_message_id)


def _adapter(adapter: object) -> Callable[[int], Awaitable[object]]:
    async def get(_channel_id: int) -> object:
        return adapter

    return get


def _sent(db: Database, settings: Settings, ids: list[int], *, wait: timedelta | None) -> None:
    claimed = outbox.claim(db, settings, worker_id="w", limit=len(ids)).claimed
    assert sorted(c.id for c in claimed) == sorted(ids)
    outbox.record(db, [Sent(c, f"P{c.id}") for c in claimed], actor="w", receipt_wait=wait)


def _row(db: Database, message_id: int) -> Any:
    with db.read() as conn:
        return conn.execute(sa.select(messages).where(messages.c.id == message_id)).one()


def _stuck(db: Database, adapter: object, now: Any, **kw: Any) -> reconcile.ReconcileResult:
    return asyncio.run(
        reconcile.reconcile_stuck_sent(db, _adapter(adapter), after=WAIT, now=now, **kw)
    )


def test_no_report_and_no_lookup_makes_a_sent_message_unknown(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin, provider="smpp", config=SMPP)  # SMPP offers no lookup
    [mid] = queue(db, settings, admin, people(db, admin, 1))
    start = utcnow()
    _sent(db, settings, [mid], wait=WAIT)
    nobody = Asked(lambda _pid: None)

    early = _stuck(db, nobody, start + WAIT - timedelta(minutes=1))
    assert (early.asked, early.marked_unknown) == (0, 0)
    assert statuses(db, [mid]) == {mid: "sent"}

    late = _stuck(db, nobody, start + WAIT + timedelta(minutes=1))
    assert (late.asked, late.marked_unknown) == (0, 1) and nobody.asked == []
    row = _row(db, mid)
    assert row.status == "unknown" and row.error_code == "no_receipt"
    assert "no delivery report within 3600 s" in row.error_detail
    assert trail(db, mid)[-1] == ("sent", "unknown", "reconcile.no_receipt")
    assert _stuck(db, nobody, start + 10 * WAIT).marked_unknown == 0, "once"

    # The receipt comes after all: it settles the message, and the doubt's error goes.
    messaging.apply_status(db, ch, StatusReport(f"P{mid}", S.DELIVERED), actor="provider:smpp")
    row = _row(db, mid)
    assert row.status == "delivered" and row.error_code is None


def test_no_report_where_the_provider_can_be_asked_is_looked_up(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    channel(db, admin)  # the simulator offers a lookup
    answered, silent = queue(db, settings, admin, people(db, admin, 2))
    start = utcnow()
    _sent(db, settings, [answered, silent], wait=WAIT)

    def answer(pid: str) -> StatusReport:
        if pid == f"P{answered}":
            return StatusReport(pid, S.UNDELIVERED, "simulator:30003", "unreachable")
        return StatusReport(pid, S.SENT)  # the provider has nothing newer either

    provider = Asked(answer)
    first = _stuck(db, provider, start + WAIT + timedelta(seconds=1), max_lookups=3)
    assert (first.asked, first.resolved, first.unchanged, first.marked_unknown) == (2, 1, 1, 0)
    assert statuses(db, [answered, silent]) == {answered: "undelivered", silent: "sent"}
    assert _row(db, answered).error_code == "simulator:30003"
    with db.read() as conn:
        actors = conn.execute(
            sa.select(message_events.c.actor).where(
                message_events.c.message_id == answered, message_events.c.to_status == "undelivered"
            )
        ).scalars()
        assert list(actors) == ["provider:simulator:lookup"]

    # Asked again every interval, three times in all, then left as the provider says: sent.
    moments = (start + WAIT + timedelta(minutes=m) for m in itertools.count(11, 11))
    for now in itertools.islice(moments, 5):
        _stuck(db, provider, now, max_lookups=3)
    assert provider.asked.count(f"P{silent}") == 3
    assert provider.asked.count(f"P{answered}") == 1
    row = _row(db, silent)
    assert row.status == "sent" and row.lease_until is None


def test_without_the_setting_nothing_is_due(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin, provider="smpp", config=SMPP)
    [mid] = queue(db, settings, admin, people(db, admin, 1))
    _sent(db, settings, [mid], wait=None)
    assert _row(db, mid).lease_until is None
    assert _stuck(db, Asked(lambda _pid: None), utcnow() + 100 * WAIT).marked_unknown == 0


def test_the_worker_sets_the_receipt_deadline_from_the_setting(settings: Settings) -> None:
    nothing: Any = object()  # neither is touched by the constructor
    on = settings.model_copy(update={"sent_reconcile_after_seconds": 90})
    assert Dispatcher(on, nothing, http=nothing)._receipt_wait == timedelta(seconds=90)
    off = settings.model_copy(update={"sent_reconcile_after_seconds": 0})
    assert Dispatcher(off, nothing, http=nothing)._receipt_wait is None


def test_the_worker_looks_up_a_message_whose_report_never_came(
    db: Database, settings: Settings, acme: Org
) -> None:
    """The carrier accepted the message and never called back. An hour later (the worker's
    clock), the worker asks it, and applies what it says."""
    live = settings.model_copy(
        update={
            "sent_reconcile_after_seconds": 3600,
            "reconcile_seconds": 0.05,
            "delivery_poll_seconds": 0.05,
        }
    )
    admin = acme.admin.principal
    channel(db, admin, config={"url": "http://carrier.test"})
    [mid] = queue(db, live, admin, people(db, admin, 1))
    clock = Clock()
    lookups: list[str] = []

    async def carrier(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"id": "SIM-1", "status": "accepted"})
        lookups.append(request.url.path)
        return httpx.Response(200, json={"id": "SIM-1", "status": "delivered"})

    async def main() -> None:
        stop = asyncio.Event()
        async with httpx.AsyncClient(transport=httpx.MockTransport(carrier)) as http:
            worker = Dispatcher(live, db, http=http, worker_id="w", clock=clock)
            task = asyncio.create_task(worker.run(stop))
            try:
                await poll(lambda: statuses(db, [mid]) == {mid: "sent"}, what="the send")
                clock.advance(3600 - 60)
                await poll(lambda: settled(db, clock.now), what="a quiet worker")
                assert lookups == [] and statuses(db, [mid]) == {mid: "sent"}
                clock.advance(120)
                await poll(lambda: statuses(db, [mid]) == {mid: "delivered"}, what="the lookup")
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)

    asyncio.run(main())
    assert lookups == ["/v1/messages/SIM-1"]
