"""The consent ledger outlives contacts: deleting a contact leaves its events as they were, and
consent stays attached to the number (both engines)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tests.conftest import Org
from textdesk.services import consent, contacts
from textdesk.services.contacts import ContactInput
from textdesk.store.db import Database
from textdesk.store.tables import consent_events


def _rows(db: Database, org_id: int) -> list[Any]:
    with db.read() as conn:
        return [
            r
            for r in conn.execute(
                sa.select(consent_events)
                .where(consent_events.c.org_id == org_id)
                .order_by(consent_events.c.id)
            )
        ]


def test_deleting_a_contact_leaves_its_ledger_untouched(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    ann = contacts.create_contact(db, admin, ContactInput(phone="+12015550123", first_name="Ann"))
    consent.agent_opt_out(db, admin, ann.id, note="asked on the phone")
    consent.admin_opt_in(db, admin, ann.id, reason="she called back and asked to rejoin")
    before = _rows(db, acme.org.id)
    assert [(r.phone_e164, r.contact_id, r.kind) for r in before] == [
        ("+12015550123", ann.id, "opt_out"),
        ("+12015550123", ann.id, "re_opt_in"),
    ]

    contacts.delete_contact(db, admin, ann.id)

    # The same rows, every column: contact_id still names the contact they were recorded for.
    assert [tuple(r) for r in _rows(db, acme.org.id)] == [tuple(r) for r in before]


def test_consent_stays_with_the_number_after_the_contact_is_deleted(
    db: Database, acme: Org
) -> None:
    """A new contact for a deleted contact's number shows the number's history, events
    recorded for the deleted contact included (consent belongs to the number)."""
    admin = acme.admin.principal
    ann = contacts.create_contact(db, admin, ContactInput(phone="+12015550124", first_name="Ann"))
    consent.agent_opt_out(db, admin, ann.id, note="asked on the phone")
    contacts.delete_contact(db, admin, ann.id)

    again = contacts.create_contact(db, admin, ContactInput(phone="+12015550124", first_name="Ann"))
    with db.read() as conn:
        history = consent.history(conn, acme.org.id, again.id)
    assert [(e.kind, e.contact_id) for e in history] == [("opt_out", ann.id)]


def test_the_ledger_references_no_contact_and_no_organization(db: Database) -> None:
    """Migrations 0004 and 0005: an append-only record, never blocked or cascaded by the
    contacts or organizations tables (its one remaining reference is the message)."""
    with db.read() as conn:
        keys = sa.inspect(conn).get_foreign_keys("consent_events")
    assert [(k["constrained_columns"], k["referred_table"]) for k in keys] == [
        (["message_id"], "messages")
    ]
