"""Send later: a message with send_at waits in the outbox, is gated as of its time, is listed on
its conversation and can be cancelled until a worker has it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.delivery.helpers import channel
from tests.web.test_ui import login
from textdesk.delivery import outbox
from textdesk.services import contacts, messaging, scheduled
from textdesk.services.contacts import ContactInput
from textdesk.services.errors import Conflict, Invalid
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import utcnow

NY = ZoneInfo("America/New_York")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _contact(db: Database, org: Org) -> int:
    channel(db, org.admin.principal)
    return contacts.create_contact(
        db, org.admin.principal, ContactInput(phone="+12015550111", state="NJ")
    ).id


def _tomorrow_at(hour: int) -> datetime:
    day = (utcnow().astimezone(NY) + timedelta(days=1)).date()
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=NY)


def test_a_message_sent_later_waits_and_is_gated_as_of_its_time(
    db: Database, settings: Settings, acme: Org
) -> None:
    contact_id = _contact(db, acme)
    at = _tomorrow_at(11)
    queued = messaging.send_message(
        db, settings, acme.agent.principal, contact_id=contact_id, body="Later!", send_at=at
    ).message
    assert queued.status == "queued" and queued.send_after == at.astimezone(UTC)
    assert queued.valid_until == at.astimezone(UTC) + timedelta(
        hours=settings.message_validity_hours
    )
    assert outbox.claim(db, settings, worker_id="w", limit=10).claimed == []
    # Meant for 23:00 local: the gate holds it until the morning after, as of then.
    night = messaging.send_message(
        db,
        settings,
        acme.agent.principal,
        contact_id=contact_id,
        body="Night owl",
        purpose="informational",
        send_at=_tomorrow_at(23),
    ).message
    assert night.status == "pending" and night.gate_code.startswith("quiet_hours")
    assert night.send_after is not None and night.send_after.astimezone(NY).hour == 8
    with db.read() as conn:
        listed = scheduled.scheduled(conn, acme.org.id, queued.conversation_id or 0)
    assert [m.id for m in listed] == [queued.id, night.id]


def test_send_at_must_be_in_the_future_with_a_zone_and_not_too_far(
    db: Database, settings: Settings, acme: Org
) -> None:
    contact_id = _contact(db, acme)
    for bad in (
        utcnow() - timedelta(minutes=1),
        utcnow() + timedelta(days=91),
        datetime(2030, 1, 1, 9, 0),
    ):
        with pytest.raises(Invalid) as caught:
            messaging.send_message(
                db, settings, acme.admin.principal, contact_id=contact_id, body="x", send_at=bad
            )
        assert caught.value.field == "send_at"


def test_cancel_until_a_worker_has_it(db: Database, settings: Settings, acme: Org) -> None:
    contact_id = _contact(db, acme)
    later = messaging.send_message(
        db,
        settings,
        acme.agent.principal,
        contact_id=contact_id,
        body="Later",
        send_at=_tomorrow_at(11),
    ).message
    cancelled = scheduled.cancel(db, acme.agent.principal, later.id)
    assert cancelled.status == "blocked" and cancelled.gate_code == "cancelled"
    assert "cancelled by" in (cancelled.gate_detail or "")
    with db.read() as conn:
        events = messaging.list_events(conn, acme.org.id, later.id)
        assert scheduled.scheduled(conn, acme.org.id, later.conversation_id or 0) == []
    assert (events[-1].from_status, events[-1].to_status, events[-1].reason) == (
        "queued",
        "blocked",
        "cancelled",
    )
    with pytest.raises(Conflict):
        scheduled.cancel(db, acme.agent.principal, later.id)
    now = messaging.send_message(
        db, settings, acme.agent.principal, contact_id=contact_id, body="Now"
    ).message
    (claimed,) = outbox.claim(db, settings, worker_id="w", limit=10).claimed
    assert claimed.id == now.id
    with pytest.raises(Conflict):  # a worker has it: too late
        scheduled.cancel(db, acme.agent.principal, now.id)


def test_send_later_over_the_api_and_in_the_inbox(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    contact_id = _contact(db, acme)
    h = acme.admin.headers
    at = _tomorrow_at(11)
    made = client.post(
        "/api/v1/messages",
        json={"contact_id": contact_id, "body": "API later", "send_at": at.isoformat()},
        headers=h,
    )
    assert made.status_code == 201, made.text
    message = made.json()
    naive = client.post(
        "/api/v1/messages",
        json={"contact_id": contact_id, "body": "x", "send_at": "2030-01-01T09:00:00"},
        headers=h,
    )
    assert naive.status_code == 422 and naive.json()["field"] == "send_at"
    cid = message["conversation_id"]
    listed = client.get(f"/api/v1/conversations/{cid}/scheduled", headers=h).json()
    assert [m["id"] for m in listed] == [message["id"]]
    login(client, acme.agent.user.email)
    token = _CSRF.search(client.get("/home").text)
    assert token
    csrf = {"X-CSRF-Token": token.group(1)}
    thread = client.get(f"/inbox/c/{cid}")
    assert 'data-testid="scheduled"' in thread.text and "API later" in thread.text
    local = _tomorrow_at(12).strftime("%Y-%m-%dT%H:%M")
    sent = client.post(
        f"/inbox/c/{cid}/reply",
        data={"body": "Composer later", "send_key": "k1", "send_at": local},
        headers=csrf,
    )
    assert sent.status_code == 200 and "Composer later" in sent.text
    listed = client.get(f"/api/v1/conversations/{cid}/scheduled", headers=h).json()
    assert [m["body"] for m in listed] == ["API later", "Composer later"]
    assert listed[1]["send_after"].startswith(
        _tomorrow_at(12).astimezone(UTC).strftime("%Y-%m-%dT%H")
    )
    gone = client.post(f"/inbox/c/{cid}/scheduled/{message['id']}/cancel", headers=csrf)
    assert gone.status_code == 200
    listed = client.get(f"/api/v1/conversations/{cid}/scheduled", headers=h).json()
    assert [m["body"] for m in listed] == ["Composer later"]
    again = client.post(f"/api/v1/messages/{message['id']}/cancel", headers=h)
    assert again.status_code == 409
    bad = client.post(
        f"/inbox/c/{cid}/reply",
        data={"body": "x", "send_key": "k2", "send_at": "tomorrow"},
        headers=csrf,
    )
    assert "is not a date and time" in bad.text
