"""Builders for the automations tests: a sender number, automations, events, ticks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tests.delivery.helpers import channel
from textdesk.services.auth import Principal
from textdesk.services.automations import definitions, events, runs, timers
from textdesk.services.automations.definitions import Automation
from textdesk.services.automations.events import EventInput, Recorded
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import automation_runs, messages

REMINDER = "Hi {first_name|there}, see you {event.date} at {event.time}. Reply STOP to opt out."


def sender(db: Database, admin: Principal) -> int:
    return channel(db, admin)


def automation(
    db: Database,
    admin: Principal,
    steps: list[dict[str, Any]],
    *,
    event_types: tuple[str, ...] = ("appointment.booked", "appointment.rescheduled"),
    conditions: dict[str, Any] | None = None,
    name: str = "Reminder",
) -> Automation:
    return definitions.create_automation(
        db,
        admin,
        {
            "name": name,
            "trigger": {"type": "event", "event_types": list(event_types)},
            "conditions": conditions or {},
            "steps": steps,
        },
    )


def day_before_at_nine(template: str = REMINDER) -> list[dict[str, Any]]:
    return [
        {"type": "wait", "at": "09:00", "days": -1},
        {"type": "send", "template": template, "purpose": "transactional"},
    ]


def post(
    db: Database,
    admin: Principal,
    *items: EventInput,
    key: str | None = None,
    batch: bool = False,
    now: datetime | None = None,
) -> list[Recorded]:
    return events.record_events(db, admin, list(items), idempotency_key=key, batch=batch, now=now)


def booked(phone: str, occurs_at: datetime, key: str = "A-1", **kw: Any) -> EventInput:
    return EventInput(type="appointment.booked", phone=phone, occurs_at=occurs_at, key=key, **kw)


def tick(db: Database, settings: Settings, now: datetime) -> timers.Tick:
    return timers.run_due(db, settings, now=now)


def run(db: Database, run_id: int) -> Any:
    with db.read() as conn:
        return conn.execute(sa.select(automation_runs).where(automation_runs.c.id == run_id)).one()


def history(db: Database, org_id: int, run_id: int) -> list[tuple[str, str, str]]:
    with db.read() as conn:
        return [(h.kind, h.outcome, h.detail) for h in runs.history(conn, org_id, run_id)]


def outbound(db: Database, contact_id: int | None = None) -> list[Any]:
    with db.read() as conn:
        query = sa.select(messages).where(messages.c.direction == "out").order_by(messages.c.id)
        if contact_id is not None:
            query = query.where(messages.c.contact_id == contact_id)
        return list(conn.execute(query))
