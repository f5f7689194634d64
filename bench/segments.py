"""Segment counts over a large contact table: ``services.segments.count_matching`` end to end
(parse, type check against the org's custom fields, compile, run) for three-condition queries,
p50/p95 over 30 runs after two warm-ups.

Raw baseline, measured in the same run on the same table: ``SELECT count(*) FROM contacts WHERE
org_id = ...`` (the floor any filtered count over the organization starts from).

Data: one organization of 1,000,000 contacts on each engine (PostgreSQL loaded with COPY, in
about 15 s here; SQLite with executemany, about 50 s, its FTS5 triggers included), then VACUUM
ANALYZE (PostgreSQL) or ANALYZE (SQLite): the state autovacuum leaves a table in at rest.
~10 % tagged vip, 5 % donor; states spread evenly over 50; 3 % opted out; a date custom field
``last_order`` on 70 % of contacts, spread over the last two years.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from bench.common import database
from textdesk.services import accounts, segments
from textdesk.store.db import Database, make_engine
from textdesk.store.tables import contacts, custom_fields, utcnow

RUNS = 30
STATES = tuple(
    [
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
    ]
)
QUERIES = (
    'tag:vip AND state = "TX" AND NOT opted_out',
    "tag:vip AND fields.last_order < -30d AND NOT opted_out",
    'state = "CA" AND fields.last_order > -90d AND NOT tag:donor',
)


def _rows(n: int, org_id: int, now: datetime) -> Iterator[tuple[object, ...]]:
    rng = random.Random(42)
    for i in range(n):
        tags = []
        if rng.random() < 0.10:
            tags.append("vip")
        if rng.random() < 0.05:
            tags.append("donor")
        fields = {}
        if rng.random() < 0.70:
            fields["last_order"] = (now - timedelta(days=rng.randrange(730))).date().isoformat()
        yield (
            org_id,
            f"+1{201 + i // 10_000_000}{i % 10_000_000:07d}",
            f"First{i % 997}",
            f"Last{i % 1009}",
            STATES[rng.randrange(50)],
            json.dumps(fields),
            json.dumps(sorted(tags)),
            rng.random() < 0.03,
            now - timedelta(minutes=i),
            now,
        )


COLUMNS = (
    "org_id",
    "phone_e164",
    "first_name",
    "last_name",
    "state",
    "fields",
    "tags",
    "opted_out",
    "created_at",
    "updated_at",
)


def _setup(url: str) -> tuple[Database, int]:
    db = Database(make_engine(url))
    org = accounts.create_organization(db, "Segments bench")
    with db.write() as conn:
        conn.execute(
            custom_fields.insert().values(
                org_id=org.id,
                key="last_order",
                label="Last order",
                type="date",
                created_at=utcnow(),
            )
        )
    return db, org.id


def _load_pg(db: Database, org_id: int, n: int) -> float:
    t0 = time.perf_counter()
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY contacts ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in _rows(n, org_id, utcnow()):
                copy.write_row(row)
        raw.commit()
    finally:
        raw.close()
    loaded = time.perf_counter() - t0
    # What autovacuum does to a table at rest: statistics, hint bits and the visibility map
    # (without the last, even the raw count could not use an index-only scan).
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE) contacts")
    return loaded


def _load_sqlite(db: Database, org_id: int, n: int) -> float:
    t0 = time.perf_counter()
    now = utcnow()
    batch: list[dict[str, object]] = []
    with db.write() as conn:
        for row in _rows(n, org_id, now):
            values = dict(zip(COLUMNS, row, strict=True))
            values["fields"] = json.loads(str(values["fields"]))
            values["tags"] = json.loads(str(values["tags"]))
            batch.append(values)
            if len(batch) == 20_000:
                conn.execute(contacts.insert(), batch)
                batch = []
        if batch:
            conn.execute(contacts.insert(), batch)
    loaded = time.perf_counter() - t0
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    return loaded


def _time(fn: object) -> tuple[float, float, int]:
    assert callable(fn)
    result = 0
    for _ in range(2):
        result = fn()
    samples = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * len(samples)) - 1)]
    return statistics.median(samples), p95, int(result)


class _Explain(Executable, ClauseElement):
    """``EXPLAIN (ANALYZE, BUFFERS)`` around a statement, keeping its typed bind parameters."""

    inherit_cache = False

    def __init__(self, statement: sa.Select[Any]) -> None:
        self.statement = statement


@compiles(_Explain)
def _compile_explain(element: _Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (ANALYZE, BUFFERS) " + str(compiler.process(element.statement, **kw))


def explain(url: str, org_id: int, query: str) -> str:
    """EXPLAIN ANALYZE of the count a query compiles to (PostgreSQL), for the report."""
    db = Database(make_engine(url))
    with db.read() as conn:
        where = segments.contact_filter(conn, org_id, query)
        stmt = sa.select(sa.func.count()).select_from(contacts).where(where)
        plan = conn.execute(_Explain(stmt)).scalars().all()
    db.dispose()
    return "\n".join(plan)


def _case(engine: str, url: str, n: int, workdir: Path) -> list[dict[str, object]]:
    db, org_id = _setup(url)
    load = (_load_pg if engine == "postgresql" else _load_sqlite)(db, org_id, n)
    label = "PostgreSQL" if engine == "postgresql" else "SQLite"
    print(f"{label}: loaded {n:,} contacts in {load:.1f} s", flush=True)
    rows: list[dict[str, object]] = []

    def raw() -> int:
        with db.read() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM contacts WHERE org_id = :o"), {"o": org_id}
                ).scalar_one()
            )

    p50, p95, count = _time(raw)
    rows.append(_row("raw: SELECT count(*) WHERE org_id", label, n, count, p50, p95))
    for query in QUERIES:

        def run(query: str = query) -> int:
            with db.read() as conn:
                return segments.count_matching(conn, org_id, query)

        p50, p95, count = _time(run)
        rows.append(_row(f"`{query}`", label, n, count, p50, p95))
        if engine == "postgresql":
            (workdir / f"explain-{QUERIES.index(query)}.txt").write_text(
                explain(url, org_id, query)
            )
    db.dispose()
    return rows


def _row(case: str, engine: str, n: int, count: int, p50: float, p95: float) -> dict[str, object]:
    return {
        "case": case,
        "engine": engine,
        "contacts": f"{n:,}",
        "matches": f"{count:,}",
        "p50 ms": f"{p50:.1f}",
        "p95 ms": f"{p95:.1f}",
    }


def run(
    workdir: Path, *, pg_size: int = 1_000_000, sqlite_size: int = 1_000_000
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with database("postgresql", workdir) as url:
        rows += _case("postgresql", url, pg_size, workdir)
    with database("sqlite", workdir) as url:
        rows += _case("sqlite", url, sqlite_size, workdir)
    return rows


if __name__ == "__main__":
    import argparse
    import tempfile

    from bench.__main__ import table

    parser = argparse.ArgumentParser(prog="python -m bench.segments")
    parser.add_argument("--pg-size", type=int, default=1_000_000)
    parser.add_argument("--sqlite-size", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="textdesk-bench-") as tmp:
        print(table(run(Path(tmp), pg_size=args.pg_size, sqlite_size=args.sqlite_size)))
        for f in sorted(Path(tmp).glob("explain-*.txt")):
            print(f"\n{f.name}\n{f.read_text()}")
