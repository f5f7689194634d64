"""Campaign administration: drafts, validation, lifecycle, audience materialization with its
exclusions, survey questions, canned responses, preview and progress (both engines)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from textdesk.services import (
    campaign_reports,
    campaign_survey,
    campaigns,
    channels,
    consent,
    contacts,
    custom_fields,
)
from textdesk.services.campaigns import CampaignInput
from textdesk.services.contacts import ContactInput
from textdesk.services.errors import Conflict, Forbidden, Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import (
    audit_log,
    campaign_contacts,
    conversations,
    messages,
    survey_answers,
    utcnow,
)

SCRIPT = "Hi {first_name|there}, it's {agent_name} at {org_name}. Reply STOP to opt out."


def _channel(db: Database, org: Org, phone: str = "+12025550143") -> int:
    return channels.create_channel(
        db, org.admin.principal, name="Line", provider="simulator", phone=phone
    ).id


def _contact(db: Database, org: Org, n: int, *, tags: list[str], **kw: Any) -> int:
    return contacts.create_contact(
        db,
        org.admin.principal,
        ContactInput(phone=f"+1212555{n:04d}", first_name=f"C{n}", tags=tags, **kw),
    ).id


def _draft(db: Database, org: Org, **kw: Any) -> campaigns.Campaign:
    values: dict[str, Any] = {"name": "Recall", "script": SCRIPT, "segment_query": "tag:vip"}
    values.update(kw)
    return campaigns.create_draft(db, org.admin.principal, CampaignInput(**values))


def _rows(db: Database, campaign_id: int) -> dict[int, tuple[str, str | None]]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(
                campaign_contacts.c.contact_id,
                campaign_contacts.c.status,
                campaign_contacts.c.reason,
            ).where(campaign_contacts.c.campaign_id == campaign_id)
        ).all()
    return {r.contact_id: (r.status, r.reason) for r in rows}


# --- drafts and validation ----------------------------------------------------------------------


def test_script_errors_name_the_field_and_position(db: Database, acme: Org) -> None:
    with pytest.raises(Invalid) as exc:
        _draft(db, acme, script="Hi {frist_name}, reply STOP")
    assert exc.value.field == "script"
    assert "frist_name" in exc.value.message and "position 3" in exc.value.message
    assert "first_name" in exc.value.message  # the suggestion
    with pytest.raises(Invalid) as exc:
        _draft(db, acme, script="Hi {first_name, reply STOP")
    assert exc.value.field == "script" and "position 3" in exc.value.message


def test_script_accepts_only_the_orgs_custom_fields(db: Database, acme: Org, globex: Org) -> None:
    with pytest.raises(Invalid) as exc:
        _draft(db, acme, script="Your tier: {fields.tier}")
    assert exc.value.field == "script"
    custom_fields.create_field(db, acme.admin.principal, key="tier", label="Tier", type_="text")
    assert _draft(db, acme, script="Your tier: {fields.tier|basic}").script.endswith("basic}")
    with pytest.raises(Invalid):  # Globex has no such field
        _draft(db, globex, script="Your tier: {fields.tier}")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "  "}, "name"),
        ({"segment_query": "tag:"}, "segment_query"),
        ({"segment_query": "first_name = "}, "segment_query"),
        ({"purpose": "compliance"}, "purpose"),
        ({"channel_ids": [987654]}, "channel_ids"),
        ({"batch_size": 0}, "batch_size"),
        ({"assignment_timeout_seconds": 5}, "assignment_timeout_seconds"),
        ({"segment_id": 987654}, "segment_id"),
    ],
)
def test_draft_input_errors_name_the_field(
    db: Database, acme: Org, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(Invalid) as exc:
        _draft(db, acme, **changes)
    assert exc.value.field == field, exc.value.message


def test_schedule_window_must_be_ordered(db: Database, acme: Org) -> None:
    now = utcnow()
    with pytest.raises(Invalid) as exc:
        _draft(db, acme, starts_at=now, ends_at=now - timedelta(hours=1))
    assert exc.value.field == "ends_at"


def test_saved_segment_query_is_copied(db: Database, acme: Org) -> None:
    from textdesk.store.tables import segments

    with db.write() as conn:
        segment_id = conn.execute(
            segments.insert()
            .values(
                org_id=acme.org.id,
                name="VIPs",
                query="tag:vip AND NOT opted_out",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            .returning(segments.c.id)
        ).scalar_one()
    campaign = _draft(db, acme, segment_query="", segment_id=segment_id)
    assert campaign.segment_query == "tag:vip AND NOT opted_out"


def test_agents_cannot_manage_and_see_only_assigned(db: Database, acme: Org) -> None:
    with pytest.raises(Forbidden):
        campaigns.create_draft(db, acme.agent.principal, CampaignInput(name="x", script="Hi"))
    mine = _draft(db, acme, name="Mine")
    _draft(db, acme, name="Not mine")
    campaigns.set_agents(db, acme.admin.principal, mine.id, [acme.agent.user.id])
    with db.read() as conn:
        assert [c.name for c in campaigns.visible_campaigns(conn, acme.agent.principal)] == ["Mine"]
        assert len(campaigns.visible_campaigns(conn, acme.admin.principal)) == 2
        others = [c for c in campaigns.list_campaigns(conn, acme.org.id) if c.name == "Not mine"]
        with pytest.raises(NotFound):
            campaigns.get_visible(conn, acme.agent.principal, others[0].id)
    with pytest.raises(Forbidden):
        campaigns.transition(db, acme.agent.principal, mine.id, "start")


def test_tenancy_another_org_sees_nothing(db: Database, acme: Org, globex: Org) -> None:
    campaign = _draft(db, acme)
    outsider = globex.admin.principal
    with db.read() as conn:
        with pytest.raises(NotFound):
            campaigns.get_campaign(conn, globex.org.id, campaign.id)
        assert campaigns.visible_campaigns(conn, outsider) == []
    for call in (
        lambda: campaigns.update_campaign(db, outsider, campaign.id, {"name": "hijack"}),
        lambda: campaigns.transition(db, outsider, campaign.id, "start"),
        lambda: campaigns.set_agents(db, outsider, campaign.id, []),
        lambda: campaigns.delete_draft(db, outsider, campaign.id),
        lambda: campaign_survey.add_canned(db, outsider, campaign.id, title="t", body="b"),
        lambda: campaign_survey.add_question(
            db, outsider, campaign.id, prompt="?", options=[{"label": "a"}, {"label": "b"}]
        ),
    ):
        with pytest.raises(NotFound):
            call()
    # Another org's user cannot be made an agent of Acme's campaign.
    with pytest.raises(Invalid) as exc:
        campaigns.set_agents(db, acme.admin.principal, campaign.id, [globex.agent.user.id])
    assert exc.value.field == "user_ids[0]"
    with db.read() as conn:
        assert campaigns.get_campaign(conn, acme.org.id, campaign.id).name == "Recall"


# --- lifecycle ----------------------------------------------------------------------------------

ALL_ACTIONS = ("start", "pause", "resume", "archive")
EXPECTED = {
    ("draft", "start"): "active",
    ("draft", "archive"): "archived",
    ("active", "pause"): "paused",
    ("active", "archive"): "archived",
    ("paused", "resume"): "active",
    ("paused", "archive"): "archived",
}
PATHS = {"draft": [], "active": ["start"], "paused": ["start", "pause"], "archived": ["archive"]}


@pytest.mark.parametrize("status", sorted(PATHS))
@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_every_transition_is_allowed_or_refused(
    db: Database, acme: Org, status: str, action: str
) -> None:
    _channel(db, acme)
    admin = acme.admin.principal
    campaign = _draft(db, acme)
    for step in PATHS[status]:
        campaign = campaigns.transition(db, admin, campaign.id, step)
    assert campaign.status == status
    expected = EXPECTED.get((status, action))
    if expected is None:
        with pytest.raises(Conflict) as exc:
            campaigns.transition(db, admin, campaign.id, action)
        assert exc.value.field == "status" and status in exc.value.message
        with db.read() as conn:
            assert campaigns.get_campaign(conn, acme.org.id, campaign.id).status == status
    else:
        after = campaigns.transition(db, admin, campaign.id, action)
        assert after.status == expected
        with db.read() as conn:
            actions = conn.execute(
                sa.select(audit_log.c.action).where(audit_log.c.target == f"campaign:{campaign.id}")
            ).scalars()
            assert f"campaign.{action}" in set(actions)


def test_start_needs_a_script_and_a_sender(db: Database, acme: Org) -> None:
    campaign = _draft(db, acme, script="")
    with pytest.raises(Invalid) as exc:
        campaigns.transition(db, acme.admin.principal, campaign.id, "start")
    assert exc.value.field == "script"
    campaigns.update_campaign(db, acme.admin.principal, campaign.id, {"script": SCRIPT})
    with pytest.raises(Invalid) as exc:
        campaigns.transition(db, acme.admin.principal, campaign.id, "start")
    assert exc.value.field == "channel_ids"
    with db.read() as conn:
        assert campaigns.get_campaign(conn, acme.org.id, campaign.id).status == "draft"


def test_started_campaign_freezes_script_and_audience(db: Database, acme: Org) -> None:
    _channel(db, acme)
    admin = acme.admin.principal
    campaign = _draft(db, acme)
    campaigns.transition(db, admin, campaign.id, "start")
    with pytest.raises(Conflict) as exc:
        campaigns.update_campaign(db, admin, campaign.id, {"script": "Other text"})
    assert exc.value.field == "script"
    with pytest.raises(Conflict) as exc:
        campaigns.update_campaign(db, admin, campaign.id, {"segment_query": "tag:new"})
    assert exc.value.field == "segment_query"
    assert campaigns.update_campaign(db, admin, campaign.id, {"batch_size": 10}).batch_size == 10
    with pytest.raises(Conflict):
        campaigns.delete_draft(db, admin, campaign.id)
    campaigns.transition(db, admin, campaign.id, "archive")
    with pytest.raises(Conflict):
        campaigns.update_campaign(db, admin, campaign.id, {"name": "again"})


# --- audience materialization -------------------------------------------------------------------


def test_start_materializes_audience_with_exclusions(
    db: Database, acme: Org, globex: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    _channel(db, acme)
    admin = acme.admin.principal
    vip = [_contact(db, acme, i, tags=["vip"]) for i in range(7)]
    other = _contact(db, acme, 50, tags=["new"])
    outsider = _contact(db, globex, 60, tags=["vip"])  # same tag, another org
    consent.agent_opt_out(db, admin, vip[0], note="asked on the phone")
    # vip[1] and vip[2] wait in another active campaign; vip[3] was already sent there.
    first = _draft(db, acme, name="First", segment_query="tag:vip AND first_name ~ 'C'")
    campaigns.transition(db, admin, first.id, "start")
    with db.write() as conn:
        conn.execute(
            sa.update(campaign_contacts)
            .where(
                campaign_contacts.c.campaign_id == first.id,
                campaign_contacts.c.contact_id.not_in(vip[1:4]),
            )
            .values(status="skipped")
        )
        conn.execute(
            sa.update(campaign_contacts)
            .where(
                campaign_contacts.c.campaign_id == first.id,
                campaign_contacts.c.contact_id == vip[2],
            )
            .values(status="assigned", assignee_id=acme.agent.user.id)
        )
        conn.execute(
            sa.update(campaign_contacts)
            .where(
                campaign_contacts.c.campaign_id == first.id,
                campaign_contacts.c.contact_id == vip[3],
            )
            .values(status="sent")
        )
    # A paused or archived campaign's pool does not exclude anyone.
    paused = _draft(db, acme, name="Paused", segment_query="tag:vip")
    campaigns.transition(db, admin, paused.id, "start")
    campaigns.transition(db, admin, paused.id, "pause")

    monkeypatch.setattr(campaigns, "MATERIALIZE_BATCH", 2)  # several batches
    second = _draft(db, acme, name="Second", segment_query="tag:vip")
    started = campaigns.transition(db, admin, second.id, "start")
    assert started.status == "active" and started.started_at is not None

    rows = _rows(db, second.id)
    assert set(rows) == set(vip)
    assert other not in rows and outsider not in rows
    assert rows[vip[0]] == ("excluded", "opted_out")
    assert rows[vip[1]] == ("excluded", "active_elsewhere")
    assert rows[vip[2]] == ("excluded", "active_elsewhere")
    for contact_id in vip[3:]:
        assert rows[contact_id] == ("pending", None)
    with db.read() as conn:
        detail = conn.execute(
            sa.select(audit_log.c.detail).where(
                audit_log.c.action == "campaign.start",
                audit_log.c.target == f"campaign:{second.id}",
            )
        ).scalar_one()
    assert detail["pending"] == 4 and detail["excluded"] == 3


def test_empty_query_means_every_contact(db: Database, acme: Org) -> None:
    _channel(db, acme)
    ids = [_contact(db, acme, i, tags=[]) for i in range(3)]
    campaign = _draft(db, acme, segment_query="")
    campaigns.transition(db, acme.admin.principal, campaign.id, "start")
    assert set(_rows(db, campaign.id)) == set(ids)


# --- survey questions and canned responses ------------------------------------------------------


def test_questions_validate_options(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    campaign = _draft(db, acme)
    custom_fields.create_field(db, admin, key="visits", label="Visits", type_="number")
    question = campaign_survey.add_question(
        db,
        admin,
        campaign.id,
        prompt="Will you come?",
        options=[
            {"label": "Yes", "tag": "Coming"},
            {"label": "No", "field": "visits", "value": "0"},
            {"label": "Maybe"},
        ],
    )
    assert question.options == [
        {"label": "Yes", "tag": "coming"},
        {"label": "No", "field": "visits", "value": 0},
        {"label": "Maybe"},
    ]
    bad = [
        ([{"label": "only"}], "options"),
        ([{"label": "a"}, {"label": "A"}], "options[1].label"),
        ([{"label": "a"}, {"label": ""}], "options[1].label"),
        ([{"label": "a"}, {"label": "b", "tag": "two words"}], "options[1].tag"),
        ([{"label": "a"}, {"label": "b", "field": "nope", "value": 1}], "options[1].field"),
        ([{"label": "a", "field": "visits", "value": "many"}, {"label": "b"}], "fields.visits"),
        ([{"label": "a", "value": 3}, {"label": "b"}], "options[0].field"),
    ]
    for options, field in bad:
        with pytest.raises(Invalid) as exc:
            campaign_survey.add_question(db, admin, campaign.id, prompt="?", options=options)
        assert exc.value.field == field, (options, exc.value.message)
    with pytest.raises(Invalid) as exc:
        campaign_survey.add_question(db, admin, campaign.id, prompt=" ", options=[])
    assert exc.value.field == "prompt"
    second = campaign_survey.add_question(
        db, admin, campaign.id, prompt="Second?", options=[{"label": "a"}, {"label": "b"}]
    )
    assert second.position == question.position + 1
    campaign_survey.delete_question(db, admin, campaign.id, second.id)
    with db.read() as conn:
        assert [q.id for q in campaign_survey.list_questions(conn, acme.org.id, campaign.id)] == [
            question.id
        ]


def test_answered_question_keeps_its_options(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    contact_id = _contact(db, acme, 1, tags=["vip"])
    campaign = _draft(db, acme)
    question = campaign_survey.add_question(
        db, admin, campaign.id, prompt="?", options=[{"label": "Yes"}, {"label": "No"}]
    )
    with db.write() as conn:
        conn.execute(
            survey_answers.insert().values(
                org_id=acme.org.id,
                question_id=question.id,
                contact_id=contact_id,
                campaign_id=campaign.id,
                answer="Yes",
                created_at=utcnow(),
            )
        )
    with pytest.raises(Conflict) as exc:
        campaign_survey.update_question(
            db, admin, campaign.id, question.id, options=[{"label": "No"}, {"label": "Later"}]
        )
    assert exc.value.field == "options" and "Yes" in exc.value.message
    with pytest.raises(Conflict):
        campaign_survey.delete_question(db, admin, campaign.id, question.id)


def test_canned_responses_per_campaign(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    campaign = _draft(db, acme)
    other = _draft(db, acme, name="Other")
    canned = campaign_survey.add_canned(
        db, admin, campaign.id, title="Hours", body="We open at 9, {first_name|friend}."
    )
    with pytest.raises(Invalid) as exc:
        campaign_survey.add_canned(db, admin, campaign.id, title="Bad", body="Hi {nme}")
    assert exc.value.field == "body"
    with pytest.raises(Invalid) as exc:
        campaign_survey.add_canned(db, admin, campaign.id, title=" ", body="x")
    assert exc.value.field == "title"
    with pytest.raises(NotFound):  # belongs to the other campaign's list, not this one
        campaign_survey.update_canned(db, admin, other.id, canned.id, title="x")
    updated = campaign_survey.update_canned(db, admin, campaign.id, canned.id, title="Opening")
    assert updated.title == "Opening" and updated.body == canned.body
    with db.read() as conn:
        assert [c.id for c in campaign_survey.list_canned(conn, acme.org.id, campaign.id)] == [
            canned.id
        ]
        assert campaign_survey.list_canned(conn, acme.org.id, other.id) == []
    with pytest.raises(Forbidden):
        campaign_survey.add_canned(db, acme.agent.principal, campaign.id, title="t", body="b")
    campaign_survey.delete_canned(db, admin, campaign.id, canned.id)
    with db.read() as conn:
        assert campaign_survey.list_canned(conn, acme.org.id, campaign.id) == []


# --- preview ------------------------------------------------------------------------------------


def test_preview_renders_samples_with_segments_and_warnings(db: Database, acme: Org) -> None:
    for i in range(4):
        _contact(db, acme, i, tags=["vip"])
    _contact(db, acme, 9, tags=["vip"])
    _contact(db, acme, 20, tags=["new"])
    with db.write() as conn:  # one nameless contact: the fallback shows
        conn.execute(
            sa.text("UPDATE contacts SET first_name = '' WHERE phone_e164 = '+12125550009'")
        )
    with db.read() as conn:
        result = campaign_reports.preview_script(
            conn,
            acme.org.id,
            script="Hi {first_name|there}, {agent_name} here. See bit.ly/x",
            query="tag:vip",
            agent_name="Sam",
            limit=10,
        )
    assert result.audience == 5 and result.opted_out == 0
    assert len(result.samples) == 5
    texts = {s.text for s in result.samples}
    assert "Hi there, Sam here. See bit.ly/x" in texts
    assert "Hi C0, Sam here. See bit.ly/x" in texts
    sample = result.samples[0]
    assert sample.segment_count == 1 and sample.encoding == "GSM-7"
    codes = {f.code for f in sample.findings}
    # No brand, no opt-out language, a public shortener: all reported.
    assert any(c.startswith("content.") for c in codes) and len(codes) >= 2
    with db.read() as conn:
        long = campaign_reports.preview_script(
            conn,
            acme.org.id,
            script="Acme: " + "✓ ok " * 30 + " Reply STOP to opt out",
            query="tag:vip",
            limit=1,
        )
    assert long.samples[0].encoding == "UCS-2" and long.samples[0].segment_count > 1
    with db.read() as conn, pytest.raises(Invalid) as exc:
        campaign_reports.preview_script(conn, acme.org.id, script="Hi {x", query="")
    assert exc.value.field == "script"


def test_preview_counts_opted_out(db: Database, acme: Org) -> None:
    ids = [_contact(db, acme, i, tags=["vip"]) for i in range(3)]
    consent.agent_opt_out(db, acme.admin.principal, ids[0])
    with db.read() as conn:
        result = campaign_reports.preview_script(
            conn, acme.org.id, script="Hi", query="tag:vip", limit=2
        )
    assert (result.audience, result.opted_out, len(result.samples)) == (3, 1, 2)


# --- progress -----------------------------------------------------------------------------------


def _send(
    db: Database, org: Org, campaign_id: int, contact_id: int, agent_id: int, status: str
) -> int:
    """What the send screen does for one contact, with the message's later fate."""
    now = utcnow()
    with db.write() as conn:
        conv = conn.execute(
            conversations.insert()
            .values(org_id=org.org.id, contact_id=contact_id, status="open", created_at=now)
            .returning(conversations.c.id)
        ).scalar_one()
        message_id = conn.execute(
            messages.insert()
            .values(
                org_id=org.org.id,
                conversation_id=conv,
                contact_id=contact_id,
                direction="out",
                body="Hi",
                status=status,
                created_at=now,
                updated_at=now,
            )
            .returning(messages.c.id)
        ).scalar_one()
        conn.execute(
            sa.update(campaign_contacts)
            .where(
                campaign_contacts.c.campaign_id == campaign_id,
                campaign_contacts.c.contact_id == contact_id,
            )
            .values(
                status="sent",
                assignee_id=agent_id,
                sent_by=agent_id,
                sent_at=now,
                message_id=message_id,
            )
        )
    return conv


def _reply(db: Database, org: Org, conv: int, contact_id: int, *, later: bool = True) -> None:
    when = utcnow() + timedelta(seconds=5 if later else -3600)
    with db.write() as conn:
        conn.execute(
            messages.insert().values(
                org_id=org.org.id,
                conversation_id=conv,
                contact_id=contact_id,
                direction="in",
                body="Yes please",
                status="received",
                created_at=when,
                updated_at=when,
            )
        )


def test_progress_numbers_for_a_hand_built_scenario(db: Database, acme: Org) -> None:
    _channel(db, acme)
    admin = acme.admin.principal
    sam, olivia = acme.agent.user.id, acme.admin.user.id
    ids = [_contact(db, acme, i, tags=["vip"]) for i in range(10)]
    consent.agent_opt_out(db, admin, ids[9])  # excluded at start
    campaign = _draft(db, acme)
    campaigns.set_agents(db, admin, campaign.id, [sam, olivia])
    question = campaign_survey.add_question(
        db, admin, campaign.id, prompt="Coming?", options=[{"label": "Yes"}, {"label": "No"}]
    )
    campaigns.transition(db, admin, campaign.id, "start")
    # Sam sends 4: delivered+replied, delivered, failed, sent (replied, then opted out).
    c0 = _send(db, acme, campaign.id, ids[0], sam, "delivered")
    _reply(db, acme, c0, ids[0])
    _send(db, acme, campaign.id, ids[1], sam, "delivered")
    _send(db, acme, campaign.id, ids[2], sam, "failed")
    c3 = _send(db, acme, campaign.id, ids[3], sam, "sent")
    _reply(db, acme, c3, ids[3])
    consent.agent_opt_out(db, admin, ids[3])
    # Olivia sends 2: blocked (counts as failed), delivered with only an OLD inbound message.
    _send(db, acme, campaign.id, ids[4], olivia, "blocked")
    c5 = _send(db, acme, campaign.id, ids[5], olivia, "delivered")
    _reply(db, acme, c5, ids[5], later=False)
    with db.write() as conn:
        # Sam holds two more; one contact was skipped at send; the rest (ids[8]) is pending.
        conn.execute(
            sa.update(campaign_contacts)
            .where(campaign_contacts.c.contact_id.in_([ids[6], ids[7]]))
            .values(status="assigned", assignee_id=sam)
        )
        conn.execute(
            sa.update(campaign_contacts)
            .where(campaign_contacts.c.contact_id == ids[7])
            .values(status="skipped", reason="quiet_hours")
        )
        for contact_id, answer, by in ((ids[0], "Yes", sam), (ids[5], "No", olivia)):
            conn.execute(
                survey_answers.insert().values(
                    org_id=acme.org.id,
                    question_id=question.id,
                    contact_id=contact_id,
                    campaign_id=campaign.id,
                    answer=answer,
                    answered_by=by,
                    created_at=utcnow(),
                )
            )
    with db.read() as conn:
        report = campaign_reports.progress(
            conn, campaigns.get_campaign(conn, acme.org.id, campaign.id)
        )
    t = report.totals
    assert (t.audience, t.pending, t.assigned, t.sent, t.skipped, t.excluded) == (10, 1, 1, 6, 1, 1)
    assert (t.delivered, t.failed, t.replied, t.opted_out, t.answers) == (3, 2, 2, 1, 2)
    by_agent = {a.user_id: a.counts for a in report.agents}
    assert set(by_agent) == {sam, olivia}
    s = by_agent[sam]
    assert (s.assigned, s.sent, s.skipped, s.delivered, s.failed, s.replied, s.opted_out) == (
        1,
        4,
        1,
        2,
        1,
        2,
        1,
    )
    assert s.answers == 1
    o = by_agent[olivia]
    assert (o.assigned, o.sent, o.delivered, o.failed, o.replied, o.answers) == (0, 2, 1, 1, 0, 1)
    [q] = report.questions
    assert [(o.label, o.count) for o in q.options] == [("Yes", 1), ("No", 1)] and q.total == 2
