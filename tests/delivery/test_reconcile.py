"""Reconciling ``unknown`` messages by provider lookup, on both engines: what the provider says
is applied (with where it came from), what it does not know stays ``unknown`` with an event,
lookups are bounded, and nothing is ever sent a second time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel, people, queue, statuses
from tests.providers.fake_http import Answer, fake_api
from tests.providers.simulator.harness import CARRIER, SETTLE, STATUS_URL, Harness, harness
from textdesk.delivery import outbox, reconcile
from textdesk.delivery.dispatcher import Dispatcher
from textdesk.delivery.outbox import Sent
from textdesk.domain.states import MessageStatus as S
from textdesk.httpclient import provider_client
from textdesk.providers.base import OutboundSms, StatusReport, TemporaryFailure
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import message_events, messages, utcnow

AdapterFor = Callable[[int], Awaitable[object]]


def _events(db: Database, message_id: int) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(message_events)
            .where(message_events.c.message_id == message_id)
            .order_by(message_events.c.id)
        )
        return [dict(r._mapping) for r in rows]


def _force_unknown(
    db: Database, ids: list[int], *, pid: str | None = None, age: timedelta = timedelta(minutes=5)
) -> None:
    """What a crash after the provider call leaves behind: ``unknown``, some minutes ago."""
    values: dict[str, Any] = {
        "status": S.UNKNOWN,
        "updated_at": utcnow() - age,
        "lease_until": None,
    }
    if pid is not None:
        values["provider_message_id"] = pid
    with db.write() as conn:
        conn.execute(sa.update(messages).where(messages.c.id.in_(ids)).values(**values))


def _only(adapter: object) -> AdapterFor:
    async def get(_channel_id: int) -> object:
        return adapter

    return get


async def _send_for_real(db: Database, settings: Settings, h: Harness, ids: list[int]) -> None:
    """Claim and send through the simulator, then store the provider ids, as the dispatcher
    does; the test then forces the messages back to ``unknown``."""
    claimed = outbox.claim(db, settings, worker_id="w1", limit=len(ids)).claimed
    assert sorted(c.id for c in claimed) == sorted(ids)
    outcomes = []
    for c in claimed:
        sms = OutboundSms(
            message_id=c.id,
            sender="+12015550100",
            to=c.to,
            body=c.body,
            idempotency_key=c.idempotency_key,
            status_callback_url=STATUS_URL,
        )
        result = await h.provider.send(sms)
        outcomes.append(Sent(c, result.provider_message_id))
    await h.carrier.wait_idle(SETTLE)  # its delivery reports went to the harness, not to us
    outbox.record(db, outcomes, actor="worker:w1")


def test_lookup_settles_unknown_messages_without_resending(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    channel(db, admin, config={"url": CARRIER})
    delivered, undelivered = queue(
        db, settings, admin, people(db, admin, 1, start=200) + people(db, admin, 1, start=601)
    )

    async def run() -> tuple[reconcile.ReconcileResult, reconcile.ReconcileResult, Harness]:
        async with harness() as h:
            await _send_for_real(db, settings, h, [delivered, undelivered])
            _force_unknown(db, [delivered, undelivered])
            first = await reconcile.reconcile_unknown(db, _only(h.provider), actor="worker:w2")
            again = await reconcile.reconcile_unknown(db, _only(h.provider), actor="worker:w2")
            return first, again, h

    first, again, h = asyncio.run(run())

    assert (first.asked, first.resolved, first.not_found, first.failed) == (2, 2, 0, 0)
    assert sorted(first.resolved_ids) == [delivered, undelivered]
    assert again.asked == 0  # nothing unknown is left
    assert statuses(db, [delivered, undelivered]) == {
        delivered: S.DELIVERED,
        undelivered: S.UNDELIVERED,
    }
    with db.read() as conn:
        row = conn.execute(sa.select(messages).where(messages.c.id == undelivered)).one()
    # The carrier's record keeps the code, not its text (its callback carries both).
    assert row.error_code == "simulator:30003"
    tail = [
        (e["from_status"], e["to_status"], e["actor"], e["reason"], e["org_id"])
        for e in _events(db, delivered)[-2:]
    ]
    assert tail == [
        (S.UNKNOWN, S.UNKNOWN, "worker:w2", "reconcile.lookup", acme.org.id),
        (S.UNKNOWN, S.DELIVERED, "provider:simulator:lookup", "delivery_report", acme.org.id),
    ]
    # Never a second send: the carrier got exactly one submit per message.
    stats = h.carrier.stats()
    assert stats["accepted"] == 2 and stats["duplicates_suppressed"] == 0
    assert stats["max_sends_per_key"] == 1
    assert sorted(r.sends for r in h.carrier.messages.values()) == [1, 1]


def test_an_id_the_provider_does_not_know_stays_unknown(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    channel(db, admin, config={"url": CARRIER})
    [mid] = queue(db, settings, admin, people(db, admin, 1, start=200))
    _force_unknown(db, [mid], pid="SM" + "0" * 32)
    now = utcnow()

    async def run() -> list[reconcile.ReconcileResult]:
        async with harness() as h:
            results = []
            # Right away, again at once (too soon), then every 11 minutes until the cap.
            for minutes in (0, 1, 11, 22, 33):
                results.append(
                    await reconcile.reconcile_unknown(
                        db,
                        _only(h.provider),
                        max_lookups=3,
                        actor="worker:w",
                        now=now + timedelta(minutes=minutes),
                    )
                )
            assert h.carrier.stats()["accepted"] == 0  # asked, never sent
            return results

    results = asyncio.run(run())

    assert [(r.asked, r.not_found, r.resolved) for r in results] == [
        (1, 1, 0),
        (0, 0, 0),  # looked up a minute ago
        (1, 1, 0),
        (1, 1, 0),
        (0, 0, 0),  # three lookups: left to the delivery report or a person
    ]
    assert statuses(db, [mid]) == {mid: S.UNKNOWN}
    events = [e for e in _events(db, mid) if e["reason"].startswith("reconcile.")]
    assert [(e["reason"], e["actor"]) for e in events] == [
        ("reconcile.lookup", "worker:w"),
        ("reconcile.not_found", "provider:simulator:lookup"),
    ] * 3
    assert all(e["from_status"] == e["to_status"] == S.UNKNOWN for e in events)
    assert [e["detail"] for e in events if e["reason"] == "reconcile.lookup"] == [
        f"asking simulator about SM{'0' * 32} (lookup {n} of 3)" for n in (1, 2, 3)
    ]
    not_found = [e["detail"] for e in events if e["reason"] == "reconcile.not_found"]
    assert all("simulator does not know SM" in d for d in not_found)
    assert "no further lookups" in not_found[-1] and "no further" not in not_found[0]


class CountingLookup:
    """An adapter whose lookup takes a while and counts how many run at once."""

    def __init__(self, answer: Callable[[str], StatusReport | None] | None = None) -> None:
        self.asked: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._answer = answer or (lambda pid: StatusReport(pid, S.DELIVERED))

    async def lookup(self, provider_message_id: str) -> StatusReport | None:
        self.asked.append(provider_message_id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            return self._answer(provider_message_id)
        finally:
            self.in_flight -= 1


def test_lookups_are_bounded_and_only_for_candidates(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sim = channel(db, admin, config={"url": CARRIER})
    smpp = channel(
        db,
        admin,
        provider="smpp",
        phone="+12015550101",
        config={"host": "127.0.0.1", "port": 2775, "system_id": "x", "password": "y"},
    )
    ids = queue(db, settings, admin, people(db, admin, 29, start=200))
    old, young, no_pid, on_smpp, still_queued = ids[:25], ids[25], ids[26], ids[27], ids[28]
    for mid in old:
        _force_unknown(db, [mid], pid=f"SM-{mid}")
    _force_unknown(db, [young], pid="SM-young", age=timedelta(seconds=5))
    _force_unknown(db, [no_pid])  # the crash came before the provider answered
    _force_unknown(db, [on_smpp], pid="smpp-1")
    with db.write() as conn:  # the sender pick spreads contacts over both numbers: pin them
        conn.execute(sa.update(messages).where(messages.c.id.in_(ids)).values(channel_id=sim))
        conn.execute(sa.update(messages).where(messages.c.id == on_smpp).values(channel_id=smpp))
        conn.execute(
            sa.update(messages)
            .where(messages.c.id == still_queued)
            .values(provider_message_id="SM-queued")
        )
    fake = CountingLookup()

    async def adapter(channel_id: int) -> object:
        assert channel_id == sim, "SMPP offers no lookup: never asked"
        return fake

    async def run() -> list[reconcile.ReconcileResult]:
        return [
            await reconcile.reconcile_unknown(db, adapter, limit=10, concurrency=3)
            for _ in range(4)
        ]

    results = asyncio.run(run())

    assert [r.asked for r in results] == [10, 10, 5, 0]
    assert fake.asked[:10] == [f"SM-{mid}" for mid in old[:10]]  # oldest first
    assert sorted(fake.asked) == sorted(f"SM-{mid}" for mid in old)  # each asked once
    assert fake.most_in_flight == 3
    assert statuses(db, ids) == {
        **dict.fromkeys(old, S.DELIVERED),
        young: S.UNKNOWN,  # its delivery report may still come: not asked yet
        no_pid: S.UNKNOWN,  # nothing to ask about: for the delivery report or a person
        on_smpp: S.UNKNOWN,
        still_queued: S.QUEUED,
    }
    for mid in (young, no_pid, on_smpp):
        assert not [e for e in _events(db, mid) if e["reason"].startswith("reconcile.")]


def test_a_failed_lookup_leaves_it_unknown_and_says_why(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    channel(db, admin, config={"url": CARRIER})
    down, buggy, slow = queue(db, settings, admin, people(db, admin, 3, start=200))
    for mid in (down, buggy, slow):
        _force_unknown(db, [mid], pid=f"SM-{mid}")

    class Broken:
        async def lookup(self, provider_message_id: str) -> StatusReport | None:
            if provider_message_id == f"SM-{down}":
                raise TemporaryFailure("simulator:503", "service unavailable")
            if provider_message_id == f"SM-{buggy}":
                raise KeyError("status")
            await asyncio.sleep(5)
            return None

    async def run() -> tuple[reconcile.ReconcileResult, reconcile.ReconcileResult]:
        first = await reconcile.reconcile_unknown(db, _only(Broken()), timeout=0.2)
        again = await reconcile.reconcile_unknown(db, _only(Broken()), timeout=0.2)
        return first, again

    first, again = asyncio.run(run())

    assert (first.asked, first.failed, first.resolved, again.asked) == (3, 3, 0, 0)
    assert statuses(db, [down, buggy, slow]) == dict.fromkeys([down, buggy, slow], S.UNKNOWN)
    last = {mid: _events(db, mid)[-1] for mid in (down, buggy, slow)}
    assert {mid: (e["reason"], e["provider_code"]) for mid, e in last.items()} == {
        down: ("reconcile.error", "simulator:503"),
        buggy: ("reconcile.error", "simulator:adapter_error"),
        slow: ("reconcile.error", "simulator:timeout"),
    }
    assert last[down]["detail"] == "lookup failed: service unavailable"
    assert last[slow]["detail"] == "lookup failed: no answer within 0.2 s"


def test_the_dispatcher_reconciles_a_twilio_message_on_its_timer(
    db: Database, settings: Settings, acme: Org
) -> None:
    """The whole path: the worker's timer, the adapter built from the channel, Twilio's API
    (a fake one on a loopback port), the status applied; no send, only a GET."""
    sid, token, msg = "AC" + "a1" * 16, "t" * 32, "SM" + "b2" * 16
    admin = acme.admin.principal
    with fake_api() as api:
        channel(
            db,
            admin,
            provider="twilio",
            config={"account_sid": sid, "auth_token": token, "api_base": api.url},
        )
        [mid] = queue(db, settings, admin, people(db, admin, 1, start=200))
        _force_unknown(db, [mid], pid=msg)
        resource = {
            "sid": msg,
            "status": "undelivered",
            "error_code": 30007,
            "error_message": "Carrier violation",
        }
        api.answer(
            "GET",
            f"/2010-04-01/Accounts/{sid}/Messages/{msg}.json",
            Answer(200, json.dumps(resource).encode()),
        )
        live = settings.model_copy(update={"reconcile_seconds": 0.2})

        async def run() -> None:
            stop = asyncio.Event()
            # The worker's own client (as ``textdesk worker`` builds it).
            async with provider_client(8, live.provider_timeout_seconds) as http:
                task = asyncio.create_task(
                    Dispatcher(live, db, http=http, worker_id="w9").run(stop)
                )
                try:
                    deadline = time.monotonic() + 120  # a safety net, not a measurement
                    while statuses(db, [mid])[mid] == S.UNKNOWN:
                        assert time.monotonic() < deadline, "never reconciled"
                        await asyncio.sleep(0.05)
                finally:
                    stop.set()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

        asyncio.run(run())

    assert statuses(db, [mid]) == {mid: S.UNDELIVERED}
    assert [(s.method, s.path) for s in api.seen] == [
        ("GET", f"/2010-04-01/Accounts/{sid}/Messages/{msg}.json")
    ]
    last = _events(db, mid)[-1]
    assert (last["actor"], last["to_status"], last["provider_code"]) == (
        "provider:twilio:lookup",
        S.UNDELIVERED,
        "twilio:30007",
    )
