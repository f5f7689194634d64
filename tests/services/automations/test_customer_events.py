"""Customer events in: stored once per key, all or nothing, contacts found or created."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.services.automations.helpers import (
    automation,
    booked,
    day_before_at_nine,
    outbound,
    post,
    sender,
    tick,
)
from textdesk.services import contacts
from textdesk.services.automations.events import EventInput
from textdesk.services.contacts import ContactInput
from textdesk.services.errors import Invalid, NotFound
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import automation_runs, customer_events

NOW = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
APPOINTMENT = datetime(2026, 5, 6, 15, 0, tzinfo=UTC)


def _count(db: Database, table: sa.Table) -> int:
    with db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_an_event_posted_twice_with_its_id_is_one_event_and_one_run(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(db, admin, day_before_at_nine())
    first = post(db, admin, booked("+12015550111", APPOINTMENT, id="evt-1"), now=NOW)[0]
    again = post(db, admin, booked("+12015550111", APPOINTMENT, id="evt-1"), now=NOW)[0]
    assert not first.duplicate and again.duplicate
    assert again.event.id == first.event.id
    assert again.run_ids == first.run_ids and len(first.run_ids) == 1
    assert _count(db, customer_events) == 1
    assert _count(db, automation_runs) == 1
    # ... and the run sends once.
    tick(db, settings, NOW)
    tick(db, settings, datetime(2026, 5, 5, 13, 0, tzinfo=UTC))  # 09:00 New York
    assert len(outbound(db)) == 1


def test_the_idempotency_key_header_makes_a_retried_batch_store_nothing_new(
    db: Database, acme: Org
) -> None:
    admin = acme.admin.principal
    automation(db, admin, day_before_at_nine())
    items = [booked(f"+1201555011{i}", APPOINTMENT, key=f"A-{i}") for i in range(3)]
    first = post(db, admin, *items, key="req-7", batch=True, now=NOW)
    again = post(db, admin, *items, key="req-7", batch=True, now=NOW)
    assert [r.event.idempotency_key for r in first] == ["req-7#0", "req-7#1", "req-7#2"]
    assert [r.event.id for r in again] == [r.event.id for r in first]
    assert all(r.duplicate for r in again)
    assert _count(db, customer_events) == 3
    assert _count(db, automation_runs) == 3


def test_the_same_id_twice_in_one_batch_is_stored_once(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    item = booked("+12015550111", APPOINTMENT, id="evt-9")
    first, second = post(db, admin, item, item, batch=True, now=NOW)
    assert second.duplicate and second.event.id == first.event.id
    assert _count(db, customer_events) == 1


def test_a_bad_event_in_a_batch_names_its_index_and_field_and_stores_nothing(
    db: Database, acme: Org
) -> None:
    admin = acme.admin.principal
    good = booked("+12015550111", APPOINTMENT)
    cases = [
        (EventInput(type="Appointment Booked", phone="+12015550112"), "events[2].type"),
        (
            EventInput(type="order.created", phone="+12015550112", occurs_at=datetime(2026, 5, 6)),
            "events[2].occurs_at",
        ),
        (EventInput(type="order.created"), "events[2].contact_id"),
        (EventInput(type="order.created", phone="not a number"), "events[2].phone"),
        (
            EventInput(type="order.created", phone="+12015550112", data={"a": "b\x00"}),
            "events[2].data",
        ),
        (
            EventInput(type="order.created", phone="+12015550112", data={"n": 2**70}),
            "events[2].data",
        ),
        (EventInput(type="order.created", external_id="nobody"), "events[2].external_id"),
    ]
    for bad, field in cases:
        with pytest.raises(Invalid) as caught:
            post(db, admin, good, good, bad, batch=True, now=NOW)
        assert caught.value.field == field, caught.value.message
        assert caught.value.message.startswith(field)
    with pytest.raises(NotFound) as missing:
        post(db, admin, good, EventInput(type="order.created", contact_id=999_999), batch=True)
    assert missing.value.field == "events[1].contact_id"
    assert _count(db, customer_events) == 0
    with db.read() as conn:  # the good events' new contacts were rolled back with the rest
        assert contacts.count_contacts(conn, admin.org_id) == 0


def test_contacts_are_found_by_id_external_id_or_phone_and_created_if_new(
    db: Database, acme: Org
) -> None:
    admin = acme.admin.principal
    known = contacts.create_contact(
        db, admin, ContactInput(phone="+12015550120", external_id="cust-1")
    )
    by_id, by_ext, by_phone, new = post(
        db,
        admin,
        EventInput(type="order.created", contact_id=known.id),
        EventInput(type="order.created", external_id="cust-1"),
        EventInput(type="order.created", phone="(201) 555-0120"),
        EventInput(type="order.created", phone="201 555 0199", external_id="cust-2"),
        batch=True,
        now=NOW,
    )
    assert by_id.event.contact_id == by_ext.event.contact_id == by_phone.event.contact_id
    assert by_id.event.contact_id == known.id
    with db.read() as conn:
        created = contacts.get_contact(conn, admin.org_id, new.event.contact_id)
    # A national number read with the organization's default region (US).
    assert created.phone_e164 == "+12015550199" and created.external_id == "cust-2"
    assert new.event.occurs_at == NOW  # no occurs_at: when it was received


def test_events_of_another_organization_are_not_visible(
    db: Database, acme: Org, globex: Org
) -> None:
    from textdesk.services.automations import events

    recorded = post(db, acme.admin.principal, booked("+12015550111", APPOINTMENT))[0]
    with db.read() as conn:
        with pytest.raises(NotFound):
            events.get_event(conn, globex.org.id, recorded.event.id)
        assert events.list_events(conn, globex.org.id) == []
        mine = events.list_events(conn, acme.org.id, contact_id=recorded.event.contact_id)
    assert [r.event.id for r in mine] == [recorded.event.id]
    assert mine[0].event.occurs_at == APPOINTMENT


def test_agents_may_not_post_events(db: Database, acme: Org) -> None:
    from textdesk.services.errors import Forbidden

    with pytest.raises(Forbidden):
        post(db, acme.agent.principal, booked("+12015550111", APPOINTMENT))


def test_occurs_at_out_of_range_is_refused(db: Database, acme: Org) -> None:
    far = datetime(9999, 12, 31, 23, 0, tzinfo=UTC) - timedelta(days=1)
    with pytest.raises(Invalid) as caught:
        post(db, acme.admin.principal, booked("+12015550111", far))
    assert caught.value.field == "occurs_at"
