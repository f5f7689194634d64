"""Contact and message search on both engines: FTS5 on SQLite, tsvector/GIN on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tests.conftest import Org
from tests.delivery.helpers import channel
from textdesk.providers.base import InboundSms
from textdesk.services import contacts, messaging, search
from textdesk.services.auth import Principal
from textdesk.services.contacts import ContactInput
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import PG_MESSAGE_TSV, messages, utcnow


def add(
    db: Database, who: Principal, phone: str, first: str = "", last: str = "", **kw: str
) -> int:
    return contacts.create_contact(
        db, who, ContactInput(phone=phone, first_name=first, last_name=last, **kw)
    ).id


def names(db: Database, org_id: int, q: str) -> list[str]:
    with db.read() as conn:
        return [c.full_name for c in search.search_contacts(conn, org_id, q)]


@pytest.fixture
def people(db: Database, acme: Org) -> Org:
    admin = acme.admin.principal
    add(db, admin, "+12015550101", "John", "Smith", email="john.smith@example.com")
    add(db, admin, "+12015550102", "Joanna", "Lee", email="jo@lee.example")
    add(db, admin, "+12015550103", "José", "Núñez")
    add(db, admin, "+12015550104", "Siobhan", "O'Brien", email="sob@pub.example")
    add(db, admin, "(212) 555-0199", "Mary", "Jones")
    add(db, admin, "+442079460000", "Nigel", "Farthing")
    return acme


def test_prefix_as_you_type(db: Database, people: Org) -> None:
    org = people.org.id
    assert set(names(db, org, "jo")) == {"John Smith", "Joanna Lee", "José Núñez", "Mary Jones"}
    assert names(db, org, "joh") == ["John Smith"]
    assert names(db, org, "john smi") == ["John Smith"]
    assert names(db, org, "SMITH") == ["John Smith"]
    assert names(db, org, "jo le") == ["Joanna Lee"]
    assert names(db, org, "zzz") == []


def test_accented_names(db: Database, people: Org) -> None:
    org = people.org.id
    assert names(db, org, "José") == ["José Núñez"]
    assert names(db, org, "núñ") == ["José Núñez"]
    assert names(db, org, "josé núñez") == ["José Núñez"]
    # Accents fold on both engines: FTS5's remove_diacritics, PostgreSQL's unaccent (0003).
    assert names(db, org, "jose nunez") == ["José Núñez"]
    assert names(db, org, "nun") == ["José Núñez"]


def test_apostrophes_and_emails(db: Database, people: Org) -> None:
    org = people.org.id
    assert names(db, org, "O'Brien") == ["Siobhan O'Brien"]
    assert names(db, org, "o'b") == ["Siobhan O'Brien"]
    assert names(db, org, "john.smith@example.com") == ["John Smith"]
    assert names(db, org, "john.smith@exa") == ["John Smith"]
    assert names(db, org, "sob@pub.example") == ["Siobhan O'Brien"]
    assert names(db, org, "jo@lee.example") == ["Joanna Lee"]


@pytest.mark.parametrize(
    "q",
    [
        "(212) 555-0199",
        "212-555-0199",
        "212.555.0199",
        "+1 212 555 0199",
        "2125550199",
        "5550199",
        "1-212-555-0199",
    ],
)
def test_phone_in_any_format(db: Database, people: Org, q: str) -> None:
    assert names(db, people.org.id, q) == ["Mary Jones"]


def test_international_phone_and_short_digit_runs(db: Database, people: Org) -> None:
    org = people.org.id
    assert names(db, org, "+44 20 7946 0000") == ["Nigel Farthing"]
    assert names(db, org, "0044 20 7946 0000") == []  # no such national format; no exception
    # Fewer than 7 digits is not a phone query: it is searched as a word, and nothing has it.
    assert names(db, org, "555") == []


@pytest.mark.parametrize(
    "q",
    [
        '"O\'Brien" AND (',
        "O'Brien OR",
        "NOT",
        '"',
        "'",
        "(",
        ")*",
        "*",
        "^jo",
        "jo*",
        "first_name:jo",
        "NEAR(jo smith)",
        "a & b | !c",
        "\\",
        "';--",
        "%_%",
        "-jo",
        "jo -smith",
        "",
        "   ",
        "x" * 5000,
        "jo " * 200,
        "💬 emoji",
        "\x00",
        "jo\x00",
        "\x00jo smith",
        "jo@lee\x00",
    ],
)
def test_operators_and_punctuation_never_raise(db: Database, people: Org, q: str) -> None:
    with db.read() as conn:
        search.search_contacts(conn, people.org.id, q)
        search.search_messages(conn, people.org.id, q)
        conn.execute(
            sa.select(sa.func.count())
            .select_from(contacts.contacts)
            .where(search.contact_clause(conn, people.org.id, q))
        ).scalar_one()


def test_a_nul_character_separates_words(db: Database, settings: Settings, people: Org) -> None:
    # FTS5 reads NUL as the end of its query ("unterminated string"); PostgreSQL refuses it in
    # any text. No stored text holds one, so it can only be a separator.
    assert names(db, people.org.id, "john\x00smi") == ["John Smith"]
    _inbound(db, settings, channel(db, people.admin.principal), "+12015550101", "See you", 1)
    with db.read() as conn:
        hits = search.search_messages(conn, people.org.id, "see\x00you")
    assert [h.snippet for h in hits] == ["See you"]


def test_operators_are_words_not_syntax(db: Database, people: Org) -> None:
    org = people.org.id
    assert names(db, org, '"O\'Brien" AND (') == ["Siobhan O'Brien"]
    assert names(db, org, "first_name:jo") == []  # not a column filter: the words "first_name jo"
    assert names(db, org, "(john) smith*") == ["John Smith"]


def test_tenancy(db: Database, people: Org, globex: Org) -> None:
    add(db, globex.admin.principal, "+12015550101", "John", "Outsider")
    assert names(db, people.org.id, "john") == ["John Smith"]
    assert names(db, globex.org.id, "john") == ["John Outsider"]
    assert names(db, globex.org.id, "2015550101") == ["John Outsider"]
    assert names(db, globex.org.id, "siobhan") == []


def test_limit(db: Database, acme: Org) -> None:
    with db.write() as conn:
        for i in range(30):
            contacts.create_contact_in(
                conn, acme.admin.principal, ContactInput(phone=f"+1201555{i:04d}", first_name="Ann")
            )
    with db.read() as conn:
        assert len(search.search_contacts(conn, acme.org.id, "ann", limit=10)) == 10
        assert len(search.search_contacts(conn, acme.org.id, "ann")) == 30


def test_contact_clause_composes_with_other_filters(db: Database, people: Org) -> None:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(contacts.contacts.c.first_name)
            .where(
                contacts.contacts.c.org_id == people.org.id,
                search.contact_clause(conn, people.org.id, "jo"),
                contacts.contacts.c.first_name != "John",
            )
            .order_by(contacts.contacts.c.id)
        ).scalars()
        assert list(rows) == ["Joanna", "José", "Mary"]


def test_search_follows_updates_and_deletes(db: Database, people: Org) -> None:
    admin = people.admin.principal
    with db.read() as conn:
        john = search.search_contacts(conn, people.org.id, "john")[0]
    contacts.update_contact(
        db, admin, john.id, ContactInput(phone=john.phone_e164, first_name="Jonathan")
    )
    assert names(db, people.org.id, "jonatha") == ["Jonathan"]
    assert names(db, people.org.id, "smith") == []
    contacts.delete_contact(db, admin, john.id)
    assert names(db, people.org.id, "jonathan") == []


def _inbound(db: Database, settings: Settings, ch: int, sender: str, body: str, n: int) -> None:
    messaging.receive_inbound(
        db,
        settings,
        ch,
        InboundSms(
            provider_message_id=f"s-{n}", sender=sender, recipient="+12015550100", body=body
        ),
    )


def test_message_bodies(db: Database, settings: Settings, people: Org, globex: Org) -> None:
    ch = channel(db, people.admin.principal)
    _inbound(db, settings, ch, "+12015550101", "Is the pharmacy open on Sunday?", 1)
    _inbound(db, settings, ch, "+12015550103", "¿Dónde está la farmacia?", 2)
    _inbound(db, settings, ch, "+12015550101", "Thanks, see you Sunday", 3)
    other = channel(db, globex.admin.principal, phone="+12015550200")
    add(db, globex.admin.principal, "+12015550999", "Gus")
    messaging.receive_inbound(
        db,
        settings,
        other,
        InboundSms(
            provider_message_id="g-1",
            sender="+12015550999",
            recipient="+12015550200",
            body="Sunday pharmacy hours please",
        ),
    )
    with db.read() as conn:
        hits = search.search_messages(conn, people.org.id, "sunday")
        assert [h.snippet for h in hits] == [
            "Thanks, see you Sunday",
            "Is the pharmacy open on Sunday?",
        ]
        assert {h.contact_name for h in hits} == {"John Smith"}
        assert hits[0].direction == "in" and hits[0].contact_phone == "+12015550101"
        assert [h.snippet for h in search.search_messages(conn, people.org.id, "pharm sun")] == [
            "Is the pharmacy open on Sunday?"
        ]
        assert [h.contact_name for h in search.search_messages(conn, people.org.id, "dónde")] == [
            "José Núñez"
        ]
        assert search.search_messages(conn, people.org.id, "hours") == []  # Globex's
        assert len(search.search_messages(conn, globex.org.id, "sunday")) == 1
        assert search.search_messages(conn, people.org.id, "( AND") == []


def test_long_message_snippet_is_short(db: Database, settings: Settings, people: Org) -> None:
    ch = channel(db, people.admin.principal)
    body = " ".join(["filler"] * 100) + " needle " + " ".join(["tail"] * 100)
    _inbound(db, settings, ch, "+12015550101", body, 1)
    with db.read() as conn:
        (hit,) = search.search_messages(conn, people.org.id, "needle")
    assert "needle" in hit.snippet and len(hit.snippet) < 200


def _plan(conn: Connection, stmt: sa.Select[Any]) -> str:
    compiled = stmt.compile(dialect=conn.dialect)
    return "\n".join(conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).scalars())


def test_postgres_plans_use_the_gin_indexes(db: Database, settings: Settings, acme: Org) -> None:
    """The planner picks the expression indexes only if the query repeats their expressions."""
    if db.is_sqlite:
        pytest.skip("the GIN expression indexes exist on PostgreSQL only")
    org = acme.org.id
    now = utcnow()
    with db.write() as conn:
        ids = (
            conn.execute(
                contacts.contacts.insert().returning(contacts.contacts.c.id),
                [
                    {
                        "org_id": org,
                        "phone_e164": f"+1201{i:07d}",
                        "first_name": f"name{i}",
                        "last_name": "x",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(5000)
                ],
            )
            .scalars()
            .all()
        )
        conn.execute(
            messages.insert(),
            [
                {
                    "org_id": org,
                    "contact_id": cid,
                    "direction": "in",
                    "body": f"message number {i} about topic{i}",
                    "status": "received",
                    "created_at": now,
                    "updated_at": now,
                }
                for i, cid in enumerate(ids)
            ],
        )
        conn.exec_driver_sql("ANALYZE contacts")
        conn.exec_driver_sql("ANALYZE messages")
    with db.read() as conn:
        clause = search.contact_text_clause(conn, "name42")
        assert clause is not None
        stmt = sa.select(contacts.contacts.c.id).where(contacts.contacts.c.org_id == org, clause)
        plan = _plan(conn, stmt)
        assert "ix_pg_contacts_search" in plan, plan
        tsquery = sa.func.to_tsquery(sa.literal_column("'simple'"), "topic42:*")
        stmt = sa.select(messages.c.id).where(sa.literal_column(PG_MESSAGE_TSV).op("@@")(tsquery))
        plan = _plan(conn, stmt)
        assert "ix_pg_messages_search" in plan, plan
        assert (
            len(search.search_messages(conn, org, "topic42", limit=200)) == 111
        )  # 42, 420-429, 4200-4299
        assert len(search.search_contacts(conn, org, "name42", limit=200)) == 111
