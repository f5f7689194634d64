"""CSV contact imports: upload (checked and described), start (mapping, policy, tags, consent
options), run in the background in batches, resume after a crash, report rejected rows.

How a run stays correct when the process dies at any point:

* Each batch (``BATCH_ROWS`` / ``SQLITE_BATCH_ROWS`` rows) is ONE write transaction: its
  contacts, consent events, rejects, the import's counters and ``processed_rows`` (the
  spreadsheet data rows consumed so far) commit together or not at all. A resumed run skips the
  rows already processed, so it neither redoes nor loses a row. On PostgreSQL two batches are
  written at a time and commit in file order (:class:`_Writer`), so that holds there too.
* Duplicates inside the file are found with a set of the phone numbers seen so far. On resume the
  set is rebuilt by normalizing the processed rows again (deterministic, so the rebuilt set is the
  one the crashed run had).
* The run holds a lease (``lease_until``, ``leased_by``), extended by every batch. A run whose lease
  expired is claimed again by any ``textdesk serve`` (with the embedded worker) or
  ``textdesk worker`` process: see :class:`ImportRunner`.
* Re-running the same file as a new import changes nothing: existing contacts are updated only
  where a value differs, and an opt-in is recorded only when the ledger's latest word for that
  number is not already an opt-in.

Opted-out numbers are never re-subscribed: a row that says "opted in" for a number whose latest
ledger event is an opt-out is rejected (the contact is left as it is), whatever the policy.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import os
import pickle
import threading
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from queue import Empty
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain import csvimport
from textdesk.domain.csvimport import BadFile, Plan, Rejected, RowValues
from textdesk.domain.roles import Role
from textdesk.services import audit, custom_fields, events, exports, import_bulk
from textdesk.services.accounts import get_organization
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.consent import ConsentKind, ConsentSource
from textdesk.services.errors import Conflict, Invalid, NotFound, ServiceError
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import contacts, import_rejects, imports, utcnow

log = logging.getLogger(__name__)

#: Rows per write transaction on PostgreSQL (larger batches measured no faster there: the
#: commits are not where its time goes).
BATCH_ROWS = 20_000
#: Rows per write transaction on SQLite. A batch of random phones dirties most leaf pages of the
#: phone and zip indexes whatever its size, and its commit writes every one of them to the WAL
#: (and, past ``import_bulk.SQLITE_CHECKPOINT_PAGES``, back to the database file): at a million
#: contacts that was ~17,000 pages (~70 MB) per 20,000-row batch. 50,000 rows write about as
#: many pages per batch for 2.5 times the rows (1,000,000 rows: the batches' time 24.8 -> 20.6
#: s). SQLite's write lock is held for the batch: ~1 s at a million contacts, well inside the
#: other writers' busy timeout (10 s).
SQLITE_BATCH_ROWS = 50_000
#: Chunks the reading process may be ahead of the writes: more than a batch (24 chunks: 120,000
#: rows, over two SQLite batches), so it keeps reading while a batch is written (with exactly
#: one batch it waited for each write and the writes for it); bounded, so memory does not grow
#: with the file. The chunks wait pickled (~0.7 MB each), not as objects.
PARSE_AHEAD = 24
#: Rows per chunk handed to a phone-parsing process (and read ahead of the writes).
PARSE_ROWS = 5000
#: Files estimated above this many rows are read and parsed in a process of their own (below
#: it, starting that process costs more than it saves).
PARALLEL_ROWS = 20_000
LEASE_SECONDS = 120
#: PostgreSQL: batches written at the same time, each a transaction of its own on its own
#: connection, committed in file order (:class:`_Writer`). The server's work for a batch
#: (indexes, constraints, the ledger) is most of an import's CPU time and one server process
#: runs it on one core; two batches in flight use the machine's second core.
PG_BATCHES_IN_FLIGHT = 2
#: Python's cyclic garbage collector passes over the young objects every 700 container
#: allocations (by default), over the older ones every 10 young passes, and over the whole heap
#: as survivors pile up. An import allocates millions of containers (CSV rows, row values, the
#: batch's tuples), none in a reference cycle, and keeps a batch of them alive long enough to
#: be promoted, so the collector was over a third of the reading process's CPU time and of the
#: batches' Python time (200,000 rows: reader 4.5 -> 2.7 CPU s, batches 3.1 -> 1.9 CPU s, with
#: this). While an import runs the young threshold is this instead; collections still happen.
GC_YOUNG_THRESHOLD = 100_000
MAX_TAGS = 20
_ATTRS = ("first_name", "last_name", "email", "zip", "state", "time_zone", "external_id")


class Status(StrEnum):
    UPLOADED = "uploaded"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Policy(StrEnum):
    FILL = "fill"  # set only the fields an existing contact has empty
    OVERWRITE = "overwrite"  # the file wins for every value it has
    SKIP = "skip"  # existing contacts are left untouched


@dataclass(frozen=True)
class ImportView:
    id: int
    org_id: int
    filename: str
    size_bytes: int
    status: str
    encoding: str | None
    delimiter: str | None
    header: list[str]
    columns: list[str]
    preview: list[list[str]]
    mapping: dict[str, str]
    policy: str
    tags: list[str]
    options: dict[str, Any]
    total_rows: int | None
    processed_rows: int
    inserted: int
    updated: int
    skipped: int
    rejected: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in (Status.DONE, Status.FAILED, Status.CANCELLED)

    @property
    def percent(self) -> int:
        if self.status == Status.DONE:
            return 100
        if not self.total_rows:
            return 0
        return min(99, self.processed_rows * 100 // self.total_rows)

    @classmethod
    def from_row(cls, row: Any) -> ImportView:
        m = dict(row._mapping)
        options = dict(m["options"] or {})
        header = list(options.pop("header", []))
        preview = list(options.pop("preview", []))
        return cls(
            id=m["id"],
            org_id=m["org_id"],
            filename=m["filename"],
            size_bytes=m["size_bytes"],
            status=m["status"],
            encoding=m["encoding"],
            delimiter=m["delimiter"],
            header=header,
            columns=csvimport.column_keys(header),
            preview=preview,
            mapping=dict(m["mapping"] or {}),
            policy=m["policy"],
            tags=list(m["tags"] or []),
            options=options,
            total_rows=m["total_rows"],
            processed_rows=m["processed_rows"],
            inserted=m["inserted"],
            updated=m["updated"],
            skipped=m["skipped"],
            rejected=m["rejected"],
            error=m["error"],
            created_at=m["created_at"],
            started_at=m["started_at"],
            finished_at=m["finished_at"],
        )


# --- upload, look, start, cancel -----------------------------------------------------------------


def _dir(settings: Settings) -> Path:
    path = Path(settings.data_dir) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def upload(
    db: Database,
    settings: Settings,
    principal: Principal,
    *,
    filename: str,
    stream: IO[bytes],
    request: RequestInfo | None = None,
) -> ImportView:
    """Save an uploaded file, check it from end to end and describe it (nothing is imported
    yet). A file that cannot be imported raises :class:`Invalid` and leaves nothing behind."""
    principal.require(Role.ADMIN)
    name = Path(filename or "upload.csv").name[:255] or "upload.csv"
    path = _dir(settings) / f"{uuid.uuid4().hex}.csv"
    size = 0
    try:
        with path.open("wb") as out:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > settings.import_max_bytes:
                    raise FileTooLarge(
                        f"the file is larger than {settings.import_max_bytes:,} bytes "
                        "(TEXTDESK_IMPORT_MAX_BYTES)",
                        field="file",
                    )
                out.write(chunk)
        with path.open("rb") as f:
            info = csvimport.scan(f)
        with db.write() as conn:
            types = custom_fields.field_types(conn, principal.org_id)
            mapping = csvimport.auto_mapping(info.header, types)
            import_id = conn.execute(
                imports.insert()
                .values(
                    org_id=principal.org_id,
                    created_by=principal.user_id,
                    filename=name,
                    path=str(path),
                    size_bytes=size,
                    status=Status.UPLOADED,
                    encoding=info.encoding,
                    delimiter=info.delimiter,
                    mapping=mapping,
                    options={"header": info.header, "preview": info.preview},
                    total_rows=info.estimated_rows,
                    created_at=utcnow(),
                )
                .returning(imports.c.id)
            ).scalar_one()
            audit.record(
                conn,
                org_id=principal.org_id,
                actor=principal.actor,
                action="import.upload",
                target=f"import:{import_id}",
                request=request,
                detail={"filename": name, "size_bytes": size},
            )
            return get_import(conn, principal.org_id, import_id)
    except BadFile as exc:
        path.unlink(missing_ok=True)
        raise Invalid(f"{name}: {exc}", field="file") from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise


class FileTooLarge(Invalid):
    status = 413
    title = "File too large"


def get_import(conn: Connection, org_id: int, import_id: int) -> ImportView:
    row = conn.execute(
        sa.select(imports).where(imports.c.id == import_id, imports.c.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound(f"import {import_id} not found")
    return ImportView.from_row(row)


def list_imports(conn: Connection, org_id: int, *, limit: int = 50) -> list[ImportView]:
    rows = conn.execute(
        sa.select(imports)
        .where(imports.c.org_id == org_id)
        .order_by(imports.c.id.desc())
        .limit(max(1, min(limit, 200)))
    )
    return [ImportView.from_row(r) for r in rows]


def _tags(tags: list[str]) -> list[str]:
    clean = sorted({t.strip().lower() for t in tags if t.strip()})
    for t in clean:
        if len(t) > 50:
            raise Invalid(f"tag {t[:20]!r}... is longer than 50 characters", field="tags")
    if len(clean) > MAX_TAGS:
        raise Invalid(f"at most {MAX_TAGS} tags per import", field="tags")
    return clean


def start_import(
    db: Database,
    principal: Principal,
    import_id: int,
    *,
    mapping: dict[str, str] | None = None,
    policy: str = Policy.FILL,
    tags: list[str] | None = None,
    all_opted_in: bool = False,
    consent_source: str = "",
    request: RequestInfo | None = None,
) -> ImportView:
    """Queue an uploaded import with its mapping (``{column: attribute}``; omitted = the
    proposed one), policy, tags for every imported contact and consent options:
    ``all_opted_in`` records an opt-in for every row (the list was collected with consent),
    ``consent_source`` is the evidence noted when a row has none."""
    principal.require(Role.ADMIN)
    try:
        policy = Policy(policy)
    except ValueError:
        raise Invalid(
            f"policy must be fill, overwrite or skip, got {policy!r}", field="policy"
        ) from None
    clean_tags = _tags(tags or [])
    with db.write() as conn:
        current = get_import(conn, principal.org_id, import_id)
        if current.status != Status.UPLOADED:
            raise Conflict(f"import {import_id} is {current.status}; it can start only once")
        chosen = dict(current.mapping if mapping is None else mapping)
        types = custom_fields.field_types(conn, principal.org_id)
        region = get_organization(conn, principal.org_id).default_region
        try:
            csvimport.plan_for(current.header, chosen, region, types)
        except BadFile as exc:
            raise Invalid(str(exc), field="mapping") from exc
        options = {
            "header": current.header,
            "preview": current.preview,
            "all_opted_in": bool(all_opted_in),
            "consent_source": consent_source.strip()[:200],
        }
        conn.execute(
            sa.update(imports)
            .where(imports.c.id == import_id)
            .values(
                status=Status.QUEUED,
                mapping={k: v for k, v in chosen.items() if v},
                policy=policy,
                tags=clean_tags,
                options=options,
            )
        )
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="import.start",
            target=f"import:{import_id}",
            request=request,
            detail={"policy": policy.value, "tags": clean_tags},
        )
        events.publish(conn, principal.org_id, "import.progress", {"import_id": import_id})
        return get_import(conn, principal.org_id, import_id)


def cancel_import(
    db: Database, principal: Principal, import_id: int, request: RequestInfo | None = None
) -> ImportView:
    """Stop an import: the batches already committed stay (each is a whole unit)."""
    principal.require(Role.ADMIN)
    with db.write() as conn:
        current = get_import(conn, principal.org_id, import_id)
        if current.finished:
            raise Conflict(f"import {import_id} is already {current.status}")
        conn.execute(
            sa.update(imports)
            .where(imports.c.id == import_id)
            .values(status=Status.CANCELLED, finished_at=utcnow(), lease_until=None)
        )
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="import.cancel",
            target=f"import:{import_id}",
            request=request,
        )
        events.publish(conn, principal.org_id, "import.progress", {"import_id": import_id})
    Path(current_path(db, principal.org_id, import_id)).unlink(missing_ok=True)
    with db.read() as conn:
        return get_import(conn, principal.org_id, import_id)


def current_path(db: Database, org_id: int, import_id: int) -> str:
    with db.read() as conn:
        return str(
            conn.execute(
                sa.select(imports.c.path).where(
                    imports.c.id == import_id, imports.c.org_id == org_id
                )
            ).scalar_one()
        )


REJECT_COLUMNS = ("line", "reason", "raw")


def reject_rows(
    db: Database, principal: Principal, import_id: int, *, batch: int = 2000
) -> Iterator[list[str]]:
    """Every rejected row, by line (streamed in pages; the first page is read eagerly by the
    caller to fail before a response starts)."""
    with db.read() as conn:
        get_import(conn, principal.org_id, import_id)
    last = 0
    while True:
        with db.read() as conn:
            rows = conn.execute(
                sa.select(import_rejects.c.line, import_rejects.c.reason, import_rejects.c.raw)
                .where(import_rejects.c.import_id == import_id, import_rejects.c.line > last)
                .order_by(import_rejects.c.line)
                .limit(batch)
            ).all()
        if not rows:
            return
        for r in rows:
            yield [str(r.line), r.reason, r.raw]
        last = rows[-1].line


def rejects_csv(db: Database, principal: Principal, import_id: int) -> Iterator[bytes]:
    """The downloadable report of rejected rows, as CSV. A row is kept as the file had it, so
    a cell may well be a formula: it is defused the way every export is. An unknown import
    raises here, before the first byte."""
    rows = reject_rows(db, principal, import_id)
    first = next(rows, None)
    return exports.csv_chunks(
        REJECT_COLUMNS, itertools.chain([] if first is None else [first], rows)
    )


# --- running ---------------------------------------------------------------------------------


def claim(db: Database, worker: str, *, import_id: int | None = None) -> int | None:
    """Take a queued import, or a running one whose lease expired (its process died)."""
    now = utcnow()
    with db.write() as conn:
        query = (
            sa.select(imports.c.id)
            .where(
                sa.or_(
                    imports.c.status == Status.QUEUED,
                    sa.and_(imports.c.status == Status.RUNNING, imports.c.lease_until < now),
                )
            )
            .order_by(imports.c.id)
            .limit(1)
        )
        if import_id is not None:
            query = query.where(imports.c.id == import_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        found = conn.execute(query).scalar()
        if found is None:
            return None
        conn.execute(
            sa.update(imports)
            .where(imports.c.id == found)
            .values(
                status=Status.RUNNING,
                leased_by=worker[:64],
                lease_until=now + timedelta(seconds=LEASE_SECONDS),
                started_at=sa.func.coalesce(imports.c.started_at, now),
            )
        )
        return int(found)


def _coerce(type_: str, raw: Any, key: str) -> Any:
    try:
        return custom_fields.coerce_value(type_, raw, key=key)
    except ServiceError as exc:
        raise ValueError(exc.message.removeprefix(f"fields.{key} ")) from None


@dataclass
class _Counters:
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0


@dataclass
class _Run:
    import_id: int
    org_id: int
    worker: str
    policy: Policy
    tags: list[str]
    all_opted_in: bool
    consent_source: str
    filename: str


class Cancelled(Exception):
    """The import was cancelled or taken over by another process between two batches."""


_gc_lock = threading.Lock()
_gc_runs = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the garbage collector's young threshold to :data:`GC_YOUNG_THRESHOLD` for the
    duration (process-wide: several imports in one process share one raise, and the last to
    finish puts back what was there before)."""
    global _gc_runs, _gc_saved
    with _gc_lock:
        if _gc_runs == 0:
            _gc_saved = gc.get_threshold()
            young, *older = _gc_saved
            gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)
        _gc_runs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs -= 1
            if _gc_runs == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)
                _gc_saved = None


def run_import(
    db: Database,
    import_id: int,
    worker: str,
    *,
    processes: int | None = None,
    batch_rows: int | None = None,
    on_progress: Callable[[ImportView], None] | None = None,
) -> ImportView:
    """Run (or resume) a claimed import to its end. ``processes``: 0 reads and parses the file
    in this process, any other number in one process of its own (the default for files over
    ``PARALLEL_ROWS`` rows); the file is read in order, so more readers would not help.
    ``batch_rows``: rows per write transaction (default :data:`SQLITE_BATCH_ROWS` on SQLite,
    :data:`BATCH_ROWS` on PostgreSQL)."""
    if batch_rows is None:
        batch_rows = SQLITE_BATCH_ROWS if db.is_sqlite else BATCH_ROWS
    with db.read() as conn:
        row = conn.execute(sa.select(imports).where(imports.c.id == import_id)).one()
        view = ImportView.from_row(row)
        region = get_organization(conn, view.org_id).default_region
        types = custom_fields.field_types(conn, view.org_id)
    run = _Run(
        import_id=import_id,
        org_id=view.org_id,
        worker=worker[:64],
        policy=Policy(view.policy),
        tags=view.tags,
        all_opted_in=bool(view.options.get("all_opted_in")),
        consent_source=str(view.options.get("consent_source") or ""),
        filename=view.filename,
    )
    resume_line = view.processed_rows + 1  # spreadsheet line of the last committed row
    try:
        plan = csvimport.plan_for(view.header, view.mapping, region, types)
        if processes is None:
            processes = 1 if (view.total_rows or 0) >= PARALLEL_ROWS else 0
        source = (row.path, view.encoding or "utf-8", view.delimiter or ",")
        with fewer_collections():
            last_line = _pipeline(
                db, run, plan, source, resume_line, processes, batch_rows, on_progress
            )
    except Cancelled:
        with db.read() as conn:
            return get_import(conn, view.org_id, import_id)
    except (BadFile, OSError) as exc:
        _finish(db, run, Status.FAILED, error=str(exc), path=row.path)
        with db.read() as conn:
            return get_import(conn, view.org_id, import_id)
    _finish(db, run, Status.DONE, total=max(0, last_line - 1), path=row.path)
    with db.read() as conn:
        return get_import(conn, view.org_id, import_id)


#: What the reading stage hands the writing one: the last line read, and per kept row its
#: result with, for a row that may still be refused as opted out, its cells (for the report).
_Parsed = tuple[int, list[tuple[RowValues | Rejected, list[str] | None]]]


def _parse(
    path: str,
    encoding: str,
    delimiter: str,
    plan: Plan,
    resume_line: int,
    all_opted_in: bool,
) -> Generator[_Parsed, None, None]:
    """Read, normalize and dedupe the file, a chunk at a time. Rows up to ``resume_line`` were
    committed before a crash: they are read again only to rebuild the set of phones seen."""
    seen: set[int] = set()
    with open(path, "rb") as f:
        rows = csvimport.iter_rows(f, encoding, delimiter)
        with contextlib.closing(rows):
            for chunk in _chunks(rows, PARSE_ROWS):
                out: list[tuple[RowValues | Rejected, list[str] | None]] = []
                results = csvimport.normalize_rows(chunk, plan, _coerce)
                for (line, row), item in zip(chunk, results, strict=True):
                    if type(item) is RowValues:
                        key = int(item.phone[1:])
                        if key in seen:
                            reason = f"duplicate in file: {item.phone} is on an earlier row"
                            item = Rejected(line, reason, _raw_text(row))
                        else:
                            seen.add(key)
                    if line <= resume_line:
                        continue
                    may_opt_in = type(item) is RowValues and (item.opted_in or all_opted_in)
                    out.append((item, row if may_opt_in else None))
                yield chunk[-1][0], out


def _parse_into(queue: Any, *args: Any) -> None:
    """The reading stage in a process of its own: chunks into ``queue``, then None (or the
    exception that stopped it). The process is the reader's alone: what its start-up
    imported is moved out of the collector's sight (``gc.freeze``) and young passes are rare.

    Each chunk is pickled here, by the reading thread, and queued as bytes. Queued as objects,
    a chunk was pickled by the queue's feeder thread only once the one before had been taken,
    while this thread (unblocked by that take) held the GIL to read on: the writer, taking a
    batch's chunks one after another, waited for each pickling at GIL-switch pace (44 ms a
    5,000-row chunk, ~9 s per million rows, while this process was well ahead); with bytes the
    feeder only copies them into the pipe (7 ms a chunk, the unpickling)."""
    gc.freeze()
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)
    try:
        for parsed in _parse(*args):
            queue.put(pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException as exc:  # handed to the writing side, which raises it
        queue.put(exc)
    else:
        queue.put(None)


def _parsed_in_process(args: tuple[Any, ...]) -> Generator[_Parsed, None, None]:
    import multiprocessing

    # spawn: forking a threaded web process can copy a held lock into the child.
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue(maxsize=PARSE_AHEAD)
    reader = ctx.Process(target=_parse_into, args=(queue, *args), name="textdesk-import-parse")
    reader.start()
    try:
        while True:
            try:
                message = queue.get(timeout=1.0)
            except Empty:
                if reader.is_alive():
                    continue
                # Killed without a word (out of memory?): the batches so far are committed and
                # the lease runs out, so the import is resumed like after any crash.
                raise RuntimeError(
                    f"the import's reading process died (exit code {reader.exitcode})"
                ) from None
            if message is None:
                return
            if isinstance(message, BaseException):
                raise message
            yield pickle.loads(message)  # noqa: S301 (our own reading process's bytes)
    finally:
        if reader.is_alive():  # stopped early (cancelled, a failed batch): nothing to wait for
            reader.kill()
        reader.join()
        queue.close()


def _pipeline(
    db: Database,
    run: _Run,
    plan: Plan,
    source: tuple[str, str, str],
    resume_line: int,
    processes: int,
    batch_rows: int,
    on_progress: Callable[[ImportView], None] | None,
) -> int:
    """Read, normalize, dedupe and write batch by batch; returns the last line read.

    With ``processes``, reading the CSV, parsing the phones and finding duplicates run in a
    process of their own, up to ``PARSE_AHEAD`` chunks ahead of this one, which only writes.
    Measured on 2 cores, that is the split that pays: a pool of parsers fed from here spent as
    much time here pickling rows out and results back as the parsing it saved, and a writer
    thread here lost to the reading thread for the GIL (the database driver lets it go for
    every row). The file is read in order by one reader, so the result, line numbers and
    duplicates included, is the same with or without it."""
    path, encoding, delimiter = source
    args = (path, encoding, delimiter, plan, resume_line, run.all_opted_in)
    parsed = _parsed_in_process(args) if processes > 0 else _parse(*args)
    batch: list[tuple[RowValues | Rejected, list[str] | None]] = []
    last_line = resume_line
    in_flight = 1 if db.is_sqlite else PG_BATCHES_IN_FLIGHT
    with contextlib.closing(parsed), _Writer(db, run, on_progress, in_flight) as writer:
        for line, items in parsed:
            last_line = max(last_line, line)
            for entry in items:
                batch.append(entry)
                if len(batch) >= batch_rows:
                    writer.write(batch, entry[0].line)
                    batch = []
        if batch or last_line > resume_line:
            writer.write(batch, last_line)
    return last_line


class _Turn:
    """A batch's place in the commit order: the next batch commits only after this one did,
    and gives up (rolls back) if this one failed."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._ok = False

    def finish(self, ok: bool) -> None:
        self._ok = ok
        self._done.set()

    def wait(self) -> bool:
        self._done.wait()
        return self._ok


class _PreviousFailed(Exception):
    """The batch before this one failed: this one rolls back (the import stops there)."""


class _Writer:
    """Writes batches in file order. With ``in_flight`` > 1 (PostgreSQL), up to that many
    batches are written at the same time, each in its own transaction on its own connection
    (so its own server process: a second core), and they COMMIT in file order: a batch does
    all its work, then waits for the one before it to commit before it advances
    ``processed_rows`` and commits. So ``processed_rows`` only ever moves forward over
    committed batches, and a crash or a failed batch leaves exactly the earlier batches
    committed (a batch whose predecessor failed rolls back), as with one batch at a time.

    Batches cannot wait for each other's locks: the file's duplicates are removed before the
    batches are cut, so two batches never hold the same phone (contacts row, unique index
    entry, ledger phone), and the imports row, the one row they share, is updated only after
    the wait. The reads that decide a batch (existing contacts, the ledger's latest word) are
    about its own phones only, which the batch before it does not write."""

    def __init__(
        self,
        db: Database,
        run: _Run,
        on_progress: Callable[[ImportView], None] | None,
        in_flight: int,
    ) -> None:
        self.db, self.run, self.on_progress, self.in_flight = db, run, on_progress, in_flight
        self._pending: deque[Future[None]] = deque()
        self._last: _Turn | None = None
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> _Writer:
        return self

    def write(self, batch: list[tuple[RowValues | Rejected, list[str] | None]], last: int) -> None:
        if self.in_flight <= 1:
            _write(self.db, self.run, batch, last, self.on_progress)
            return
        while len(self._pending) >= self.in_flight:
            self._pending.popleft().result()  # raises the batch's failure, in file order
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="textdesk-import")
        turn = _Turn()
        self._pending.append(self._pool.submit(self._write_in_turn, batch, last, self._last, turn))
        self._last = turn

    def _write_in_turn(
        self,
        batch: list[tuple[RowValues | Rejected, list[str] | None]],
        last: int,
        after: _Turn | None,
        turn: _Turn,
    ) -> None:
        try:
            _write(self.db, self.run, batch, last, self.on_progress, after=after)
        except BaseException:
            turn.finish(False)
            raise
        turn.finish(True)

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            if kind is None:
                while self._pending:
                    self._pending.popleft().result()
        finally:
            # Leaving early (a failed batch, a cancel, the reader's error): whatever is still
            # in flight finishes (or rolls back, after a failure) before the caller goes on.
            for future in self._pending:
                with contextlib.suppress(BaseException):
                    future.result()
            if self._pool is not None:
                self._pool.shutdown(wait=True)


def _chunks(
    rows: Iterator[tuple[int, list[str]]], size: int
) -> Iterator[list[tuple[int, list[str]]]]:
    chunk: list[tuple[int, list[str]]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _raw_text(row: list[str]) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    return buf.getvalue().rstrip("\r\n")[:2000]


#: A batch that lost a race for a new contact (PostgreSQL) is redone this many times at most.
_ATTEMPTS = 3


def _write(
    db: Database,
    run: _Run,
    batch: list[tuple[RowValues | Rejected, list[str] | None]],
    last_line: int,
    on_progress: Callable[[ImportView], None] | None,
    *,
    after: _Turn | None = None,
) -> None:
    """One batch, one transaction: contacts, consent, rejects, counters and the resume point.
    ``after``: the batch before this one, still being written (see :class:`_Writer`); this one
    commits only after it did."""
    for attempt in range(1, _ATTEMPTS + 1):
        now = utcnow()
        try:
            with db.write() as conn:
                state = conn.execute(
                    sa.select(imports.c.status, imports.c.leased_by).where(
                        imports.c.id == run.import_id
                    )
                ).one()
                if state.status != Status.RUNNING or state.leased_by != run.worker:
                    raise Cancelled
                with import_bulk.batch_tuning(conn):
                    counts = _apply(conn, run, batch, now)
                if after is not None and not after.wait():
                    raise _PreviousFailed
                conn.execute(
                    sa.update(imports)
                    .where(imports.c.id == run.import_id)
                    .values(
                        processed_rows=last_line - 1,
                        inserted=imports.c.inserted + counts.inserted,
                        updated=imports.c.updated + counts.updated,
                        skipped=imports.c.skipped + counts.skipped,
                        rejected=imports.c.rejected + counts.rejected,
                        lease_until=now + timedelta(seconds=LEASE_SECONDS),
                    )
                )
                events.publish(conn, run.org_id, "import.progress", {"import_id": run.import_id})
                view = get_import(conn, run.org_id, run.import_id)
            break
        except import_bulk.Raced:
            if attempt == _ATTEMPTS:
                raise
            log.info("import %s: batch raced with another writer, redoing it", run.import_id)
    if on_progress is not None:
        on_progress(view)


def _apply(
    conn: Connection,
    run: _Run,
    batch: list[tuple[RowValues | Rejected, list[str] | None]],
    now: datetime,
) -> _Counters:
    counts = _Counters()
    rejects: list[tuple[int, str, str]] = []
    good: list[tuple[RowValues, list[str] | None]] = []
    for item, row in batch:
        if type(item) is RowValues:
            good.append((item, row))
        else:
            assert isinstance(item, Rejected)
            rejects.append((item.line, item.reason, item.raw))
    phones = [r.phone for r, _row in good]
    existing = import_bulk.existing_contacts(conn, run.org_id, phones)
    latest = import_bulk.latest_consent(conn, run.org_id, phones)
    inserts: list[tuple[Any, ...]] = []
    updates: list[dict[str, Any]] = []
    consent: list[tuple[RowValues, ConsentKind, int | None]] = []
    pending_ids: list[int] = []  # indexes in ``consent`` of new contacts (ids known after insert)
    # PostgreSQL: the new contacts' events are written with them, set-wise (aligned with
    # ``inserts``); SQLite: they go in ``consent`` like the others, ids filled in after.
    new_events: list[tuple[str, str] | None] | None = (
        [] if import_bulk.consent_with_contacts(conn) else None
    )
    evidence = _EvidenceJson(run)
    tags = run.tags
    opt_out, opt_in, re_opt_in = ConsentKind.OPT_OUT, ConsentKind.OPT_IN, ConsentKind.RE_OPT_IN
    for item, raw_row in good:
        opted_in = item.opted_in
        if opted_in is None and run.all_opted_in:
            opted_in = True
        current = existing.get(item.phone)
        last = latest.get(item.phone)
        opted_out = bool(current.opted_out) if current is not None else last == opt_out
        if opted_in and (opted_out or last == opt_out):
            rejects.append(
                (
                    item.line,
                    f"opted out: {item.phone} opted out earlier and an import never "
                    "re-subscribes a number (the row was not imported)",
                    _raw_text(raw_row or []),
                )
            )
            continue
        kind: ConsentKind | None = None
        if opted_in and last != opt_in and last != re_opt_in:
            kind = opt_in
        elif opted_in is False and not opted_out:
            kind = opt_out
        if current is None:
            values = item.values
            inserts.append(
                (
                    item.phone,
                    values.get("first_name", ""),
                    values.get("last_name", ""),
                    values.get("email"),
                    values.get("zip"),
                    values.get("state"),
                    values.get("time_zone"),
                    values.get("external_id"),
                    item.fields,
                    tags,
                    opted_out or kind is opt_out,
                )
            )
            counts.inserted += 1
            if new_events is not None:
                new_events.append(None if kind is None else (kind.value, evidence(item)))
            elif kind is not None:
                pending_ids.append(len(consent))
                consent.append((item, kind, None))
            continue
        if run.policy is Policy.SKIP:
            counts.skipped += 1
            continue
        change = _merge(current, item, run)
        if kind is opt_out:
            change["opted_out"] = True
        if change:
            updates.append({"b_id": current.id, **_full(current), **change, "updated_at": now})
            counts.updated += 1
        else:
            counts.skipped += 1
        if kind is not None:
            consent.append((item, kind, current.id))
    import_bulk.insert_rejects(conn, run.import_id, rejects)
    counts.rejected = len(rejects)
    actor = f"import:{run.import_id}"
    new_consent = None
    if new_events is not None:
        new_consent = import_bulk.NewConsent(new_events, "all", ConsentSource.IMPORT.value, actor)
    ids = import_bulk.insert_contacts(conn, run.org_id, inserts, now, new_consent)
    for i in pending_ids:
        item, kind, _none = consent[i]
        consent[i] = (item, kind, ids[item.phone])
    if updates:
        cols = (*_ATTRS, "fields", "tags", "opted_out", "updated_at")
        conn.execute(
            sa.update(contacts)
            .where(contacts.c.id == sa.bindparam("b_id"))
            .values({c: sa.bindparam(c) for c in cols}),
            [{k: u.get(k) for k in ("b_id", *cols)} for u in updates],
        )
    import_bulk.insert_consent(
        conn,
        [
            (
                run.org_id,
                item.phone,
                contact_id,
                kind.value,
                "all",
                ConsentSource.IMPORT.value,
                evidence(item),
                actor,
                now,
            )
            for item, kind, contact_id in consent
        ],
    )
    return counts


def _evidence(run: _Run, item: RowValues) -> dict[str, Any]:
    evidence: dict[str, Any] = {"import_id": run.import_id, "file": run.filename, "line": item.line}
    source = item.consent_source or run.consent_source
    if source:
        evidence["source"] = source
    if item.consent_at:
        evidence["timestamp"] = item.consent_at
    return evidence


class _EvidenceJson:
    """``json.dumps(_evidence(run, item))`` without building and encoding a dict per row (a
    million-row import records about as many consent events): the constant part is encoded
    once. The test compares it with ``json.dumps`` of :func:`_evidence`."""

    def __init__(self, run: _Run) -> None:
        head = json.dumps({"import_id": run.import_id, "file": run.filename})
        self._head = head[:-1] + ', "line": '
        source = run.consent_source
        self._default_source = (', "source": ' + json.dumps(source)) if source else ""

    def __call__(self, item: RowValues) -> str:
        text = self._head + str(item.line)
        if item.consent_source:
            text += ', "source": ' + json.dumps(item.consent_source)
        else:
            text += self._default_source
        if item.consent_at:
            text += ', "timestamp": ' + json.dumps(item.consent_at)
        return text + "}"


def _full(current: Any) -> dict[str, Any]:
    return {
        **{a: getattr(current, a) for a in _ATTRS},
        "fields": dict(current.fields or {}),
        "tags": list(current.tags or []),
        "opted_out": bool(current.opted_out),
    }


def _merge(current: Any, item: RowValues, run: _Run) -> dict[str, Any]:
    """The columns that change under the run's policy (empty when nothing would)."""
    change: dict[str, Any] = {}
    overwrite = run.policy is Policy.OVERWRITE
    for attr, value in item.values.items():
        old = getattr(current, attr)
        if value and value != old and (overwrite or not old):
            change[attr] = value
    fields = dict(current.fields or {})
    new_fields = dict(fields)
    for key, value in item.fields.items():
        if key not in fields or fields[key] in (None, "") or (overwrite and fields[key] != value):
            new_fields[key] = value
    if new_fields != fields:
        change["fields"] = new_fields
    tags = sorted(set(current.tags or []) | set(run.tags))
    if tags != sorted(current.tags or []):
        change["tags"] = tags
    return change


def _finish(
    db: Database,
    run: _Run,
    status: Status,
    *,
    error: str | None = None,
    total: int | None = None,
    path: str,
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "finished_at": utcnow(),
        "lease_until": None,
        "error": error,
    }
    if total is not None:
        values["total_rows"] = total
        values["processed_rows"] = total
    with db.write() as conn:
        done = conn.execute(
            sa.update(imports)
            .where(
                imports.c.id == run.import_id,
                imports.c.status == Status.RUNNING,
                imports.c.leased_by == run.worker,
            )
            .values(**values)
        ).rowcount
        if done:
            audit.record(
                conn,
                org_id=run.org_id,
                actor=f"import:{run.import_id}",
                action=f"import.{status.value}",
                target=f"import:{run.import_id}",
                detail={"error": error} if error else None,
            )
            events.publish(conn, run.org_id, "import.progress", {"import_id": run.import_id})
    if done:
        Path(path).unlink(missing_ok=True)


def worker_name() -> str:
    import socket

    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ImportRunner:
    """Runs imports in a background thread of a long-lived process (``serve``, ``worker``):
    queued ones as soon as it is woken, and any whose lease expired (resume after a crash)."""

    def __init__(self, db: Database, *, poll_seconds: float = 5.0) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.worker = worker_name()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="textdesk-imports", daemon=True
                )
                self._thread.start()

    def wake(self) -> None:
        self.start()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                found = claim(self.db, self.worker)
                if found is not None:
                    run_import(self.db, found, self.worker)
                    continue
            except Exception:  # a bug in one import must not stop the next ones
                log.exception("import run failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
