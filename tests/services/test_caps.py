"""Frequency caps: the org's per-contact cap and the 3-per-24h state rule for marketing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel, people
from textdesk.services import compliance, messaging
from textdesk.services.compliance import RecentSends, Recipient, Verdict
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import organizations

NOON_ET = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)  # a Wednesday, 12:00 in New York
FL = Recipient("+13055550123", opted_out=False, state="FL", zip="33101")
TX = Recipient("+15125550123", opted_out=False, state="TX", zip="78701")


def test_state_marketing_cap() -> None:
    earlier = NOON_ET - timedelta(hours=5)
    three = RecentSends(total=3, marketing=3, oldest=earlier, oldest_marketing=earlier)
    held = compliance.evaluate(FL, purpose="marketing", now=NOON_ET, valid_until=None, recent=three)
    assert held.verdict is Verdict.DEFER and held.code == "frequency.state.FL"
    assert held.until == earlier + timedelta(hours=24)
    assert compliance.evaluate(
        TX, purpose="marketing", now=NOON_ET, valid_until=None, recent=three
    ).allowed
    assert compliance.evaluate(
        FL, purpose="informational", now=NOON_ET, valid_until=None, recent=three
    ).allowed
    two = RecentSends(total=2, marketing=2, oldest=earlier, oldest_marketing=earlier)
    assert compliance.evaluate(
        FL, purpose="marketing", now=NOON_ET, valid_until=None, recent=two
    ).allowed


def test_org_contact_cap_and_replies_exempt() -> None:
    earlier = NOON_ET - timedelta(hours=1)
    five = RecentSends(total=5, marketing=0, oldest=earlier)
    held = compliance.evaluate(
        TX, purpose="informational", now=NOON_ET, valid_until=None, recent=five, daily_cap=5
    )
    assert held.code == "frequency.contact_daily" and held.until == earlier + timedelta(hours=24)
    assert compliance.evaluate(
        TX, purpose="conversational", now=NOON_ET, valid_until=None, recent=five, daily_cap=5
    ).allowed
    expired = compliance.evaluate(
        TX,
        purpose="informational",
        now=NOON_ET,
        valid_until=NOON_ET + timedelta(hours=2),
        recent=five,
        daily_cap=5,
    )
    assert expired.verdict is Verdict.BLOCK and expired.code == "expired"


def test_caps_count_real_messages(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    [fl] = people(db, admin, 1, state="FL", zip="33101")
    [tx] = people(db, admin, 1, start=50, state="TX", zip="78701")
    with db.write() as conn:
        conn.execute(sa.update(organizations).values(settings={"contact_daily_cap": 4}))

    long_lived = settings.model_copy(update={"message_validity_hours": 48})

    def send(cid: int, purpose: str, minutes: int) -> messaging.Message:
        with db.write() as conn:
            return messaging.queue_outbound(
                conn,
                long_lived,
                org_id=admin.org_id,
                contact_id=cid,
                body="Sale!",
                actor="t",
                purpose=purpose,
                now=NOON_ET + timedelta(minutes=minutes),
            ).message

    fl_results = [send(fl, "marketing", i).status for i in range(4)]
    assert fl_results == ["queued", "queued", "queued", "pending"]
    tx_results = [send(tx, "marketing", i).status for i in range(5)]
    assert tx_results == ["queued"] * 4 + ["pending"], "the org cap of 4 holds in TX"
    assert send(tx, "conversational", 9).status == "queued", "replies are not capped"
    with db.read() as conn:
        held = messaging.list_messages(conn, admin.org_id, contact_id=fl, status="pending")
    assert held[0].gate_code == "frequency.state.FL"
    assert held[0].send_after == NOON_ET + timedelta(hours=24)


def test_a_cap_past_the_validity_window_expires(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    [fl] = people(db, admin, 1, state="FL", zip="33101")
    statuses = []
    for i in range(4):
        with db.write() as conn:
            statuses.append(
                messaging.queue_outbound(
                    conn,
                    settings,
                    org_id=admin.org_id,
                    contact_id=fl,
                    body="Sale!",
                    actor="t",
                    purpose="marketing",
                    now=NOON_ET + timedelta(minutes=i),
                ).message
            )
    assert [m.status for m in statuses] == ["queued", "queued", "queued", "expired"]
    assert "FL allows 3 marketing messages" in (statuses[3].gate_detail or "")


def test_org_quiet_hours_narrow_the_law(db: Database, settings: Settings, acme: Org) -> None:
    from textdesk.services import org_settings

    admin = acme.admin.principal
    channel(db, admin)
    [ny] = people(db, admin, 1, state="NY", zip="10001")
    org_settings.update(
        db,
        admin,
        {"quiet_hours_start": "13:00", "quiet_hours_end": "17:00", "quiet_days": [0, 1, 2, 3, 4]},
    )
    with db.write() as conn:  # noon in New York on a Wednesday: legal, but the org says 1 pm
        held = messaging.queue_outbound(
            conn,
            settings,
            org_id=admin.org_id,
            contact_id=ny,
            body="Reminder from Acme. Reply STOP to opt out.",
            actor="t",
            purpose="informational",
            now=NOON_ET,
        ).message
        reply = messaging.queue_outbound(
            conn, settings, org_id=admin.org_id, contact_id=ny, body="Sure!", actor="t", now=NOON_ET
        ).message
    assert held.status == "pending" and held.gate_code == "quiet_hours.org"
    assert held.send_after == NOON_ET + timedelta(hours=1)
    assert reply.status == "queued", "conversation replies are not held"
