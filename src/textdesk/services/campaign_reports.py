"""What a campaign will send (preview) and what it has done (progress).

Progress is one aggregate query per view over ``campaign_contacts`` joined to each row's first
message, so the numbers are consistent with each other and cost the same at any size:

* assigned / pending / sent / skipped / excluded: the ``campaign_contacts`` statuses;
* delivered / failed: the first message's status (failed counts every way it did not go:
  failed, undelivered, blocked, expired);
* replied: the contact wrote back in the conversation after the first message was created;
* opted out: contacts who were sent the first message and are opted out now;
* survey answers: ``survey_answers`` of the campaign, per question and option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain import content
from textdesk.domain.states import Direction, MessageStatus
from textdesk.domain.templates import preview as render_preview
from textdesk.services import compliance
from textdesk.services.campaigns import Campaign, validate_query, validate_script
from textdesk.store.tables import (
    campaign_contacts,
    contacts,
    messages,
    organizations,
    survey_answers,
    survey_questions,
    users,
)

S = MessageStatus
FAILED_STATUSES = (S.FAILED, S.UNDELIVERED, S.BLOCKED, S.EXPIRED)
MAX_SAMPLES = 20


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    message: str


@dataclass(frozen=True)
class Sample:
    contact_id: int
    name: str
    phone: str
    text: str
    encoding: str
    segment_count: int
    length: int
    missing_fields: list[str]
    findings: list[Finding]


@dataclass(frozen=True)
class CampaignPreview:
    audience: int  # contacts matching the query
    opted_out: int  # of those, opted out (they will be excluded at start)
    samples: list[Sample]


def preview_script(
    conn: Connection,
    org_id: int,
    *,
    script: str,
    query: str,
    agent_name: str = "",
    limit: int = 5,
) -> CampaignPreview:
    """The script rendered for up to ``limit`` contacts of the audience, as the first message
    each would get, with its SMS segments and the content rules' findings."""
    from textdesk.services.segments import contact_filter, sample

    validate_script(conn, org_id, script)
    validate_query(conn, org_id, query)
    where = contact_filter(conn, org_id, query)
    audience, opted_out = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((contacts.c.opted_out, 1), else_=0)), 0),
        ).where(contacts.c.org_id == org_id, where)
    ).one()
    org = conn.execute(
        sa.select(organizations.c.name, organizations.c.settings).where(
            organizations.c.id == org_id
        )
    ).one()
    policy = compliance.content_policy(org.name, org.settings, first_message=True)
    samples = []
    for contact in sample(conn, org_id, query, limit=max(1, min(limit, MAX_SAMPLES))):
        values: dict[str, Any] = {
            **contact.merge_values(),
            "agent_name": agent_name,
            "org_name": org.name,
        }
        result = render_preview(script, values)
        findings = [
            Finding(f.code, str(f.severity), f.message) for f in content.check(result.text, policy)
        ]
        samples.append(
            Sample(
                contact_id=contact.id,
                name=contact.full_name,
                phone=contact.phone_e164,
                text=result.text,
                encoding=str(result.encoding),
                segment_count=result.segment_count,
                length=result.length,
                missing_fields=list(result.missing_fields),
                findings=findings,
            )
        )
    return CampaignPreview(audience=int(audience), opted_out=int(opted_out), samples=samples)


def preview_campaign(
    conn: Connection, campaign: Campaign, *, agent_name: str = "", limit: int = 5
) -> CampaignPreview:
    return preview_script(
        conn,
        campaign.org_id,
        script=campaign.script,
        query=campaign.segment_query,
        agent_name=agent_name,
        limit=limit,
    )


# --- progress -----------------------------------------------------------------------------------


@dataclass
class Counts:
    audience: int = 0
    pending: int = 0
    assigned: int = 0
    sent: int = 0
    skipped: int = 0
    excluded: int = 0
    delivered: int = 0
    failed: int = 0
    replied: int = 0
    opted_out: int = 0
    answers: int = 0


@dataclass
class AgentProgress:
    user_id: int
    name: str
    counts: Counts


@dataclass
class OptionCount:
    label: str
    count: int


@dataclass
class QuestionProgress:
    question_id: int
    prompt: str
    options: list[OptionCount] = field(default_factory=list)
    total: int = 0


@dataclass
class Progress:
    campaign_id: int
    status: str
    totals: Counts
    agents: list[AgentProgress]
    questions: list[QuestionProgress]


def _sum(condition: Any) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def progress(conn: Connection, campaign: Campaign) -> Progress:
    cc = campaign_contacts
    first = messages.alias("first")
    reply = messages.alias("reply")
    replied = sa.exists(
        sa.select(reply.c.id).where(
            reply.c.conversation_id == first.c.conversation_id,
            reply.c.direction == Direction.INBOUND,
            reply.c.created_at >= first.c.created_at,
        )
    )
    sent = cc.c.status == "sent"
    columns = [
        sa.func.count().label("audience"),
        _sum(cc.c.status == "pending").label("pending"),
        _sum(cc.c.status == "assigned").label("assigned"),
        _sum(sent).label("sent"),
        _sum(cc.c.status == "skipped").label("skipped"),
        _sum(cc.c.status == "excluded").label("excluded"),
        _sum(sa.and_(sent, first.c.status == S.DELIVERED)).label("delivered"),
        _sum(sa.and_(sent, first.c.status.in_(FAILED_STATUSES))).label("failed"),
        _sum(sa.and_(sent, replied)).label("replied"),
        _sum(sa.and_(sent, contacts.c.opted_out)).label("opted_out"),
    ]
    base = cc.join(contacts, contacts.c.id == cc.c.contact_id).outerjoin(
        first, first.c.id == cc.c.message_id
    )
    scope = sa.and_(cc.c.campaign_id == campaign.id, cc.c.org_id == campaign.org_id)
    row = conn.execute(sa.select(*columns).select_from(base).where(scope)).one()
    totals = Counts(**{k: int(v) for k, v in row._mapping.items()})

    # Per agent: whoever sent the row, else whoever holds it now.
    agent = sa.func.coalesce(cc.c.sent_by, cc.c.assignee_id).label("agent_id")
    per_agent = conn.execute(
        sa.select(agent, *columns[1:])
        .select_from(base)
        .where(scope, agent.isnot(None))
        .group_by(agent)
    ).all()
    answered: dict[int | None, int] = dict(
        conn.execute(
            sa.select(survey_answers.c.answered_by, sa.func.count())
            .where(
                survey_answers.c.campaign_id == campaign.id,
                survey_answers.c.org_id == campaign.org_id,
            )
            .group_by(survey_answers.c.answered_by)
        ).all()
    )
    ids = {r.agent_id for r in per_agent} | {u for u in answered if u is not None}
    names = dict(
        conn.execute(
            sa.select(users.c.id, users.c.name).where(
                users.c.org_id == campaign.org_id, users.c.id.in_(ids)
            )
        ).all()
    )
    agents: dict[int, AgentProgress] = {}
    for r in per_agent:
        m = dict(r._mapping)
        user_id = int(m.pop("agent_id"))
        agents[user_id] = AgentProgress(
            user_id,
            names.get(user_id, f"user {user_id}"),
            Counts(**{k: int(v) for k, v in m.items()}),
        )
    for answered_by, count in answered.items():
        if answered_by is None:
            continue
        entry = agents.setdefault(
            answered_by,
            AgentProgress(answered_by, names.get(answered_by, f"user {answered_by}"), Counts()),
        )
        entry.counts.answers = int(count)
    totals.answers = sum(int(c) for c in answered.values())

    questions = _question_progress(conn, campaign)
    return Progress(
        campaign_id=campaign.id,
        status=campaign.status,
        totals=totals,
        agents=sorted(agents.values(), key=lambda a: (a.name, a.user_id)),
        questions=questions,
    )


def _question_progress(conn: Connection, campaign: Campaign) -> list[QuestionProgress]:
    rows = conn.execute(
        sa.select(survey_questions)
        .where(
            survey_questions.c.campaign_id == campaign.id,
            survey_questions.c.org_id == campaign.org_id,
        )
        .order_by(survey_questions.c.position, survey_questions.c.id)
    ).all()
    counts: dict[tuple[int, str], int] = {
        (q, a): int(n)
        for q, a, n in conn.execute(
            sa.select(survey_answers.c.question_id, survey_answers.c.answer, sa.func.count())
            .where(
                survey_answers.c.campaign_id == campaign.id,
                survey_answers.c.org_id == campaign.org_id,
            )
            .group_by(survey_answers.c.question_id, survey_answers.c.answer)
        ).all()
    }
    out = []
    for q in rows:
        labels = [str(o.get("label", "")) for o in q.options]
        # Answers whose option was since renamed still count, under their own label.
        extra = sorted(a for (qid, a) in counts if qid == q.id and a not in labels)
        options = [OptionCount(label, counts.get((q.id, label), 0)) for label in labels + extra]
        out.append(QuestionProgress(q.id, q.prompt, options, sum(o.count for o in options)))
    return out
