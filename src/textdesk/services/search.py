"""Search over contacts (name, e-mail, phone in any format) and message bodies.

One function family; two engines behind it:

- SQLite: the external-content FTS5 tables ``contacts_fts`` and ``messages_fts`` (rowid = the
  row's id), tokenized with ``unicode61 remove_diacritics 2``, so "jose" also finds "José".
- PostgreSQL: the GIN expression indexes over ``PG_CONTACT_TSV`` / ``PG_MESSAGE_TSV``. The query
  must repeat those expressions verbatim or the planner falls back to a scan. The ``simple``
  configuration keeps accents, so on PostgreSQL "José" is found by "josé", not by "jose".

What people type is never handed to either query language as is: it is cut into words, each
word becomes a quoted prefix term ("jo" finds "John" as the user types), operators and
punctuation are data. ``"O'Brien" AND (`` searches for the words O'Brien; it cannot raise a
syntax error.
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.phone import PhoneError, normalize
from textdesk.services.contacts import Contact
from textdesk.store.tables import PG_CONTACT_TSV, PG_MESSAGE_TSV, contacts, messages, organizations

MAX_LIMIT = 200
#: Fewer digits than this is a name or a house number, not a phone number.
PHONE_MIN_DIGITS = 7
MAX_QUERY = 200
MAX_WORDS = 12
#: Bare boolean operators typed out of habit; they would otherwise be required words.
_OPERATORS = frozenset({"AND", "OR", "NOT", "NEAR"})
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
#: The index expression with its columns named by table, for queries that join another table
#: with an ``email`` (the conversation list joins users). PostgreSQL matches an expression to an
#: index by the columns the names resolve to, so the index still serves it.
_PG_CONTACT_TSV = PG_CONTACT_TSV.replace("coalesce(", "coalesce(contacts.")


@dataclass(frozen=True)
class MessageHit:
    id: int
    contact_id: int
    contact_name: str
    contact_phone: str
    direction: str
    status: str
    snippet: str
    created_at: datetime


def words(q: str) -> list[str]:
    """The searchable words of ``q``: whitespace-separated, operators and bare punctuation out."""
    out: list[str] = []
    # NUL separates words: no stored text holds it, and FTS5 reads it as the end of the query.
    for raw in q[:MAX_QUERY].replace("\x00", " ").split():
        word = raw.strip("\"'()[]{}*^:+-~,;!?")
        # A word must hold a letter or a digit: "_" or "(" alone tokenize to nothing, which
        # FTS5 rejects and PostgreSQL answers with a NOTICE.
        if word in _OPERATORS or not (_LETTER.search(word) or any(c.isdigit() for c in word)):
            continue
        out.append(word)
    return out[:MAX_WORDS]


def fts5_query(terms: list[str]) -> str:
    """An FTS5 MATCH string: each word a quoted string (FTS5 syntax inside it is inert), as a
    prefix; the words are ANDed. The tokenizer splits "O'Brien" into the phrase o brien."""
    return " ".join('"' + w.replace('"', '""') + '"*' for w in terms)


def tsquery_text(terms: list[str]) -> str:
    """A ``to_tsquery`` string: each word quoted (backslash and quote escaped), with ``:*``."""
    return " & ".join("'" + w.replace("\\", "\\\\").replace("'", "''") + "':*" for w in terms)


def pg_tsquery(terms: list[str]) -> sa.ColumnElement[Any]:
    """The PostgreSQL query for ``terms``, accents folded by ``textdesk_unaccent`` (the IMMUTABLE
    wrapper of the ``unaccent`` extension that migration 0003 creates and the index expressions
    ``PG_CONTACT_TSV``/``PG_MESSAGE_TSV`` use), so "jose" matches "José" as on SQLite."""
    return sa.func.to_tsquery(
        sa.literal_column("'simple'"), sa.func.textdesk_unaccent(sa.literal(tsquery_text(terms)))
    )


def contact_text_clause(conn: Connection, q: str) -> sa.ColumnElement[bool] | None:
    """Full-text match on first name, last name and e-mail; ``None`` when ``q`` has no words."""
    terms = words(q)
    if not terms:
        return None
    if conn.dialect.name == "sqlite":
        fts = sa.table("contacts_fts")
        matching: sa.Select[Any] = (
            sa.select(sa.literal_column("rowid"))
            .select_from(fts)
            .where(sa.literal_column("contacts_fts").op("MATCH")(sa.literal(fts5_query(terms))))
        )
        return contacts.c.id.in_(matching)
    clause: sa.ColumnElement[bool] = sa.literal_column(_PG_CONTACT_TSV).op("@@")(pg_tsquery(terms))
    raw = q.replace("\x00", " ").strip()
    if "@" in raw and " " not in raw:
        # PostgreSQL's parser keeps a whole address as one lexeme and splits a half-typed one
        # ("ann@exa") into pieces that match nothing; a prefix on the column covers that case.
        clause = sa.or_(
            clause, sa.func.lower(contacts.c.email).like(_like_prefix(raw.lower()), escape="\\")
        )
    return clause


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def phone_clause(conn: Connection, org_id: int, q: str) -> sa.ColumnElement[bool] | None:
    """Phone in any format: the E.164 form of the query, or a stored number ending in its
    digits (so "555-0123 4" style fragments of 7+ digits and national formats both hit)."""
    digits = "".join(c for c in q if c.isdigit())
    if len(digits) < PHONE_MIN_DIGITS:
        return None
    region = conn.execute(
        sa.select(organizations.c.default_region).where(organizations.c.id == org_id)
    ).scalar()
    options: list[sa.ColumnElement[bool]] = [contacts.c.phone_e164.like("%" + digits)]
    with suppress(PhoneError):
        options.append(contacts.c.phone_e164 == normalize(q, region or "US"))
    return sa.or_(*options)


def is_phone_query(q: str) -> bool:
    """Digits and phone punctuation only: no point asking the text index."""
    digits = sum(c.isdigit() for c in q)
    return digits >= PHONE_MIN_DIGITS and not _LETTER.search(q)


def contact_clause(conn: Connection, org_id: int, q: str) -> sa.ColumnElement[bool]:
    """The WHERE clause "matches ``q``" over ``contacts`` (for lists that filter and paginate).

    Not scoped by itself: callers add ``contacts.c.org_id == org_id`` (they all do, and it keeps
    this composable with segment and tag filters)."""
    parts: list[sa.ColumnElement[bool]] = []
    phone = phone_clause(conn, org_id, q)
    if phone is not None:
        parts.append(phone)
    if not is_phone_query(q):
        text = contact_text_clause(conn, q)
        if text is not None:
            parts.append(text)
    return sa.or_(*parts) if parts else sa.false()


def search_contacts(conn: Connection, org_id: int, q: str, limit: int = 50) -> list[Contact]:
    """Contacts matching ``q``: phone matches first, then name/e-mail matches by relevance."""
    limit = max(1, min(limit, MAX_LIMIT))
    found: dict[int, Contact] = {}
    phone = phone_clause(conn, org_id, q)
    if phone is not None:
        rows = conn.execute(
            sa.select(contacts)
            .where(contacts.c.org_id == org_id, phone)
            .order_by(contacts.c.id)
            .limit(limit)
        )
        for row in rows:
            found[row.id] = Contact.from_row(row)
    if not is_phone_query(q) and len(found) < limit:
        for contact in _text_matches(conn, org_id, q, limit):
            found.setdefault(contact.id, contact)
    return list(found.values())[:limit]


def _text_matches(conn: Connection, org_id: int, q: str, limit: int) -> list[Contact]:
    terms = words(q)
    if not terms:
        return []
    if conn.dialect.name == "sqlite":
        # bm25 ranks shorter, rarer matches first: "jo" puts "Jo Smith" before "Johnson".
        fts = sa.table("contacts_fts", sa.column("rowid"), sa.column("rank"))
        query = (
            sa.select(contacts)
            .join(fts, fts.c.rowid == contacts.c.id)
            .where(
                sa.literal_column("contacts_fts").op("MATCH")(sa.literal(fts5_query(terms))),
                contacts.c.org_id == org_id,
            )
            .order_by(fts.c.rank, contacts.c.id)
            .limit(limit)
        )
    else:
        tsquery = pg_tsquery(terms)
        text = contact_text_clause(conn, q)
        assert text is not None
        query = (
            sa.select(contacts)
            .where(contacts.c.org_id == org_id, text)
            .order_by(
                sa.func.ts_rank(sa.literal_column(_PG_CONTACT_TSV), tsquery).desc(), contacts.c.id
            )
            .limit(limit)
        )
    return [Contact.from_row(r) for r in conn.execute(query)]


def search_messages(conn: Connection, org_id: int, q: str, limit: int = 50) -> list[MessageHit]:
    """Messages whose body holds every word of ``q`` (as prefixes), newest first."""
    limit = max(1, min(limit, MAX_LIMIT))
    terms = words(q)
    if not terms:
        return []
    columns: list[Any] = [
        messages.c.id,
        messages.c.contact_id,
        messages.c.direction,
        messages.c.status,
        messages.c.created_at,
        contacts.c.first_name,
        contacts.c.last_name,
        contacts.c.phone_e164,
    ]
    if conn.dialect.name == "sqlite":
        fts = sa.table("messages_fts", sa.column("rowid"))
        snippet = sa.func.snippet(sa.literal_column("messages_fts"), 0, "", "", "…", 16).label(
            "snippet"
        )
        query = (
            sa.select(*columns, snippet)
            .select_from(fts)
            .join(messages, messages.c.id == fts.c.rowid)
            .join(contacts, contacts.c.id == messages.c.contact_id)
            .where(
                sa.literal_column("messages_fts").op("MATCH")(sa.literal(fts5_query(terms))),
                messages.c.org_id == org_id,
            )
        )
    else:
        tsquery = pg_tsquery(terms)
        snippet = sa.func.ts_headline(
            sa.literal_column("'simple'"),
            messages.c.body,
            tsquery,
            'StartSel="", StopSel="", MaxWords=16, MinWords=6, FragmentDelimiter=" … "',
        ).label("snippet")
        query = (
            sa.select(*columns, snippet)
            .select_from(messages)
            .join(contacts, contacts.c.id == messages.c.contact_id)
            .where(
                # Unqualified on purpose: the index expression is over messages.body, and
                # contacts has no "body" column, so the name resolves to it.
                sa.literal_column(PG_MESSAGE_TSV).op("@@")(tsquery),
                messages.c.org_id == org_id,
            )
        )
    rows = conn.execute(query.order_by(messages.c.id.desc()).limit(limit))
    return [
        MessageHit(
            id=r.id,
            contact_id=r.contact_id,
            contact_name=f"{r.first_name} {r.last_name}".strip(),
            contact_phone=r.phone_e164,
            direction=r.direction,
            status=r.status,
            snippet=r.snippet,
            created_at=r.created_at,
        )
        for r in rows
    ]
