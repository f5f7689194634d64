"""The shared inbox service: filters and paging, threads with why-not-sent, assignment rules,
close/reopen, read counts, notes, tags, opt-out, the review queue and replies."""

from __future__ import annotations

import asyncio
import itertools

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel
from textdesk.providers.base import InboundSms
from textdesk.services import audit, consent, conversations, events, messaging
from textdesk.services.conversations import Filters
from textdesk.services.errors import Conflict, Forbidden, Invalid, NotFound
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import contacts, conversation_notes, messages, organizations

_ids = itertools.count(1)


def inbound(db: Database, settings: Settings, ch: int, body: str, sender: str) -> int:
    sms = InboundSms(
        provider_message_id=f"CV-{next(_ids)}", sender=sender, recipient="+12015550100", body=body
    )
    received = messaging.receive_inbound(db, settings, ch, sms)
    assert received.message is not None
    assert received.message.conversation_id is not None
    return received.message.conversation_id


@pytest.fixture
def ch(db: Database, acme: Org) -> int:
    return channel(db, acme.admin.principal)


def test_inbound_keeps_counters_and_activity(
    db: Database, settings: Settings, acme: Org, ch: int
) -> None:
    cid = inbound(db, settings, ch, "hello?", "+12015550701")
    inbound(db, settings, ch, "anyone there", "+12015550701")
    with db.read() as conn:
        convo = conversations.get_conversation(conn, acme.org.id, cid)
        contact_last = conn.execute(
            sa.select(contacts.c.last_inbound_at).where(contacts.c.id == convo.contact_id)
        ).scalar()
        counts = conversations.unread_counts(conn, acme.agent.principal)
    assert convo.unread_count == 2
    assert convo.last_inbound_at is not None and contact_last == convo.last_inbound_at
    assert convo.last_body == "anyone there" and convo.last_direction == "in"
    assert counts == {"mine": 0, "unassigned": 2, "needs_review": 0}
    conversations.mark_read(db, acme.agent.principal, cid)
    with db.read() as conn:
        assert conversations.unread_counts(conn, acme.agent.principal)["unassigned"] == 0


def test_filters_and_keyset_paging(db: Database, settings: Settings, acme: Org, ch: int) -> None:
    ids = [inbound(db, settings, ch, f"msg {n}", f"+1201555{n:04d}") for n in range(7)]
    agent = acme.agent.principal
    conversations.assign(db, agent, ids[0], agent.user_id)
    conversations.set_status(db, acme.admin.principal, ids[1], "closed")
    with db.write() as conn:
        conn.execute(
            sa.update(contacts).where(contacts.c.phone_e164 == "+12015550002").values(tags=["vip"])
        )
    with db.read() as conn:

        def listed(f: Filters, **kw: object) -> list[int]:
            return [c.id for c in conversations.list_conversations(conn, agent, f).items]

        assert listed(Filters(view="mine")) == [ids[0]]
        assert ids[0] not in listed(Filters(view="unassigned"))
        assert listed(Filters(status="closed")) == [ids[1]]
        assert ids[1] not in listed(Filters())
        assert listed(Filters(tag="vip")) == [ids[2]]
        assert listed(Filters(status=None, channel_id=ch + 999)) == []
        # Newest activity first, pages of 3 without gaps or repeats.
        seen: list[int] = []
        cursor = None
        while True:
            page = conversations.list_conversations(
                conn, agent, Filters(status=None), cursor=cursor, limit=3
            )
            seen += [c.id for c in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == ids[::-1]
        with pytest.raises(Invalid) as bad:
            conversations.list_conversations(conn, agent, cursor="not-a-cursor")
        assert bad.value.field == "cursor"
        with pytest.raises(Invalid) as bad_view:
            conversations.list_conversations(conn, agent, Filters(view="everything"))
        assert bad_view.value.field == "view"


def test_assignment_rules(
    db: Database, settings: Settings, acme: Org, ch: int, globex: Org
) -> None:
    cid = inbound(db, settings, ch, "hi", "+12015550801")
    agent, admin = acme.agent.principal, acme.admin.principal
    with pytest.raises(Forbidden):
        conversations.assign(db, agent, cid, admin.user_id)  # agents assign only themselves
    assert conversations.assign(db, agent, cid, agent.user_id).assignee_id == agent.user_id
    # Admin takes it over; now the agent cannot touch it.
    conversations.assign(db, admin, cid, admin.user_id)
    with pytest.raises(Forbidden):
        conversations.assign(db, agent, cid, agent.user_id)
    with pytest.raises(Forbidden):
        conversations.set_status(db, agent, cid, "closed")
    with pytest.raises(Invalid) as outsider:
        conversations.assign(db, admin, cid, globex.agent.user.id)
    assert outsider.value.field == "assignee_id"
    with pytest.raises(NotFound):
        conversations.assign(db, globex.admin.principal, cid, None)
    with db.read() as conn:
        trail = [e["action"] for e in audit.list_for_org(conn, acme.org.id)]
    assert trail.count("conversation.assign") == 2


def test_close_reopen_notes_tags(db: Database, settings: Settings, acme: Org, ch: int) -> None:
    cid = inbound(db, settings, ch, "hi", "+12015550802")
    agent = acme.agent.principal
    closed = conversations.set_status(db, agent, cid, "closed")
    assert closed.status == "closed" and closed.unread_count == 0
    assert conversations.set_status(db, agent, cid, "open").status == "open"
    with pytest.raises(Invalid):
        conversations.set_status(db, agent, cid, "archived")
    note = conversations.add_note(db, agent, cid, "  called them back  ")
    assert note.body == "called them back"
    with pytest.raises(Invalid) as empty:
        conversations.add_note(db, agent, cid, "   ")
    assert empty.value.field == "body"
    assert conversations.tag(db, agent, cid, "vip").tags == ["vip"]
    assert conversations.tag(db, agent, cid, "vip").tags == ["vip"]  # no duplicate
    assert conversations.tag(db, agent, cid, "vip", remove=True).tags == []
    with pytest.raises(Invalid):
        conversations.tag(db, agent, cid, "a,b")
    with db.read() as conn:
        t = conversations.thread(conn, acme.org.id, cid)
    assert [n.body for n in t.notes] == ["called them back"]
    assert t.notes[0].author_name == acme.agent.user.name
    assert [m.message.body for m in t.messages] == ["hi"]
    # Notes are internal: never a message.
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(conversation_notes)).scalar()


def test_reply_goes_through_the_gate_and_says_why_not_sent(
    db: Database, settings: Settings, acme: Org, ch: int
) -> None:
    cid = inbound(db, settings, ch, "hello", "+12015550803")
    agent = acme.agent.principal
    first = conversations.reply(
        db, settings, agent, cid, "Hi! How can we help?", idempotency_key="k1"
    )
    again = conversations.reply(
        db, settings, agent, cid, "Hi! How can we help?", idempotency_key="k1"
    )
    assert first.created and not again.created and again.message.id == first.message.id
    assert first.message.status in ("queued", "pending")
    with db.read() as conn:
        convo = conversations.get_conversation(conn, acme.org.id, cid)
    assert convo.assignee_id == agent.user_id  # answering an unassigned conversation takes it
    assert convo.unread_count == 0
    consent.agent_opt_out(db, acme.admin.principal, convo.contact_id)
    blocked = conversations.reply(db, settings, agent, cid, "One more thing")
    assert blocked.message.status == "blocked"
    with db.read() as conn:
        t = conversations.thread(conn, acme.org.id, cid)
    last = t.messages[-1]
    assert last.message.id == blocked.message.id
    assert last.why_not_sent and "opted out" in last.why_not_sent
    assert t.messages[0].why_not_sent is None  # inbound
    with pytest.raises(Invalid):
        conversations.reply(db, settings, agent, cid, "   ")


def test_opt_out_button(db: Database, settings: Settings, acme: Org, ch: int) -> None:
    cid = inbound(db, settings, ch, "hello", "+12015550804")
    convo = conversations.opt_out(db, acme.agent.principal, cid, note="asked on the phone")
    assert convo.opted_out
    with db.read() as conn:
        history = consent.history(conn, acme.org.id, convo.contact_id)
    assert [(e.kind, e.source) for e in history] == [("opt_out", "agent")]


def _flagged(db: Database, settings: Settings, ch: int, sender: str) -> int:
    with db.write() as conn:
        conn.execute(sa.update(organizations).values(settings={"free_text_policy": "review"}))
    return inbound(db, settings, ch, "How did you get my number?", sender)


def test_review_confirm_records_the_opt_out_once(
    db: Database, settings: Settings, acme: Org, ch: int
) -> None:
    cid = _flagged(db, settings, ch, "+12015550805")
    agent = acme.agent.principal
    with db.read() as conn:
        assert conversations.unread_counts(conn, agent)["needs_review"] == 1
        queue = conversations.list_conversations(conn, agent, Filters(needs_review=True))
    assert [c.id for c in queue.items] == [cid]
    convo = conversations.review(db, settings, agent, cid, "confirm")
    assert convo.opted_out and not convo.needs_review
    with db.read() as conn:
        history = consent.history(conn, acme.org.id, convo.contact_id)
        outs = conn.execute(
            sa.select(messages.c.purpose).where(messages.c.direction == "out")
        ).all()
        actions = [e["action"] for e in audit.list_for_org(conn, acme.org.id)]
    assert [(e.kind, e.source) for e in history] == [("opt_out", "free_text")]
    assert history[0].evidence["body"] == "How did you get my number?"
    assert [o.purpose for o in outs] == ["compliance"]  # exactly one confirmation
    assert "conversation.review_confirm" in actions
    with pytest.raises(Conflict):
        conversations.review(db, settings, agent, cid, "confirm")


def test_review_dismiss_clears_the_flag_only(
    db: Database, settings: Settings, acme: Org, ch: int
) -> None:
    cid = _flagged(db, settings, ch, "+12015550806")
    with pytest.raises(Invalid) as bad:
        conversations.review(db, settings, acme.agent.principal, cid, "maybe")
    assert bad.value.field == "action"
    convo = conversations.review(db, settings, acme.agent.principal, cid, "dismiss")
    assert not convo.needs_review and not convo.opted_out
    with db.read() as conn:
        assert consent.history(conn, acme.org.id, convo.contact_id) == []
        actions = [e["action"] for e in audit.list_for_org(conn, acme.org.id)]
    assert "conversation.review_dismiss" in actions


def test_changes_are_published_live(db: Database, settings: Settings, acme: Org, ch: int) -> None:
    cid = inbound(db, settings, ch, "hi", "+12015550807")

    async def run() -> list[tuple[str, dict[str, object]]]:
        sub = events.subscribe(acme.org.id)
        try:
            await asyncio.to_thread(inbound, db, settings, ch, "again", "+12015550807")
            await asyncio.to_thread(
                conversations.assign, db, acme.agent.principal, cid, acme.agent.user.id
            )
            got = []
            for _ in range(3):
                ev = await asyncio.wait_for(sub.__anext__(), 5)
                got.append((ev.kind, ev.data))
            return got
        finally:
            sub.close()

    got = asyncio.run(run())
    new = [d for k, d in got if k == "message.new"]
    assert len(new) == 1 and new[0]["conversation_id"] == cid and new[0]["direction"] == "in"
    status = [d for k, d in got if k == "message.status"]
    assert status == [{"message_ids": [new[0]["message_id"]]}]
    assert ("conversation.updated", {"conversation_id": cid, "change": "assigned"}) in got
