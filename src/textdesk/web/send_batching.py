"""Group commit for the send screen: the send actions that arrive while a transaction is being
written wait for the next one, which carries all of them (``p2p.send_many``).

Every action is still one person's key press for one contact, answered on its own (its message,
or the refusal with its reason), and only after the transaction holding it has committed. What
they share is the database's work: one locked read, one insert of messages, one commit and one
notification for the lot, where a transaction per send spent most of its time in round trips and
commits (PostgreSQL serializes the commits of notifying transactions)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from textdesk.services import p2p
from textdesk.settings import Settings
from textdesk.store.db import Database

log = logging.getLogger(__name__)

#: Send actions carried by one transaction at most.
MAX_BATCH = 200
#: Transactions in flight at once on PostgreSQL (while one waits on the database, the next is
#: being prepared); SQLite has one writer, so one.
CONCURRENT_BATCHES = 2

_Item = tuple[p2p.SendRequest, "asyncio.Future[p2p.Sent]"]


class SendBatcher:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Item] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def send(self, request: p2p.SendRequest) -> p2p.Sent:
        """The outcome of one send action; raises its refusal."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # First use, or a new event loop (test clients run one per session).
            self._loop = loop
            self._queue = asyncio.Queue()
            self._slots = asyncio.Semaphore(1 if self._db.is_sqlite else CONCURRENT_BATCHES)
            self._task = None
            self._running = set()
        assert self._queue is not None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[p2p.Sent] = loop.create_future()
        await self._queue.put((request, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None and self._slots is not None
        queue, slots = self._queue, self._slots
        while True:
            batch = [await queue.get()]
            await slots.acquire()
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            task = asyncio.create_task(self._apply(batch, slots))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _apply(self, batch: list[_Item], slots: asyncio.Semaphore) -> None:
        try:
            results = await asyncio.to_thread(
                p2p.send_many, self._db, self._settings, [request for request, _f in batch]
            )
        except Exception as exc:  # every waiting request learns it failed (and answers 5xx)
            log.exception("%d send actions failed together", len(batch))
            for _request, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            slots.release()
        for (_request, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def aclose(self) -> None:
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._task
