"""The bulk reads and writes of one import batch, per engine (``services.imports`` decides what
to write; this module writes it fast, inside the batch's transaction).

Why it is not plain SQLAlchemy Core: at a million rows, Core's per-row parameter processing
(a dict per row, type processors, expanding ``IN`` lists of 5,000 bind parameters) cost more
than the database work itself. Values are converted here with the same type processors Core
would use (taken from the columns' types once per batch), so what lands in the tables is
byte for byte what Core writes.

* **SQLite**: ``executemany`` of plain tuples with one prepared statement. The FTS5 trigger
  ``contacts_fts_ai`` costs ~17 us a row (each trigger step is a statement of its own, and
  FTS5 flushes its pending terms at each one): two thirds of a million-row import. For a big
  batch the trigger is dropped *inside the batch's write transaction*, the rows are inserted,
  the index is fed with ONE ``INSERT INTO contacts_fts ... SELECT`` of exactly those rows, and
  the trigger is re-created from its own text in ``sqlite_master`` before the commit. SQLite DDL
  is transactional and ``BEGIN IMMEDIATE`` makes this the only writer, so no other connection
  can ever see (or write through) the table without its trigger, and a crash rolls all of it
  back. Rows written by any other path keep going through the trigger.
* **PostgreSQL**: ``COPY`` (psycopg 3) into a temporary table (each new contact with the kind
  and evidence of its ledger event, if any), then ONE statement: ``INSERT ... SELECT ... ON
  CONFLICT (org_id, phone_e164) DO NOTHING RETURNING`` for the new contacts, and, in a CTE
  over what it returns, ``INSERT INTO consent_events ... SELECT`` for their events (no id goes
  back to Python, no event row is built there: ~2 CPU-seconds less per million rows). The
  events of existing contacts and the rejects go in with ``COPY``. A contact created by someone
  else between the batch's read and its insert is missing from the insert's ``RETURNING`` (the
  count comes back short): :class:`Raced` makes the caller redo the batch (the whole
  transaction rolls back, its events included), which then sees it as existing.
* Phone lists go to the database as ONE parameter (SQLite ``json_each``, PostgreSQL
  ``= ANY(string_to_array(text, ','))``), not as thousands of bind parameters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.store.tables import consent_events, contacts

#: Contact columns an import writes (besides org_id, created_at, updated_at), in tuple order.
CONTACT_COLUMNS = (
    "phone_e164",
    "first_name",
    "last_name",
    "email",
    "zip",
    "state",
    "time_zone",
    "external_id",
    "fields",
    "tags",
    "opted_out",
)
#: Consent ledger columns, in tuple order (``evidence`` already JSON text: ``json.dumps`` of the
#: dict, which is what Core's JSON type writes on SQLite and what PostgreSQL parses into jsonb).
CONSENT_COLUMNS = (
    "org_id",
    "phone_e164",
    "contact_id",
    "kind",
    "purpose",
    "source",
    "evidence",
    "actor",
    "created_at",
)
_MERGE_COLUMNS = (
    "id",
    "phone_e164",
    "first_name",
    "last_name",
    "email",
    "zip",
    "state",
    "time_zone",
    "external_id",
    "fields",
    "tags",
    "opted_out",
)
# The statements, built once from the constant column lists above (no outside text in them).
_CONTACT_NAMES = ", ".join(CONTACT_COLUMNS)
_CONSENT_NAMES = ", ".join(CONSENT_COLUMNS)
_SQLITE_CONTACTS = (
    f"INSERT INTO contacts (org_id, {_CONTACT_NAMES}, created_at, updated_at) "  # noqa: S608
    f"VALUES ({', '.join('?' * (len(CONTACT_COLUMNS) + 3))})"
)
_SQLITE_CONSENT = (
    f"INSERT INTO consent_events ({_CONSENT_NAMES}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(CONSENT_COLUMNS))})"
)
_PG_COPY_CONTACTS = (
    f"COPY textdesk_import_contacts ({_CONTACT_NAMES}, consent_kind, evidence) FROM STDIN"
)
_PG_INSERT_CONTACTS = (
    f"INSERT INTO contacts (org_id, {_CONTACT_NAMES}, created_at, updated_at) "  # noqa: S608
    f"SELECT :org_id, {_CONTACT_NAMES}, :now, :now FROM textdesk_import_contacts "
    "ON CONFLICT (org_id, phone_e164) DO NOTHING RETURNING id, phone_e164"
)
_PG_COPY_CONSENT = f"COPY consent_events ({_CONSENT_NAMES}) FROM STDIN"
# The new contacts and their ledger events in one statement: the events are made from the
# contacts the insert returns, joined with the staged rows (kind and evidence staged beside
# each contact), so no id goes back to Python and no event row is built there.
_PG_INSERT_CONTACTS_CONSENT = (
    "WITH new AS ("  # noqa: S608
    f"INSERT INTO contacts (org_id, {_CONTACT_NAMES}, created_at, updated_at) "
    f"SELECT :org_id, {_CONTACT_NAMES}, :now, :now FROM textdesk_import_contacts "
    "ON CONFLICT (org_id, phone_e164) DO NOTHING RETURNING id, phone_e164"
    "), ledger AS ("
    f"INSERT INTO consent_events ({_CONSENT_NAMES}) "
    "SELECT :org_id, s.phone_e164, new.id, s.consent_kind, :purpose, :source, s.evidence, "
    ":actor, :now FROM new JOIN textdesk_import_contacts s ON s.phone_e164 = new.phone_e164 "
    "WHERE s.consent_kind IS NOT NULL"
    ") SELECT count(*) FROM new"
)

#: Below this many new contacts in a batch the FTS5 trigger is left to do its work (dropping
#: and re-creating it changes the schema, which makes every connection re-read it).
FTS_BULK_MIN = 200
_FTS_TRIGGER = "contacts_fts_ai"


class Raced(Exception):
    """Another writer created a contact of this batch after the batch read the table
    (PostgreSQL; SQLite's write lock excludes it): redo the batch."""


def _sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


def _phones_clause(conn: Connection, column: sa.ColumnElement[Any], phones: Sequence[str]) -> Any:
    if _sqlite(conn):
        return column.in_(
            sa.select(sa.column("value")).select_from(
                sa.func.json_each(sa.bindparam("phones_json", json.dumps(list(phones))))
            )
        )
    # One text parameter split by the server, not a list parameter: psycopg dumps a list
    # element by element in Python (20,000 phones, twice a batch: ~2 CPU-seconds per million
    # rows); E.164 numbers never contain a comma.
    return column == sa.any_(
        sa.func.string_to_array(sa.bindparam("phones_text", ",".join(phones)), ",")
    )


#: SQLite page cache for a batch (KiB, as ``PRAGMA cache_size`` takes a negative number). The
#: default 2 MiB cannot hold the unique (org_id, phone) and zip indexes of a large table, and a
#: batch of random phones touches most of their pages: measured 1.5x faster with 64 MiB.
SQLITE_BATCH_CACHE_KIB = 65_536
#: WAL pages before a commit checkpoints (SQLite's default is 1,000 = 4 MiB). A batch of random
#: phones dirties most pages of the phone and zip indexes; with the default, every batch's
#: commit copied all of them back into the database file (and synced it). Checkpointing every
#: ~64 MiB of WAL writes a page touched by several batches once. The setting stays on the
#: connection (a larger WAL between checkpoints; nothing else changes).
SQLITE_CHECKPOINT_PAGES = 16_384


@contextmanager
def batch_tuning(conn: Connection) -> Iterator[None]:
    """Around one batch's work, inside its transaction: on SQLite a larger page cache, put back
    before the commit (the connection returns to the pool as it was; shrinking the cache
    inside a transaction only drops clean pages, the dirty ones are written by the commit)."""
    if not _sqlite(conn):
        yield
        return
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
    conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_BATCH_CACHE_KIB:d}")
    conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {SQLITE_CHECKPOINT_PAGES:d}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(before):d}")


def existing_contacts(conn: Connection, org_id: int, phones: Sequence[str]) -> dict[str, Any]:
    """The contacts of this organization among ``phones``, by phone (the columns a merge needs).

    On PostgreSQL the rows are locked for the batch: an inbound STOP for one of them (which
    updates the contact's row) then either committed before this read, so the ledger read that
    follows sees it, or waits for the batch and lands after it; an import's opt-in can never
    slip in after a STOP it did not see. (SQLite's BEGIN IMMEDIATE already serializes them.)"""
    if not phones:
        return {}
    query = sa.select(*(contacts.c[c] for c in _MERGE_COLUMNS)).where(
        contacts.c.org_id == org_id, _phones_clause(conn, contacts.c.phone_e164, phones)
    )
    if conn.dialect.name == "postgresql":
        query = query.order_by(contacts.c.id).with_for_update()
    return {r.phone_e164: r for r in conn.execute(query)}


def latest_consent(conn: Connection, org_id: int, phones: Sequence[str]) -> dict[str, str]:
    """The ledger's latest word (opt_in / opt_out / re_opt_in, not help) for each phone."""
    if not phones:
        return {}
    latest: dict[str, str] = {}
    for phone, kind in conn.execute(
        sa.select(consent_events.c.phone_e164, consent_events.c.kind)
        .where(
            consent_events.c.org_id == org_id,
            _phones_clause(conn, consent_events.c.phone_e164, phones),
            consent_events.c.kind != "help",
        )
        .order_by(consent_events.c.id)
    ):
        latest[phone] = kind
    return latest


def _processor(conn: Connection, column: sa.Column[Any]) -> Callable[[Any], Any]:
    """The bind processor Core would apply to this column's values (identity if none)."""
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return process if process is not None else (lambda v: v)


def _json_memo(to_json: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``to_json`` for a batch's ``fields`` and ``tags``: mostly ``{}`` and the one tag list
    every row shares, so each distinct object is serialized once (by identity: the rows keep
    the objects alive for the batch)."""
    memo: dict[int, Any] = {}
    empty = to_json({})

    def convert(value: Any) -> Any:
        if not value and isinstance(value, dict):
            return empty
        key = id(value)
        text = memo.get(key)
        if text is None:
            text = memo[key] = to_json(value)
        return text

    return convert


def consent_with_contacts(conn: Connection) -> bool:
    """Whether :func:`insert_contacts` can write the new contacts' ledger events itself
    (PostgreSQL: set-wise, in the statement that inserts the contacts)."""
    return not _sqlite(conn)


@dataclass(frozen=True)
class NewConsent:
    """The ledger events of a batch's new contacts, for :func:`insert_contacts` (PostgreSQL):
    ``events`` aligned with the contact rows, each ``(kind, evidence JSON text)`` or None (no
    event for that contact); the other columns are the same for every event of the batch."""

    events: list[tuple[str, str] | None]
    purpose: str
    source: str
    actor: str


def insert_contacts(
    conn: Connection,
    org_id: int,
    rows: list[tuple[Any, ...]],
    now: datetime,
    consent: NewConsent | None = None,
) -> dict[str, int]:
    """Insert new contacts (tuples in :data:`CONTACT_COLUMNS` order, ``fields`` a dict,
    ``tags`` a list); returns their ids by phone. Raises :class:`Raced` if one already exists.

    With ``consent`` (PostgreSQL only, see :func:`consent_with_contacts`) their ledger events
    are written too, created at ``now`` with the new contacts' ids, and no ids are returned."""
    if not rows:
        return {}
    if _sqlite(conn):
        if consent is not None:
            raise ValueError("SQLite writes the new contacts' consent with insert_consent")
        return _sqlite_contacts(conn, org_id, rows, now)
    return _pg_contacts(conn, org_id, rows, now, consent)


def _sqlite_contacts(
    conn: Connection, org_id: int, rows: list[tuple[Any, ...]], now: datetime
) -> dict[str, int]:
    to_json = _json_memo(_processor(conn, contacts.c.fields))
    to_bool = _processor(conn, contacts.c.opted_out)
    flags = {True: to_bool(True), False: to_bool(False)}
    stamp = _processor(conn, contacts.c.created_at)(now)
    params = [
        (org_id, *r[:8], to_json(r[8]), to_json(r[9]), flags[bool(r[10])], stamp, stamp)
        for r in rows
    ]
    before = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM contacts").scalar_one()
    trigger = None
    if len(rows) >= FTS_BULK_MIN:
        trigger = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (_FTS_TRIGGER,)
        ).scalar()
    if trigger is not None:
        conn.exec_driver_sql(f"DROP TRIGGER {_FTS_TRIGGER}")
    conn.exec_driver_sql(_SQLITE_CONTACTS, params)
    # With INTEGER PRIMARY KEY, SQLite gives a new row max(id) + 1 (only a table that has used
    # the largest possible id gets random ones; the count check below would catch that), and
    # under BEGIN IMMEDIATE nobody else inserts: the rows above ``before`` are this batch's.
    ids = {
        phone: contact_id
        for contact_id, phone in conn.exec_driver_sql(
            "SELECT id, phone_e164 FROM contacts WHERE id > ?", (before,)
        )
    }
    if len(ids) != len(rows):
        raise RuntimeError(f"expected {len(rows)} new contacts above id {before}, found {len(ids)}")
    if trigger is not None:
        conn.exec_driver_sql(
            "INSERT INTO contacts_fts(rowid, first_name, last_name, email) "
            "SELECT id, first_name, last_name, email FROM contacts WHERE id > ?",
            (before,),
        )
        conn.exec_driver_sql(trigger)
    return ids


def _copy(conn: Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """COPY rows on the connection's own transaction (psycopg 3)."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    finally:
        cursor.close()


def _pg_contacts(
    conn: Connection,
    org_id: int,
    rows: list[tuple[Any, ...]],
    now: datetime,
    consent: NewConsent | None = None,
) -> dict[str, int]:
    """Stage the rows with ``COPY`` (each with its ledger event's kind and evidence, if any),
    then insert them: returning their ids by phone, or, with ``consent``, writing their events
    in the same statement and returning nothing."""
    to_json = _json_memo(json.dumps)
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE textdesk_import_contacts (phone_e164 text, first_name text, "
        "last_name text, email text, zip text, state text, time_zone text, external_id text, "
        "fields jsonb, tags jsonb, opted_out boolean, consent_kind text, evidence jsonb) "
        "ON COMMIT DROP"
    )
    events = consent.events if consent is not None else [None] * len(rows)
    none = (None, None)
    _copy(
        conn,
        _PG_COPY_CONTACTS,
        [
            (*r[:8], to_json(r[8]), to_json(r[9]), r[10], *(event or none))
            for r, event in zip(rows, events, strict=True)
        ],
    )
    now_param = sa.bindparam("now", now, type_=contacts.c.created_at.type)
    ids: dict[str, int] = {}
    if consent is None:
        inserted_rows = conn.execute(
            sa.text(_PG_INSERT_CONTACTS).bindparams(now_param, org_id=org_id)
        ).all()
        ids = {phone: contact_id for contact_id, phone in inserted_rows}
        inserted = len(inserted_rows)
    else:
        inserted = conn.execute(
            sa.text(_PG_INSERT_CONTACTS_CONSENT).bindparams(
                now_param,
                org_id=org_id,
                purpose=consent.purpose,
                source=consent.source,
                actor=consent.actor,
            )
        ).scalar_one()
    conn.exec_driver_sql("DROP TABLE textdesk_import_contacts")
    if inserted != len(rows):
        raise Raced(f"{len(rows) - inserted} contacts of the batch were created meanwhile")
    return ids


def insert_consent(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Append ledger events (tuples in :data:`CONSENT_COLUMNS` order)."""
    if not rows:
        return
    if _sqlite(conn):
        to_time = _processor(conn, consent_events.c.created_at)
        stamps: dict[datetime, Any] = {}  # one ``now`` per batch: convert it once
        params = []
        for r in rows:
            stamp = stamps.get(r[8])
            if stamp is None:
                stamp = stamps[r[8]] = to_time(r[8])
            params.append((*r[:8], stamp))
        conn.exec_driver_sql(_SQLITE_CONSENT, params)
        return
    _copy(conn, _PG_COPY_CONSENT, rows)


def insert_rejects(conn: Connection, import_id: int, rows: list[tuple[int, str, str]]) -> None:
    """Rejected rows: (line, reason, raw)."""
    if not rows:
        return
    if _sqlite(conn):
        conn.exec_driver_sql(
            "INSERT INTO import_rejects (import_id, line, reason, raw) VALUES (?, ?, ?, ?)",
            [(import_id, *r) for r in rows],
        )
        return
    _copy(
        conn,
        "COPY import_rejects (import_id, line, reason, raw) FROM STDIN",
        [(import_id, *r) for r in rows],
    )
