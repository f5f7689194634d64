"""Keyword and no-reply triggers: an inbound keyword starts a run (never STOP, HELP or START),
and a message of an automation starts a wait that a reply cancels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.services.automations.helpers import (
    automation,
    history,
    outbound,
    post,
    run,
    sender,
    tick,
)
from textdesk.providers.base import InboundSms
from textdesk.services import messaging
from textdesk.services.automations import definitions
from textdesk.services.automations.events import EventInput
from textdesk.services.errors import Conflict, Invalid
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import (
    automation_runs,
    automation_versions,
    contacts,
    messages,
    utcnow,
)

PHONE = "+12015550111"
#: Noon in New York: the follow-ups two days later are inside every quiet-hours window.
NOW = datetime(2026, 5, 4, 16, 0, tzinfo=UTC)
HOURS_REPLY = "We are open 9-5, Monday to Friday."


def keyword_automation(
    db: Database, admin: Any, words: list[str], steps: list[dict[str, Any]] | None = None
) -> definitions.Automation:
    return definitions.create_automation(
        db,
        admin,
        {
            "name": "Hours",
            "trigger": {"type": "keyword", "keywords": words},
            "steps": steps or [{"type": "send", "template": HOURS_REPLY}],
        },
    )


_n = 0


def inbound(db: Database, settings: Settings, channel_id: int, body: str) -> Any:
    global _n
    _n += 1
    received = messaging.receive_inbound(
        db,
        settings,
        channel_id,
        InboundSms(
            provider_message_id=f"in-{_n}", sender=PHONE, recipient="+12015550100", body=body
        ),
    )
    assert received.message is not None
    return received.message


def runs_of(db: Database, automation_id: int) -> list[Any]:
    with db.read() as conn:
        return list(
            conn.execute(
                sa.select(automation_runs)
                .where(automation_runs.c.automation_id == automation_id)
                .order_by(automation_runs.c.id)
            )
        )


# --- keyword -------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["HOURS", " hours? ", "Hours!!", "h.o.u.r.s", "*HOURS*"])
def test_a_keyword_starts_a_run_that_answers(
    db: Database, settings: Settings, acme: Org, body: str
) -> None:
    admin = acme.admin.principal
    channel_id = sender(db, admin)
    made = keyword_automation(db, admin, ["hours"])
    assert made.trigger["keywords"] == ["HOURS"]
    message = inbound(db, settings, channel_id, body)
    (started,) = runs_of(db, made.id)
    assert started.state == "waiting" and started.event_id is None
    assert (
        f"inbound message {message.id} (keyword HOURS)"
        in history(db, admin.org_id, started.id)[0][2]
    )
    tick(db, settings, utcnow())
    assert run(db, started.id).state == "done"
    (reply,) = [m for m in outbound(db, message.contact_id) if m.body == HOURS_REPLY]
    # The answer to the contact's own message, before any wait, is gated as a reply.
    assert reply.purpose == "conversational" and reply.status == "queued"


@pytest.mark.parametrize("body", ["hours please", "what are your hours", "HOUR", "HOURSS"])
def test_a_message_that_is_not_the_whole_keyword_starts_nothing(
    db: Database, settings: Settings, acme: Org, body: str
) -> None:
    admin = acme.admin.principal
    channel_id = sender(db, admin)
    made = keyword_automation(db, admin, ["HOURS"])
    inbound(db, settings, channel_id, body)
    assert runs_of(db, made.id) == []


@pytest.mark.parametrize(
    "word", ["STOP", "s.t.o.p", "Stop!", "HELP", "info", "START", "unsubscribe", "CANCEL", "YES"]
)
def test_a_compliance_keyword_cannot_be_an_automations(db: Database, acme: Org, word: str) -> None:
    with pytest.raises(Invalid) as caught:
        keyword_automation(db, acme.admin.principal, ["HOURS", word])
    assert caught.value.field == "trigger.keyword.keywords[1]"
    assert "compliance keyword" in caught.value.message


def test_stop_wins_over_a_stored_keyword_automation(
    db: Database, settings: Settings, acme: Org
) -> None:
    """Were a stored automation to list STOP (saved before the classifier knew a form), STOP
    still only opts out: no run, and the contact is opted out."""
    admin = acme.admin.principal
    channel_id = sender(db, admin)
    made = keyword_automation(db, admin, ["HOURS"])
    with db.write() as conn:
        conn.execute(
            sa.update(automation_versions)
            .where(automation_versions.c.automation_id == made.id)
            .values(trigger={"type": "keyword", "keywords": ["HOURS", "STOP"]})
        )
    message = inbound(db, settings, channel_id, "Stop")
    assert runs_of(db, made.id) == []
    with db.read() as conn:
        assert conn.execute(
            sa.select(contacts.c.opted_out).where(contacts.c.id == message.contact_id)
        ).scalar_one()
    inbound(db, settings, channel_id, "hours")  # the automation still loads and answers
    assert len(runs_of(db, made.id)) == 1


def test_a_keyword_belongs_to_one_automation(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    first = keyword_automation(db, admin, ["HOURS", "MENU"])
    with pytest.raises(Conflict) as caught:
        keyword_automation(db, admin, ["JOIN", "menu"])
    assert caught.value.field == "trigger.keywords[1]"
    # Editing the automation that has it is fine; archiving it frees the keyword.
    definitions.update_automation(
        db,
        admin,
        first.id,
        {
            "name": "Hours",
            "trigger": {"type": "keyword", "keywords": ["MENU"]},
            "steps": [{"type": "stop"}],
        },
    )
    definitions.archive_automation(db, admin, first.id)
    keyword_automation(db, admin, ["MENU"])


def test_a_keyword_automation_has_no_event_fields(db: Database, acme: Org) -> None:
    with pytest.raises(Invalid) as caught:
        keyword_automation(
            db, acme.admin.principal, ["HOURS"], [{"type": "send", "template": "{event.date}"}]
        )
    assert caught.value.field == "steps[0].template"
    with pytest.raises(Invalid) as caught:
        definitions.create_automation(
            db,
            acme.admin.principal,
            {
                "name": "x",
                "trigger": {"type": "keyword", "keywords": ["HOURS"]},
                "conditions": {"event": [{"field": "event.data.a", "op": "exists"}]},
                "steps": [{"type": "stop"}],
            },
        )
    assert "no event to compare" in caught.value.message


# --- no reply ------------------------------------------------------------------------------------

FIRST = "Your order shipped. Any questions?"
FOLLOW_UP = "Just checking in: did your order arrive?"


def _follow_up_setup(db: Database, settings: Settings, acme: Org) -> tuple[int, int, int, Any]:
    """An automation that texts on order.shipped, and one that follows it up after 2 days
    without a reply. Returns (channel, first automation, follow-up automation, the message)."""
    admin = acme.admin.principal
    channel_id = sender(db, admin)
    first = automation(
        db,
        admin,
        [{"type": "send", "template": FIRST}],
        event_types=("order.shipped",),
        name="Shipped",
    )
    follow = definitions.create_automation(
        db,
        admin,
        {
            "name": "No reply",
            "trigger": {"type": "no_reply", "within": "2d", "automation_id": first.id},
            "steps": [{"type": "send", "template": FOLLOW_UP}],
        },
    )
    post(db, admin, EventInput(type="order.shipped", phone=PHONE), now=NOW)
    tick(db, settings, NOW)
    (message,) = [m for m in outbound(db) if m.body == FIRST]
    return channel_id, first.id, follow.id, message


def _sent(db: Database, message_id: int, at: datetime) -> None:
    with db.write() as conn:
        conn.execute(
            sa.update(messages).where(messages.c.id == message_id).values(status="sent", sent_at=at)
        )


def test_no_reply_within_the_wait_sends_the_follow_up(
    db: Database, settings: Settings, acme: Org
) -> None:
    _channel, _first, follow, message = _follow_up_setup(db, settings, acme)
    (waiting,) = runs_of(db, follow)
    assert waiting.state == "waiting" and waiting.subject == f"reply:{message.id}"
    assert waiting.due_at == message.created_at + timedelta(days=2)
    tick(db, settings, waiting.due_at - timedelta(minutes=1))
    assert run(db, waiting.id).state == "waiting"
    _sent(db, message.id, message.created_at)
    tick(db, settings, waiting.due_at)
    assert run(db, waiting.id).state == "done"
    assert [m.body for m in outbound(db) if m.body == FOLLOW_UP] == [FOLLOW_UP]
    kinds = [h[:2] for h in history(db, acme.org.id, waiting.id)]
    assert ("no_reply", "ok") in kinds and ("send", "queued") in kinds


def test_a_reply_cancels_the_follow_up(db: Database, settings: Settings, acme: Org) -> None:
    channel_id, _first, follow, message = _follow_up_setup(db, settings, acme)
    (waiting,) = runs_of(db, follow)
    reply = inbound(db, settings, channel_id, "Yes it came, thanks")
    assert run(db, waiting.id).state == "cancelled" and run(db, waiting.id).reason == "replied"
    assert history(db, acme.org.id, waiting.id)[-1] == (
        "cancelled",
        "replied",
        f"the contact replied (message {reply.id})",
    )
    _sent(db, message.id, message.created_at)
    tick(db, settings, waiting.due_at + timedelta(minutes=1))
    assert [m for m in outbound(db) if m.body == FOLLOW_UP] == []


def test_a_reply_the_cancel_missed_is_seen_when_the_wait_ends(
    db: Database, settings: Settings, acme: Org
) -> None:
    """A reply stored while a worker held the run (so the inbound side skipped it) is found
    by the worker before the first step."""
    _channel, _first, follow, message = _follow_up_setup(db, settings, acme)
    (waiting,) = runs_of(db, follow)
    _sent(db, message.id, message.created_at)
    with db.write() as conn:  # an inbound row, without the inbound handling
        conn.execute(
            messages.insert().values(
                org_id=acme.org.id,
                conversation_id=message.conversation_id,
                contact_id=message.contact_id,
                direction="in",
                body="got it",
                status="received",
                purpose="conversational",
                created_at=message.created_at + timedelta(hours=1),
                updated_at=message.created_at + timedelta(hours=1),
            )
        )
    tick(db, settings, waiting.due_at)
    assert run(db, waiting.id).state == "cancelled" and run(db, waiting.id).reason == "replied"
    assert [m for m in outbound(db) if m.body == FOLLOW_UP] == []


def test_a_message_that_was_not_sent_has_no_follow_up(
    db: Database, settings: Settings, acme: Org
) -> None:
    _channel, _first, follow, message = _follow_up_setup(db, settings, acme)
    (waiting,) = runs_of(db, follow)
    with db.write() as conn:
        conn.execute(
            sa.update(messages)
            .where(messages.c.id == message.id)
            .values(status="failed", gate_code=None)
        )
    tick(db, settings, waiting.due_at)
    assert run(db, waiting.id).reason == "message_not_sent"
    assert [m for m in outbound(db) if m.body == FOLLOW_UP] == []


def test_a_message_sent_late_moves_the_end_of_the_wait(
    db: Database, settings: Settings, acme: Org
) -> None:
    """Held in the outbox (quiet hours), the message counts from when it went out."""
    _channel, _first, follow, message = _follow_up_setup(db, settings, acme)
    (waiting,) = runs_of(db, follow)
    tick(db, settings, waiting.due_at)  # still queued: look again within the hour
    still = run(db, waiting.id)
    assert still.state == "waiting" and still.due_at == waiting.due_at + timedelta(hours=1)
    went = message.created_at + timedelta(hours=10)
    _sent(db, message.id, went)
    tick(db, settings, still.due_at)
    assert run(db, waiting.id).due_at == went + timedelta(days=2)
    tick(db, settings, went + timedelta(days=2))
    assert run(db, waiting.id).state == "done"


def test_a_no_reply_trigger_follows_something_of_the_organization(
    db: Database, acme: Org, globex: Org
) -> None:
    theirs = automation(db, globex.admin.principal, [{"type": "stop"}])
    for source, field in (
        ({"automation_id": theirs.id}, "trigger.automation_id"),
        ({"campaign_id": 2**63 - 1}, "trigger.campaign_id"),
    ):
        with pytest.raises(Invalid) as caught:
            definitions.create_automation(
                db,
                acme.admin.principal,
                {
                    "name": "x",
                    "trigger": {"type": "no_reply", "within": "2d", **source},
                    "steps": [{"type": "stop"}],
                },
            )
        assert caught.value.field == field and "not found" in caught.value.message


def test_the_wait_starts_with_the_message_it_follows(
    db: Database, settings: Settings, acme: Org
) -> None:
    """A message refused at once by the gate starts no wait (nothing was sent)."""
    admin = acme.admin.principal
    sender(db, admin)
    first = automation(
        db, admin, [{"type": "send", "template": FIRST}], event_types=("order.shipped",)
    )
    follow = definitions.create_automation(
        db,
        admin,
        {
            "name": "No reply",
            "trigger": {"type": "no_reply", "within": "2d", "automation_id": first.id},
            "steps": [{"type": "send", "template": FOLLOW_UP}],
        },
    )
    recorded = post(db, admin, EventInput(type="order.shipped", phone=PHONE), now=NOW)
    with db.write() as conn:
        conn.execute(
            sa.update(contacts)
            .where(contacts.c.id == recorded[0].event.contact_id)
            .values(opted_out=True)
        )
    tick(db, settings, NOW)
    assert [m.status for m in outbound(db) if m.body == FIRST] == ["blocked"]
    assert runs_of(db, follow.id) == []
