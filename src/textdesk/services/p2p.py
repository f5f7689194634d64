"""The send screen: dynamic assignment of a campaign's contacts to agents, and one message per
human action.

Assignment: an agent asks for the next N contacts of the pool (``campaign_contacts`` rows in
``pending``); they become ``assigned`` to that agent until ``assigned_until``. Contacts whose
quiet hours are on right now are not offered (they stay in the pool for later); opted-out
contacts and contacts already messaged by another active campaign leave the pool as
``skipped``. An assignment that runs out goes back to the pool, lazily when anyone asks for a
batch and periodically through :func:`reap_expired`; an agent's own assignments are renewed on
every batch request and, when half their time is gone, on every send.

Sending: :func:`send` sends to exactly one contact per call, and the message's idempotency key
is derived from (campaign, contact, step), so the database's unique (org_id, idempotency_key)
makes a second message impossible; a repeat of the same action (a held Enter key, a double
click, a second tab, a retried request) gets the first message back. There is no function here,
or anywhere, that sends a campaign message without a person's action for that one contact.

Concurrency: PostgreSQL hands out the pool with ``FOR UPDATE SKIP LOCKED`` (two agents never get
the same contact, and neither waits for the other); a send locks its ``campaign_contacts`` row,
so two concurrent sends of one contact run one after the other and the second finds the first's
message. On SQLite ``Database.write()`` is ``BEGIN IMMEDIATE``, which serializes both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.delivery import wakeup
from textdesk.domain.roles import Role
from textdesk.domain.states import MessageStatus
from textdesk.domain.templates import TemplateError, parse_template, preview, render
from textdesk.services import compliance, custom_fields, events, messaging, org_settings
from textdesk.services.auth import Principal
from textdesk.services.compliance import Recipient, Verdict
from textdesk.services.errors import Conflict, Forbidden, Invalid, NotFound
from textdesk.services.messaging import Message
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import (
    campaign_agents,
    campaign_contacts,
    campaigns,
    contacts,
    conversations,
    messages,
    organizations,
    survey_answers,
    survey_questions,
    users,
    utcnow,
)

cc = campaign_contacts

#: Campaign steps a message can be for; each (campaign, contact, step) gets one message, ever.
STEP_FIRST = "first"
STEPS = (STEP_FIRST,)

#: How many pool rows one batch request looks at before giving up on finding contacts whose
#: quiet hours are over (the rest stay pending; the answer says how many were held back).
SCAN_LIMIT = 2000
_CHUNK = 200

# Reasons stored in campaign_contacts.reason and given in refusals.
OPTED_OUT = "opted_out"
ACTIVE_ELSEWHERE = "active_elsewhere"  # the word services.campaigns uses at start
MISSING_FIELD = "missing_field"
SKIPPED_BY_AGENT = "skipped_by_agent"
_SENTENCES = {
    OPTED_OUT: "the contact opted out of messages from this organization",
    ACTIVE_ELSEWHERE: "the contact is already in another active campaign",
    MISSING_FIELD: "the script has a merge field with no value for this contact",
    SKIPPED_BY_AGENT: "an agent chose to skip this contact",
}


def idempotency_key(campaign_id: int, contact_id: int, step: str = STEP_FIRST) -> str:
    return f"campaign:{campaign_id}:contact:{contact_id}:{step}"


@dataclass(frozen=True)
class Offer:
    """One contact assigned to the agent, with the message the agent is about to send."""

    contact_id: int
    first_name: str
    last_name: str
    phone: str
    body: str
    encoding: str
    segments: int
    missing_fields: tuple[str, ...]
    assigned_until: datetime

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(frozen=True)
class Batch:
    campaign_id: int
    agent_id: int
    offers: list[Offer]
    #: Contacts passed over in this request because it is quiet hours where they are.
    held_back: int
    #: Contacts taken out of the pool in this request (opted out, active elsewhere).
    skipped: int


@dataclass(frozen=True)
class Sent:
    message: Message
    #: False when this repeated an earlier action: the message is the one that action created.
    created: bool
    contact_id: int
    #: The campaign contact's status after the send: ``sent``, or ``skipped`` when the gate
    #: blocked the message (its ``gate_detail`` says why).
    status: str


@dataclass(frozen=True)
class Answer:
    id: int
    question_id: int
    contact_id: int
    campaign_id: int | None
    answer: str
    tags: list[str]
    fields: dict[str, Any]


class Refused(Conflict):
    """A send the platform will not make; ``reason`` is machine-readable."""

    def __init__(self, message: str, *, reason: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.reason = reason


# --- who is sending ------------------------------------------------------------------------


def agent_for(principal: Principal, agent_id: int | None) -> int:
    """The person a call acts for. A signed-in person acts as themselves; an API key (an
    integration driving its own send screen) names the agent it acts for."""
    if principal.user_id is not None:
        if agent_id is not None and agent_id != principal.user_id:
            raise Forbidden("you can only work a campaign as yourself", field="agent_id")
        return principal.user_id
    if agent_id is None:
        raise Invalid(
            "an API key must name the agent it acts for (agent_id): every campaign message "
            "is sent by a person",
            field="agent_id",
        )
    return agent_id


def _check_agent(conn: Connection, org_id: int, campaign_id: int, agent_id: int) -> Any:
    user = conn.execute(
        sa.select(users.c.id, users.c.name, users.c.role, users.c.is_active).where(
            users.c.id == agent_id, users.c.org_id == org_id
        )
    ).first()
    if user is None:
        raise NotFound(f"agent {agent_id} not found", field="agent_id")
    if not user.is_active:
        raise Forbidden(f"user {agent_id} is deactivated", field="agent_id")
    if Role(user.role).at_least(Role.ADMIN):
        return user  # admins and owners may work any campaign of their organization
    member = conn.execute(
        sa.select(campaign_agents.c.user_id).where(
            campaign_agents.c.campaign_id == campaign_id, campaign_agents.c.user_id == agent_id
        )
    ).first()
    if member is None:
        raise Forbidden(
            f"user {agent_id} is not an agent of campaign {campaign_id}; an admin adds agents",
            field="agent_id",
        )
    return user


# --- the campaign ----------------------------------------------------------------------------


def load_campaign(conn: Connection, org_id: int, campaign_id: int) -> Any:
    row = conn.execute(
        sa.select(campaigns).where(campaigns.c.id == campaign_id, campaigns.c.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return row


def _check_sendable(
    campaign_id: int,
    status: str,
    starts_at: datetime | None,
    ends_at: datetime | None,
    now: datetime,
) -> None:
    if status != "active":
        raise Refused(
            f"campaign {campaign_id} is {status}, not active: nothing can be sent",
            reason=f"campaign_{status}",
        )
    if starts_at is not None and now < starts_at:
        raise Refused(
            f"campaign {campaign_id} starts at {starts_at:%Y-%m-%d %H:%M} UTC",
            reason="campaign_not_started",
        )
    if ends_at is not None and now >= ends_at:
        raise Refused(
            f"campaign {campaign_id} ended at {ends_at:%Y-%m-%d %H:%M} UTC",
            reason="campaign_ended",
        )


_OTHER = cc.alias("other_cc")  # built once: aliasing a table per call costs ~3 ms of Python


def _active_elsewhere(contact_id: Any, campaign_id: Any) -> sa.Exists:
    """The contact already got the first message of another campaign that is still active."""
    other = _OTHER
    return (
        sa.select(other.c.id)
        .join(campaigns, campaigns.c.id == other.c.campaign_id)
        .where(
            other.c.contact_id == contact_id,
            other.c.campaign_id != campaign_id,
            other.c.status == "sent",
            campaigns.c.status == "active",
        )
        .exists()
    )


# --- rendering -----------------------------------------------------------------------------

_CONTACT_COLS = (
    contacts.c.first_name,
    contacts.c.last_name,
    contacts.c.phone_e164,
    contacts.c.email,
    contacts.c.zip,
    contacts.c.state,
    contacts.c.time_zone,
    contacts.c.external_id,
    contacts.c.fields,
    contacts.c.opted_out,
)


def _values(row: Any, agent_name: str, org_name: str) -> dict[str, Any]:
    return {
        "first_name": row.first_name,
        "last_name": row.last_name,
        "full_name": f"{row.first_name} {row.last_name}".strip(),
        "phone": row.phone_e164,
        "email": row.email,
        "zip": row.zip,
        "state": row.state,
        "external_id": row.external_id,
        "fields": row.fields or {},
        "agent_name": agent_name,
        "org_name": org_name,
    }


def _names(conn: Connection, org_id: int, agent_id: int) -> tuple[str, str]:
    row = conn.execute(
        sa.select(users.c.name, organizations.c.name.label("org_name"))
        .join(organizations, organizations.c.id == users.c.org_id)
        .where(users.c.id == agent_id, users.c.org_id == org_id)
    ).first()
    return (row.name, row.org_name) if row is not None else ("", "")


def _offers(
    conn: Connection, org_id: int, campaign: Any, agent_id: int, *, limit: int | None = None
) -> list[Offer]:
    query = (
        sa.select(cc.c.contact_id, cc.c.assigned_until, *_CONTACT_COLS)
        .join(contacts, contacts.c.id == cc.c.contact_id)
        .where(
            cc.c.campaign_id == campaign.id,
            cc.c.assignee_id == agent_id,
            cc.c.status == "assigned",
            cc.c.org_id == org_id,
        )
        .order_by(cc.c.id)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = conn.execute(query).all()
    if not rows:
        return []
    template = parse_template(campaign.script)
    agent_name, org_name = _names(conn, org_id, agent_id)
    out = []
    for row in rows:
        shown = preview(template, _values(row, agent_name, org_name))
        out.append(
            Offer(
                contact_id=row.contact_id,
                first_name=row.first_name,
                last_name=row.last_name,
                phone=row.phone_e164,
                body=shown.text,
                encoding=shown.encoding,
                segments=max(1, shown.segment_count),
                missing_fields=shown.missing_fields,
                assigned_until=row.assigned_until,
            )
        )
    return out


# --- assignment ----------------------------------------------------------------------------


def _quiet_now(row: Any, purpose: str, now: datetime, rules: org_settings.OrgSettings) -> bool:
    decision = compliance.evaluate(
        Recipient.from_mapping(row._mapping),
        purpose=purpose,
        now=now,
        valid_until=None,
        org_window=rules.window(),
        org_days=rules.days(),
    )
    return decision.verdict is not Verdict.ALLOW


def _reap(conn: Connection, now: datetime, campaign_id: int | None = None) -> int:
    """Expired assignments back to the pool."""
    expired = sa.select(cc.c.id).where(cc.c.status == "assigned", cc.c.assigned_until < now)
    if campaign_id is not None:
        expired = expired.where(cc.c.campaign_id == campaign_id)
    if conn.dialect.name == "postgresql":
        # A row another transaction holds (a send in progress) is not expired for our purposes.
        expired = expired.with_for_update(skip_locked=True)
    ids = conn.execute(expired).scalars().all()
    if not ids:
        return 0
    for start in range(0, len(ids), 1000):
        conn.execute(
            sa.update(cc)
            .where(cc.c.id.in_(ids[start : start + 1000]), cc.c.status == "assigned")
            .values(status="pending", assignee_id=None, assigned_until=None)
        )
    return len(ids)


def reap_expired(db: Database, *, now: datetime | None = None) -> int:
    """The periodic reaper: every expired assignment of every campaign back to its pool."""
    with db.write() as conn:
        return _reap(conn, now or utcnow())


def request_batch(
    db: Database,
    principal: Principal,
    campaign_id: int,
    count: int | None = None,
    *,
    agent_id: int | None = None,
    now: datetime | None = None,
) -> Batch:
    """Top the agent's assignment up to ``count`` contacts (at most the campaign's batch size)
    and return all of them, each with its personalized message, oldest first."""
    if count is not None and count < 1:
        raise Invalid(f"count must be at least 1, got {count}", field="count")
    now = now or utcnow()
    org_id = principal.org_id
    pg = db.dialect == "postgresql"
    with db.write() as conn:
        campaign = load_campaign(conn, org_id, campaign_id)  # 404 before anything else
        agent = agent_for(principal, agent_id)
        _check_sendable(campaign_id, campaign.status, campaign.starts_at, campaign.ends_at, now)
        _check_agent(conn, org_id, campaign_id, agent)
        size = max(1, campaign.batch_size)
        wanted = min(count or size, size)
        until = now + timedelta(seconds=campaign.assignment_timeout_seconds)
        # The agent is active: their own contacts stay theirs (even if just expired).
        held = conn.execute(
            sa.update(cc)
            .where(
                cc.c.campaign_id == campaign_id,
                cc.c.assignee_id == agent,
                cc.c.status == "assigned",
            )
            .values(assigned_until=until)
        ).rowcount
        _reap(conn, now, campaign_id)
        need = wanted - held
        chosen: list[int] = []
        skipped: dict[str, list[int]] = {}
        held_back = 0
        if need > 0:
            rules = org_settings.load(conn, org_id)
            elsewhere = _active_elsewhere(cc.c.contact_id, campaign_id).label("elsewhere")
            last_id = 0
            scanned = 0
            while len(chosen) < need and scanned < SCAN_LIMIT:
                query = (
                    sa.select(cc.c.id, cc.c.contact_id, elsewhere, *_CONTACT_COLS)
                    .join(contacts, contacts.c.id == cc.c.contact_id)
                    .where(
                        cc.c.campaign_id == campaign_id,
                        cc.c.status == "pending",
                        cc.c.id > last_id,
                    )
                    .order_by(cc.c.id)
                    .limit(_CHUNK)
                )
                if pg:
                    query = query.with_for_update(of=cc, skip_locked=True)
                rows = conn.execute(query).all()
                if not rows:
                    break
                scanned += len(rows)
                last_id = rows[-1].id
                for row in rows:
                    if row.opted_out:
                        skipped.setdefault(OPTED_OUT, []).append(row.id)
                    elif row.elsewhere:
                        skipped.setdefault(ACTIVE_ELSEWHERE, []).append(row.id)
                    elif _quiet_now(row, campaign.purpose, now, rules):
                        held_back += 1  # not offered now; stays in the pool for later
                    elif len(chosen) < need:
                        chosen.append(row.id)
        if chosen:
            conn.execute(
                sa.update(cc)
                .where(cc.c.id.in_(chosen))
                .values(status="assigned", assignee_id=agent, assigned_until=until)
            )
        for reason, ids in skipped.items():
            conn.execute(
                sa.update(cc).where(cc.c.id.in_(ids)).values(status="skipped", reason=reason)
            )
        offers = _offers(conn, org_id, campaign, agent)
        if chosen or skipped:
            events.publish(
                conn,
                org_id,
                "campaign.progress",
                {"campaign_id": campaign_id, "agent_id": agent, "assigned": len(chosen)},
            )
    return Batch(
        campaign_id=campaign_id,
        agent_id=agent,
        offers=offers,
        held_back=held_back,
        skipped=sum(len(v) for v in skipped.values()),
    )


def next_contact(
    db: Database, principal: Principal, campaign_id: int, *, agent_id: int | None = None
) -> Offer | None:
    """The agent's next assigned contact with its message; None when they hold none (ask for a
    batch)."""
    with db.read() as conn:
        campaign = load_campaign(conn, principal.org_id, campaign_id)
        agent = agent_for(principal, agent_id)
        offers = _offers(conn, principal.org_id, campaign, agent, limit=1)
    return offers[0] if offers else None


@dataclass(frozen=True)
class AgentStats:
    assigned: int
    sent: int
    pending: int


def agent_stats(conn: Connection, org_id: int, campaign_id: int, agent_id: int) -> AgentStats:
    mine: dict[str, int] = {
        str(status): int(n)
        for status, n in conn.execute(
            sa.select(cc.c.status, sa.func.count())
            .where(cc.c.campaign_id == campaign_id, cc.c.assignee_id == agent_id)
            .where(cc.c.org_id == org_id)
            .group_by(cc.c.status)
        )
    }
    pending = conn.execute(
        sa.select(sa.func.count()).where(
            cc.c.campaign_id == campaign_id, cc.c.status == "pending", cc.c.org_id == org_id
        )
    ).scalar_one()
    return AgentStats(int(mine.get("assigned", 0)), int(mine.get("sent", 0)), int(pending))


# --- sending -------------------------------------------------------------------------------


def _pick_channel(channel_ids: list[int], sticky: int | None, phone: str) -> int | None:
    """Within the campaign's numbers: the contact's sticky sender if it is one of them, else a
    deterministic pick by phone (a retry picks the same). None: any of the org's numbers."""
    if not channel_ids:
        return None
    if sticky is not None and sticky in channel_ids:
        return sticky
    digest = int(hashlib.sha256(phone.encode()).hexdigest()[:8], 16)
    return sorted(channel_ids)[digest % len(channel_ids)]


def send(
    db: Database,
    settings: Settings,
    principal: Principal,
    campaign_id: int,
    contact_id: int,
    *,
    step: str = STEP_FIRST,
    body_override: str | None = None,
    agent_id: int | None = None,
    now: datetime | None = None,
) -> Sent:
    """Send the campaign's message to ONE contact assigned to the agent; see the module doc."""
    agent = agent_for(principal, agent_id)
    if step not in STEPS:
        raise Invalid(f"step must be one of {', '.join(STEPS)}, got {step!r}", field="step")
    if body_override is not None and not body_override.strip():
        raise Invalid("the message is empty", field="body")
    try:
        return _send(
            db, settings, principal, campaign_id, contact_id, step, body_override, agent, now
        )
    except sa.exc.IntegrityError:
        # Only a concurrent insert of the same idempotency key gets here; the retry finds the
        # message that transaction committed and returns it.
        return _send(
            db, settings, principal, campaign_id, contact_id, step, body_override, agent, now
        )


def _send(
    db: Database,
    settings: Settings,
    principal: Principal,
    campaign_id: int,
    contact_id: int,
    step: str,
    body_override: str | None,
    agent: int,
    now: datetime | None,
) -> Sent:
    org_id = principal.org_id
    now = now or utcnow()
    refusal: Refused | None = None
    with db.write() as conn:
        query = (
            sa.select(
                cc.c.id,
                cc.c.status,
                cc.c.assignee_id,
                cc.c.message_id,
                cc.c.sent_by,
                cc.c.reason,
                campaigns.c.status.label("campaign_status"),
                campaigns.c.script,
                campaigns.c.purpose,
                campaigns.c.starts_at,
                campaigns.c.ends_at,
                campaigns.c.channel_ids,
                campaigns.c.assignment_timeout_seconds,
                conversations.c.channel_id.label("sticky"),
                _active_elsewhere(cc.c.contact_id, campaign_id).label("elsewhere"),
                *_CONTACT_COLS,
            )
            .select_from(cc)
            .join(campaigns, campaigns.c.id == cc.c.campaign_id)
            .join(contacts, contacts.c.id == cc.c.contact_id)
            .outerjoin(
                conversations,
                sa.and_(
                    conversations.c.contact_id == cc.c.contact_id,
                    conversations.c.org_id == org_id,
                ),
            )
            .where(
                cc.c.campaign_id == campaign_id,
                cc.c.contact_id == contact_id,
                cc.c.org_id == org_id,
            )
        )
        if conn.dialect.name == "postgresql":
            # Two sends of the same contact queue here; the second sees the first's message.
            query = query.with_for_update(of=cc)
        row = conn.execute(query).first()
        if row is None:
            load_campaign(conn, org_id, campaign_id)  # NotFound for an unknown campaign
            raise NotFound(
                f"contact {contact_id} is not in campaign {campaign_id}", field="contact_id"
            )
        if row.message_id is not None:
            if row.sent_by != agent:
                raise Refused(
                    f"contact {contact_id} already got this campaign's message from another agent",
                    reason="already_sent",
                    field="contact_id",
                )
            message = messaging.get_message(conn, org_id, row.message_id)
            return Sent(message, created=False, contact_id=contact_id, status=row.status)
        if row.status in ("skipped", "excluded"):
            raise Refused(
                f"contact {contact_id} was {row.status}: "
                + _SENTENCES.get(row.reason or "", row.reason or "no reason recorded"),
                reason=row.reason or row.status,
                field="contact_id",
            )
        _check_sendable(campaign_id, row.campaign_status, row.starts_at, row.ends_at, now)
        if row.status != "assigned" or row.assignee_id != agent:
            raise Refused(
                f"contact {contact_id} is not assigned to you (ask for a new batch)",
                reason="not_assigned",
                field="contact_id",
            )
        if row.opted_out:
            refusal = Refused(
                f"not sent: {row.phone_e164} opted out of messages from this organization",
                reason=OPTED_OUT,
                field="contact_id",
            )
        elif row.elsewhere:
            refusal = Refused(
                f"not sent: contact {contact_id} already got the first message of another "
                "active campaign",
                reason=ACTIVE_ELSEWHERE,
                field="contact_id",
            )
        body = body_override
        if refusal is None and body is None:
            agent_name, org_name = _names(conn, org_id, agent)
            try:
                body = render(row.script, _values(row, agent_name, org_name))
            except TemplateError as exc:
                refusal = Refused(
                    f"not sent: the script has no value for this contact: {exc.message}",
                    reason=MISSING_FIELD,
                    field="contact_id",
                )
        if refusal is not None:
            conn.execute(
                sa.update(cc)
                .where(cc.c.id == row.id)
                .values(status="skipped", reason=refusal.reason, assigned_until=None)
            )
        else:
            assert body is not None
            queued = messaging.queue_outbound(
                conn,
                settings,
                org_id=org_id,
                contact_id=contact_id,
                body=body,
                actor=principal.actor,
                purpose=row.purpose,
                created_by=agent,
                channel_id=_pick_channel(list(row.channel_ids or []), row.sticky, row.phone_e164),
                idempotency_key=idempotency_key(campaign_id, contact_id, step),
                priority=messaging.PRIORITY_BULK,
                now=now,
            )
            message = queued.message
            gone = message.status in (MessageStatus.BLOCKED, MessageStatus.EXPIRED)
            status = "skipped" if gone else "sent"
            conn.execute(
                sa.update(cc)
                .where(cc.c.id == row.id)
                .values(
                    status=status,
                    reason=message.gate_code if gone else None,
                    message_id=message.id,
                    sent_by=agent,
                    sent_at=now,
                    assigned_until=None,
                )
            )
            # Replies go to the agent who sent the first message.
            conn.execute(
                sa.update(conversations)
                .where(conversations.c.id == message.conversation_id)
                .values(
                    assignee_id=sa.func.coalesce(conversations.c.assignee_id, agent),
                    campaign_id=campaign_id,
                )
            )
            # Activity renews the agent's other contacts, once half their time is gone (a
            # no-op on most sends: one indexed lookup).
            timeout = timedelta(seconds=row.assignment_timeout_seconds)
            conn.execute(
                sa.update(cc)
                .where(
                    cc.c.campaign_id == campaign_id,
                    cc.c.assignee_id == agent,
                    cc.c.status == "assigned",
                    cc.c.assigned_until < now + timeout / 2,
                )
                .values(assigned_until=now + timeout)
            )
            events.publish(
                conn,
                org_id,
                "campaign.progress",
                {
                    "campaign_id": campaign_id,
                    "agent_id": agent,
                    "contact_id": contact_id,
                    "status": status,
                    "message_id": message.id,
                },
            )
    if refusal is not None:
        raise refusal
    if message.status == MessageStatus.QUEUED:
        wakeup.notify()
    return Sent(message, created=queued.created, contact_id=contact_id, status=status)


def skip(
    db: Database,
    principal: Principal,
    campaign_id: int,
    contact_id: int,
    *,
    agent_id: int | None = None,
) -> None:
    """The agent decides not to message this contact (wrong person, a note from the field): the
    contact leaves the pool as ``skipped``. Only the agent holding it may skip it."""
    with db.write() as conn:
        load_campaign(conn, principal.org_id, campaign_id)
        agent = agent_for(principal, agent_id)
        done = conn.execute(
            sa.update(cc)
            .where(
                cc.c.campaign_id == campaign_id,
                cc.c.contact_id == contact_id,
                cc.c.org_id == principal.org_id,
                cc.c.assignee_id == agent,
                cc.c.status == "assigned",
            )
            .values(status="skipped", reason=SKIPPED_BY_AGENT, assigned_until=None)
        ).rowcount
        if not done:
            raise Refused(
                f"contact {contact_id} is not assigned to you",
                reason="not_assigned",
                field="contact_id",
            )
        events.publish(
            conn,
            principal.org_id,
            "campaign.progress",
            {
                "campaign_id": campaign_id,
                "agent_id": agent,
                "contact_id": contact_id,
                "status": "skipped",
            },
        )


def sent_message_for(
    conn: Connection, org_id: int, campaign_id: int, contact_id: int
) -> int | None:
    """The id of the campaign's first message to a contact, if any (by its idempotency key)."""
    return conn.execute(
        sa.select(messages.c.id).where(
            messages.c.org_id == org_id,
            messages.c.idempotency_key == idempotency_key(campaign_id, contact_id),
        )
    ).scalar()


# --- survey answers --------------------------------------------------------------------------


def record_answer(
    db: Database, principal: Principal, question_id: int, contact_id: int, option: str
) -> Answer:
    """Record a contact's answer to a survey question (one per question and contact; a new
    answer replaces the old one) and apply the option's tag and/or field to the contact."""
    try:
        return _record_answer(db, principal, question_id, contact_id, option)
    except sa.exc.IntegrityError:
        # Two first answers at once: the unique (question, contact) refused one; it now updates.
        return _record_answer(db, principal, question_id, contact_id, option)


def _record_answer(
    db: Database, principal: Principal, question_id: int, contact_id: int, option: str
) -> Answer:
    org_id = principal.org_id
    now = utcnow()
    with db.write() as conn:
        question = conn.execute(
            sa.select(survey_questions).where(
                survey_questions.c.id == question_id, survey_questions.c.org_id == org_id
            )
        ).first()
        if question is None:
            raise NotFound(f"survey question {question_id} not found", field="question_id")
        options: list[dict[str, Any]] = list(question.options or [])
        chosen = _option(options, option)
        contact = conn.execute(
            sa.select(contacts.c.id, contacts.c.tags, contacts.c.fields).where(
                contacts.c.id == contact_id, contacts.c.org_id == org_id
            )
        ).first()
        if contact is None:
            raise NotFound(f"contact {contact_id} not found", field="contact_id")
        previous = conn.execute(
            sa.select(survey_answers.c.id, survey_answers.c.answer).where(
                survey_answers.c.question_id == question_id,
                survey_answers.c.contact_id == contact_id,
            )
        ).first()
        tags = list(contact.tags or [])
        fields = dict(contact.fields or {})
        if previous is not None:
            old = next((o for o in options if o.get("label") == previous.answer), None)
            old_tag = old.get("tag") if old else None
            if old_tag and old_tag != chosen.get("tag") and old_tag in tags:
                tags.remove(old_tag)
        tag = chosen.get("tag")
        if tag and tag not in tags:
            tags.append(tag)
        key = chosen.get("field")
        if key:
            types = custom_fields.field_types(conn, org_id)
            raw = chosen.get("value", chosen["label"])
            fields[key] = (
                custom_fields.coerce_value(types[key], raw, key=key) if key in types else raw
            )
        conn.execute(
            sa.update(contacts)
            .where(contacts.c.id == contact_id, contacts.c.org_id == org_id)
            .values(tags=tags, fields=fields, updated_at=now)
        )
        values = {
            "answer": chosen["label"],
            "answered_by": principal.user_id,
            "campaign_id": question.campaign_id,
            "created_at": now,
        }
        if previous is not None:
            answer_id = previous.id
            conn.execute(
                sa.update(survey_answers).where(survey_answers.c.id == answer_id).values(**values)
            )
        else:
            answer_id = conn.execute(
                survey_answers.insert()
                .values(org_id=org_id, question_id=question_id, contact_id=contact_id, **values)
                .returning(survey_answers.c.id)
            ).scalar_one()
        events.publish(
            conn,
            org_id,
            "campaign.progress",
            {"campaign_id": question.campaign_id, "contact_id": contact_id, "survey": question_id},
        )
    return Answer(
        id=answer_id,
        question_id=question_id,
        contact_id=contact_id,
        campaign_id=question.campaign_id,
        answer=chosen["label"],
        tags=tags,
        fields=fields,
    )


def _option(options: list[dict[str, Any]], given: str) -> dict[str, Any]:
    wanted = given.strip()
    for o in options:
        if o.get("label") == wanted:
            return o
    for o in options:
        if str(o.get("label", "")).casefold() == wanted.casefold():
            return o
    labels = ", ".join(repr(o.get("label")) for o in options) or "none"
    raise Invalid(
        f"{given!r} is not an option of this question (options: {labels})", field="option"
    )
