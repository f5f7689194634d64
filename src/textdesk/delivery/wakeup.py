"""Wake workers when there is new work, instead of only polling.

In one process (SQLite, or the embedded worker) the service that queues a message calls
``notify()`` after its commit. Across processes on PostgreSQL the same transaction runs
``pg_notify`` (delivered on commit) and each worker's ``PgListener`` thread turns it into a local
``notify()``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import suppress

import psycopg
from sqlalchemy.engine import Connection

CHANNEL = "textdesk_outbox"
log = logging.getLogger(__name__)

_lock = threading.Lock()
_subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []


def subscribe(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    with _lock:
        _subscribers.append((loop, event))


def unsubscribe(event: asyncio.Event) -> None:
    with _lock:
        _subscribers[:] = [(lp, ev) for lp, ev in _subscribers if ev is not event]


def notify() -> None:
    """Wake every worker of this process. Safe from any thread."""
    with _lock:
        targets = list(_subscribers)
    for loop, event in targets:
        with suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(event.set)


def notify_in_transaction(conn: Connection) -> None:
    """On PostgreSQL, tell other processes at commit; elsewhere a no-op (call ``notify()``)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_notify('{CHANNEL}', '')")


class PgListener:
    """A thread that LISTENs on PostgreSQL and forwards notifications to ``notify()``."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            notify()
            except psycopg.Error as exc:
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
                self._stop.wait(2.0)
