"""The dispatcher claims a few messages ahead of a free call slot, and still never has more
than ``delivery_concurrency`` provider calls in flight; stopping sends what it claimed."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.conftest import Org
from tests.delivery.helpers import channel, people, queue, statuses
from textdesk.delivery import dispatcher as dispatcher_module
from textdesk.delivery.dispatcher import Dispatcher
from textdesk.settings import Settings
from textdesk.store.db import Database

CONCURRENCY = 8
AHEAD = int(CONCURRENCY * dispatcher_module.CLAIM_AHEAD_SHARE)


def test_claims_ahead_but_calls_at_most_the_concurrency(
    db: Database, settings: Settings, acme: Org
) -> None:
    assert AHEAD >= 1
    admin = acme.admin.principal
    channel(db, admin, rate=10_000, config={"url": "http://carrier.test"})
    ids = queue(db, settings, admin, people(db, admin, 30))
    live = settings.model_copy(update={"delivery_concurrency": CONCURRENCY, "reconcile_seconds": 0})
    calls = 0
    active = 0
    most_active = 0
    most_claimed = 0
    release = asyncio.Event()
    worker: Dispatcher

    async def carrier(request: httpx.Request) -> httpx.Response:
        nonlocal calls, active, most_active, most_claimed
        calls += 1
        active += 1
        most_active = max(most_active, active)
        most_claimed = max(most_claimed, len(worker._inflight))
        try:
            await release.wait()
        finally:
            active -= 1
        sent = json.loads(request.content)
        return httpx.Response(200, json={"id": f"C-{sent['idempotency_key']}"})

    async def run() -> None:
        nonlocal worker
        stop = asyncio.Event()
        async with httpx.AsyncClient(transport=httpx.MockTransport(carrier)) as http:
            worker = Dispatcher(live, db, http=http, worker_id="w-ahead")
            task = asyncio.create_task(worker.run(stop))
            # Every slot taken, and the claimed-ahead ones waiting (the deadline is a safety
            # net: a loaded machine only makes this take longer).
            deadline = asyncio.get_running_loop().time() + 120
            while not (active == CONCURRENCY and len(worker._inflight) == CONCURRENCY + AHEAD):
                assert asyncio.get_running_loop().time() < deadline, (active, worker._inflight)
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.sleep(0.05)
            release.set()  # the carrier answers; the worker drains and returns
            await asyncio.wait_for(task, 30)

    asyncio.run(run())

    assert most_active == CONCURRENCY, "never more provider calls than the concurrency"
    assert most_claimed == CONCURRENCY + AHEAD, "a few messages claimed ahead of a free slot"
    after = statuses(db, ids)
    assert list(after.values()).count("sent") == calls == CONCURRENCY + AHEAD
    assert "sending" not in after.values(), "stopping sent what was claimed ahead"
