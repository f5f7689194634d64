"""CSV exports: contacts (all or a segment), messages, the consent ledger. Streamed.

Each export is checked (admin only, a valid segment) and audited when it is asked for, before
the first byte goes out, so an error is an ordinary problem answer and not a truncated file.
Rows are then read in keyset pages of ``PAGE`` rows, each page in its own short read
transaction (a long one would hold SQLite's WAL from checkpointing), and handed out as encoded
chunks: memory stays flat however many rows there are.

Spreadsheets run cells that start with ``= + - @`` (or a tab / carriage return) as formulas
(OWASP "CSV injection"), so such cells get a leading ``'``. Plain numbers are left alone: an
E.164 phone number ``+12015550123`` or ``-3`` cannot carry a formula, and quoting them would
break a round trip through the importer.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from textdesk.domain.roles import Role
from textdesk.services import audit, consent
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.contacts import filter_clause
from textdesk.services.custom_fields import list_fields
from textdesk.services.errors import Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import contacts, messages, utcnow

PAGE = 2000
#: Flush the text buffer to the client beyond this many characters.
CHUNK = 64 * 1024
#: What a spreadsheet takes for the start of a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")

CONTACT_COLUMNS = (
    "id",
    "phone_e164",
    "first_name",
    "last_name",
    "email",
    "zip",
    "state",
    "time_zone",
    "external_id",
    "tags",
    "opted_out",
    "last_inbound_at",
    "last_outbound_at",
    "created_at",
    "updated_at",
)
MESSAGE_COLUMNS = (
    "id",
    "created_at",
    "direction",
    "status",
    "purpose",
    "contact_id",
    "contact_phone",
    "channel_id",
    "body",
    "segments",
    "encoding",
    "attempts",
    "gate_code",
    "gate_detail",
    "error_code",
    "error_detail",
    "provider_message_id",
    "sent_at",
    "delivered_at",
    "updated_at",
)


@dataclass(frozen=True)
class Export:
    """A checked, audited export: a file name and the chunks of its body (UTF-8)."""

    filename: str
    chunks: Iterator[bytes]


def safe_cell(value: Any) -> str:
    """The CSV text of ``value``, defused against formula injection."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, datetime):
        text = value.isoformat()
    else:
        text = str(value)
    if text.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """Encode ``rows`` under ``header`` as CSV, in chunks of about ``CHUNK`` characters."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
        if buffer.tell() > CHUNK:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _audit(
    db: Database,
    principal: Principal,
    action: str,
    request: RequestInfo | None,
    detail: dict[str, Any],
) -> None:
    with db.write() as conn:
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action=action,
            request=request,
            detail=detail,
        )


def _pages(
    db: Database, select: Callable[[int], sa.Select[Any]], *, page: int
) -> Iterator[Sequence[sa.Row[Any]]]:
    """Keyset pages (the statement orders by id and filters ``id > after``)."""
    after = 0
    while True:
        with db.read() as conn:
            rows = conn.execute(select(after).limit(page)).all()
        if not rows:
            return
        yield rows
        if len(rows) < page:
            return
        after = rows[-1].id


# --- contacts -------------------------------------------------------------------------------------


def export_contacts(
    db: Database,
    principal: Principal,
    *,
    query: str | None = None,
    segment_id: int | None = None,
    q: str | None = None,
    tag: str | None = None,
    request: RequestInfo | None = None,
    page: int = PAGE,
) -> Export:
    """Every contact, or those of a segment query / saved segment (narrowed further by a search
    ``q`` and a ``tag``, as the contacts list filters), with one column per custom field
    (``fields.<key>``) and tags joined with ``;``."""
    principal.require(Role.ADMIN)
    org_id = principal.org_id
    now = utcnow()  # one clock for the whole file: "-30d" means the same on every page
    with db.read() as conn:
        # Compiled once here so a bad query fails before the response starts; the clause holds
        # only bound values, so it can be reused by every page's connection.
        where = _segment_clause(conn, org_id, query, segment_id, now)
        narrow = filter_clause(conn, org_id, q=q, tag=tag)
        if narrow is not None:
            where = narrow if where is None else sa.and_(where, narrow)
        keys = [f.key for f in list_fields(conn, org_id)]
    _audit(
        db,
        principal,
        "export.contacts",
        request,
        {"query": query, "segment_id": segment_id, "q": q, "tag": tag},
    )

    def select(after: int) -> sa.Select[Any]:
        stmt = sa.select(*(contacts.c[c] for c in CONTACT_COLUMNS), contacts.c.fields).where(
            contacts.c.org_id == org_id, contacts.c.id > after
        )
        if where is not None:
            stmt = stmt.where(where)
        return stmt.order_by(contacts.c.id)

    def rows() -> Iterator[list[Any]]:
        for chunk in _pages(db, select, page=page):
            for r in chunk:
                values: list[Any] = [getattr(r, c) for c in CONTACT_COLUMNS]
                values[CONTACT_COLUMNS.index("tags")] = ";".join(r.tags or [])
                fields = r.fields or {}
                values.extend(fields.get(k) for k in keys)
                yield values

    header = [*CONTACT_COLUMNS, *(f"fields.{k}" for k in keys)]
    name = "contacts"
    if segment_id is not None:
        name = f"segment-{segment_id}"
    elif query or q or tag:
        name = "contacts-filtered"
    return Export(f"{name}-{now:%Y%m%d-%H%M%S}.csv", csv_chunks(header, rows()))


def _segment_clause(
    conn: sa.Connection, org_id: int, query: str | None, segment_id: int | None, now: datetime
) -> sa.ColumnElement[bool] | None:
    # Imported here: segments builds on contacts, which this module also imports.
    from textdesk.services import segments

    parts: list[sa.ColumnElement[bool]] = []
    if segment_id is not None:
        try:
            saved = segments.get_segment(conn, org_id, segment_id)
        except NotFound as exc:
            raise NotFound(exc.message, field="segment_id") from None
        parts.append(segments.contact_filter(conn, org_id, saved.query, now=now))
    if query and query.strip():
        parts.append(segments.contact_filter(conn, org_id, query, now=now))
    return sa.and_(*parts) if parts else None


# --- messages -------------------------------------------------------------------------------------


def export_messages(
    db: Database,
    principal: Principal,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    request: RequestInfo | None = None,
    page: int = PAGE,
) -> Export:
    """Messages in id order with their lifecycle, gate and error codes; ``since`` inclusive,
    ``until`` exclusive, on the creation time (UTC when no zone is given)."""
    principal.require(Role.ADMIN)
    # A time without a zone is read as UTC (the times in the file are UTC too).
    since = since.replace(tzinfo=UTC) if since and since.tzinfo is None else since
    until = until.replace(tzinfo=UTC) if until and until.tzinfo is None else until
    if since is not None and until is not None and until <= since:
        raise Invalid("until must be after since", field="until")
    org_id = principal.org_id
    _audit(
        db,
        principal,
        "export.messages",
        request,
        {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        },
    )
    own = [c for c in MESSAGE_COLUMNS if c != "contact_phone"]

    def select(after: int) -> sa.Select[Any]:
        stmt = (
            sa.select(*(messages.c[c] for c in own), contacts.c.phone_e164.label("contact_phone"))
            .join(contacts, contacts.c.id == messages.c.contact_id)
            .where(messages.c.org_id == org_id, messages.c.id > after)
        )
        if since is not None:
            stmt = stmt.where(messages.c.created_at >= since)
        if until is not None:
            stmt = stmt.where(messages.c.created_at < until)
        return stmt.order_by(messages.c.id)

    def rows() -> Iterator[list[Any]]:
        for chunk in _pages(db, select, page=page):
            for r in chunk:
                yield [getattr(r, c) for c in MESSAGE_COLUMNS]

    return Export(f"messages-{utcnow():%Y%m%d-%H%M%S}.csv", csv_chunks(MESSAGE_COLUMNS, rows()))


# --- consent ledger -------------------------------------------------------------------------------


def export_consent(
    db: Database, principal: Principal, *, request: RequestInfo | None = None
) -> Export:
    """The consent ledger, as ``services.consent.export_rows`` reads it."""
    rows = consent.export_rows(db, principal)
    first = next(rows, None)  # export_rows checks the role when first advanced
    _audit(db, principal, "export.consent", request, {})

    def all_rows() -> Iterator[list[str]]:
        if first is not None:
            yield first
            yield from rows

    return Export(
        f"consent-ledger-{utcnow():%Y%m%d-%H%M%S}.csv",
        csv_chunks(consent.EXPORT_COLUMNS, all_rows()),
    )
