"""Small builders for delivery tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from textdesk.services import channels, contacts, messaging
from textdesk.services.auth import Principal
from textdesk.services.channels import NumberType
from textdesk.services.contacts import ContactInput
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import message_events, messages


def channel(
    db: Database,
    admin: Principal,
    *,
    provider: str = "simulator",
    rate: float = 1000,
    phone: str = "+12015550100",
    config: dict[str, Any] | None = None,
) -> int:
    return channels.create_channel(
        db,
        admin,
        name=provider,
        provider=provider,
        phone=phone,
        number_type=NumberType.OTHER,
        rate_per_second=rate,
        config=config,
    ).id


def people(db: Database, admin: Principal, n: int, *, start: int = 0, **fields: Any) -> list[int]:
    ids = []
    with db.write() as conn:
        for i in range(start, start + n):
            ids.append(
                contacts.create_contact_in(
                    conn,
                    admin,
                    ContactInput(phone=f"+1201555{i:04d}", first_name=f"P{i}", **fields),
                ).id
            )
    return ids


def queue(
    db: Database,
    settings: Settings,
    admin: Principal,
    contact_ids: list[int],
    body: str = "Hello",
    **kw: Any,
) -> list[int]:
    out = []
    with db.write() as conn:
        for cid in contact_ids:
            out.append(
                messaging.queue_outbound(
                    conn,
                    settings,
                    org_id=admin.org_id,
                    contact_id=cid,
                    body=body,
                    actor="test",
                    **kw,
                ).message.id
            )
    return out


def statuses(db: Database, ids: list[int] | None = None) -> dict[int, str]:
    with db.read() as conn:
        q = sa.select(messages.c.id, messages.c.status)
        if ids is not None:
            q = q.where(messages.c.id.in_(ids))
        return {r.id: r.status for r in conn.execute(q)}


def trail(db: Database, message_id: int) -> list[tuple[str | None, str, str | None]]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(
                message_events.c.from_status, message_events.c.to_status, message_events.c.reason
            )
            .where(message_events.c.message_id == message_id)
            .order_by(message_events.c.id)
        )
        return [(r.from_status, r.to_status, r.reason) for r in rows]


@contextmanager
def lock_waiters(db: Database) -> Iterator[Callable[[], bool]]:
    """``waiting()`` tells whether another thread's transaction now waits for a lock that this
    test holds, so a race test can stop at the right moment instead of sleeping and hoping.

    PostgreSQL lists a waiting backend in ``pg_stat_activity``. SQLite's waiter sits in the busy
    handler of ``BEGIN IMMEDIATE``, which nothing lists; while the test holds the write lock, a
    ``BEGIN IMMEDIATE`` issued by another thread can only wait, so that statement counts."""
    if db.dialect == "postgresql":

        def pg_waiting() -> bool:
            with db.read() as conn:
                return bool(
                    conn.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        )
                    ).scalar()
                )

        yield pg_waiting
        return
    me = threading.get_ident()
    begun: list[int] = []

    def spy(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("BEGIN IMMEDIATE") and threading.get_ident() != me:
            begun.append(threading.get_ident())

    sa.event.listen(db.engine, "before_cursor_execute", spy)
    try:
        yield lambda: bool(begun)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", spy)


def until(check: Callable[[], bool], *, what: str, timeout: float = 120.0) -> None:
    """Poll ``check``; the timeout is a safety net for a hung test, never a measurement."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.01)
