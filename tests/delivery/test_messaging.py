"""Queueing and receiving messages: idempotency, sticky sender, spacing, inbound dedupe."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel, people, queue, statuses
from textdesk.providers.base import InboundSms
from textdesk.services import messaging
from textdesk.services.errors import Invalid, NotFound
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import contacts, conversations, messages


def test_idempotency_key_gives_one_message(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    [cid] = people(db, admin, 1)
    first = messaging.send_message(
        db, settings, admin, contact_id=cid, body="Hi", idempotency_key="k1"
    )
    again = messaging.send_message(
        db, settings, admin, contact_id=cid, body="Hi", idempotency_key="k1"
    )
    assert first.created and not again.created and first.message.id == again.message.id
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar() == 1


def test_sticky_sender(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    a = channel(db, admin, phone="+12015550100")
    b = channel(db, admin, phone="+12015550101")
    [cid] = people(db, admin, 1)
    [m1] = queue(db, settings, admin, [cid], channel_id=b)
    [m2] = queue(db, settings, admin, [cid])
    with db.read() as conn:
        chans = dict(conn.execute(sa.select(messages.c.id, messages.c.channel_id)).all())
    assert chans[m1] == chans[m2] == b != a


def test_bad_sends_say_why(db: Database, settings: Settings, acme: Org, globex: Org) -> None:
    admin = acme.admin.principal
    [cid] = people(db, admin, 1)
    with pytest.raises(Invalid, match="no active sender number"):
        queue(db, settings, admin, [cid])
    channel(db, admin)
    with pytest.raises(Invalid, match="empty") as empty:
        queue(db, settings, admin, [cid], body="   ")
    assert empty.value.field == "body"
    with pytest.raises(Invalid, match="1600"):
        queue(db, settings, admin, [cid], body="x" * 1601)
    with pytest.raises(NotFound):
        queue(db, settings, globex.admin.principal, [cid])


def test_contact_spacing(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    [cid] = people(db, admin, 1)
    spaced = settings.model_copy(update={"contact_spacing_seconds": 60})
    ids = queue(db, spaced, admin, [cid, cid])
    with db.read() as conn:
        rows = dict(conn.execute(sa.select(messages.c.id, messages.c.send_after)).all())
    assert rows[ids[0]] is None and rows[ids[1]] is not None


def test_inbound_creates_contact_and_dedupes(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin)
    sms = InboundSms(
        provider_message_id="IN-1",
        sender="+12015550999",
        recipient="+12015550100",
        body="Hello? 👋",
    )
    first = messaging.receive_inbound(db, settings, ch, sms)
    second = messaging.receive_inbound(db, settings, ch, sms)
    assert first.message is not None and not first.duplicate
    assert second.duplicate and second.message is None
    assert first.message.status == "received" and first.message.encoding == "UCS-2"
    with db.read() as conn:
        contact = conn.execute(
            sa.select(contacts).where(contacts.c.phone_e164 == "+12015550999")
        ).one()
        convo = conn.execute(sa.select(conversations)).one()
        assert contact.org_id == admin.org_id
        assert convo.unread_count == 1 and convo.channel_id == ch
    # The reply goes out on the number the contact wrote to.
    [mid] = queue(db, settings, admin, [contact.id])
    assert statuses(db, [mid]) == {mid: "queued"}
