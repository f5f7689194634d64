"""What a send result or a delivery report does besides moving the status: a success clears the
error of an earlier attempt; a report saying the recipient opted out (Twilio 21610 in a status
callback) records the opt-out as an inbound STOP would."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl

import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel, people, queue, statuses, trail
from textdesk.delivery import outbox
from textdesk.delivery.outbox import Retry, Sent, Unknown
from textdesk.domain.states import MessageStatus as S
from textdesk.providers import registry
from textdesk.providers.base import ChannelContext, StatusReport, WebhookRequest
from textdesk.services import consent, messaging
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import consent_events, contacts, messages, utcnow

SMPP = {"host": "127.0.0.1", "port": 1, "system_id": "x", "password": "y"}
TWILIO = {"account_sid": "AC" + "a1b2c3d4e5f60718293a4b5c6d7e8f90", "auth_token": "t"}
FIXTURES = Path(__file__).resolve().parents[2] / "src/textdesk/providers/twilio/fixtures"


def _row(db: Database, message_id: int) -> sa.Row[tuple[object, ...]]:
    with db.read() as conn:
        return conn.execute(sa.select(messages).where(messages.c.id == message_id)).one()


def test_a_successful_retry_clears_the_previous_error(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    [mid] = queue(db, settings, admin, people(db, admin, 1))
    [first] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    outbox.record(
        db, [Retry(first, "simulator:20503", "HTTP 503", utcnow() - timedelta(1))], actor="w"
    )
    assert _row(db, mid).error_code == "simulator:20503"
    [second] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    outbox.record(db, [Sent(second, "SM-1")], actor="w")
    row = _row(db, mid)
    assert row.status == "sent"
    assert row.error_code is None and row.error_detail is None


def test_a_report_settling_a_doubt_clears_its_error(
    db: Database, settings: Settings, acme: Org
) -> None:
    """Left unknown by a timeout, then reported delivered: the timeout no longer describes it.
    A failure report keeps (and replaces) the error."""
    admin = acme.admin.principal
    ch = channel(db, admin)
    ids = queue(db, settings, admin, people(db, admin, 2))
    claimed = outbox.claim(db, settings, worker_id="w", limit=2).claimed
    outbox.record(db, [Unknown(c, "simulator:timeout", "no answer") for c in claimed], actor="w")
    with db.write() as conn:
        for mid in ids:
            conn.execute(
                sa.update(messages)
                .where(messages.c.id == mid)
                .values(provider_message_id=f"P{mid}")
            )
    messaging.apply_statuses(
        db,
        [
            (ch, StatusReport(f"P{ids[0]}", S.DELIVERED), "p"),
            (ch, StatusReport(f"P{ids[1]}", S.UNDELIVERED, "simulator:30003", "unreachable"), "p"),
        ],
    )
    delivered, undelivered = _row(db, ids[0]), _row(db, ids[1])
    assert delivered.status == "delivered" and delivered.error_code is None
    assert delivered.error_detail is None
    assert undelivered.status == "undelivered" and undelivered.error_code == "simulator:30003"


def _twilio_status(form_file: str, sid: str) -> StatusReport:
    adapter = registry.create(
        "twilio",
        registry.validate_config("twilio", TWILIO),
        ChannelContext(channel_id=1, sender="+12015550100", base_url="http://textdesk.test"),
        http=cast(Any, None),  # parse_status makes no call
    )
    body = (FIXTURES / form_file).read_text().strip()
    body = body.replace("SM0f1e2d3c4b5a69788796a5b4c3d2e1f0", sid)
    request = WebhookRequest(
        method="POST",
        url="http://textdesk.test/webhooks/twilio/1/status",
        headers={"content-type": "application/x-www-form-urlencoded"},
        body=body.encode(),
        form=dict(parse_qsl(body)),
    )
    report = adapter.parse_status(request)
    assert report is not None
    return report


def test_twilio_21610_in_a_status_callback_records_the_opt_out(
    db: Database, settings: Settings, acme: Org
) -> None:
    """Twilio accepted the message, then failed it with 21610: the recipient replied STOP to
    Twilio. The ledger gets the opt-out (source ``provider``, the code as evidence), the contact
    is opted out, and the next message is blocked before it reaches Twilio."""
    admin = acme.admin.principal
    ch = channel(db, admin, provider="twilio", config=TWILIO)
    [cid] = people(db, admin, 1)
    [mid] = queue(db, settings, admin, [cid])
    [claimed] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    outbox.record(db, [Sent(claimed, "SM21610")], actor="w")

    report = _twilio_status("status_failed_21610.form", "SM21610")
    assert report.opted_out and report.error_code == "twilio:21610"
    messaging.apply_status(db, ch, report, actor="provider:twilio")
    messaging.apply_status(db, ch, report, actor="provider:twilio")  # Twilio retries callbacks

    assert statuses(db, [mid]) == {mid: "failed"}
    with db.read() as conn:
        phone = conn.execute(sa.select(contacts.c.phone_e164).where(contacts.c.id == cid)).scalar()
        opted_out = conn.execute(
            sa.select(contacts.c.opted_out).where(contacts.c.id == cid)
        ).scalar()
        ledger = conn.execute(
            sa.select(consent_events).where(consent_events.c.phone_e164 == phone)
        ).all()
    assert opted_out is True
    opt_outs = [e for e in ledger if e.kind == consent.ConsentKind.OPT_OUT]
    assert len(opt_outs) == 1, "one ledger event however often the callback comes"
    assert opt_outs[0].source == consent.ConsentSource.PROVIDER
    assert opt_outs[0].message_id == mid
    assert opt_outs[0].evidence["provider_code"] == "twilio:21610"
    [again] = queue(db, settings, admin, [cid])
    assert statuses(db, [again]) == {again: "blocked"}


def test_an_opt_out_report_that_beat_the_send_result_still_records_it(
    db: Database, settings: Settings, acme: Org
) -> None:
    """The callback arrived before the worker stored Twilio's sid: it is parked, and applied
    (opt-out included) once the sid is stored."""
    admin = acme.admin.principal
    ch = channel(db, admin, provider="twilio", config=TWILIO)
    [cid] = people(db, admin, 1)
    [mid] = queue(db, settings, admin, [cid])
    [claimed] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    report = _twilio_status("status_failed_21610.form", "SMEARLY")
    assert not messaging.apply_status(db, ch, report, actor="provider:twilio")
    outbox.record(db, [Sent(claimed, "SMEARLY")], actor="w")
    assert statuses(db, [mid]) == {mid: "failed"}
    with db.read() as conn:
        assert conn.execute(sa.select(contacts.c.opted_out).where(contacts.c.id == cid)).scalar()
    assert trail(db, mid)[-1][1] == "failed"


def test_a_delivered_callback_records_no_opt_out(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin, provider="twilio", config=TWILIO)
    [cid] = people(db, admin, 1)
    queue(db, settings, admin, [cid])
    [claimed] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    outbox.record(db, [Sent(claimed, "SMOK")], actor="w")
    report = _twilio_status("status_delivered.form", "SMOK")
    assert not report.opted_out
    messaging.apply_status(db, ch, report, actor="provider:twilio")
    with db.read() as conn:
        assert not conn.execute(
            sa.select(contacts.c.opted_out).where(contacts.c.id == cid)
        ).scalar()


def test_a_message_left_in_doubt_keeps_the_id_its_news_will_come_under(
    db: Database, settings: Settings, acme: Org
) -> None:
    """An SMPP submit unanswered in time: the message is unknown with the adapter's provisional
    id, and a report under that id, even one that came before the outcome was stored (parked),
    settles it."""
    admin = acme.admin.principal
    ch = channel(db, admin, provider="smpp", config=SMPP)
    [mid] = queue(db, settings, admin, people(db, admin, 1))
    [claimed] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    assert not messaging.apply_status(db, ch, StatusReport("smpp-doubt-1", S.SENT), actor="p")
    outbox.record(db, [Unknown(claimed, "smpp:timeout", "no answer", "smpp-doubt-1")], actor="w")
    row = _row(db, mid)
    assert row.provider_message_id == "smpp-doubt-1" and row.status == "sent"
    messaging.apply_status(db, ch, StatusReport("smpp-doubt-1", S.DELIVERED), actor="p")
    assert statuses(db, [mid]) == {mid: "delivered"}
    assert [t[1] for t in trail(db, mid)][-3:] == ["unknown", "sent", "delivered"]
