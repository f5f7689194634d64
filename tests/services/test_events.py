"""The live event bus: delivered after commit only, never for a rollback, fanned out per
organization, and a slow subscriber neither blocks publishers nor grows without bound."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from textdesk.services import events
from textdesk.services.events import Event, Subscription
from textdesk.store.db import Database, make_engine
from textdesk.store.tables import organizations, utcnow


async def _next(sub: Subscription, timeout: float = 60.0) -> Event:
    """The next event; the timeout is a safety net for a hung test, never a measurement."""
    return await asyncio.wait_for(sub.__anext__(), timeout)


async def _nothing(sub: Subscription, wait: float = 0.2) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sub.__anext__(), wait)


def _org(db: Database, slug: str) -> int:
    with db.write() as conn:
        return int(
            conn.execute(
                organizations.insert()
                .values(name=slug, slug=slug, settings={}, created_at=utcnow())
                .returning(organizations.c.id)
            ).scalar_one()
        )


def test_delivered_after_commit_only(db: Database) -> None:
    org = _org(db, "one")

    async def run() -> None:
        sub = events.subscribe(org)
        try:
            with db.write() as conn:
                events.publish(conn, org, "message.new", {"message_id": 1})
                await asyncio.sleep(0.05)
                assert not sub._items, "an event was delivered before its commit"
            ev = await _next(sub)
            assert (ev.kind, ev.data, ev.org_id) == ("message.new", {"message_id": 1}, org)
        finally:
            sub.close()

    asyncio.run(run())


def test_never_delivered_for_a_rollback(db: Database) -> None:
    org = _org(db, "one")

    async def run() -> None:
        sub = events.subscribe(org)
        try:
            with pytest.raises(RuntimeError), db.write() as conn:
                events.publish(conn, org, "message.new", {"message_id": 1})
                raise RuntimeError("boom")
            # A savepoint rolled back drops only what was published inside it.
            with db.write() as conn:
                events.publish(conn, org, "kept", {"n": 1})
                with pytest.raises(RuntimeError), conn.begin_nested():
                    events.publish(conn, org, "dropped", {"n": 2})
                    raise RuntimeError("inner")
                with conn.begin_nested():
                    events.publish(conn, org, "kept", {"n": 3})
            assert (await _next(sub)).data == {"n": 1}
            assert (await _next(sub)).data == {"n": 3}
            await _nothing(sub)
            # The next transaction on a reused pooled connection starts clean.
            with db.write() as conn:
                events.publish(conn, org, "after", {"n": 4})
            assert (await _next(sub)).kind == "after"
        finally:
            sub.close()

    asyncio.run(run())


def test_fan_out_to_two_subscribers_of_the_org_only(db: Database) -> None:
    org, other = _org(db, "one"), _org(db, "two")

    async def run() -> None:
        a, b, outsider = events.subscribe(org), events.subscribe(org), events.subscribe(other)
        try:
            with db.write() as conn:
                events.publish(conn, org, "conversation.updated", {"conversation_id": 7})
            assert (await _next(a)).data == {"conversation_id": 7}
            assert (await _next(b)).data == {"conversation_id": 7}
            await _nothing(outsider)
        finally:
            for s in (a, b, outsider):
                s.close()
        assert events.subscriber_count(org) == 0

    asyncio.run(run())


def test_publisher_in_another_thread(db: Database) -> None:
    org = _org(db, "one")

    async def run() -> None:
        sub = events.subscribe(org)
        try:

            def write() -> None:
                with db.write() as conn:
                    events.publish(conn, org, "message.status", {"message_ids": [1, 2]})

            await asyncio.to_thread(write)
            assert (await _next(sub)).data == {"message_ids": [1, 2]}
        finally:
            sub.close()

    asyncio.run(run())


def test_slow_subscriber_does_not_block_and_gets_a_resync(db: Database) -> None:
    org = _org(db, "one")

    async def run() -> None:
        slow = Subscription(org, maxsize=5)
        fast = events.subscribe(org)
        try:
            # 50 commits while the slow one reads nothing: publishers never wait on it.
            for n in range(50):
                with db.write() as conn:
                    events.publish(conn, org, "message.new", {"n": n})
            assert len(slow._items) == 5
            first = await _next(slow)
            assert first.kind == events.RESYNC
            rest = [(await _next(slow)).data["n"] for _ in range(5)]
            assert rest == [45, 46, 47, 48, 49]  # the newest survive, the oldest were dropped
            got = [(await _next(fast)).data["n"] for _ in range(50)]
            assert got == list(range(50))
        finally:
            slow.close()
            fast.close()

    asyncio.run(run())


def test_large_id_lists_are_split_under_the_notify_limit(db: Database) -> None:
    org = _org(db, "one")
    ids = list(range(1_000_000, 1_003_000))

    async def run() -> None:
        sub = events.subscribe(org)
        try:
            with db.write() as conn:
                events.publish(conn, org, "message.status", {"message_ids": ids, "org": org})
            seen: list[int] = []
            while len(seen) < len(ids):
                ev = await _next(sub)
                assert len(json.dumps(ev.data)) <= events.MAX_PAYLOAD_BYTES
                seen += ev.data["message_ids"]
            assert seen == ids
        finally:
            sub.close()

    asyncio.run(run())


def _listening(db_url: str) -> tuple[list[str], threading.Event, threading.Thread]:
    """A LISTEN connection in a thread (like another process): the payloads it hears, the event
    that stops it, and the thread; it is listening when this returns."""
    heard: list[str] = []
    ready = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        import psycopg

        dsn = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"LISTEN {events.CHANNEL}")
            ready.set()
            while not stop.is_set():
                for note in conn.notifies(timeout=0.2):
                    heard.append(note.payload)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(60)
    return heard, stop, thread


def _heard_before_a_marker(db_url: str, heard: list[str]) -> list[str]:
    """What the listener heard before a marker notified after it: PostgreSQL delivers
    notifications in commit order, so everything committed earlier has arrived by then (no
    sleep, however slow the machine)."""
    marker = f"marker-{uuid.uuid4().hex}"
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.select(sa.func.pg_notify(events.CHANNEL, marker)))
    engine.dispose()
    deadline = time.monotonic() + 60  # a safety net for a hung listener
    while marker not in heard:
        assert time.monotonic() < deadline, "the marker was not heard"
        time.sleep(0.01)
    return heard[: heard.index(marker)]


def test_other_processes_hear_it_through_postgresql(db: Database, db_url: str) -> None:
    """A second process is simulated by a listener that does not skip our own origin."""
    if db.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    org = _org(db, "one")
    heard, stop, thread = _listening(db_url)
    with pytest.raises(RuntimeError), db.write() as conn:
        events.publish(conn, org, "rolled.back", {"n": 0})
        raise RuntimeError("boom")
    with db.write() as conn:
        events.publish(conn, org, "message.new", {"message_id": 5})
    heard = _heard_before_a_marker(db_url, heard)
    stop.set()
    thread.join(5)
    assert len(heard) == 1, heard
    raw = json.loads(heard[0])
    assert raw["e"] == [[org, "message.new", {"message_id": 5}]]
    # Our own process skips its own notifications; another process's are delivered.
    assert events.parse_notification(heard[0]) == []
    foreign = json.dumps({**raw, "o": "another-process"})

    async def run() -> None:
        sub = events.subscribe(org)
        try:
            listener = events.listener_for(db_url)
            assert listener is not None
            listener.start(wait=60)
            try:
                engine = make_engine(db_url)
                with engine.begin() as conn:
                    conn.execute(sa.select(sa.func.pg_notify(events.CHANNEL, foreign)))
                engine.dispose()
                ev = await _next(sub)
                assert (ev.kind, ev.data) == ("message.new", {"message_id": 5})
            finally:
                listener.stop()
        finally:
            sub.close()

    asyncio.run(run())


def test_one_notification_carries_many_events_of_a_transaction(db: Database, db_url: str) -> None:
    """A transaction that publishes many events sends a few packed notifications, in order, each
    under PostgreSQL's limit; another process unpacks every event."""
    if db.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    org = _org(db, "one")
    heard, stop, thread = _listening(db_url)
    with db.write() as conn:
        for n in range(300):
            events.publish(conn, org, "message.new", {"message_id": n, "conversation_id": n})
        with pytest.raises(RuntimeError), conn.begin_nested():
            events.publish(conn, org, "rolled.back", {"n": 0})
            raise RuntimeError("boom")
    heard = _heard_before_a_marker(db_url, heard)
    stop.set()
    thread.join(5)
    assert 1 < len(heard) < 20, len(heard)
    assert all(len(p.encode()) < 8000 for p in heard)
    got = [
        ev
        for payload in heard
        for ev in events.parse_notification(payload.replace(events._ORIGIN, "elsewhere"))
    ]
    assert [ev.data["message_id"] for ev in got] == list(range(300))
    assert {(ev.kind, ev.org_id) for ev in got} == {("message.new", org)}


def test_the_single_event_payload_of_earlier_versions_is_still_read() -> None:
    old = json.dumps({"o": "elsewhere", "org": 3, "k": "message.new", "d": {"message_id": 9}})
    assert events.parse_notification(old) == [events.Event("message.new", {"message_id": 9}, 3)]
    assert events.parse_notification("not json") == []
