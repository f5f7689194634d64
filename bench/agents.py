"""Simulated agents on the send screen: 500 agents, each sending as fast as the server answers.

Set-up (not timed): an active campaign with ``CONTACTS`` contacts in its pool (all in a zone
where it is early afternoon now, so quiet hours hold nobody back), ``AGENTS`` agent users and
one API key. Phase 1, over HTTP: every agent requests a batch (``POST .../assignments``), 64
at a time; the latency of that call is reported too. Phase 2, timed: wrk with ``AGENTS``
connections; each connection is one agent walking its own assigned contacts, one
``POST .../send`` after another (a connection sends its next request only when the previous
answer arrived, exactly like an agent pressing Enter as fast as the screen allows): the
capacity. In that closed loop the latency is the queue (500 in flight / sends per second), so
phase 3 measures the latency at the target rate: the same 500 connections, each pausing
``PAUSE_MS`` (uniformly random) after every answer, which offers about 1,000 sends/s while the
answers are fast. Each phase sends to its own half of every agent's contacts.

``textdesk serve`` runs without the embedded worker (the send action is measured, not the
delivery: messages stay ``queued``). Raw baseline in the same run: the bare FastAPI endpoint
(``bench/bare_app.py``) with the same connections and payload size.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import database, free_port, run_wrk, start, stop, wait_http
from textdesk.domain.roles import Role
from textdesk.services import accounts, auth
from textdesk.services.auth import Principal
from textdesk.store.db import Database, make_engine
from textdesk.store.tables import (
    campaign_agents,
    campaign_contacts,
    campaigns,
    channels,
    contacts,
    messages,
    users,
    utcnow,
)

AGENTS = int(os.environ.get("BENCH_AGENTS", "500"))
CONTACTS = int(os.environ.get("BENCH_CONTACTS", "200000"))
BATCH = int(os.environ.get("BENCH_BATCH", "200"))
DURATION = os.environ.get("BENCH_DURATION", "15s")
#: The paced phase: each agent waits this long (uniformly at random, ms) after each answer
#: before the next send; with 500 agents that offers about 1,000 sends/s when answers are fast.
PAUSE_MS = (300, 600)
SCRIPT = (
    "Hi {first_name|there}, it's {agent_name} from Bench Co. Can we count on you? "
    "Reply STOP to opt out."
)


def _daytime_zone() -> str:
    hour = utcnow().hour
    offset = (13 - hour + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def seed(url: str) -> tuple[int, str, list[int]]:
    """(campaign id, API key, agent user ids)."""
    db = Database(make_engine(url))
    org = accounts.create_organization(db, f"Bench Co {uuid.uuid4().hex[:4]}")
    now = utcnow()
    zone = _daytime_zone()
    with db.write() as conn:
        conn.execute(
            channels.insert().values(
                org_id=org.id,
                name="bench",
                provider="simulator",
                phone_e164="+12025550100",
                number_type="other",
                rate_per_second=10_000,
                config={"url": "http://127.0.0.1:9"},
                created_at=now,
            )
        )
        owner_id = conn.execute(
            users.insert()
            .values(
                org_id=org.id,
                email=f"owner@{org.slug}.bench",
                name="Owner",
                role="owner",
                password_hash="!",  # noqa: S106 - no login: nobody signs in
                created_at=now,
            )
            .returning(users.c.id)
        ).scalar_one()
        conn.execute(
            users.insert(),
            [
                {
                    "org_id": org.id,
                    "email": f"agent{i}@{org.slug}.bench",
                    "name": f"Agent {i}",
                    "role": "agent",
                    "password_hash": "!",
                    "created_at": now,
                }
                for i in range(AGENTS)
            ],
        )
        agent_ids = list(
            conn.execute(
                sa.select(users.c.id)
                .where(users.c.org_id == org.id, users.c.role == "agent")
                .order_by(users.c.id)
            ).scalars()
        )
        campaign_id = conn.execute(
            campaigns.insert()
            .values(
                org_id=org.id,
                name="Bench drive",
                status="active",
                script=SCRIPT,
                purpose="marketing",
                batch_size=BATCH,
                assignment_timeout_seconds=3600,
                created_at=now,
                updated_at=now,
                started_at=now,
            )
            .returning(campaigns.c.id)
        ).scalar_one()
        conn.execute(
            campaign_agents.insert(),
            [{"campaign_id": campaign_id, "user_id": a, "created_at": now} for a in agent_ids],
        )
        for start_at in range(0, CONTACTS, 10_000):
            chunk = range(start_at, min(CONTACTS, start_at + 10_000))
            conn.execute(
                contacts.insert(),
                [
                    {
                        "org_id": org.id,
                        "phone_e164": f"+1212{2000000 + i:07d}",
                        "first_name": f"Pat{i}",
                        "last_name": "Bench",
                        "state": "NY",
                        "time_zone": zone,
                        "fields": {},
                        "tags": [],
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in chunk
                ],
            )
        conn.execute(
            campaign_contacts.insert().from_select(
                ["org_id", "campaign_id", "contact_id", "status", "created_at"],
                sa.select(
                    contacts.c.org_id,
                    sa.literal(campaign_id),
                    contacts.c.id,
                    sa.literal("pending"),
                    sa.literal(now, type_=campaign_contacts.c.created_at.type),
                )
                .where(contacts.c.org_id == org.id)
                .order_by(contacts.c.id),
            )
        )
    if db.dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    owner = Principal(org_id=org.id, role=Role.OWNER, user_id=owner_id, name="Owner")
    _key, plain = auth.create_api_key(db, owner, name="bench", role=Role.ADMIN)
    db.dispose()
    return campaign_id, plain, agent_ids


async def assign_all(base: str, key: str, campaign_id: int, agent_ids: list[int]) -> dict[str, Any]:
    """Phase 1: every agent takes a batch. Returns latencies and the (agent, contact) pairs."""
    limits = httpx.Limits(max_connections=64)
    latencies: list[float] = []
    lists: dict[int, list[int]] = {}
    sem = asyncio.Semaphore(64)
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:

        async def one(agent_id: int) -> None:
            async with sem:
                t0 = loop.time()
                r = await client.post(
                    f"/api/v1/campaigns/{campaign_id}/assignments",
                    json={"agent_id": agent_id},
                    headers={"Authorization": f"Bearer {key}"},
                )
                latencies.append((loop.time() - t0) * 1000)
                r.raise_for_status()
                lists[agent_id] = [c["contact_id"] for c in r.json()["contacts"]]

        started = loop.time()
        await asyncio.gather(*(one(a) for a in agent_ids))
        elapsed = loop.time() - started
    latencies.sort()
    return {
        "per_second": len(agent_ids) / elapsed,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99) - 1],
        "lists": lists,
        "assigned": sum(len(v) for v in lists.values()),
    }


def _send_lua(
    workdir: Path,
    campaign_id: int,
    key: str,
    lists: dict[int, list[int]],
    *,
    name: str = "sends",
    pause_ms: tuple[int, int] | None = None,
) -> Path:
    """wrk: one connection per agent. wrk's request() is per thread, not per connection, so
    each thread walks the agents in turn; every (agent, contact) pair is sent at most once.
    ``pause_ms``: each connection waits a random time in that range after each answer before
    its next send (wrk's ``delay()``), like a person reading the next contact."""
    data = workdir / f"{name}.txt"
    with data.open("w") as out:
        longest = max(len(v) for v in lists.values())
        for k in range(longest):
            for agent_id, ids in lists.items():
                if k < len(ids):
                    out.write(f"{agent_id} {ids[k]}\n")
    script = workdir / f"{name}.lua"
    pause = (
        f"function delay()\n  return math.random({pause_ms[0]}, {pause_ms[1]})\nend\n"
        if pause_ms
        else ""
    )
    script.write_text(
        pause
        + f"""
local threads = {{}}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
local pairs_ = {{}}
local i = 0
function init(args)
  local n = 0
  for line in io.lines("{data}") do
    if n % {_WRK_THREADS} == tid then pairs_[#pairs_ + 1] = line end
    n = n + 1
  end
end
local headers = {{
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer {key}",
}}
function request()
  i = i + 1
  if i > #pairs_ then i = 1 end  -- past the end: repeats, answered 200 with the first message
  local agent, contact = pairs_[i]:match("^(%d+) (%d+)$")
  local body = '{{"contact_id": ' .. contact .. ', "agent_id": ' .. agent .. '}}'
  return wrk.format("POST", "/api/v1/campaigns/{campaign_id}/send", headers, body)
end
"""
    )
    return script


_WRK_THREADS = 2


def _bare_lua(workdir: Path) -> Path:
    script = workdir / "bare-send.lua"
    script.write_text(
        "wrk.method = 'POST'\n"
        'wrk.body = \'{"contact_id": 123456, "agent_id": 789}\'\n'
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )
    return script


def _wrk(url: str, script: Path, connections: int) -> dict[str, Any]:
    return run_wrk(
        url,
        script,
        threads=_WRK_THREADS,
        connections=connections,
        duration=DURATION,
        request_timeout="10s",
    )


def _count(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        sent = conn.execute(
            sa.select(sa.func.count()).where(campaign_contacts.c.status == "sent")
        ).scalar_one()
        made = conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one()
    engine.dispose()
    return int(sent), int(made)


def run(
    workdir: Path, *, engines: tuple[str, ...] = ("postgresql", "sqlite")
) -> list[dict[str, object]]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: scripts/ensure-wrk.sh (make bench does)")
    results: list[dict[str, object]] = []
    port = free_port()
    bare = start(["-m", "bench.bare_app", str(port)], dict(os.environ), workdir / "bare.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/docs")
        r = _wrk(f"http://127.0.0.1:{port}/bare", _bare_lua(workdir), AGENTS)
        results.append(
            {
                "case": f"raw: bare FastAPI endpoint, {AGENTS} connections",
                "engine": "-",
                "per_second": round(r["rps"]),
                "p50_ms": round(r["p50"], 1),
                "p99_ms": round(r["p99"], 1),
                "non_2xx": r["errors"],
                "messages": "-",
            }
        )
        print(results[-1], flush=True)
    finally:
        stop(bare)
    for engine in engines:
        with database(engine, workdir) as url:
            campaign_id, key, agent_ids = seed(url)
            port = free_port()
            env = {
                **os.environ,
                "TEXTDESK_DATABASE_URL": url,
                "TEXTDESK_PORT": str(port),
                "TEXTDESK_BASE_URL": f"http://127.0.0.1:{port}",
                "TEXTDESK_EMBEDDED_WORKER": "false",
                "TEXTDESK_SIMULATOR_ENABLED": "false",
                "TEXTDESK_LOG_LEVEL": "WARNING",
                "TEXTDESK_WEB_WORKERS": os.environ.get("BENCH_WEB_WORKERS", "1"),
            }
            server = start(["-m", "textdesk", "serve"], env, workdir / f"agents-{engine}.log")
            try:
                base = f"http://127.0.0.1:{port}"
                wait_http(f"{base}/healthz")
                assigned = asyncio.run(assign_all(base, key, campaign_id, agent_ids))
                results.append(
                    {
                        "case": f"{AGENTS} agents take a batch of {BATCH} (64 at a time)",
                        "engine": engine,
                        "per_second": round(assigned["per_second"], 1),
                        "p50_ms": round(assigned["p50"], 1),
                        "p99_ms": round(assigned["p99"], 1),
                        "non_2xx": 0,
                        "messages": f"{assigned['assigned']} assigned",
                    }
                )
                print(results[-1], flush=True)
                # Each agent's contacts: the first half for the full-speed phase, the second
                # for the paced one (no send repeats an earlier one).
                lists = assigned["lists"]
                fast = {a: ids[: len(ids) // 2] for a, ids in lists.items()}
                later = {a: ids[len(ids) // 2 :] for a, ids in lists.items()}
                script = _send_lua(workdir, campaign_id, key, fast)
                r = _wrk(f"{base}/api/v1/campaigns/{campaign_id}/send", script, AGENTS)
                sent_fast = _count(url)
                script = _send_lua(
                    workdir, campaign_id, key, later, name="paced", pause_ms=PAUSE_MS
                )
                paced = _wrk(f"{base}/api/v1/campaigns/{campaign_id}/send", script, AGENTS)
            finally:
                stop(server)
                log = (workdir / f"agents-{engine}.log").read_text()[-3000:]
            sent, made = _count(url)
            results.append(
                {
                    "case": f"{AGENTS} agents send, one contact per request",
                    "engine": engine,
                    "per_second": round(r["rps"]),
                    "p50_ms": round(r["p50"], 1),
                    "p99_ms": round(r["p99"], 1),
                    "non_2xx": r["errors"],
                    "messages": f"{sent_fast[1]} (rows sent: {sent_fast[0]})",
                }
            )
            print(results[-1], r["socket"], flush=True)
            results.append(
                {
                    "case": (
                        f"{AGENTS} agents send, pausing {PAUSE_MS[0]}-{PAUSE_MS[1]} ms "
                        "after each answer"
                    ),
                    "engine": engine,
                    "per_second": round(paced["rps"]),
                    "p50_ms": round(paced["p50"], 1),
                    "p99_ms": round(paced["p99"], 1),
                    "non_2xx": paced["errors"],
                    "messages": f"{made - sent_fast[1]} (rows sent: {sent - sent_fast[0]})",
                }
            )
            print(results[-1], paced["socket"], flush=True)
            if r["errors"] or paced["errors"]:
                print(log)
    return results


if __name__ == "__main__":
    import sys
    import tempfile

    from bench.__main__ import table

    chosen = tuple(sys.argv[1:]) or ("postgresql", "sqlite")
    with tempfile.TemporaryDirectory(prefix="textdesk-bench-") as tmp:
        print(table(run(Path(tmp), engines=chosen)))
