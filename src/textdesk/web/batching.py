"""Group commit for the web's hot writes: requests that arrive while a transaction is being
written wait for the next one, which carries all of them. Each request is answered on its own,
and only after the transaction holding it has committed (so a 200 still means "stored").

Two users: delivery reports (``StatusBatcher``: a webhook's report is applied with every report
that arrived meanwhile) and the send screen's send actions (``SendBatcher``, in
``send_batching.py``: one transaction for the agents who pressed Enter at the same moment)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from textdesk.providers.base import StatusReport
from textdesk.services import messaging
from textdesk.store.db import Database

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    """Hands what was submitted meanwhile (up to ``max_batch``) to ``apply`` in a thread, with
    at most ``concurrent`` batches in flight. ``apply`` returns one result per item, in order;
    an item's result that is an exception is raised to that item's caller alone, and an
    exception from ``apply`` itself to every caller of the batch (who answer 5xx).

    With ``split_on_failure``, a batch whose ``apply`` raised is applied again one item at a
    time (its transaction rolled back, so nothing is applied twice): one item that can't be
    written then fails alone instead of taking every report that arrived with it along."""

    def __init__(
        self,
        apply: Callable[[list[In]], Sequence[Out | Exception]],
        *,
        max_batch: int,
        concurrent: int,
        what: str,
        split_on_failure: bool = False,
    ) -> None:
        self._apply_batch = apply
        self._split = split_on_failure
        self._max_batch = max_batch
        self._concurrent = concurrent
        self._what = what
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # First use, or a new event loop (test clients may run one per session).
            self._loop = loop
            self._queue = asyncio.Queue()
            self._slots = asyncio.Semaphore(self._concurrent)
            self._task = None
            self._running = set()
        assert self._queue is not None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[Out] = loop.create_future()
        await self._queue.put((item, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None and self._slots is not None
        queue, slots = self._queue, self._slots
        while True:
            batch = [await queue.get()]
            await slots.acquire()
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            task = asyncio.create_task(self._apply(batch, slots))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _apply(
        self, batch: list[tuple[In, asyncio.Future[Out]]], slots: asyncio.Semaphore
    ) -> None:
        items = [item for item, _f in batch]
        try:
            results = await asyncio.to_thread(self._apply_batch, items)
        except Exception as exc:
            if self._split and len(batch) > 1:
                log.warning(
                    "%d %s failed together; applying them one by one", len(batch), self._what
                )
                results = await asyncio.to_thread(self._one_by_one, items)
            else:  # every waiting request learns it failed (and answers 5xx)
                log.exception("%d %s failed together", len(batch), self._what)
                for _item, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
        finally:
            slots.release()
        for (_item, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # the request went away; what it asked for is done all the same
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _one_by_one(self, items: list[In]) -> list[Out | Exception]:
        results: list[Out | Exception] = []
        for item in items:
            try:
                [result] = self._apply_batch([item])
            except Exception as exc:  # this item's caller alone answers 5xx
                log.exception("one of %s failed", self._what)
                result = exc
            results.append(result)
        return results

    async def aclose(self) -> None:
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._task


#: Delivery reports in one transaction at most.
MAX_BATCH = 500
#: Batches applied at once on PostgreSQL: while one waits on the database, the next is on its
#: way. SQLite keeps one: its single write lock would make them spin on the busy timeout
#: (measured: p99 from 137 ms to 785 ms with three).
CONCURRENT_BATCHES = 3

_Report = tuple[int, StatusReport, str]


class StatusBatcher(Batcher[_Report, bool]):
    """Delivery reports: ``submit((channel_id, report, actor))`` answers whether the report's
    message was found (an unknown one is parked for later)."""

    def __init__(self, db: Database) -> None:
        super().__init__(
            lambda batch: messaging.apply_statuses(db, batch),
            max_batch=MAX_BATCH,
            concurrent=1 if db.is_sqlite else CONCURRENT_BATCHES,
            what="delivery reports",
            split_on_failure=True,
        )
