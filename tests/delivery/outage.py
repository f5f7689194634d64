"""Living through a long outage in seconds: the dispatcher runs on a clock the test moves.

Every time the worker compares with the database (claims, pauses, backoffs, leases) comes from
``Dispatcher.clock``. The test moves that clock forward only when the worker has done all there
is to do at the present instant (``settled``), so the steps are in a known order whatever the
machine's speed; real time only bounds how long the test may take.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from textdesk.domain.states import MessageStatus as S
from textdesk.store.db import Database
from textdesk.store.tables import channels, messages, utcnow


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def settled(db: Database, now: datetime) -> bool:
    """Nothing in flight, and nothing the worker could claim at ``now``. One statement, so
    one snapshot: a claim committing between two counts would hide its message from both."""
    open_channels = sa.select(channels.c.id).where(
        channels.c.paused_until.is_not(None), channels.c.paused_until > now
    )
    busy = sa.or_(
        messages.c.status == S.SENDING,
        sa.and_(
            messages.c.status == S.QUEUED,
            messages.c.channel_id.not_in(open_channels),
            sa.or_(messages.c.send_after.is_(None), messages.c.send_after <= now),
        ),
    )
    with db.read() as conn:
        return not conn.execute(sa.select(sa.exists().where(busy))).scalar_one()


async def poll(
    check: Callable[[], bool | Awaitable[bool]], *, what: str, timeout: float = 60.0
) -> None:
    """Wait for ``check`` (a safety deadline, not a timing assumption)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def live_through(
    db: Database, clock: Clock, seconds: float, *, step: float = 15.0, timeout: float = 120.0
) -> None:
    """Move the worker's clock ``seconds`` forward, ``step`` at a time, each step once the
    worker has settled at the present one."""
    end = clock.now + timedelta(seconds=seconds)
    deadline = time.monotonic() + timeout
    while clock.now < end:
        await poll(
            lambda: settled(db, clock.now),
            what=f"the worker to settle at {clock.now:%H:%M:%S}",
            timeout=max(1.0, deadline - time.monotonic()),
        )
        clock.advance(min(step, (end - clock.now).total_seconds()))
    await poll(lambda: settled(db, clock.now), what="the worker to settle")


def message_rows(db: Database, ids: list[int]) -> list[Any]:
    """The messages' rows, in id order."""
    with db.read() as conn:
        return list(
            conn.execute(sa.select(messages).where(messages.c.id.in_(ids)).order_by(messages.c.id))
        )


def channel_row(db: Database, channel_id: int) -> Any:
    with db.read() as conn:
        return conn.execute(sa.select(channels).where(channels.c.id == channel_id)).one()
