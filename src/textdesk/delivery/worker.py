"""Running the dispatcher and the automations' timers: as their own process (``textdesk
worker``) or inside the web server."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from textdesk.delivery.dispatcher import Dispatcher
from textdesk.runtime import freeze_startup_objects
from textdesk.services.automations import timers
from textdesk.settings import Settings
from textdesk.store.db import Database

log = logging.getLogger(__name__)


async def serve_worker(settings: Settings, db: Database) -> None:
    """Run until SIGTERM or SIGINT, then drain the calls in flight and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The automations' due steps run beside the dispatcher, in every worker process.
    await asyncio.gather(Dispatcher(settings, db).run(stop), timers.run_forever(db, settings, stop))


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop where it is installed (``uvicorn[standard]`` brings it on Linux and
    macOS; the web server already runs on it), else asyncio's own. A worker's event loop runs
    hundreds of provider calls at once, and uvloop's costs less CPU per call (measured with the
    dispatch benchmark: see docs/benchmarks.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_worker(settings: Settings, db: Database) -> None:
    freeze_startup_objects()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve_worker(settings, db))


class EmbeddedWorker:
    """The dispatcher as a task of the web server's event loop (the single-process default)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self._dispatcher = Dispatcher(settings, db)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._timers: asyncio.Task[None] | None = None
        self._settings, self._db = settings, db

    def start(self) -> None:
        self._task = asyncio.create_task(self._dispatcher.run(self._stop))
        self._timers = asyncio.create_task(timers.run_forever(self._db, self._settings, self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._timers is not None:
            await self._timers
