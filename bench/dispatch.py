"""Dispatch throughput: queued messages in the outbox -> worker processes -> the simulator
answering each send after 200 ms, on SQLite and PostgreSQL, with 1 and 2 workers.

Raw baseline, measured in the same run: the simulator driven by a bare asyncio + httpx client
at the same concurrency, with no database at all. It is the ceiling this machine allows for
"200 ms calls, N in flight"; the outbox's figure is read against it.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench.common import (
    database,
    loadavg,
    phone,
    seed_outbox,
    start,
    stop,
    wait_http,
)
from textdesk.delivery.worker import loop_factory
from textdesk.httpclient import ShardedTransport
from textdesk.store.db import make_engine
from textdesk.store.tables import messages

LATENCY_MS = 200
CONCURRENCY = 256  # per worker process: 200 ms calls need >= 200 in flight for 1,000/s
#: While iterating: ``BENCH_DISPATCH_CASES=postgresql:1,postgresql:2`` runs only those cases,
#: ``BENCH_DISPATCH_MESSAGES=5000`` queues fewer messages per case.
CASES = os.environ.get("BENCH_DISPATCH_CASES", "sqlite:1,sqlite:2,postgresql:1,postgresql:2").split(
    ","
)
MESSAGES = int(os.environ.get("BENCH_DISPATCH_MESSAGES", "20000"))


async def _raw(url: str, n: int, concurrency: int) -> float:
    client = httpx.AsyncClient(transport=ShardedTransport(concurrency), timeout=30)
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            r = await client.post(
                f"{url}/v1/messages",
                headers={"Authorization": "Bearer b"},
                json={
                    "from": "+12025550100",
                    "to": phone(i),
                    "body": "raw",
                    "idempotency_key": f"raw-{i}-{time.time_ns()}",
                    "status_callback": "http://127.0.0.1:9/none",
                },
            )
            r.raise_for_status()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    await client.aclose()
    return n / elapsed


def _count_by_status(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(messages.c.status, sa.func.count()).group_by(messages.c.status)
        ).all()
    return {str(status): int(n) for status, n in rows}


def run(workdir: Path, *, messages: int = MESSAGES) -> list[dict[str, object]]:
    from bench.common import free_port

    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = {
        **os.environ,
        "TEXTDESK_SIMULATOR_LATENCY_MS": str(LATENCY_MS),
        "TEXTDESK_SIMULATOR_LATENCY_JITTER_MS": "0",
        # Delivery reports would compete for the same two cores; dispatch is measured alone.
        "TEXTDESK_SIMULATOR_DLR_DELAY_MS": "600000000",
        "TEXTDESK_SIMULATOR_HANG_MS": "0",
        "TEXTDESK_LOG_LEVEL": "WARNING",
        "TEXTDESK_DELIVERY_CONCURRENCY": str(CONCURRENCY),
        "TEXTDESK_DELIVERY_BATCH_SIZE": "500",
        "TEXTDESK_BASE_URL": "http://127.0.0.1:9",
    }
    results: list[dict[str, object]] = []
    sim = start(
        ["-m", "textdesk.providers.simulator", "--port", str(sim_port)], env, workdir / "sim.log"
    )
    try:
        wait_http(f"{sim_url}/v1/stats")
        # On the worker's own event loop (uvloop where installed), so the two compare.
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            raw = runner.run(_raw(sim_url, 5000, CONCURRENCY))
        results.append(
            {
                "case": f"raw: bare client -> simulator, {CONCURRENCY} in flight",
                "engine": "-",
                "workers": "-",
                "messages": 5000,
                "per_second": round(raw),
                "load": loadavg(),
            }
        )
        for case in CASES:
            engine, workers_s = case.split(":")
            workers = int(workers_s)
            with database(engine, workdir) as url:
                seed_outbox(url, messages, provider_url=sim_url)
                wenv = {**env, "TEXTDESK_DATABASE_URL": url}
                procs = [
                    start(["-m", "textdesk", "worker"], wenv, workdir / "workers.log")
                    for _ in range(workers)
                ]
                # One engine for the whole wait: a new one per look costs PostgreSQL a new
                # backend process 20 times a second, on the cores the workers need.
                poll = make_engine(url, pool_size=1)
                try:
                    first = last = None
                    deadline = time.monotonic() + 300
                    while time.monotonic() < deadline:
                        counts = _count_by_status(poll)
                        done = messages - counts.get("queued", 0) - counts.get("sending", 0)
                        now = time.monotonic()
                        if first is None and done > 0:
                            first = (now, done)
                        if done >= messages:
                            last = (now, done)
                            break
                        time.sleep(0.05)
                finally:
                    stop(*procs)
                    poll.dispose()
                if first is None or last is None:
                    raise RuntimeError(f"dispatch did not finish: {counts}")
                # Rate between the first and the last answer: worker start-up excluded.
                rate = (last[1] - first[1]) / max(1e-6, last[0] - first[0])
                results.append(
                    {
                        "case": f"outbox -> simulator ({LATENCY_MS} ms)",
                        "engine": engine,
                        "workers": workers,
                        "messages": messages,
                        "per_second": round(rate),
                        "load": loadavg(),
                    }
                )
                print(results[-1], flush=True)
        # Again at the end: the machine is shared, and its load moves during a run.
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            raw = runner.run(_raw(sim_url, 5000, CONCURRENCY))
        results.append(
            {
                "case": f"raw again, end of run, {CONCURRENCY} in flight",
                "engine": "-",
                "workers": "-",
                "messages": 5000,
                "per_second": round(raw),
                "load": loadavg(),
            }
        )
    finally:
        stop(sim)
    return results
