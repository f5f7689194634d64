"""The send screen's service: dynamic assignment, one message per human action, refusals."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.services.p2p_helpers import (
    NINE_ET,
    add_contacts,
    add_question,
    extra_agent,
    make_campaign,
    rows,
    setup,
)
from textdesk.domain.roles import Role
from textdesk.services import consent, p2p
from textdesk.services.auth import Principal
from textdesk.services.errors import Forbidden, Invalid, NotFound
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import campaigns, contacts, conversations, messages


def test_batch_assigns_contacts_with_their_personalized_message(db: Database, acme: Org) -> None:
    p = setup(db, acme, 5)
    agent = acme.agent.principal
    batch = p2p.request_batch(db, agent, p.campaign_id, 3, now=NINE_ET)
    assert [o.contact_id for o in batch.offers] == p.contact_ids[:3]
    first = batch.offers[0]
    assert first.body == "Hi Person0, this is Acme agent from Acme. Reply STOP to opt out."
    assert (first.encoding, first.segments, first.missing_fields) == ("GSM-7", 1, ())
    assert first.assigned_until == NINE_ET + timedelta(seconds=900)
    state = rows(db, p.campaign_id)
    assert [state[c].status for c in p.contact_ids] == ["assigned"] * 3 + ["pending"] * 2
    assert {state[c].assignee_id for c in p.contact_ids[:3]} == {acme.agent.user.id}
    # Asking again tops up to the count: no hoarding by repeated requests.
    again = p2p.request_batch(db, agent, p.campaign_id, 3, now=NINE_ET)
    assert [o.contact_id for o in again.offers] == p.contact_ids[:3]
    assert p2p.next_contact(db, agent, p.campaign_id).contact_id == p.contact_ids[0]  # type: ignore[union-attr]


def test_count_is_capped_by_the_campaign_batch_size(db: Database, acme: Org) -> None:
    p = setup(db, acme, 10, batch_size=4)
    batch = p2p.request_batch(db, acme.agent.principal, p.campaign_id, 100, now=NINE_ET)
    assert len(batch.offers) == 4
    with pytest.raises(Invalid) as exc:
        p2p.request_batch(db, acme.agent.principal, p.campaign_id, 0, now=NINE_ET)
    assert exc.value.field == "count"


def test_two_agents_never_get_the_same_contact(db: Database, acme: Org, settings: Settings) -> None:
    p = setup(db, acme, 60, batch_size=5)
    agents = [acme.agent.principal] + [
        extra_agent(db, acme, p.campaign_id, f"Agent{i}") for i in range(3)
    ]

    def work(agent: Principal) -> list[int]:
        got: list[int] = []
        while True:
            batch = p2p.request_batch(db, agent, p.campaign_id, 5, now=NINE_ET)
            if not batch.offers:
                return got
            for offer in batch.offers:
                got.append(offer.contact_id)
                p2p.send(db, settings, agent, p.campaign_id, offer.contact_id, now=NINE_ET)

    # One request first: the event bus hooks the engine on its first publish, and hooking it
    # while other threads begin transactions races (reported to the inbox's owner).
    p2p.request_batch(db, agents[0], p.campaign_id, 5, now=NINE_ET)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, agents))
    everyone = [c for r in results for c in r]
    assert sorted(everyone) == sorted(p.contact_ids)  # each contact handed out exactly once
    with db.read() as conn:
        sent = Counter(
            conn.execute(sa.select(messages.c.contact_id).where(messages.c.direction == "out"))
            .scalars()
            .all()
        )
    assert sent == Counter(p.contact_ids)


def test_unsent_contacts_go_back_to_the_pool_after_the_timeout(
    db: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 3, assignment_timeout_seconds=600)
    first = acme.agent.principal
    second = extra_agent(db, acme, p.campaign_id, "Second")
    assert len(p2p.request_batch(db, first, p.campaign_id, 3, now=NINE_ET).offers) == 3
    # Still first's before the timeout...
    early = NINE_ET + timedelta(seconds=599)
    assert p2p.request_batch(db, second, p.campaign_id, 3, now=early).offers == []
    # ...and back in the pool after it.
    late = NINE_ET + timedelta(seconds=601)
    taken = p2p.request_batch(db, second, p.campaign_id, 3, now=late).offers
    assert [o.contact_id for o in taken] == p.contact_ids
    with pytest.raises(p2p.Refused) as exc:
        p2p.send(db, settings, first, p.campaign_id, p.contact_ids[0], now=late)
    assert exc.value.reason == "not_assigned"


def test_the_periodic_reaper_and_renewal_on_activity(
    db: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 3, assignment_timeout_seconds=600)
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id, 3, now=NINE_ET)
    # Sending past half the timeout renews the agent's other contacts.
    busy = NINE_ET + timedelta(seconds=400)
    p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=busy)
    state = rows(db, p.campaign_id)
    assert state[p.contact_ids[1]].assigned_until == busy + timedelta(seconds=600)
    assert p2p.reap_expired(db, now=NINE_ET + timedelta(seconds=700)) == 0
    assert p2p.reap_expired(db, now=busy + timedelta(seconds=601)) == 2
    state = rows(db, p.campaign_id)
    assert [state[c].status for c in p.contact_ids] == ["sent", "pending", "pending"]
    assert state[p.contact_ids[1]].assignee_id is None


def test_contacts_in_quiet_hours_are_not_offered(db: Database, acme: Org) -> None:
    ny = add_contacts(db, acme.org.id, 2, zone="ny")
    la = add_contacts(db, acme.org.id, 2, zone="la", start=50)
    campaign_id = make_campaign(db, acme, la + ny)  # the LA contacts come first in the pool
    agent = acme.agent.principal
    batch = p2p.request_batch(db, agent, campaign_id, 10, now=NINE_ET)  # 06:00 in LA
    assert [o.contact_id for o in batch.offers] == ny
    assert batch.held_back == 2
    assert {rows(db, campaign_id)[c].status for c in la} == {"pending"}
    later = NINE_ET + timedelta(hours=3)  # 09:00 in LA
    batch = p2p.request_batch(db, agent, campaign_id, 10, now=later)
    assert [o.contact_id for o in batch.offers] == la + ny


def test_send_makes_one_message_and_assigns_the_conversation(
    db: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 2)
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id, 2, now=NINE_ET)
    sent = p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)
    message = sent.message
    assert sent.created and sent.status == "sent"
    assert message.status == "queued", message.gate_detail
    assert message.purpose == "marketing"
    assert message.body == "Hi Person0, this is Acme agent from Acme. Reply STOP to opt out."
    assert message.idempotency_key == f"campaign:{p.campaign_id}:contact:{p.contact_ids[0]}:first"
    assert message.created_by == acme.agent.user.id
    again = p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)
    assert (again.message.id, again.created) == (message.id, False)
    row = rows(db, p.campaign_id)[p.contact_ids[0]]
    assert (row.status, row.message_id, row.sent_by) == ("sent", message.id, acme.agent.user.id)
    with db.read() as conn:
        conv = conn.execute(
            sa.select(conversations).where(conversations.c.id == message.conversation_id)
        ).one()
        count = conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one()
    assert (conv.assignee_id, conv.campaign_id) == (acme.agent.user.id, p.campaign_id)
    assert count == 1


def test_an_existing_assignee_keeps_the_conversation(
    db: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 1)
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id, 1, now=NINE_ET)
    with db.write() as conn:
        conn.execute(
            conversations.insert().values(
                org_id=acme.org.id,
                contact_id=p.contact_ids[0],
                assignee_id=acme.admin.user.id,
                status="open",
                created_at=NINE_ET,
            )
        )
    message = p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET).message
    with db.read() as conn:
        conv = conn.execute(
            sa.select(conversations).where(conversations.c.id == message.conversation_id)
        ).one()
    assert (conv.assignee_id, conv.campaign_id) == (acme.admin.user.id, p.campaign_id)


def test_twenty_concurrent_sends_of_one_contact_make_one_message(
    db: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 1)
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id, 1, now=NINE_ET)

    def click(_: int) -> tuple[int, bool]:
        sent = p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)
        return sent.message.id, sent.created

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(click, range(20)))
    assert len({mid for mid, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with db.read() as conn:
        count = conn.execute(
            sa.select(sa.func.count()).select_from(messages).where(messages.c.direction == "out")
        ).scalar_one()
    assert count == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "paused"}, "campaign_paused"),
        ({"status": "archived"}, "campaign_archived"),
        ({"ends_at": NINE_ET - timedelta(minutes=1)}, "campaign_ended"),
        ({"starts_at": NINE_ET + timedelta(minutes=1)}, "campaign_not_started"),
    ],
)
def test_refused_when_the_campaign_cannot_send(
    db: Database, acme: Org, settings: Settings, change: dict[str, object], reason: str
) -> None:
    p = setup(db, acme, 1)
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id, 1, now=NINE_ET)
    with db.write() as conn:
        conn.execute(sa.update(campaigns).where(campaigns.c.id == p.campaign_id).values(**change))
    with pytest.raises(p2p.Refused) as exc:
        p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)
    assert exc.value.reason == reason and exc.value.status == 409
    with pytest.raises(p2p.Refused):
        p2p.request_batch(db, agent, p.campaign_id, 1, now=NINE_ET)
    assert rows(db, p.campaign_id)[p.contact_ids[0]].status == "assigned"  # not skipped
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one() == 0


def test_refused_for_a_contact_not_assigned_to_the_agent(
    db: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 2)
    other = extra_agent(db, acme, p.campaign_id, "Other")
    p2p.request_batch(db, other, p.campaign_id, 1, now=NINE_ET)
    agent = acme.agent.principal
    for contact_id in p.contact_ids:  # the other agent's, and one still in the pool
        with pytest.raises(p2p.Refused) as exc:
            p2p.send(db, settings, agent, p.campaign_id, contact_id, now=NINE_ET)
        assert exc.value.reason == "not_assigned"
    # Once the other agent sent it, a late send by someone else is refused, not repeated.
    p2p.send(db, settings, other, p.campaign_id, p.contact_ids[0], now=NINE_ET)
    with pytest.raises(p2p.Refused) as exc:
        p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)
    assert exc.value.reason == "already_sent"
    with pytest.raises(NotFound):
        p2p.send(db, settings, agent, p.campaign_id, 999_999, now=NINE_ET)


def test_opted_out_contact_is_skipped_at_send(db: Database, acme: Org, settings: Settings) -> None:
    p = setup(db, acme, 2)
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id, 2, now=NINE_ET)
    consent.agent_opt_out(db, agent, p.contact_ids[0], note="asked on the phone")
    for _ in range(2):  # and a repeat gets the same answer
        with pytest.raises(p2p.Refused) as exc:
            p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)
        assert exc.value.reason == "opted_out"
        assert "opted out" in exc.value.message
    row = rows(db, p.campaign_id)[p.contact_ids[0]]
    assert (row.status, row.reason, row.message_id) == ("skipped", "opted_out", None)
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one() == 0
    # And an opted-out contact still in the pool is taken out of it, not offered.
    consent.agent_opt_out(db, agent, p.contact_ids[1], note="x")
    with db.write() as conn:
        conn.execute(
            sa.update(p2p.cc)
            .where(p2p.cc.c.contact_id == p.contact_ids[1])
            .values(status="pending", assignee_id=None)
        )
    batch = p2p.request_batch(db, agent, p.campaign_id, 2, now=NINE_ET)
    assert (batch.offers, batch.skipped) == ([], 1)


def test_contact_active_in_another_campaign_is_skipped(
    db: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 1)
    agent = acme.agent.principal
    other = make_campaign(db, acme, p.contact_ids, name="Other drive")
    p2p.request_batch(db, agent, other, 1, now=NINE_ET)
    p2p.send(db, settings, agent, other, p.contact_ids[0], now=NINE_ET)
    with db.write() as conn:  # pretend it was handed out in this campaign before that send
        conn.execute(
            sa.update(p2p.cc)
            .where(p2p.cc.c.campaign_id == p.campaign_id)
            .values(status="assigned", assignee_id=acme.agent.user.id, assigned_until=NINE_ET)
        )
    with pytest.raises(p2p.Refused) as exc:
        p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)
    assert exc.value.reason == "active_elsewhere"
    assert rows(db, p.campaign_id)[p.contact_ids[0]].status == "skipped"


def test_missing_merge_value_skips_instead_of_sending_a_hole(
    db: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 1, script="Hi {fields.nickname}, Acme here. Reply STOP to opt out.")
    agent = acme.agent.principal
    batch = p2p.request_batch(db, agent, p.campaign_id, 1, now=NINE_ET)
    assert batch.offers[0].missing_fields == ("fields.nickname",)
    with pytest.raises(p2p.Refused) as exc:
        p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)
    assert exc.value.reason == "missing_field" and "fields.nickname" in exc.value.message


def test_who_may_work_a_campaign(db: Database, acme: Org, globex: Org, settings: Settings) -> None:
    p = setup(db, acme, 2, agents=[])
    with pytest.raises(Forbidden) as exc:
        p2p.request_batch(db, acme.agent.principal, p.campaign_id, 1, now=NINE_ET)
    assert "not an agent of campaign" in exc.value.message
    # Admins may work any campaign of their organization.
    assert p2p.request_batch(db, acme.admin.principal, p.campaign_id, 1, now=NINE_ET).offers
    # Another organization sees nothing.
    with pytest.raises(NotFound):
        p2p.request_batch(db, globex.admin.principal, p.campaign_id, 1, now=NINE_ET)
    with pytest.raises(NotFound):
        p2p.send(db, settings, globex.admin.principal, p.campaign_id, p.contact_ids[0])
    # An API key names the agent it drives the screen for; a person only acts as themselves.
    key = Principal(org_id=acme.org.id, role=Role.ADMIN, api_key_id=1)
    with pytest.raises(Invalid) as invalid:
        p2p.request_batch(db, key, p.campaign_id, 1, now=NINE_ET)
    assert invalid.value.field == "agent_id"
    batch = p2p.request_batch(db, key, p.campaign_id, 1, agent_id=acme.admin.user.id, now=NINE_ET)
    assert batch.agent_id == acme.admin.user.id
    with pytest.raises(Forbidden):
        p2p.request_batch(db, acme.agent.principal, p.campaign_id, 1, agent_id=acme.admin.user.id)


def test_survey_answer_sets_tag_and_field(db: Database, acme: Org) -> None:
    p = setup(db, acme, 1)
    question = add_question(
        db,
        acme.org.id,
        p.campaign_id,
        [
            {"label": "Yes", "tag": "attending"},
            {"label": "No", "tag": "not-attending", "field": "rsvp", "value": "no"},
        ],
    )
    agent = acme.agent.principal
    yes = p2p.record_answer(db, agent, question, p.contact_ids[0], "Yes")
    assert yes.tags == ["attending"]
    no = p2p.record_answer(db, agent, question, p.contact_ids[0], "no")  # case-insensitive
    assert (no.answer, no.id) == ("No", yes.id)  # one answer per question and contact
    with db.read() as conn:
        contact = conn.execute(
            sa.select(contacts.c.tags, contacts.c.fields).where(contacts.c.id == p.contact_ids[0])
        ).one()
    assert contact.tags == ["not-attending"]
    assert contact.fields == {"rsvp": "no"}
    with pytest.raises(Invalid) as exc:
        p2p.record_answer(db, agent, question, p.contact_ids[0], "Maybe")
    assert exc.value.field == "option" and "'Yes'" in exc.value.message
    with pytest.raises(NotFound):
        p2p.record_answer(db, agent, question, 999_999, "Yes")
