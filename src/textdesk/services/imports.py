"""CSV contact imports: upload (checked and described), start (mapping, policy, tags, consent
options), run in the background in batches, resume after a crash, report rejected rows.

How a run stays correct when the process dies at any point:

* Each batch (``BATCH_ROWS`` rows) is ONE write transaction: its contacts, consent events, rejects,
  the import's counters and ``processed_rows`` (the spreadsheet data rows consumed so far) commit
  together or not at all. A resumed run skips the rows already processed, so it neither redoes
  nor loses a row.
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
import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain import csvimport
from textdesk.domain.csvimport import BadFile, Plan, Rejected, RowValues
from textdesk.domain.roles import Role
from textdesk.services import audit, custom_fields, events
from textdesk.services.accounts import get_organization
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.consent import ConsentKind, ConsentSource
from textdesk.services.errors import Conflict, Invalid, NotFound, ServiceError
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import consent_events, contacts, import_rejects, imports, utcnow

log = logging.getLogger(__name__)

BATCH_ROWS = 5000
#: Files estimated above this many rows have their phone numbers parsed in worker processes.
PARALLEL_ROWS = 20_000
LEASE_SECONDS = 120
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


def _normalize_chunk(rows: list[tuple[int, list[str]]], plan: Plan) -> list[RowValues | Rejected]:
    """Runs in a worker process: phone parsing is the CPU-heavy part of an import."""
    return csvimport.normalize_rows(rows, plan, _coerce)


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
    seen: set[int] = field(default_factory=set)


class Cancelled(Exception):
    """The import was cancelled or taken over by another process between two batches."""


def run_import(
    db: Database,
    import_id: int,
    worker: str,
    *,
    processes: int | None = None,
    batch_rows: int = BATCH_ROWS,
    on_progress: Callable[[ImportView], None] | None = None,
) -> ImportView:
    """Run (or resume) a claimed import to its end. ``processes``: phone-parsing processes
    (default: one per CPU for large files, none for small ones)."""
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
            processes = (os.cpu_count() or 1) if (view.total_rows or 0) >= PARALLEL_ROWS else 0
        with open(row.path, "rb") as f:
            rows = csvimport.iter_rows(f, view.encoding or "utf-8", view.delimiter or ",")
            with contextlib.closing(rows):
                last_line = _pipeline(
                    db, run, plan, rows, resume_line, processes, batch_rows, on_progress
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


def _pipeline(
    db: Database,
    run: _Run,
    plan: Plan,
    rows: Iterator[tuple[int, list[str]]],
    resume_line: int,
    processes: int,
    batch_rows: int,
    on_progress: Callable[[ImportView], None] | None,
) -> int:
    """Read, normalize (in processes when asked), dedupe and write batch by batch; returns the
    last line read."""
    batch: list[RowValues | Rejected] = []
    last_line = resume_line

    def consume(results: list[RowValues | Rejected]) -> None:
        nonlocal last_line
        for item in results:
            last_line = item.line
            if isinstance(item, RowValues):
                key = int(item.phone[1:])
                if key in run.seen:
                    item = Rejected(
                        item.line,
                        f"duplicate in file: {item.phone} is on an earlier row",
                        _raw_text(item.values["_raw"]),
                    )
                else:
                    run.seen.add(key)
            if item.line <= resume_line:
                continue  # committed before a crash: only rebuilds ``seen``
            batch.append(item)
            if len(batch) >= batch_rows:
                _write(db, run, batch, item.line, on_progress)
                batch.clear()

    chunks = _chunks(rows, batch_rows)
    if processes <= 1:
        for chunk in chunks:
            consume(_with_raw(chunk, csvimport.normalize_rows(chunk, plan, _coerce)))
    else:
        import multiprocessing

        # spawn: forking a threaded web process can copy a held lock into the child.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
            window: deque[tuple[list[tuple[int, list[str]]], Future[Any]]] = deque()
            for chunk in chunks:
                window.append((chunk, pool.submit(_normalize_chunk, chunk, plan)))
                if len(window) >= processes * 2:
                    done, fut = window.popleft()
                    consume(_with_raw(done, fut.result()))
            while window:
                done, fut = window.popleft()
                consume(_with_raw(done, fut.result()))
    if batch or last_line > resume_line:
        _write(db, run, batch, last_line, on_progress)
    return last_line


def _with_raw(
    chunk: list[tuple[int, list[str]]], results: list[RowValues | Rejected]
) -> list[RowValues | Rejected]:
    """Duplicates are found after normalization; give their reject the raw row too."""
    raw = {line: row for line, row in chunk}
    out: list[RowValues | Rejected] = []
    for item in results:
        if isinstance(item, RowValues):
            item.values["_raw"] = raw[item.line]
        out.append(item)
    return out


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


def _write(
    db: Database,
    run: _Run,
    batch: list[RowValues | Rejected],
    last_line: int,
    on_progress: Callable[[ImportView], None] | None,
) -> None:
    """One batch, one transaction: contacts, consent, rejects, counters and the resume point."""
    now = utcnow()
    with db.write() as conn:
        state = conn.execute(
            sa.select(imports.c.status, imports.c.leased_by).where(imports.c.id == run.import_id)
        ).one()
        if state.status != Status.RUNNING or state.leased_by != run.worker:
            raise Cancelled
        counts = _apply(conn, run, batch, now)
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
    if on_progress is not None:
        on_progress(view)


def _apply(
    conn: Connection, run: _Run, batch: list[RowValues | Rejected], now: datetime
) -> _Counters:
    counts = _Counters()
    rejects: list[dict[str, Any]] = []
    good: list[RowValues] = []
    for item in batch:
        if isinstance(item, Rejected):
            rejects.append({"line": item.line, "reason": item.reason, "raw": item.raw})
        else:
            good.append(item)
    phones = [r.phone for r in good]
    existing = (
        {
            r.phone_e164: r
            for r in conn.execute(
                sa.select(contacts).where(
                    contacts.c.org_id == run.org_id, contacts.c.phone_e164.in_(phones)
                )
            )
        }
        if phones
        else {}
    )
    latest: dict[str, str] = {}
    if phones:
        for r in conn.execute(
            sa.select(consent_events.c.phone_e164, consent_events.c.kind)
            .where(
                consent_events.c.org_id == run.org_id,
                consent_events.c.phone_e164.in_(phones),
                consent_events.c.kind != ConsentKind.HELP,
            )
            .order_by(consent_events.c.id)
        ):
            latest[r.phone_e164] = r.kind
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    consent: list[tuple[RowValues, ConsentKind]] = []
    for item in good:
        raw_row = item.values.pop("_raw", [])
        opted_in = item.opted_in
        if opted_in is None and run.all_opted_in:
            opted_in = True
        current = existing.get(item.phone)
        last = latest.get(item.phone)
        opted_out = bool(current.opted_out) if current is not None else last == ConsentKind.OPT_OUT
        if opted_in and (opted_out or last == ConsentKind.OPT_OUT):
            rejects.append(
                {
                    "line": item.line,
                    "reason": f"opted out: {item.phone} opted out earlier and an import never "
                    "re-subscribes a number (the row was not imported)",
                    "raw": _raw_text(raw_row),
                }
            )
            continue
        kind: ConsentKind | None = None
        if opted_in and last not in (ConsentKind.OPT_IN, ConsentKind.RE_OPT_IN):
            kind = ConsentKind.OPT_IN
        elif opted_in is False and not opted_out:
            kind = ConsentKind.OPT_OUT
        if current is None:
            inserts.append(
                {
                    "org_id": run.org_id,
                    "phone_e164": item.phone,
                    "first_name": item.values.get("first_name", ""),
                    "last_name": item.values.get("last_name", ""),
                    **{a: item.values.get(a) for a in _ATTRS[2:]},
                    "fields": item.fields,
                    "tags": run.tags,
                    "opted_out": opted_out or kind is ConsentKind.OPT_OUT,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            counts.inserted += 1
        elif run.policy is Policy.SKIP:
            counts.skipped += 1
            continue
        else:
            change = _merge(current, item, run)
            if kind is ConsentKind.OPT_OUT:
                change["opted_out"] = True
            if change:
                updates.append({"b_id": current.id, **_full(current), **change, "updated_at": now})
                counts.updated += 1
            else:
                counts.skipped += 1
        if kind is not None:
            consent.append((item, kind))
    if rejects:
        conn.execute(import_rejects.insert(), [{"import_id": run.import_id, **r} for r in rejects])
        counts.rejected = len(rejects)
    if inserts:
        conn.execute(contacts.insert(), inserts)
    if updates:
        cols = (*_ATTRS, "fields", "tags", "opted_out", "updated_at")
        conn.execute(
            sa.update(contacts)
            .where(contacts.c.id == sa.bindparam("b_id"))
            .values({c: sa.bindparam(c) for c in cols}),
            [{k: u.get(k) for k in ("b_id", *cols)} for u in updates],
        )
    if consent:
        ids = {
            phone: contact_id
            for phone, contact_id in conn.execute(
                sa.select(contacts.c.phone_e164, contacts.c.id).where(
                    contacts.c.org_id == run.org_id,
                    contacts.c.phone_e164.in_([i.phone for i, _k in consent]),
                )
            )
        }
        conn.execute(
            consent_events.insert(),
            [
                {
                    "org_id": run.org_id,
                    "phone_e164": item.phone,
                    "contact_id": ids.get(item.phone),
                    "kind": kind,
                    "purpose": "all",
                    "source": ConsentSource.IMPORT,
                    "evidence": _evidence(run, item),
                    "message_id": None,
                    "actor": f"import:{run.import_id}",
                    "created_at": now,
                }
                for item, kind in consent
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
