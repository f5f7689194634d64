"""Group commit on the send screen: many people's send actions carried out in one transaction
(``p2p.send_many``), each with its own answer, exactly as if sent one by one."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.services.p2p_helpers import NINE_ET, extra_agent, make_campaign, rows, setup
from tests.services.test_p2p_fast_path import counting
from textdesk.services import messaging, p2p
from textdesk.services.errors import Invalid, NotFound
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import campaign_contacts, contacts, message_events, messages


def _messages(db: Database, contact_ids: list[int]) -> list[Any]:
    with db.read() as conn:
        return list(
            conn.execute(sa.select(messages).where(messages.c.contact_id.in_(contact_ids))).all()
        )


def test_a_group_costs_the_statements_of_one_send(
    db: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 41)
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id, 41, now=NINE_ET)
    p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)  # warm caches
    group = [p2p.SendRequest(agent, p.campaign_id, c) for c in p.contact_ids[1:]]
    with counting(db) as seen:
        results = p2p.send_many(db, settings, group, now=NINE_ET)
    assert all(isinstance(r, p2p.Sent) and r.created for r in results), results
    # The same statements as one send (see test_p2p_fast_path), each carrying 40 rows.
    # 9: one is the look-up of the no-reply automations a campaign message may start
    # (services/automations/triggers.py), once per send or group.
    assert len(seen) <= 9, "\n".join(seen)
    sent = _messages(db, p.contact_ids[1:])
    assert len(sent) == 40 and {m.contact_id for m in sent} == set(p.contact_ids[1:])
    assert {m.status for m in sent} == {"queued"}
    with db.read() as conn:
        created = conn.execute(
            sa.select(sa.func.count()).where(
                message_events.c.message_id.in_([m.id for m in sent]),
                message_events.c.reason == "created",
            )
        ).scalar_one()
    assert created == 40
    state = rows(db, p.campaign_id)
    assert all(state[c].status == "sent" and state[c].message_id for c in p.contact_ids[1:])


def test_each_request_of_a_group_gets_its_own_answer(
    db: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 6)
    agent = acme.agent.principal
    other = extra_agent(db, acme, p.campaign_id, "Other")
    p2p.request_batch(db, agent, p.campaign_id, 4, now=NINE_ET)
    p2p.request_batch(db, other, p.campaign_id, 2, now=NINE_ET)
    state = rows(db, p.campaign_id)
    mine = [c for c in p.contact_ids if state[c].assignee_id == acme.agent.user.id]
    theirs = [c for c in p.contact_ids if state[c].assignee_id == other.user_id]
    with db.write() as conn:  # one of mine opted out since the batch
        conn.execute(sa.update(contacts).where(contacts.c.id == mine[2]).values(opted_out=True))
    group = [
        p2p.SendRequest(agent, p.campaign_id, mine[0]),  # sent
        p2p.SendRequest(agent, p.campaign_id, mine[0]),  # the same key press again: a repeat
        p2p.SendRequest(agent, p.campaign_id, theirs[0]),  # not mine
        p2p.SendRequest(agent, p.campaign_id, mine[2]),  # opted out: skipped
        p2p.SendRequest(agent, p.campaign_id, 999_999),  # not in the campaign
        p2p.SendRequest(agent, 999_999, mine[1]),  # no such campaign
        p2p.SendRequest(agent, p.campaign_id, mine[1], step="second"),  # no such step
        p2p.SendRequest(other, p.campaign_id, theirs[1]),  # another agent's send, same group
        p2p.SendRequest(agent, p.campaign_id, mine[3], body_override="  "),  # empty
    ]
    results = p2p.send_many(db, settings, group, now=NINE_ET)
    assert len(results) == len(group)
    first, again, not_mine, opted, unknown, no_campaign, bad_step, theirs_sent, empty = results
    assert isinstance(first, p2p.Sent) and first.created
    assert isinstance(again, p2p.Sent) and not again.created
    assert again.message.id == first.message.id
    assert isinstance(not_mine, p2p.Refused) and not_mine.reason == "not_assigned"
    assert isinstance(opted, p2p.Refused) and opted.reason == p2p.OPTED_OUT
    assert isinstance(unknown, NotFound) and unknown.field == "contact_id"
    assert isinstance(no_campaign, NotFound) and "campaign" in no_campaign.message
    assert isinstance(bad_step, Invalid) and bad_step.field == "step"
    assert isinstance(theirs_sent, p2p.Sent) and theirs_sent.created
    assert "Other" in theirs_sent.message.body and "Other" not in first.message.body
    assert isinstance(empty, Invalid) and empty.field == "body"
    state = rows(db, p.campaign_id)
    assert state[mine[2]].status == "skipped" and state[mine[2]].reason == p2p.OPTED_OUT
    assert state[mine[1]].status == "assigned" and state[mine[3]].status == "assigned"
    assert state[theirs[0]].status == "assigned"
    sent = _messages(db, p.contact_ids)
    assert sorted(m.contact_id for m in sent) == sorted([mine[0], theirs[1]])


def test_a_group_that_fails_as_a_whole_is_sent_one_by_one(
    db: Database, acme: Org, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group's transaction can fail for all of them (a deadlock, a key inserted concurrently):
    then each request runs on its own, and none is lost or sent twice."""
    p = setup(db, acme, 5)
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id, 5, now=NINE_ET)
    real = messaging.queue_outbound_many
    failed: list[int] = []

    def flaky(conn: Any, settings: Settings, items: Any, **kw: Any) -> Any:
        result = real(conn, settings, items, **kw)  # writes, then the transaction fails
        if len(items) > 1:
            failed.append(len(items))
            raise sa.exc.OperationalError("INSERT", {}, Exception("deadlock detected"))
        return result

    monkeypatch.setattr(messaging, "queue_outbound_many", flaky)
    group = [p2p.SendRequest(agent, p.campaign_id, c) for c in p.contact_ids]
    results = p2p.send_many(db, settings, group, now=NINE_ET)
    assert failed == [5]
    assert all(isinstance(r, p2p.Sent) and r.created for r in results), results
    sent = _messages(db, p.contact_ids)
    assert sorted(m.contact_id for m in sent) == sorted(p.contact_ids)  # one each
    with db.read() as conn:
        statuses = set(
            conn.execute(
                sa.select(campaign_contacts.c.status).where(
                    campaign_contacts.c.campaign_id == p.campaign_id
                )
            ).scalars()
        )
    assert statuses == {"sent"}


def test_a_contact_twice_in_a_group_from_two_campaigns_gets_one_first_message(
    db: Database, acme: Org, settings: Settings
) -> None:
    """Two campaigns' sends to the same person in one group run one after the other, so the
    second sees the first (the contact is then active in another campaign)."""
    p = setup(db, acme, 1)
    second = make_campaign(db, acme, p.contact_ids)
    agent = acme.agent.principal
    for campaign_id in (p.campaign_id, second):
        p2p.request_batch(db, agent, campaign_id, 1, now=NINE_ET)
    group = [
        p2p.SendRequest(agent, p.campaign_id, p.contact_ids[0]),
        p2p.SendRequest(agent, second, p.contact_ids[0]),
    ]
    first, other = p2p.send_many(db, settings, group, now=NINE_ET)
    assert isinstance(first, p2p.Sent) and first.created
    assert isinstance(other, p2p.Refused) and other.reason == p2p.ACTIVE_ELSEWHERE
    assert len(_messages(db, p.contact_ids)) == 1
