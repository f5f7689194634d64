"""Runs end to end: an event starts a run, the timer fires at the right local time, the gate
decides, and rescheduling, cancelling and opting out stop what is pending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.services.automations.helpers import (
    automation,
    booked,
    day_before_at_nine,
    history,
    outbound,
    post,
    run,
    sender,
    tick,
)
from textdesk.providers.base import InboundSms
from textdesk.services import consent, contacts, messaging
from textdesk.services.automations import drafts
from textdesk.services.automations.events import EventInput
from textdesk.services.contacts import ContactInput
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import message_drafts

NY = ZoneInfo("America/New_York")
PHONE = "+12015550111"  # a New Jersey number: Eastern time
NOW = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
APPOINTMENT = datetime(2026, 5, 6, 15, 0, tzinfo=NY).astimezone(UTC)
REMINDER_AT = datetime(2026, 5, 5, 9, 0, tzinfo=NY).astimezone(UTC)


@pytest.mark.parametrize(
    ("posted", "appointment", "reminder"),
    [
        # March: clocks go forward on 8 March 2026; the day before is still standard time.
        (
            datetime(2026, 3, 1, 12, 0, tzinfo=NY),
            datetime(2026, 3, 8, 15, 0, tzinfo=NY),
            datetime(2026, 3, 7, 14, 0, tzinfo=UTC),
        ),
        (
            datetime(2026, 3, 1, 12, 0, tzinfo=NY),
            datetime(2026, 3, 9, 10, 0, tzinfo=NY),
            datetime(2026, 3, 8, 13, 0, tzinfo=UTC),
        ),
        # November: clocks go back on 1 November 2026.
        (
            datetime(2026, 10, 25, 12, 0, tzinfo=NY),
            datetime(2026, 11, 1, 15, 0, tzinfo=NY),
            datetime(2026, 10, 31, 13, 0, tzinfo=UTC),
        ),
        (
            datetime(2026, 10, 25, 12, 0, tzinfo=NY),
            datetime(2026, 11, 2, 10, 0, tzinfo=NY),
            datetime(2026, 11, 1, 14, 0, tzinfo=UTC),
        ),
    ],
)
def test_a_nine_the_day_before_reminder_goes_at_nine_local_across_dst(
    db: Database,
    settings: Settings,
    acme: Org,
    posted: datetime,
    appointment: datetime,
    reminder: datetime,
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(db, admin, day_before_at_nine())
    # New Jersey's window opens at 8 AM (with no state known, the strictest state's 10 AM would
    # hold the 9:00 reminder: the gate decides, the timer only says when to ask it).
    contacts.create_contact(db, admin, ContactInput(phone=PHONE, state="NJ"))
    started = post(db, admin, booked(PHONE, appointment.astimezone(UTC)), now=posted)[0]
    run_id = started.run_ids[0]
    tick(db, settings, posted.astimezone(UTC))
    assert run(db, run_id).due_at == reminder
    tick(db, settings, reminder - timedelta(seconds=1))
    assert outbound(db) == []
    tick(db, settings, reminder)
    (message,) = outbound(db)
    local = message.created_at.astimezone(NY)
    assert (local.hour, local.minute) == (9, 0)
    assert message.status == "queued" and message.purpose == "informational"
    day = appointment.strftime("%A, %B ") + str(appointment.day)
    assert f"see you {day} at {appointment.hour % 12 or 12}:00" in message.body
    assert run(db, run_id).state == "done"


def test_the_reminder_is_at_nine_in_the_recipients_own_zone(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(db, admin, day_before_at_nine())
    contacts.create_contact(db, admin, ContactInput(phone=PHONE, time_zone="America/Los_Angeles"))
    run_id = post(db, admin, booked(PHONE, APPOINTMENT), now=NOW)[0].run_ids[0]
    tick(db, settings, NOW)
    la = ZoneInfo("America/Los_Angeles")
    assert run(db, run_id).due_at == datetime(2026, 5, 5, 9, 0, tzinfo=la).astimezone(UTC)


def test_a_rescheduled_appointment_replaces_its_pending_reminder(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(db, admin, day_before_at_nine())
    first = post(db, admin, booked(PHONE, APPOINTMENT), now=NOW)[0].run_ids[0]
    tick(db, settings, NOW)
    later = APPOINTMENT + timedelta(days=2)
    moved = post(
        db,
        admin,
        EventInput(type="appointment.rescheduled", phone=PHONE, key="A-1", occurs_at=later),
        now=NOW + timedelta(hours=1),
    )[0]
    assert run(db, first).state == "cancelled" and run(db, first).reason == "replaced"
    assert history(db, admin.org_id, first)[-1][:2] == ("cancelled", "replaced")
    assert f"replaced by event {moved.event.id}" in history(db, admin.org_id, first)[-1][2]
    (second,) = moved.run_ids
    tick(db, settings, NOW + timedelta(hours=1))
    assert run(db, second).due_at == REMINDER_AT + timedelta(days=2)
    tick(db, settings, REMINDER_AT)
    assert outbound(db) == []
    tick(db, settings, REMINDER_AT + timedelta(days=2))
    (message,) = outbound(db)
    assert "Friday, May 8 at 3:00 PM" in message.body


def test_a_cancelled_appointment_cancels_its_reminder(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(db, admin, day_before_at_nine())
    other = post(db, admin, booked("+12015550112", APPOINTMENT, key="A-2"), now=NOW)[0]
    run_id = post(db, admin, booked(PHONE, APPOINTMENT), now=NOW)[0].run_ids[0]
    tick(db, settings, NOW)
    cancelled = post(
        db, admin, EventInput(type="appointment.cancelled", phone=PHONE, key="A-1"), now=NOW
    )[0]
    assert cancelled.run_ids == []  # the reminder automation does not start on a cancellation
    assert run(db, run_id).state == "cancelled"
    assert run(db, run_id).reason == "event_cancelled"
    tick(db, settings, REMINDER_AT)
    # Only the other appointment's reminder went.
    (message,) = outbound(db)
    assert message.contact_id == other.event.contact_id


def test_a_booking_and_its_cancellation_in_one_batch_leave_nothing_to_send(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(db, admin, day_before_at_nine())
    made, _gone = post(
        db,
        admin,
        booked(PHONE, APPOINTMENT),
        EventInput(type="appointment.cancelled", phone=PHONE, key="A-1"),
        batch=True,
        now=NOW,
    )
    assert run(db, made.run_ids[0]).state == "cancelled"


def test_cancelling_stops_a_reminder_that_quiet_hours_hold_in_the_outbox(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(db, admin, [{"type": "send", "template": "Booked for {event.time}."}])
    contacts.create_contact(db, admin, ContactInput(phone=PHONE, state="NJ"))
    late = datetime(2026, 5, 4, 22, 30, tzinfo=NY).astimezone(UTC)  # held until 8 AM
    run_id = post(db, admin, booked(PHONE, APPOINTMENT), now=late)[0].run_ids[0]
    tick(db, settings, late)
    (held,) = outbound(db)
    assert held.status == "pending" and held.gate_code.startswith("quiet_hours")
    kind, outcome, detail = history(db, admin.org_id, run_id)[1]
    assert (kind, outcome) == ("send", "held") and "quiet_hours" in detail
    post(db, admin, EventInput(type="appointment.cancelled", phone=PHONE, key="A-1"), now=late)
    (stopped,) = outbound(db)
    assert stopped.status == "blocked" and stopped.gate_code == "automation_cancelled"
    with db.read() as conn:
        events = messaging.list_events(conn, admin.org_id, stopped.id)
    assert (events[-1].from_status, events[-1].to_status) == ("pending", "blocked")


def test_a_stop_cancels_every_pending_automated_step_for_the_contact(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    channel_id = sender(db, admin)
    automation(db, admin, day_before_at_nine())
    automation(
        db,
        admin,
        [
            {"type": "queue_for_person", "template": "Want our spring offer?"},
            {"type": "wait", "duration": "2d"},
            {"type": "send", "template": "Thanks for your order."},
        ],
        event_types=("order.created",),
        name="Follow-up",
    )
    bystander = post(db, admin, booked("+12015550112", APPOINTMENT, key="A-2"), now=NOW)[0]
    reminder = post(db, admin, booked(PHONE, APPOINTMENT), now=NOW)[0].run_ids[0]
    follow = post(db, admin, EventInput(type="order.created", phone=PHONE), now=NOW)[0].run_ids[0]
    tick(db, settings, NOW)
    assert run(db, follow).state == "waiting"
    messaging.receive_inbound(
        db,
        settings,
        channel_id,
        InboundSms(provider_message_id="in-1", sender=PHONE, recipient="+12015550100", body="STOP"),
    )
    for run_id in (reminder, follow):
        assert run(db, run_id).state == "cancelled" and run(db, run_id).reason == "opted_out"
        assert history(db, admin.org_id, run_id)[-1][:2] == ("cancelled", "opted_out")
    with db.read() as conn:
        statuses = list(conn.execute(sa.select(message_drafts.c.status)).scalars())
    assert statuses == ["discarded"]
    assert run(db, bystander.run_ids[0]).state == "waiting"
    tick(db, settings, NOW + timedelta(days=3))
    sent = [m for m in outbound(db) if m.purpose != "compliance"]
    assert [m.contact_id for m in sent] == [bystander.event.contact_id]


def test_an_agents_opt_out_cancels_the_runs_too(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(db, admin, day_before_at_nine())
    started = post(db, admin, booked(PHONE, APPOINTMENT), now=NOW)[0]
    consent.agent_opt_out(db, acme.agent.principal, started.event.contact_id, note="asked")
    assert run(db, started.run_ids[0]).state == "cancelled"


def test_a_send_the_gate_refuses_is_in_the_history_with_its_reason(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(db, admin, [{"type": "send", "template": "Your order shipped."}, {"type": "stop"}])
    contact = contacts.create_contact(db, admin, ContactInput(phone=PHONE))
    consent.agent_opt_out(db, admin, contact.id)
    run_id = post(db, admin, EventInput(type="appointment.booked", contact_id=contact.id), now=NOW)[
        0
    ].run_ids[0]
    tick(db, settings, NOW)
    (message,) = outbound(db)
    assert message.status == "blocked" and message.gate_code == "opted_out"
    steps = history(db, admin.org_id, run_id)
    assert steps[1][:2] == ("send", "refused")
    assert "opted_out" in steps[1][2] and "opted out" in steps[1][2]
    assert steps[-1][:2] == ("stop", "ok")
    assert run(db, run_id).state == "done"


def test_a_merge_field_without_a_value_fails_the_run_and_says_which(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(db, admin, [{"type": "send", "template": "Total {event.data.total}"}])
    run_id = post(db, admin, booked(PHONE, APPOINTMENT, data={"other": 1}), now=NOW)[0].run_ids[0]
    tick(db, settings, NOW)
    assert outbound(db) == []
    assert run(db, run_id).state == "failed"
    kind, outcome, detail = history(db, admin.org_id, run_id)[-1]
    assert (kind, outcome) == ("send", "error") and "event.data.total" in detail


def test_event_data_fills_the_template(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(
        db,
        admin,
        [
            {
                "type": "send",
                "template": "Order {event.data.order.number} shipped via {event.data.carrier}.",
            }
        ],
        event_types=("order.shipped",),
    )
    post(
        db,
        admin,
        EventInput(
            type="order.shipped",
            phone=PHONE,
            data={"order": {"number": 1042}, "carrier": "UPS"},
        ),
        now=NOW,
    )
    tick(db, settings, NOW)
    (message,) = outbound(db)
    assert message.body == "Order 1042 shipped via UPS."


def test_conditions_decide_whether_a_run_starts(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(
        db,
        admin,
        [{"type": "send", "template": "Thanks, big spender."}],
        event_types=("order.created",),
        conditions={
            "segment": "tag:vip AND NOT opted_out",
            "event": [{"field": "event.data.total", "op": ">", "value": 100}],
        },
    )
    contacts.create_contact(db, admin, ContactInput(phone=PHONE, tags=["vip"]))
    contacts.create_contact(db, admin, ContactInput(phone="+12015550112"))
    big_vip, small_vip, big_other = post(
        db,
        admin,
        EventInput(type="order.created", phone=PHONE, data={"total": 250}),
        EventInput(type="order.created", phone=PHONE, data={"total": 20}),
        EventInput(type="order.created", phone="+12015550112", data={"total": 250}),
        batch=True,
        now=NOW,
    )
    assert run(db, big_vip.run_ids[0]).state == "waiting"
    assert run(db, small_vip.run_ids[0]).state == "skipped"
    assert (
        "event.data.total > 100 is false" in history(db, admin.org_id, small_vip.run_ids[0])[0][2]
    )
    assert run(db, big_other.run_ids[0]).state == "skipped"
    assert "not in the segment" in history(db, admin.org_id, big_other.run_ids[0])[0][2]
    tick(db, settings, NOW)
    assert len(outbound(db)) == 1


def test_queue_for_person_leaves_a_draft_a_person_sends_with_one_action(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(
        db,
        admin,
        [
            {"type": "queue_for_person", "template": "Hi {first_name|there}, 20% off this week?"},
            {"type": "tag", "tags": ["Offered"]},
            {"type": "untag", "tags": ["new"]},
        ],
        event_types=("order.delivered",),
    )
    contact = contacts.create_contact(db, admin, ContactInput(phone=PHONE, tags=["new"]))
    run_id = post(db, admin, EventInput(type="order.delivered", contact_id=contact.id), now=NOW)[
        0
    ].run_ids[0]
    tick(db, settings, NOW)
    assert outbound(db) == []  # nothing goes out on its own
    with db.read() as conn:
        (draft,) = drafts.pending_drafts(conn, admin.org_id, _conversation_id(db, contact.id))
        assert contacts.get_contact(conn, admin.org_id, contact.id).tags == ["offered"]
    assert draft.body == "Hi there, 20% off this week?" and draft.purpose == "marketing"
    assert history(db, admin.org_id, run_id)[1][:2] == ("queue_for_person", "drafted")
    agent = acme.agent.principal
    first = drafts.send_draft(db, settings, agent, draft.id)
    again = drafts.send_draft(db, settings, agent, draft.id)
    assert first.created and not again.created and again.message.id == first.message.id
    (message,) = outbound(db)
    assert message.purpose == "marketing" and message.created_by == acme.agent.user.id
    with db.read() as conn:
        assert drafts.get_draft(conn, admin.org_id, draft.id).status == "sent"


def _conversation_id(db: Database, contact_id: int) -> int:
    from textdesk.store.tables import conversations

    with db.read() as conn:
        return int(
            conn.execute(
                sa.select(conversations.c.id).where(conversations.c.contact_id == contact_id)
            ).scalar_one()
        )


def test_an_edit_lets_runs_in_flight_finish_on_their_version_or_cancels_them(
    db: Database, settings: Settings, acme: Org
) -> None:
    from textdesk.services.automations import definitions

    admin = acme.admin.principal
    sender(db, admin)
    made = automation(db, admin, day_before_at_nine("Old wording."))
    old = post(db, admin, booked(PHONE, APPOINTMENT), now=NOW)[0].run_ids[0]
    tick(db, settings, NOW)
    edited = definitions.update_automation(
        db,
        admin,
        made.id,
        {
            "name": "Reminder",
            "trigger": {"event_types": ["appointment.booked"]},
            "steps": day_before_at_nine("New wording."),
        },
    )
    assert edited.version == 2
    new = post(db, admin, booked("+12015550112", APPOINTMENT, key="A-2"), now=NOW)[0].run_ids[0]
    assert run(db, old).version == 1 and run(db, new).version == 2
    tick(db, settings, NOW)
    tick(db, settings, REMINDER_AT)
    assert sorted(m.body for m in outbound(db)) == ["New wording.", "Old wording."]
    # in_flight=cancel stops the waiting runs.
    third = post(db, admin, booked("+12015550113", APPOINTMENT, key="A-3"), now=NOW)[0].run_ids[0]
    definitions.set_status(db, admin, made.id, "paused", in_flight="cancel")
    assert run(db, third).state == "cancelled"
    assert run(db, third).reason == "automation_paused"
    # A paused automation starts no runs.
    assert post(db, admin, booked("+12015550114", APPOINTMENT, key="A-4"))[0].run_ids == []


def test_a_wait_whose_time_passed_goes_on_or_stops(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    sender(db, admin)
    automation(
        db, admin, [{"type": "wait", "before": "24h"}, {"type": "send", "template": "Soon!"}]
    )
    automation(
        db,
        admin,
        [{"type": "wait", "before": "24h", "if_past": "stop"}, {"type": "send", "template": "No"}],
        name="Strict",
    )
    soon = APPOINTMENT - timedelta(hours=2)
    going, stopping = post(db, admin, booked(PHONE, APPOINTMENT), now=soon)[0].run_ids
    tick(db, settings, soon)
    assert [m.body for m in outbound(db)] == ["Soon!"]
    assert run(db, going).state == "done"
    assert run(db, stopping).state == "done" and run(db, stopping).reason == "wait_passed"
