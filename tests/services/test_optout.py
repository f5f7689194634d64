"""Inbound STOP / HELP / START and free-text revocation, end to end through receive_inbound."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel, queue, statuses
from textdesk.providers.base import InboundSms
from textdesk.services import consent, messaging
from textdesk.services import contacts as contact_service
from textdesk.services.contacts import ContactInput
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import consent_events, contacts, conversations, messages, organizations

_ids = itertools.count(1)


def inbound(
    db: Database, settings: Settings, ch: int, body: str, sender: str = "+12015550777"
) -> None:
    sms = InboundSms(
        provider_message_id=f"IN-{next(_ids)}", sender=sender, recipient="+12015550100", body=body
    )
    messaging.receive_inbound(db, settings, ch, sms)


def outbound_bodies(db: Database) -> list[str]:
    with db.read() as conn:
        return list(
            conn.execute(
                sa.select(messages.c.body)
                .where(messages.c.direction == "out")
                .order_by(messages.c.id)
            ).scalars()
        )


def ledger(db: Database) -> list[tuple[str, str]]:
    with db.read() as conn:
        return [
            (r.kind, r.source)
            for r in conn.execute(
                sa.select(consent_events.c.kind, consent_events.c.source).order_by(
                    consent_events.c.id
                )
            )
        ]


def opted_out(db: Database, phone: str = "+12015550777") -> bool:
    with db.read() as conn:
        return bool(
            conn.execute(
                sa.select(contacts.c.opted_out).where(contacts.c.phone_e164 == phone)
            ).scalar()
        )


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stop",
        "  Stop. ",
        "STOP ALL",
        "unsubscribe",
        "Opt-Out",
        "quit!",
        "END",
        "revoke",
        "cancel",
        "ARRET",
    ],
)
def test_stop_variants_suppress_with_one_confirmation(
    db: Database, settings: Settings, acme: Org, body: str
) -> None:
    ch = channel(db, acme.admin.principal)
    inbound(db, settings, ch, body)
    assert opted_out(db)
    confirmations = outbound_bodies(db)
    assert len(confirmations) == 1 and "unsubscribed" in confirmations[0]
    assert "Acme" in confirmations[0] and "START" in confirmations[0]
    # The contact repeats itself; the provider retries: still exactly one confirmation.
    inbound(db, settings, ch, body)
    assert len(outbound_bodies(db)) == 1
    assert ledger(db) == [("opt_out", "keyword"), ("opt_out", "keyword")]
    with db.read() as conn:
        confirmation = conn.execute(sa.select(messages).where(messages.c.direction == "out")).one()
    assert confirmation.status == "queued", "the confirmation itself is not blocked"


def test_then_every_send_is_blocked(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin)
    inbound(db, settings, ch, "stop")
    with db.read() as conn:
        cid = conn.execute(sa.select(contacts.c.id)).scalar_one()
    [mid] = queue(db, settings, admin, [cid], body="Hi again!")
    assert statuses(db, [mid]) == {mid: "blocked"}
    with db.read() as conn:
        detail = conn.execute(
            sa.select(messages.c.gate_detail).where(messages.c.id == mid)
        ).scalar()
    assert "opted out" in detail


def test_free_text_revocation(db: Database, settings: Settings, acme: Org) -> None:
    ch = channel(db, acme.admin.principal)
    inbound(db, settings, ch, "please stop texting me")
    assert opted_out(db)
    assert ledger(db) == [("opt_out", "free_text")]
    assert len(outbound_bodies(db)) == 1


@pytest.mark.parametrize(
    "body",
    [
        "stop by tomorrow?",
        "don't stop the deliveries",
        "I can't stop smiling",
        "Yes please",
        "cancel my appointment on Friday",
    ],
)
def test_ordinary_replies_change_nothing(
    db: Database, settings: Settings, acme: Org, body: str
) -> None:
    ch = channel(db, acme.admin.principal)
    inbound(db, settings, ch, body)
    assert not opted_out(db) and ledger(db) == [] and outbound_bodies(db) == []


def test_review_policy_flags_likely_opt_outs(db: Database, settings: Settings, acme: Org) -> None:
    with db.write() as conn:
        conn.execute(sa.update(organizations).values(settings={"free_text_policy": "review"}))
    ch = channel(db, acme.admin.principal)
    inbound(db, settings, ch, "How did you get my number?")
    assert not opted_out(db)
    with db.read() as conn:
        convo = conn.execute(sa.select(conversations)).one()
    assert convo.needs_review and "possible opt-out" in convo.review_reason
    inbound(db, settings, ch, "STOP", sender="+12015550778")  # certain: suppressed regardless
    assert opted_out(db, "+12015550778")


def test_help_and_start(db: Database, settings: Settings, acme: Org) -> None:
    ch = channel(db, acme.admin.principal)
    inbound(db, settings, ch, "HELP")
    assert "Msg & data rates may apply" in outbound_bodies(db)[-1]
    inbound(db, settings, ch, "STOP")
    inbound(db, settings, ch, "START")
    assert not opted_out(db)
    assert "resubscribed" in outbound_bodies(db)[-1]
    assert ledger(db) == [("help", "keyword"), ("opt_out", "keyword"), ("re_opt_in", "keyword")]
    inbound(db, settings, ch, "YES")  # not opted out: an ordinary "yes"
    assert len(outbound_bodies(db)) == 3


def test_no_double_confirmation_when_the_provider_answered(
    db: Database, settings: Settings, acme: Org
) -> None:
    twilio = {"account_sid": "AC" + "0" * 32, "auth_token": "t", "advanced_opt_out": True}
    ch = channel(db, acme.admin.principal, provider="twilio", config=twilio)
    inbound(db, settings, ch, "STOP")  # Twilio's Advanced Opt-Out already replied
    assert opted_out(db) and outbound_bodies(db) == []
    inbound(db, settings, ch, "Stop.", sender="+12015550778")  # Twilio ignores punctuation
    assert opted_out(db, "+12015550778") and len(outbound_bodies(db)) == 1


def test_help_loops_are_cut(db: Database, settings: Settings, acme: Org) -> None:
    """Another auto-responder answering our HELP text with HELP gets one answer, not a loop."""
    ch = channel(db, acme.admin.principal)
    for _ in range(5):
        inbound(db, settings, ch, "HELP")
    assert len(outbound_bodies(db)) == 1
    assert ledger(db) == [("help", "keyword")] * 5


# --- an opt-out outlives its contact ------------------------------------------------------------


def _opted_out(db: Database, phone: str) -> bool:
    with db.read() as conn:
        return bool(
            conn.execute(
                sa.select(contacts.c.opted_out).where(contacts.c.phone_e164 == phone)
            ).scalar_one()
        )


def test_a_contact_recreated_for_an_opted_out_number_is_opted_out(
    db: Database, settings: Settings, acme: Org
) -> None:
    """The ledger outlives contacts: a contact created again for a number whose latest word
    was STOP (by an agent, the API or an import) must not be sendable, nor one that writes in
    again after its contact was deleted, nor a contact given that number."""
    admin = acme.admin.principal
    ch = channel(db, admin)
    inbound(db, settings, ch, "STOP", sender="+12015550177")
    [gone] = _contact_ids(db, "+12015550177")
    assert _opted_out(db, "+12015550177")

    contact_service.delete_contact(db, admin, gone)
    again = contact_service.create_contact(db, admin, ContactInput(phone="+12015550177"))
    assert again.opted_out

    contact_service.delete_contact(db, admin, again.id)
    inbound(db, settings, ch, "who is this?", sender="+12015550177")
    assert _opted_out(db, "+12015550177")
    [writer] = _contact_ids(db, "+12015550177")

    other = contact_service.create_contact(db, admin, ContactInput(phone="+12015550178"))
    assert not other.opted_out
    contact_service.delete_contact(db, admin, writer)
    moved = contact_service.patch_contact(db, admin, other.id, {"phone": "+12015550177"})
    assert moved.opted_out
    back = contact_service.patch_contact(db, admin, other.id, {"phone": "+12015550178"})
    assert not back.opted_out

    # A later opt-in is the number's latest word: a new contact for it is sendable.
    consent.admin_opt_in(db, admin, back.id, reason="rejoined on the web form")
    contact_service.delete_contact(db, admin, back.id)
    assert not contact_service.create_contact(
        db, admin, ContactInput(phone="+12015550178")
    ).opted_out


def _contact_ids(db: Database, phone: str) -> list[int]:
    with db.read() as conn:
        return list(
            conn.execute(sa.select(contacts.c.id).where(contacts.c.phone_e164 == phone)).scalars()
        )
