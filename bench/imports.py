"""CSV import of a generated 1,000,000-row file with realistic mess, on SQLite and PostgreSQL,
beside a raw baseline measured in the same run: the same contacts, normalized beforehand,
bulk-inserted (driver executemany on SQLite, COPY on PostgreSQL).

Each import runs in a subprocess of its own so its peak memory (ru_maxrss, the process and its
phone-parsing children) and its CPU time are the import's and nothing else's. The load average
before and after is printed: on a shared machine, compare the import with the baseline of the
same run, not with another day's figures. On PostgreSQL the local server's CPU time during the
import is printed too (every ``postgres`` process, from /proc: it includes anything else the
server did meanwhile, e.g. another run's tests).

    python -m bench imports            (or: python -m bench.imports --rows 200000 --engine sqlite)
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


def _cpu() -> tuple[float, float]:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _server_cpu() -> float | None:
    """CPU seconds (user + system) of the local PostgreSQL server so far: every ``postgres``
    process's own, plus what the postmaster collected from backends that have exited (a
    connection pool's backends come and go). None when no local server is visible."""
    procs: dict[str, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")].startswith("postgres"):
            procs[entry.name] = stat[stat.rindex(")") + 2 :].split()
    if not procs:
        return None
    ticks = 0
    for fields in procs.values():
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        if fields[1] not in procs:  # the postmaster: its exited children's time too
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _peak_rss_kib() -> int:
    """This process's own peak RSS. Not ``ru_maxrss``: Linux carries it across fork + exec, so
    a child started by a big parent (this benchmark holds a million normalized rows) would
    report the parent's peak. ``VmHWM`` belongs to the process image."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(url: str, file: str, processes: int | None) -> None:
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
        _env_file=None,
    )
    cpu_before = _cpu()
    started = time.perf_counter()
    with open(file, "rb") as stream:
        view = imports.upload(db, settings, who, filename="bench.csv", stream=stream)
    uploaded = time.perf_counter()
    imports.start_import(db, who, view.id, tags=["bench"])
    worker = "bench"
    assert imports.claim(db, worker) == view.id
    done = imports.run_import(db, view.id, worker, processes=processes)
    ended = time.perf_counter()
    cpu_after = _cpu()
    rss_self = _peak_rss_kib()
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
                "cpu_seconds": cpu_after[0] - cpu_before[0],
                "child_cpu_seconds": cpu_after[1] - cpu_before[1],
                "rss_mib": rss_self / 1024,
                "child_rss_mib": rss_children / 1024,
            }
        )
    )


def _normalized(file: Path) -> list[tuple[Any, ...]]:
    """The file's contacts as the import ends up writing them (valid, first of each phone),
    computed before the baseline's clock starts: the baseline measures writing only."""
    from textdesk.domain import csvimport

    with file.open("rb") as f:
        info = csvimport.scan(f)
        plan = csvimport.plan_for(info.header, csvimport.auto_mapping(info.header, {}), "US", {})
        out: list[tuple[Any, ...]] = []
        seen: set[str] = set()
        rows = csvimport.iter_rows(f, info.encoding, info.delimiter)
        for line, row in rows:
            item = csvimport.normalize_row(line, row, plan, lambda _t, v, _k: v)
            if isinstance(item, csvimport.RowValues) and item.phone not in seen:
                seen.add(item.phone)
                v = item.values
                out.append(
                    (
                        item.phone,
                        v.get("first_name", ""),
                        v.get("last_name", ""),
                        v.get("email"),
                        v.get("zip"),
                        v.get("state"),
                    )
                )
    return out


def _baseline(url: str, data: list[tuple[Any, ...]]) -> float:
    """Raw bulk insert of the pre-normalized contacts (no reads, no consent ledger, no rejects,
    no Python per row beyond the driver): the floor an import could reach on this schema.
    SQLite: the driver's executemany in 20,000-row transactions with the FTS5 index fed in
    bulk per transaction (what the import does; with the per-row trigger it is ~3x slower);
    PostgreSQL: one COPY into contacts (GIN indexes maintained)."""
    import sqlalchemy as sa

    from textdesk.store.tables import contacts, utcnow

    db = Database(make_engine(url))
    org = accounts.create_organization(db, f"Baseline {time.time_ns()}")
    now = utcnow()
    cols = "org_id, phone_e164, first_name, last_name, email, zip, state, fields, tags, "
    cols += "created_at, updated_at"
    started = time.perf_counter()
    raw = db.engine.raw_connection()
    try:
        if db.is_sqlite:
            conn = raw.driver_connection
            stamp = now.replace(tzinfo=None).isoformat(" ", "microseconds")
            trigger = conn.execute(  # type: ignore[union-attr]
                "SELECT sql FROM sqlite_master WHERE name = 'contacts_fts_ai'"
            ).fetchone()[0]
            for i in range(0, len(data), 20_000):
                conn.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
                before = conn.execute(  # type: ignore[union-attr]
                    "SELECT coalesce(max(id), 0) FROM contacts"
                ).fetchone()[0]
                conn.execute("DROP TRIGGER contacts_fts_ai")  # type: ignore[union-attr]
                conn.executemany(  # type: ignore[union-attr]
                    f"INSERT INTO contacts ({cols}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    [(org.id, *d, "{}", '["bench"]', stamp, stamp) for d in data[i : i + 20_000]],
                )
                conn.execute(  # type: ignore[union-attr]
                    "INSERT INTO contacts_fts(rowid, first_name, last_name, email) "
                    "SELECT id, first_name, last_name, email FROM contacts WHERE id > ?",
                    (before,),
                )
                conn.execute(trigger)  # type: ignore[union-attr]
                conn.execute("COMMIT")  # type: ignore[union-attr]
        else:
            cur = raw.cursor()
            with cur.copy(f"COPY contacts ({cols}) FROM STDIN") as copy:
                for d in data:
                    copy.write_row((org.id, *d, "{}", '["bench"]', now, now))
            raw.commit()
    finally:
        raw.close()
    seconds = time.perf_counter() - started
    with db.read() as conn2:
        assert conn2.execute(
            sa.select(sa.func.count()).select_from(contacts).where(contacts.c.org_id == org.id)
        ).scalar_one() == len(data)
    db.dispose()
    return seconds


def run(
    workdir: Path,
    rows: int = ROWS,
    *,
    engines: tuple[str, ...] = ("sqlite", "postgresql"),
    processes: int | None = None,
) -> list[dict[str, Any]]:
    file = workdir / "contacts-1m.csv"
    t = time.perf_counter()
    mess = generate(file, rows)
    gen_seconds = time.perf_counter() - t
    size_mb = file.stat().st_size / 1e6
    normalized = _normalized(file)
    results: list[dict[str, Any]] = []
    for engine in engines:
        with database(engine, workdir) as url:
            db = Database(make_engine(url))
            accounts.create_organization(db, "Bench")
            db.dispose()
            copy = workdir / f"upload-{engine}.csv"
            os.link(file, copy)
            load_before = os.getloadavg()[0]
            server_before = _server_cpu() if engine == "postgresql" else None
            command = [sys.executable, "-m", "bench.imports", "--child", url, str(copy)]
            if processes is not None:
                command += ["--processes", str(processes)]
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            load_after = os.getloadavg()[0]
            server_after = _server_cpu() if engine == "postgresql" else None
            server = (
                f"{server_after - server_before:.1f}"
                if server_before is not None and server_after is not None
                else "-"
            )
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            baseline = _baseline(url, normalized)
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
                    "CPU s (main / children)": (
                        f"{figures['cpu_seconds']:.1f} / {figures['child_cpu_seconds']:.1f}"
                    ),
                    "server CPU s": server,
                    "peak RSS MiB (main / reader)": (
                        f"{figures['rss_mib']:.0f} / {figures['child_rss_mib']:.0f}"
                    ),
                    "raw baseline s": f"{baseline:.1f}",
                    "load avg (before / after)": f"{load_before:.1f} / {load_after:.1f}",
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
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), action="append")
    parser.add_argument(
        "--processes", type=int, help="phone-parsing processes (default: the import's own choice)"
    )
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.processes)
    else:
        from bench.__main__ import table

        with tempfile.TemporaryDirectory(prefix="textdesk-bench-") as tmp:
            engines = tuple(args.engine or ("sqlite", "postgresql"))
            print(table(run(Path(tmp), args.rows, engines=engines, processes=args.processes)))
