"""Shared pieces: machine description, throwaway databases, processes, bulk seeding."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from textdesk.services import accounts
from textdesk.store import migrate
from textdesk.store.db import Database, make_engine, normalize_url
from textdesk.store.tables import channels, contacts, messages, utcnow

PG_ADMIN = os.environ.get(
    "TEXTDESK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d}"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def database(engine_name: str, workdir: Path) -> Iterator[str]:
    """A migrated, empty database of this run's own; its URL."""
    if engine_name == "sqlite":
        url = f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:6]}.db'}"
        migrate.upgrade(make_engine(url))
        yield url
        return
    name = f"textdesk_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(normalize_url(PG_ADMIN), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(normalize_url(PG_ADMIN)).set(database=name)
    url_s = url.render_as_string(hide_password=False)
    engine = make_engine(url_s)
    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield url_s
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def seed_outbox(
    url: str, n: int, *, provider_url: str, status: str = "queued", rate: float = 10_000
) -> tuple[int, int]:
    """``n`` contacts with one message each, already past the gate (``queued``) or already
    ``sent`` with provider ids ``B{i}`` (for callback benchmarks). Returns (org_id, channel_id)."""
    db = Database(make_engine(url))
    org = accounts.create_organization(db, f"Bench {uuid.uuid4().hex[:4]}")
    now = utcnow()
    with db.write() as conn:
        channel_id = conn.execute(
            channels.insert()
            .values(
                org_id=org.id,
                name="bench",
                provider="simulator",
                phone_e164="+12025550100",
                number_type="other",
                rate_per_second=rate,
                config={"url": provider_url},
                created_at=now,
            )
            .returning(channels.c.id)
        ).scalar_one()
        conn.execute(
            contacts.insert(),
            [
                {
                    "org_id": org.id,
                    "phone_e164": phone(i),
                    "fields": {},
                    "tags": [],
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(n)
            ],
        )
        ids = (
            conn.execute(
                sa.select(contacts.c.id).where(contacts.c.org_id == org.id).order_by(contacts.c.id)
            )
            .scalars()
            .all()
        )
        rows = []
        for i, cid in enumerate(ids):
            rows.append(
                {
                    "org_id": org.id,
                    "contact_id": cid,
                    "channel_id": channel_id,
                    "direction": "out",
                    "body": "Benchmark message",
                    "status": status,
                    "purpose": "conversational",
                    "encoding": "GSM-7",
                    "segments": 1,
                    "priority": 0,
                    "attempts": 0,
                    "idempotency_key": f"bench-{i}",
                    "created_at": now,
                    "updated_at": now,
                    "provider_message_id": f"B{i}" if status == "sent" else None,
                }
            )
            if len(rows) == 5000:
                conn.execute(messages.insert(), rows)
                rows = []
        if rows:
            conn.execute(messages.insert(), rows)
    db.dispose()
    return org.id, channel_id


_AREAS = ("202", "303", "404", "512", "617", "702", "801", "913", "206", "312")


def phone(i: int) -> str:
    """Distinct fictional numbers whose last four digits avoid the simulator's scripted
    suffixes (04xx-07xx), so every benchmark message takes the plain path."""
    return f"+1{_AREAS[i // 9000 % len(_AREAS)]}555{1000 + i % 9000:04d}"


def count_by_status(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        out = dict(
            conn.execute(
                sa.select(messages.c.status, sa.func.count()).group_by(messages.c.status)
            ).all()
        )
    engine.dispose()
    return {str(k): int(v) for k, v in out.items()}


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def run_wrk(
    url: str,
    script: Path,
    *,
    threads: int,
    connections: int,
    duration: str,
    request_timeout: str | None = None,
    timeout: float = 300,
) -> dict[str, Any]:
    """Run wrk with a Lua script and read its report: requests/s, p50/p99 in ms, non-2xx
    responses and socket errors."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}", "--latency"]
    if request_timeout:
        args += ["--timeout", request_timeout]
    out = subprocess.run(
        [*args, "-s", str(script), url], capture_output=True, text=True, check=True, timeout=timeout
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50": pct("50"),
        "p99": pct("99"),
        "errors": int(non2xx.group(1)) if non2xx else 0,
        "socket": errors.group(1) if errors else "",
    }


def loadavg() -> str:
    """The 1-minute load average now (every figure is recorded with it: the machine is shared)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"
