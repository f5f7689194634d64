"""CSV import of a generated 1,000,000-row file with realistic mess, on SQLite and PostgreSQL,
beside a raw baseline (the same number of pre-normalized rows bulk-inserted: executemany on
SQLite, COPY on PostgreSQL) measured in the same run.

Each import runs in a subprocess of its own so its peak memory (ru_maxrss, the process and its
phone-parsing children) is the import's and nothing else's.

    python -m bench imports            (or: python -m bench.imports --rows 200000)
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import database
from textdesk.domain.roles import Role
from textdesk.services import accounts, imports
from textdesk.services.auth import Principal
from textdesk.settings import Environment, Settings
from textdesk.store.db import Database, make_engine

ROWS = 1_000_000
FIRST = ["Ann", "Bob", "José", "Zoë", "Renée", "Li", "Mary Ann", "O'Neil", "François", "Ngozi"]
LAST = ["Lee", "García", "Smith", "Müller", "Nguyen", "Brown, Jr.", "Øster", "Jones", "Kim"]
STATES = ["TX", "NY", "CA", "FL", "ca", "tx", "WA", "IL"]
AREA = [201, 212, 213, 305, 312, 404, 415, 512, 617, 702, 713, 818, 917, 972]


def _local(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalpha())


def generate(path: Path, rows: int, seed: int = 7) -> dict[str, int]:
    """A cp1252 file (Latin-1 names), comma-separated with quoted fields: 5% invalid numbers,
    3% duplicates of earlier rows, phones in six formats."""
    rng = random.Random(seed)
    kept: list[str] = []
    invalid = dupes = 0
    with path.open("w", encoding="cp1252", newline="") as f:
        f.write("Cell Phone,First Name,Last Name,Email,Zip,State,Opted In,Notes\r\n")
        for i in range(rows):
            roll = rng.random()
            if roll < 0.05:
                phone = rng.choice(["555-0199", "12345", "n/a", "", "(000) 000-0000", "+99 1234"])
                invalid += 1
            elif roll < 0.08 and kept:
                phone = rng.choice(kept)
                dupes += 1
            else:
                a, b, c = rng.choice(AREA), rng.randint(200, 999), i % 10_000
                phone = rng.choice(
                    [
                        f"({a}) {b}-{c:04d}",
                        f"{a}-{b}-{c:04d}",
                        f"{a}.{b}.{c:04d}",
                        f"+1 {a} {b} {c:04d}",
                        f"1{a}{b}{c:04d}",
                        f"{a}{b}{c:04d}",
                    ]
                )
                if len(kept) < 50_000:
                    kept.append(phone)
            first, last = rng.choice(FIRST), rng.choice(LAST)
            note = '"said ""call me"", later"' if i % 17 == 0 else ""
            last_cell = f'"{last}"' if "," in last else last
            f.write(
                f"{phone},{first},{last_cell},{_local(first)}.{i}@example.com,"
                f"{rng.randint(10000, 99999)},{rng.choice(STATES)},"
                f"{'yes' if i % 4 else ''},{note}\r\n"
            )
    return {"invalid": invalid, "duplicates": dupes}


def _child(url: str, file: str) -> None:
    """Run one import in this process and print its figures as JSON."""
    db = Database(make_engine(url))
    with db.write() as conn:
        org_id = conn.execute(
            __import__("sqlalchemy").text("SELECT id FROM organizations ORDER BY id LIMIT 1")
        ).scalar_one()
    who = Principal(org_id=org_id, role=Role.OWNER, user_id=None, name="bench")
    settings = Settings(
        env=Environment.TEST,
        data_dir=Path(file).parent,
        database_url=url,
        _env_file=None,  # type: ignore[call-arg]
    )
    started = time.perf_counter()
    with open(file, "rb") as stream:
        view = imports.upload(db, settings, who, filename="bench.csv", stream=stream)
    uploaded = time.perf_counter()
    imports.start_import(db, who, view.id, tags=["bench"])
    worker = "bench"
    assert imports.claim(db, worker) == view.id
    done = imports.run_import(db, view.id, worker)
    ended = time.perf_counter()
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "status": done.status,
                "inserted": done.inserted,
                "rejected": done.rejected,
                "check_seconds": uploaded - started,
                "import_seconds": ended - uploaded,
                "total_seconds": ended - started,
                "rss_mib": rss_self / 1024,
                "child_rss_mib": rss_children / 1024,
            }
        )
    )


def _baseline(url: str, rows: int) -> float:
    """Raw bulk insert of ``rows`` pre-normalized contacts: the floor an import could reach."""
    import sqlalchemy as sa

    from textdesk.store.tables import contacts, utcnow

    db = Database(make_engine(url))
    org = accounts.create_organization(db, f"Baseline {time.time_ns()}")
    now = utcnow()
    data = [
        {
            "org_id": org.id,
            "phone_e164": f"+1201{i:07d}",
            "first_name": "Ann",
            "last_name": "Lee",
            "email": f"ann.{i}@example.com",
            "zip": "75001",
            "state": "TX",
            "fields": {},
            "tags": ["bench"],
            "created_at": now,
            "updated_at": now,
        }
        for i in range(rows)
    ]
    started = time.perf_counter()
    if db.is_sqlite:
        for i in range(0, rows, 5000):
            with db.write() as conn:
                conn.execute(contacts.insert(), data[i : i + 5000])
    else:
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            cols = "org_id, phone_e164, first_name, last_name, email, zip, state, fields, tags, "
            cols += "created_at, updated_at"
            with cur.copy(f"COPY contacts ({cols}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for d in data:
                    copy.write_row(
                        (
                            d["org_id"], d["phone_e164"], d["first_name"], d["last_name"],
                            d["email"], d["zip"], d["state"], "{}", '["bench"]', now, now,
                        )
                    )  # fmt: skip
            raw.commit()
        finally:
            raw.close()
    seconds = time.perf_counter() - started
    with db.read() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).select_from(contacts).where(contacts.c.org_id == org.id)
            ).scalar_one()
            == rows
        )
    db.dispose()
    return seconds


def run(workdir: Path, rows: int = ROWS) -> list[dict[str, Any]]:
    file = workdir / "contacts-1m.csv"
    t = time.perf_counter()
    mess = generate(file, rows)
    gen_seconds = time.perf_counter() - t
    size_mb = file.stat().st_size / 1e6
    results: list[dict[str, Any]] = []
    for engine in ("sqlite", "postgresql"):
        with database(engine, workdir) as url:
            db = Database(make_engine(url))
            accounts.create_organization(db, "Bench")
            db.dispose()
            copy = workdir / f"upload-{engine}.csv"
            os.link(file, copy)
            out = subprocess.run(
                [sys.executable, "-m", "bench.imports", "--child", url, str(copy)],
                check=True,
                capture_output=True,
                text=True,
            )
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            baseline = _baseline(url, rows)
            results.append(
                {
                    "engine": engine,
                    "rows": f"{rows:,} ({size_mb:.0f} MB)",
                    "mess": f"{mess['invalid']:,} invalid, {mess['duplicates']:,} duplicates",
                    "new contacts": f"{figures['inserted']:,}",
                    "rejected": f"{figures['rejected']:,}",
                    "file check s": f"{figures['check_seconds']:.1f}",
                    "import s": f"{figures['import_seconds']:.1f}",
                    "total s": f"{figures['total_seconds']:.1f}",
                    "rows/s": f"{rows / figures['total_seconds']:,.0f}",
                    "peak RSS MiB (main / largest child)": (
                        f"{figures['rss_mib']:.0f} / {figures['child_rss_mib']:.0f}"
                    ),
                    "raw baseline s": f"{baseline:.1f}",
                    "generate s": f"{gen_seconds:.1f}",
                }
            )
    return results


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.imports")
    parser.add_argument("--child", nargs=2, metavar=("URL", "FILE"))
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
    else:
        from bench.__main__ import table

        with tempfile.TemporaryDirectory(prefix="textdesk-bench-") as tmp:
            print(table(run(Path(tmp), args.rows)))
