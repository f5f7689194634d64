"""While a channel cannot send (its circuit is open, the provider refuses its credentials), its
messages wait without using attempts, and go once it works again: each exactly once.

The worker runs on a clock the test moves (``tests/delivery/outage.py``): ten minutes of
outage take a few seconds. The SMPP outage against the real peer is in
``tests/providers/smpp/test_outage.py``.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.delivery.helpers import channel, people, queue, statuses, trail
from tests.delivery.outage import Clock, channel_row, live_through, message_rows, poll
from tests.web.test_ui import login
from textdesk.delivery import outbox
from textdesk.delivery.dispatcher import Dispatcher
from textdesk.delivery.outbox import Deferred
from textdesk.services import channels as channel_service
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import message_events
from textdesk.web.app import create_app

N = 12
TRIP = 3  # consecutive failures that open the circuit
PAUSE = 60


def _outage_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "circuit_breaker_failures": TRIP,
            "circuit_breaker_pause_seconds": PAUSE,
            "delivery_max_attempts": 3,
            "delivery_concurrency": 4,
            "delivery_poll_seconds": 0.05,
            "reconcile_seconds": 0,
        }
    )


class Carrier:
    """A provider's HTTP API in one function: down (``fail``) until ``up`` is set."""

    def __init__(self, fail: Callable[[httpx.Request], httpx.Response]) -> None:
        self.fail = fail
        self.up = False
        self.accepted: Counter[str] = Counter()  # body text -> accepted sends
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if not self.up:
            return self.fail(request)
        body = _body_text(request)
        self.accepted[body] += 1
        n = sum(self.accepted.values())
        if "twilio" in request.url.host:
            return httpx.Response(201, json={"sid": f"SM{n:032x}", "status": "queued"})
        if "telnyx" in request.url.host:
            return httpx.Response(200, json={"data": {"id": f"tx-{n}"}})
        return httpx.Response(200, json={"id": f"SIM{n}", "status": "accepted", "segments": 1})


def _body_text(request: httpx.Request) -> str:
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return parse_qs(request.content.decode())["Body"][0]
    data = json.loads(request.content)
    return str(data.get("body") or data.get("text"))


def _run(
    settings: Settings,
    db: Database,
    carrier: Carrier,
    clock: Clock,
    scenario: Callable[[Dispatcher], Awaitable[None]],
) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        async with httpx.AsyncClient(transport=httpx.MockTransport(carrier)) as http:
            worker = Dispatcher(settings, db, http=http, worker_id="w-outage", clock=clock)
            task = asyncio.create_task(worker.run(stop))
            try:
                await scenario(worker)
            finally:
                stop.set()
                await asyncio.wait_for(task, 60)

    asyncio.run(main())


def test_an_open_circuit_costs_queued_messages_no_attempts(
    db: Database, settings: Settings, acme: Org
) -> None:
    """Ten minutes of 503s. The first TRIP failures are attempts (nobody knew yet that the
    provider was down) and open the circuit; from then on nothing is an attempt: messages
    claimed before the pause are put back unsent, the probes after each pause fail without
    cost. When the provider answers again, every message goes, each exactly once."""
    live = _outage_settings(settings)
    admin = acme.admin.principal
    ch = channel(db, admin, config={"url": "http://carrier.test"})
    ids = [
        queue(db, live, admin, [cid], body=f"Hello number {n}")[0]
        for n, cid in enumerate(people(db, admin, N))
    ]
    carrier = Carrier(lambda r: httpx.Response(503, json={"code": "20503", "message": "down"}))
    clock = Clock()

    async def scenario(worker: Dispatcher) -> None:
        await live_through(db, clock, 10 * 60)
        during = message_rows(db, ids)
        assert {r.status for r in during} == {"queued"}, "nothing failed during the outage"
        assert sum(r.attempts for r in during) == TRIP, "only the failures before the trip"
        paused = channel_row(db, ch)
        assert paused.paused_until > clock.now and "simulator:20503" in paused.pause_reason
        carrier.up = True
        await live_through(db, clock, 5 * 60)

    _run(live, db, carrier, clock, scenario)

    assert set(statuses(db, ids).values()) == {"sent"}
    assert sorted(carrier.accepted.values()) == [1] * N, "every message accepted exactly once"
    after = message_rows(db, ids)
    assert sum(r.attempts for r in after) == N + TRIP
    assert all(r.error_code is None for r in after), "the success cleared the outage's error"
    resumed = channel_row(db, ch)
    assert resumed.paused_until is None and resumed.pause_reason is None
    with db.read() as conn:
        put_back = conn.execute(
            sa.select(sa.func.count())
            .select_from(message_events)
            .where(message_events.c.reason == "channel_paused")
        ).scalar_one()
    assert put_back >= N - TRIP, "the messages that waited say so in their history"
    assert carrier.calls > N + TRIP, "the channel was probed during the outage"


def _twilio_401(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(401, json={"code": 20003, "message": "Authenticate", "status": 401})


def _telnyx_401(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        401, json={"errors": [{"code": "10009", "title": "Authentication failed"}]}
    )


def _simulator_401(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(401, json={"code": "20003", "message": "bad key"})


TELNYX_KEY = base64.b64encode(bytes(32)).decode()
AUTH_CASES = [
    pytest.param("simulator", {"url": "http://carrier.test"}, _simulator_401, "simulator:20003"),
    pytest.param(
        "twilio",
        {"account_sid": "AC" + "0" * 32, "auth_token": "wrong", "api_base": "http://twilio.test"},
        _twilio_401,
        "twilio:20003",
    ),
    pytest.param(
        "telnyx",
        {
            "api_key": "KEY0123456789ABCDEF_x",
            "public_key": TELNYX_KEY,
            "api_base": "http://telnyx.test",
        },
        _telnyx_401,
        "telnyx:10009",
    ),
]


@pytest.mark.parametrize(("provider", "config", "refuse", "code"), AUTH_CASES)
def test_refused_credentials_pause_the_channel_and_messages_wait(
    db: Database,
    settings: Settings,
    acme: Org,
    provider: str,
    config: dict[str, Any],
    refuse: Callable[[httpx.Request], httpx.Response],
    code: str,
) -> None:
    """The provider answers 401: the channel pauses at once with a reason the home page
    shows, its messages wait (queued, no attempt used, the code on them), and once the
    credentials work again (fixed at the provider) they go."""
    live = _outage_settings(settings)
    admin = acme.admin.principal
    ch = channel(db, admin, provider=provider, config=config)
    ids = [
        queue(db, live, admin, [cid], body=f"Hi {n}")[0]
        for n, cid in enumerate(people(db, admin, 3))
    ]
    carrier = Carrier(refuse)
    clock = Clock()

    async def scenario(worker: Dispatcher) -> None:
        await poll(lambda: channel_row(db, ch).paused_until is not None, what="the pause")
        await live_through(db, clock, 0)
        waiting = message_rows(db, ids)
        assert {r.status for r in waiting} == {"queued"}
        assert [r.attempts for r in waiting] == [0, 0, 0]
        assert {r.error_code for r in waiting} <= {code, "channel_paused"}
        assert code in {r.error_code for r in waiting}
        paused = channel_row(db, ch)
        assert "refused the channel's credentials" in paused.pause_reason
        assert code in paused.pause_reason
        banner = _home_banner(live, db, acme)
        assert "refused the channel's credentials" in banner and code in banner
        # Ten minutes with the credentials still refused: probes, no attempts, nothing lost.
        await live_through(db, clock, 10 * 60)
        assert [r.attempts for r in message_rows(db, ids)] == [0, 0, 0]
        carrier.up = True
        await live_through(db, clock, 5 * 60)

    _run(live, db, carrier, clock, scenario)

    assert set(statuses(db, ids).values()) == {"sent"}
    assert sorted(carrier.accepted.values()) == [1, 1, 1]
    assert [r.attempts for r in message_rows(db, ids)] == [1, 1, 1]
    resumed = channel_row(db, ch)
    assert resumed.paused_until is None and resumed.pause_reason is None


def _home_banner(settings: Settings, db: Database, acme: Org) -> str:
    with TestClient(create_app(settings, db)) as client:
        login(client, acme.admin.user.email)
        page = client.get("/")
    match = re.search(r'<div class="error" data-testid="paused">(.*?)</div>', page.text, re.S)
    assert match, "the home page shows the paused channel"
    return html.unescape(match.group(1))


def test_a_half_open_channel_gives_one_probe_and_stays_paused_meanwhile(
    db: Database, settings: Settings, acme: Org
) -> None:
    """Its pause ran out, its reason is still set: one claim takes ONE message and extends
    the pause, so no other claim (of any worker) sends there until the probe's outcome."""
    admin = acme.admin.principal
    ch = channel(db, admin)
    queue(db, settings, admin, people(db, admin, 5))
    clock = Clock()
    channel_service.pause_channel(db, ch, until=clock.now, reason="down (simulator:20503)")
    first = outbox.claim(db, settings, worker_id="w1", limit=10, now=clock.now)
    assert [c.probe for c in first.claimed] == [True]
    second = outbox.claim(db, settings, worker_id="w2", limit=10, now=clock.now)
    assert second.claimed == [] and set(second.paused) == {ch}
    assert channel_row(db, ch).paused_until > clock.now
    channel_service.resume_channel(db, ch)
    third = outbox.claim(db, settings, worker_id="w2", limit=10, now=clock.now)
    assert len(third.claimed) == 4 and not any(c.probe for c in third.claimed)


def test_a_message_put_back_gets_its_attempt_back(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    [mid] = queue(db, settings, admin, people(db, admin, 1))
    [claimed] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    outbox.record(db, [Deferred(claimed, "smpp:not_bound", "waiting for the channel")], actor="w")
    [row] = message_rows(db, [mid])
    assert row.status == "queued" and row.attempts == 0 and row.error_code == "smpp:not_bound"
    assert trail(db, mid)[-1] == ("sending", "queued", "channel_paused")
