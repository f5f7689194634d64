"""The live event bus: what changed, told to every open tab (SSE) after the change committed.

``publish(conn, org_id, kind, data)`` is called INSIDE the write transaction that made the
change. Nothing is delivered until that transaction commits, and nothing ever is if it rolls
back (a savepoint rolled back drops the events published inside it, too):

- In this process, events wait in the connection's ``info`` and are handed to the local bus when
  the connection is returned to the pool after a successful COMMIT (SQLAlchemy has no
  after-commit hook on a Core connection; the ``commit`` event fires *before* the COMMIT).
- On PostgreSQL the same transaction also runs ``pg_notify('textdesk_events', json)``, which
  PostgreSQL delivers only on commit; every other process's ``PgEventListener`` thread feeds its
  own bus. A process ignores its own notifications (it already delivered them locally). The
  notifications are sent once, just before the COMMIT, with as many of the transaction's events
  packed into each as fit: a transaction that publishes a hundred events (a batch of sends)
  costs one or two ``pg_notify`` calls, not a hundred (PostgreSQL serializes the commits of
  notifying transactions, so each one counts).

Payloads carry ids, not content (NOTIFY's limit is 8000 bytes, and a client must fetch what it
may see anyway); a long id list is split over several events.

Subscribers are per organization. A subscriber that reads slowly never blocks a publisher: its
buffer is bounded, the oldest events are dropped when it is full, and the next thing it reads is
a ``resync`` event telling it to refetch everything it shows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine

CHANNEL = "textdesk_events"
#: PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; stay well below.
MAX_PAYLOAD_BYTES = 7000
#: Events buffered per subscriber before the oldest are dropped (and a resync is sent).
QUEUE_SIZE = 1000
RESYNC = "resync"

log = logging.getLogger(__name__)

#: Identifies this process in NOTIFY payloads, so its own listener skips what it delivered.
_ORIGIN = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
_PENDING = "textdesk_events_pending"
_COMMITTING = "textdesk_events_committing"
_SAVEPOINTS = "textdesk_events_savepoints"


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    org_id: int = 0


@dataclass(eq=False)
class Subscription:
    """One subscriber: an async iterator of events for one organization.

    Register it by creating it (``subscribe``), inside the event loop that will read it; events
    published from any thread reach it without blocking the publisher."""

    org_id: int
    maxsize: int = QUEUE_SIZE
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    _items: deque[Event] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _signalled: bool = False
    _dropped: bool = False
    _closed: bool = False

    def __post_init__(self) -> None:
        _bus.add(self)

    def push(self, ev: Event) -> None:
        """Called by the bus, from any thread; never blocks."""
        with self._lock:
            if self._closed:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self._dropped = True
            self._items.append(ev)
            if self._signalled:
                return
            self._signalled = True
        with suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(self._ready.set)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            with self._lock:
                if self._closed:
                    raise StopAsyncIteration
                if self._dropped:
                    self._dropped = False
                    return Event(RESYNC, {"reason": "events were dropped"}, self.org_id)
                if self._items:
                    return self._items.popleft()
                self._signalled = False
                self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._items.clear()
        _bus.remove(self)
        with suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._ready.set)

    async def aclose(self) -> None:
        self.close()


class _Bus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[int, set[Subscription]] = {}

    def add(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.setdefault(sub.org_id, set()).add(sub)

    def remove(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.org_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.org_id]

    def deliver(self, ev: Event) -> None:
        with self._lock:
            targets = list(self._subs.get(ev.org_id, ()))
        for sub in targets:
            sub.push(ev)

    def subscriber_count(self, org_id: int | None = None) -> int:
        with self._lock:
            if org_id is None:
                return sum(len(s) for s in self._subs.values())
            return len(self._subs.get(org_id, ()))


_bus = _Bus()


def subscribe(org_id: int) -> Subscription:
    """Start receiving the organization's events (call from the event loop that reads them);
    ``close()`` it when done. Usable as ``async for event in subscribe(org_id)``."""
    return Subscription(org_id)


def subscriber_count(org_id: int | None = None) -> int:
    return _bus.subscriber_count(org_id)


def deliver_local(ev: Event) -> None:
    """Hand an event to this process's subscribers now (listeners and after-commit flushes)."""
    _bus.deliver(ev)


# --- publishing ----------------------------------------------------------------------------------


def publish(conn: Connection, org_id: int, kind: str, data: dict[str, Any]) -> None:
    """Publish an event from inside a write transaction; delivered only once it commits."""
    if not conn.in_transaction():
        raise RuntimeError("events.publish must be called inside a transaction")
    parts = _split(data)
    _install(conn.engine)
    pending: list[Event] = conn.info.setdefault(_PENDING, [])
    pending.extend(Event(kind, part, org_id) for part in parts)


def _split(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Cut an event whose list fields make it too large into several with slices of the lists
    (the same slice of every list, so parallel lists stay aligned)."""
    if len(json.dumps(data)) <= MAX_PAYLOAD_BYTES:
        return [data]
    lists = [k for k, v in data.items() if isinstance(v, list)]
    length = max((len(data[k]) for k in lists), default=0)
    if length <= 1:
        raise ValueError(f"event payload over {MAX_PAYLOAD_BYTES} bytes; send ids, not content")
    size = length
    while size > 1:
        size //= 2
        parts = [
            {**data, **{k: data[k][i : i + size] for k in lists}} for i in range(0, length, size)
        ]
        if all(len(json.dumps(p)) <= MAX_PAYLOAD_BYTES for p in parts):
            return parts
    raise ValueError(f"event payload over {MAX_PAYLOAD_BYTES} bytes; send ids, not content")


_installed_lock = threading.Lock()


def install(engine: Engine) -> None:
    """Hook an engine up front (the app does at start; ``publish`` does it lazily otherwise)."""
    _install(engine)


def _install(engine: Engine) -> None:
    """Hook the engine once: buffer on commit, drop on rollback, deliver at check-in."""
    if sa_event.contains(engine, "commit", _on_commit):
        return
    with _installed_lock:
        if sa_event.contains(engine, "commit", _on_commit):
            return
        sa_event.listen(engine, "commit", _on_commit)
        sa_event.listen(engine, "rollback", _on_rollback)
        sa_event.listen(engine, "savepoint", _on_savepoint)
        sa_event.listen(engine, "rollback_savepoint", _on_rollback_savepoint)
        sa_event.listen(engine, "release_savepoint", _on_release_savepoint)
        sa_event.listen(engine, "begin", _on_begin)
        sa_event.listen(engine, "checkin", _on_checkin)
        sa_event.listen(engine, "invalidate", _on_invalidate)


def _on_commit(conn: Connection) -> None:
    # Fires just before the COMMIT: tell the other processes (PostgreSQL delivers the
    # notifications only if the COMMIT succeeds) and park the events for this one; a failed
    # COMMIT is followed by a rollback, which drops them.
    pending = conn.info.pop(_PENDING, None)
    conn.info.pop(_SAVEPOINTS, None)
    if pending:
        if conn.dialect.name == "postgresql":
            _notify(conn, pending)
        conn.info.setdefault(_COMMITTING, []).extend(pending)


def notification_payloads(pending: list[Event]) -> list[str]:
    """The NOTIFY payloads carrying ``pending``, in order, each under the size limit."""
    payloads: list[str] = []
    batch: list[str] = []
    size = 0
    for ev in pending:
        item = json.dumps([ev.org_id, ev.kind, ev.data])
        if batch and size + len(item) + 1 > MAX_PAYLOAD_BYTES - 64:
            payloads.append(_packed(batch))
            batch, size = [], 0
        batch.append(item)
        size += len(item) + 1
    if batch:
        payloads.append(_packed(batch))
    return payloads


def _packed(items: list[str]) -> str:
    return '{"o": ' + json.dumps(_ORIGIN) + ', "e": [' + ", ".join(items) + "]}"


def _notify(conn: Connection, pending: list[Event]) -> None:
    # The commit hook runs inside SQLAlchemy's commit, so it talks to the driver directly (the
    # transaction is still open here; a Core execute would try to start another).
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        for payload in notification_payloads(pending):
            cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
    finally:
        cursor.close()


def _on_rollback(conn: Connection) -> None:
    for key in (_PENDING, _COMMITTING, _SAVEPOINTS):
        conn.info.pop(key, None)


def _on_savepoint(conn: Connection, name: str | None) -> None:
    # Savepoints nest strictly (LIFO), so a stack of marks is enough (the event's name may be
    # None: SQLAlchemy names the savepoint after dispatching it).
    marks: list[int] = conn.info.setdefault(_SAVEPOINTS, [])
    marks.append(len(conn.info.get(_PENDING, ())))


def _on_rollback_savepoint(conn: Connection, name: str, context: Any) -> None:
    marks: list[int] = conn.info.get(_SAVEPOINTS, [])
    mark = marks.pop() if marks else None
    pending = conn.info.get(_PENDING)
    if mark is not None and pending is not None:
        del pending[mark:]


def _on_release_savepoint(conn: Connection, name: str, context: Any) -> None:
    marks: list[int] = conn.info.get(_SAVEPOINTS, [])
    if marks:
        marks.pop()


def _flush(info: dict[Any, Any]) -> None:
    committed = info.pop(_COMMITTING, None)
    for ev in committed or ():
        _bus.deliver(ev)


def _on_begin(conn: Connection) -> None:
    # The connection was kept after a commit and starts another transaction.
    _flush(conn.info)


def _on_checkin(dbapi_conn: Any, record: Any) -> None:
    _flush(record.info)


def _on_invalidate(dbapi_conn: Any, record: Any, exc: BaseException | None) -> None:
    for key in (_PENDING, _COMMITTING, _SAVEPOINTS):
        record.info.pop(key, None)


# --- other processes (PostgreSQL) ---------------------------------------------------------------


def parse_notification(payload: str) -> list[Event]:
    """The events in another process's NOTIFY payload (none: ours, or not events). A payload
    is ``{"o": origin, "e": [[org, kind, data], ...]}``; the single-event form of earlier
    versions (``{"o", "org", "k", "d"}``) is still read, for a rolling upgrade."""
    try:
        raw = json.loads(payload)
        if raw.get("o") == _ORIGIN:
            return []
        if "e" in raw:
            return [Event(str(k), dict(d), int(org)) for org, k, d in raw["e"]]
        return [Event(str(raw["k"]), dict(raw["d"]), int(raw["org"]))]
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring a malformed %s notification", CHANNEL)
        return []


class PgEventListener:
    """One thread per process LISTENing on ``textdesk_events``, fanning out to the local bus."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-events", daemon=True)

    def start(self, *, wait: float = 0) -> None:
        self._thread.start()
        if wait:
            self._listening.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if self._listening.is_set():
                        # Reconnected: whatever was published meanwhile is lost; say so.
                        for org_id in list(_bus._subs):
                            _bus.deliver(Event(RESYNC, {"reason": "reconnected"}, org_id))
                    self._listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            for ev in parse_notification(note.payload):
                                _bus.deliver(ev)
            except psycopg.Error as exc:
                log.warning("events LISTEN connection lost (%s); reconnecting", exc)
                self._stop.wait(2.0)


def listener_for(database_url: str) -> PgEventListener | None:
    """The listener a PostgreSQL installation's web process runs (None on SQLite)."""
    if not database_url.startswith(("postgres://", "postgresql")):
        return None
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    return PgEventListener(dsn)


async def stream(org_id: int) -> AsyncIterator[Event]:
    """``subscribe`` as an async generator that unsubscribes when the consumer stops."""
    sub = subscribe(org_id)
    try:
        async for ev in sub:
            yield ev
    finally:
        sub.close()
