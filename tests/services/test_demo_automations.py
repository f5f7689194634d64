"""The demo organization's automations: a reminder that waits for 24 hours before each seeded
appointment and then sends with the appointment's data, and a HOURS keyword answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from textdesk.providers.base import InboundSms
from textdesk.services import demo, messaging
from textdesk.services.automations import runs, timers
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import automation_runs, automations, channels, messages

#: Noon in Washington: the reminders due within the next hours are inside quiet-hours windows.
NOW = datetime(2026, 5, 4, 16, 0, tzinfo=UTC)


def _runs(db: Database, org_id: int) -> list[tuple[str, str]]:
    with db.read() as conn:
        return [
            (r.name, r.state)
            for r in conn.execute(
                sa.select(automations.c.name, automation_runs.c.state)
                .join(automations, automations.c.id == automation_runs.c.automation_id)
                .where(automation_runs.c.org_id == org_id)
                .order_by(automation_runs.c.id)
            )
        ]


def _sent(db: Database, org_id: int) -> list[str]:
    with db.read() as conn:
        return list(
            conn.execute(
                sa.select(messages.c.body)
                .where(messages.c.org_id == org_id, messages.c.direction == "out")
                .order_by(messages.c.id)
            ).scalars()
        )


def test_the_demo_reminders_wait_then_fire_and_hours_is_answered(
    db: Database, settings: Settings
) -> None:
    seeded = demo.seed(db, contact_count=6, now=NOW)
    org_id = seeded.org_id
    reminder = "Appointment reminder"
    assert _runs(db, org_id) == [(reminder, "waiting")] * 4
    timers.run_due(db, settings, now=NOW)  # the 12-hour appointment is inside its 24 hours
    sent = _sent(db, org_id)
    assert len(sent) == 1 and "cleaning with Dr. Patel" in sent[0] and "Tuesday, May 5" in sent[0]
    timers.run_due(db, settings, now=NOW + timedelta(minutes=10))
    assert len(_sent(db, org_id)) == 2 and "cleaning with Dr. Lee" in _sent(db, org_id)[1]
    assert [s for _n, s in _runs(db, org_id)] == ["done", "waiting", "waiting", "done"]
    with db.read() as conn:
        channel_id = conn.execute(
            sa.select(channels.c.id).where(channels.c.org_id == org_id)
        ).scalar_one()
        waiting = conn.execute(
            sa.select(automation_runs.c.id).where(automation_runs.c.state == "waiting")
        ).first()
        assert waiting is not None
        assert any("until" in h.detail for h in runs.history(conn, org_id, waiting.id))
    messaging.receive_inbound(
        db,
        settings,
        channel_id,
        InboundSms(
            provider_message_id="demo-in-1",
            sender="+12025550188",
            recipient="+12025550143",
            body="hours?",
        ),
    )
    timers.run_due(db, settings)
    assert "open Mon-Fri 8am-6pm" in _sent(db, org_id)[-1]
    assert demo.seed(db, contact_count=6).created is False  # seeding again adds nothing
    assert len(_runs(db, org_id)) == 5
