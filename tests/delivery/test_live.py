"""End to end through a real HTTP server: API -> outbox -> worker -> simulator -> webhooks."""

from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel, people, statuses, trail
from tests.delivery.live import live_server, wait_until
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import channels, messages

FINAL = {"delivered", "undelivered", "failed", "blocked", "expired"}


def test_messages_flow_to_delivered(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin, rate=500)
    who = people(db, admin, 30)
    with live_server(settings, db) as (_live, client):
        ids = []
        for cid in who:
            r = client.post(
                "/api/v1/messages",
                headers=acme.admin.headers,
                json={"contact_id": cid, "body": f"Hi {cid}"},
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        wait_until(lambda: set(statuses(db, ids).values()) == {"delivered"})
        detail = client.get(f"/api/v1/messages/{ids[0]}", headers=acme.admin.headers).json()
    assert [e["to_status"] for e in detail["events"]] == [
        "pending",
        "queued",
        "sending",
        "sent",
        "delivered",
    ]
    assert detail["provider_message_id"].startswith("SM")


def test_failures_retries_and_replies(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin, rate=500)
    # Simulator suffixes: 0400 invalid number, 0410 opted out at the carrier, 0601 undelivered,
    # 0700 the customer replies STOP.
    [bad, optout, undeliv, stop] = (
        people(db, admin, 1, start=400)
        + people(db, admin, 1, start=410)
        + people(db, admin, 1, start=601)
        + people(db, admin, 1, start=700)
    )
    with live_server(settings, db) as (_live, client):
        ids = {}
        for name, cid in [("bad", bad), ("optout", optout), ("undeliv", undeliv), ("stop", stop)]:
            r = client.post(
                "/api/v1/messages",
                headers=acme.admin.headers,
                json={"contact_id": cid, "body": "Hello"},
            )
            ids[name] = r.json()["id"]
        wait_until(lambda: set(statuses(db, list(ids.values())).values()) <= FINAL)
        wait_until(
            lambda: (
                client.get("/api/v1/messages?status=received", headers=acme.admin.headers).json()
                != []
            )
        )
        got = statuses(db, list(ids.values()))
        inbound = client.get("/api/v1/messages?status=received", headers=acme.admin.headers).json()
        contact = client.get(f"/api/v1/contacts/{optout}", headers=acme.admin.headers).json()
    assert got[ids["bad"]] == "failed" and got[ids["optout"]] == "failed"
    assert got[ids["undeliv"]] == "undelivered" and got[ids["stop"]] == "delivered"
    assert trail(db, ids["bad"])[-1][1:] == ("failed", "provider_error")
    assert inbound[0]["body"] == "STOP" and inbound[0]["contact_id"] == stop
    assert contact["opted_out"], "a provider opt-out error is recorded in the ledger"


def test_temporary_failures_pause_the_channel(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin, rate=500)
    who = people(db, admin, 3, start=500)  # 0500.. : suffix 0500 answers 500
    tight = settings.model_copy(update={"circuit_breaker_failures": 1, "delivery_max_attempts": 2})
    with live_server(tight, db) as (_live, client):
        r = client.post(
            "/api/v1/messages",
            headers=acme.admin.headers,
            json={"contact_id": who[0], "body": "Hello"},
        )
        mid = r.json()["id"]

        def paused() -> bool:
            with db.read() as conn:
                return (
                    conn.execute(
                        sa.select(channels.c.paused_until).where(channels.c.id == ch)
                    ).scalar()
                    is not None
                )

        wait_until(paused)
        shown = client.get(f"/api/v1/channels/{ch}", headers=acme.admin.headers).json()
    assert "consecutive provider failures" in shown["pause_reason"]
    with db.read() as conn:
        row = conn.execute(sa.select(messages).where(messages.c.id == mid)).one()
    assert row.status in {"queued", "failed"} and row.error_code.startswith("simulator:")
