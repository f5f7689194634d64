"""Dispatch throughput: queued messages in the outbox -> worker processes -> the simulator
answering each send after 200 ms, on SQLite and PostgreSQL, with 1 and 2 workers.

Raw baselines, measured in the same run (at its start and again at its end): the simulator
driven by bare clients at the same concurrency, with no database at all: the provider client
the worker uses (``textdesk.httpclient.ProviderClient``), httpx over the sharded pools (what
the worker used before), and aiohttp's session alone (the floor under the provider client).
Each row carries the client's CPU per request (this process's CPU time over the requests).
They are the ceiling this machine allows for "200 ms calls, N in flight"; the outbox's figure
is read against them. Worker rows carry the workers' CPU per message (start-up included).

``BENCH_DISPATCH_BEFORE=/path/to/src`` runs every case twice, first with the workers importing
textdesk from that tree (an older version, for a before/after in one run), then this one.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
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
from textdesk.httpclient import ProviderClient, ShardedTransport
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
BEFORE = os.environ.get("BENCH_DISPATCH_BEFORE", "")
RAW_MESSAGES = 5000
#: The bare clients, by the name their row carries.
RAW_CLIENTS = {
    "provider client (aiohttp), as the worker": "provider",
    "httpx + sharded pools, the worker's before": "httpx",
    "aiohttp session alone": "aiohttp",
}


def _payload(i: int) -> dict[str, str]:
    return {
        "from": "+12025550100",
        "to": phone(i),
        "body": "raw",
        "idempotency_key": f"raw-{i}-{time.time_ns()}",
        "status_callback": "http://127.0.0.1:9/none",
    }


async def _raw(url: str, n: int, concurrency: int, kind: str) -> tuple[float, float]:
    """Requests per second and CPU microseconds per request of one bare client."""
    slots = asyncio.Semaphore(concurrency)
    headers = {"Authorization": "Bearer b"}
    if kind == "provider":
        provider = ProviderClient(concurrency, 30)

        async def call(i: int) -> None:
            r = await provider.post(f"{url}/v1/messages", headers=headers, json=_payload(i))
            assert r.status_code == 200, r.status_code

        close = provider.aclose
    elif kind == "httpx":
        client = httpx.AsyncClient(transport=ShardedTransport(concurrency), timeout=30)

        async def call(i: int) -> None:
            r = await client.post(f"{url}/v1/messages", headers=headers, json=_payload(i))
            r.raise_for_status()

        close = client.aclose
    else:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

        async def call(i: int) -> None:
            async with session.post(f"{url}/v1/messages", headers=headers, json=_payload(i)) as r:
                await r.read()
                assert r.status == 200, r.status

        close = session.close

    async def one(i: int) -> None:
        async with slots:
            await call(i)

    await asyncio.gather(*(one(i) for i in range(min(n, concurrency))))  # connections opened
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await close()
    return n / elapsed, cpu / n * 1e6


def _raw_rows(url: str, label: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name, kind in RAW_CLIENTS.items():
        # On the worker's own event loop (uvloop where installed), so the figures compare.
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            rate, cpu_us = runner.run(_raw(url, RAW_MESSAGES, CONCURRENCY, kind))
        rows.append(
            {
                "case": f"{label}: {name} -> simulator, {CONCURRENCY} in flight",
                "engine": "-",
                "workers": "-",
                "messages": RAW_MESSAGES,
                "per_second": round(rate),
                "cpu_us_per_message": round(cpu_us),
                "load": loadavg(),
            }
        )
        print(rows[-1], flush=True)
    return rows


def _cpu_seconds(pid: int) -> float:
    """A live process's user + system CPU time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        results += _raw_rows(sim_url, "raw")
        variants = [("before", BEFORE), ("", "")] if BEFORE else [("", "")]
        for case, (variant, source) in [(c, v) for c in CASES for v in variants]:
            engine, workers_s = case.split(":")
            workers = int(workers_s)
            with database(engine, workdir) as url:
                seed_outbox(url, messages, provider_url=sim_url)
                wenv = {**env, "TEXTDESK_DATABASE_URL": url}
                if source:
                    wenv["PYTHONPATH"] = os.pathsep.join(
                        p for p in (source, os.environ.get("PYTHONPATH", "")) if p
                    )
                procs = [
                    start(["-m", "textdesk", "worker"], wenv, workdir / "workers.log")
                    for _ in range(workers)
                ]
                cpu = 0.0
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
                    cpu = sum(_cpu_seconds(p.pid) for p in procs if p.poll() is None)
                finally:
                    stop(*procs)
                    poll.dispose()
                if first is None or last is None:
                    raise RuntimeError(f"dispatch did not finish: {counts}")
                # Rate between the first and the last answer: worker start-up excluded.
                rate = (last[1] - first[1]) / max(1e-6, last[0] - first[0])
                label = f"outbox -> simulator ({LATENCY_MS} ms)"
                results.append(
                    {
                        "case": f"{variant}: {label}" if variant else label,
                        "engine": engine,
                        "workers": workers,
                        "messages": messages,
                        "per_second": round(rate),
                        "cpu_us_per_message": round(cpu / messages * 1e6),
                        "load": loadavg(),
                    }
                )
                print(results[-1], flush=True)
        # Again at the end: the machine is shared, and its load moves during a run.
        results += _raw_rows(sim_url, "raw again, end of run")
    finally:
        stop(sim)
    return results
