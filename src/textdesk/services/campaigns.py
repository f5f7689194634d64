"""P2P campaigns, administration side: drafts, agents, the lifecycle and the audience.

A campaign's life, with every allowed move in :data:`TRANSITIONS` (nothing else is allowed)::

    draft --start--> active --pause--> paused
      |                ^  |              |
      |                |  +--archive--+  |
      |                +----resume----|--+
      +------------------archive------+--> archived (final)

START materializes the audience: one ``campaign_contacts`` row per contact matching the
campaign's segment query, written with INSERT ... SELECT in id-ordered batches inside the start
transaction, so a campaign is never half started. Contacts who opted out or who are waiting in
another active campaign (pending or assigned there) get status ``excluded`` with a reason; the
send screen (``services.p2p``) checks the same conditions again at every send.

Sending (assignment, the one-click send) is ``services.p2p``; survey questions and canned
responses are ``services.campaign_survey``; preview and progress ``services.campaign_reports``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.roles import Role
from textdesk.domain.templates import BUILTIN_FIELDS, Template, TemplateError, parse_template
from textdesk.services import audit
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.compliance import USER_PURPOSES
from textdesk.services.errors import Conflict, Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import (
    UTCDateTime,
    campaign_agents,
    campaign_contacts,
    campaigns,
    channels,
    contacts,
    organizations,
    segments,
    users,
    utc_storable,
    utcnow,
)

DRAFT, ACTIVE, PAUSED, ARCHIVED = "draft", "active", "paused", "archived"
STATUSES = (DRAFT, ACTIVE, PAUSED, ARCHIVED)

#: action -> (statuses it may start from, status it leads to). The one place transitions live.
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({DRAFT}), ACTIVE),
    "pause": (frozenset({ACTIVE}), PAUSED),
    "resume": (frozenset({PAUSED}), ACTIVE),
    "archive": (frozenset({DRAFT, ACTIVE, PAUSED}), ARCHIVED),
}

#: What may still change once a campaign has started: the script, audience and purpose are
#: what the contacts were chosen for and what the first messages say, so they are frozen.
LIVE_EDITABLE = frozenset(
    {"name", "channel_ids", "starts_at", "ends_at", "batch_size", "assignment_timeout_seconds"}
)
#: The settings an update may set to null (the others always have a value).
NULLABLE = frozenset({"segment_id", "starts_at", "ends_at"})

#: Contacts copied per INSERT ... SELECT at start: bounds one statement's work and memory.
MATERIALIZE_BATCH = 5000
MAX_SCRIPT = 1600
MAX_BATCH_SIZE = 500
MIN_TIMEOUT, MAX_TIMEOUT = 60, 7 * 24 * 3600

# Reasons stored on excluded campaign_contacts rows (the send screen uses the same words).
EXCLUDED_OPTED_OUT = "opted_out"
EXCLUDED_ACTIVE_ELSEWHERE = "active_elsewhere"


@dataclass(frozen=True)
class Campaign:
    id: int
    org_id: int
    name: str
    status: str
    script: str
    segment_query: str
    purpose: str
    channel_ids: list[int]
    starts_at: datetime | None
    ends_at: datetime | None
    batch_size: int
    assignment_timeout_seconds: int
    created_by: int | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    archived_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Campaign:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})

    def can(self, action: str) -> bool:
        return self.status in TRANSITIONS[action][0]


@dataclass
class CampaignInput:
    """A draft's settings. ``segment_id`` copies a saved segment's query into ``segment_query``
    (a later edit of the saved segment does not change the campaign)."""

    name: str
    script: str = ""
    segment_query: str = ""
    segment_id: int | None = None
    purpose: str = "marketing"
    channel_ids: list[int] = field(default_factory=list)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    batch_size: int = 50
    assignment_timeout_seconds: int = 900


@dataclass(frozen=True)
class Agent:
    user_id: int
    name: str
    email: str
    role: str


# --- validation ---------------------------------------------------------------------------------


def known_fields(conn: Connection, org_id: int) -> list[str]:
    """Every merge field a script of this organization may use."""
    from textdesk.services.custom_fields import field_types

    return [*BUILTIN_FIELDS, *(f"fields.{key}" for key in sorted(field_types(conn, org_id)))]


def validate_script(
    conn: Connection, org_id: int, script: str, *, where: str = "script"
) -> Template:
    """Parse ``script`` against the built-in and the org's custom fields; errors name the
    position (``TemplateError`` messages carry it) and ``field=where``."""
    if len(script) > MAX_SCRIPT:
        raise Invalid(
            f"{where} is {len(script)} characters; the limit is {MAX_SCRIPT}", field=where
        )
    try:
        return parse_template(script, known_fields=known_fields(conn, org_id))
    except TemplateError as exc:
        raise Invalid(f"{where}: {exc.message} (at position {exc.position})", field=where) from exc


def validate_query(conn: Connection, org_id: int, query: str) -> None:
    """The segment language's own error (position and what was expected), as ``segment_query``."""
    from textdesk.services.segments import contact_filter

    try:
        contact_filter(conn, org_id, query)
    except Invalid as exc:
        raise Invalid(f"segment_query: {exc.message}", field="segment_query") from exc


def _validate(conn: Connection, org_id: int, data: CampaignInput) -> dict[str, Any]:
    name = data.name.strip()
    if not name:
        raise Invalid("a campaign needs a name", field="name")
    if len(name) > 200:
        raise Invalid("name is longer than 200 characters", field="name")
    validate_script(conn, org_id, data.script)
    query = data.segment_query.strip()
    if data.segment_id is not None:
        row = conn.execute(
            sa.select(segments.c.query).where(
                segments.c.id == data.segment_id, segments.c.org_id == org_id
            )
        ).first()
        if row is None:
            raise Invalid(f"saved segment {data.segment_id} not found", field="segment_id")
        query = row.query
    validate_query(conn, org_id, query)
    if data.purpose not in {p.value for p in USER_PURPOSES}:
        raise Invalid(
            f"purpose must be one of {', '.join(p.value for p in USER_PURPOSES)}; "
            f"got {data.purpose!r}",
            field="purpose",
        )
    channel_ids = sorted(set(data.channel_ids))
    if channel_ids:
        found = set(
            conn.execute(
                sa.select(channels.c.id).where(
                    channels.c.org_id == org_id, channels.c.id.in_(channel_ids)
                )
            ).scalars()
        )
        missing = [c for c in channel_ids if c not in found]
        if missing:
            raise Invalid(f"sender number {missing[0]} not found", field="channel_ids")
    for name_, value in (("starts_at", data.starts_at), ("ends_at", data.ends_at)):
        if value is not None and value.tzinfo is None:
            raise Invalid(f"{name_} needs a time zone offset", field=name_)
        if value is not None and not utc_storable(value):
            raise Invalid(
                f"{name_} is out of range: in UTC it falls outside years 1-9999", field=name_
            )
    if data.starts_at and data.ends_at and data.ends_at <= data.starts_at:
        raise Invalid("ends_at must be after starts_at", field="ends_at")
    if not 1 <= data.batch_size <= MAX_BATCH_SIZE:
        raise Invalid(f"batch_size must be between 1 and {MAX_BATCH_SIZE}", field="batch_size")
    if not MIN_TIMEOUT <= data.assignment_timeout_seconds <= MAX_TIMEOUT:
        raise Invalid(
            f"assignment_timeout_seconds must be between {MIN_TIMEOUT} and {MAX_TIMEOUT}",
            field="assignment_timeout_seconds",
        )
    return {
        "name": name,
        "script": data.script,
        "segment_query": query,
        "purpose": data.purpose,
        "channel_ids": channel_ids,
        "starts_at": data.starts_at,
        "ends_at": data.ends_at,
        "batch_size": data.batch_size,
        "assignment_timeout_seconds": data.assignment_timeout_seconds,
    }


# --- drafts -------------------------------------------------------------------------------------


def create_campaign(
    db: Database,
    principal: Principal,
    *,
    name: str,
    script: str = "",
    segment_query: str = "",
    request: RequestInfo | None = None,
    **settings: Any,
) -> Campaign:
    """Create a draft; ``settings`` are the other :class:`CampaignInput` fields."""
    return create_draft(
        db,
        principal,
        CampaignInput(name=name, script=script, segment_query=segment_query, **settings),
        request=request,
    )


def create_draft(
    db: Database, principal: Principal, data: CampaignInput, *, request: RequestInfo | None = None
) -> Campaign:
    principal.require(Role.ADMIN)
    now = utcnow()
    with db.write() as conn:
        values = _validate(conn, principal.org_id, data)
        campaign_id = conn.execute(
            campaigns.insert()
            .values(
                org_id=principal.org_id,
                status=DRAFT,
                created_by=principal.user_id,
                created_at=now,
                updated_at=now,
                **values,
            )
            .returning(campaigns.c.id)
        ).scalar_one()
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="campaign.create",
            target=f"campaign:{campaign_id}",
            request=request,
        )
        return get_campaign(conn, principal.org_id, campaign_id)


def update_campaign(
    db: Database,
    principal: Principal,
    campaign_id: int,
    changes: dict[str, Any],
    *,
    request: RequestInfo | None = None,
) -> Campaign:
    """Apply ``changes`` (names of :class:`CampaignInput` fields). A draft may change anything;
    a started campaign only :data:`LIVE_EDITABLE`; an archived one nothing."""
    principal.require(Role.ADMIN)
    unknown = set(changes) - set(CampaignInput.__dataclass_fields__)
    if unknown:
        bad = sorted(unknown)[0]
        raise Invalid(f"unknown campaign setting {bad!r}", field=bad)
    nulled = sorted(k for k, v in changes.items() if v is None and k not in NULLABLE)
    if nulled:
        raise Invalid(f"{nulled[0]} cannot be null", field=nulled[0])
    with db.write() as conn:
        current = get_campaign(conn, principal.org_id, campaign_id, lock=True)
        if current.status == ARCHIVED:
            raise Conflict("an archived campaign cannot change", field="status")
        if current.status != DRAFT:
            frozen = sorted(
                k
                for k in changes
                if k not in LIVE_EDITABLE and changes[k] != getattr(current, k, None)
            )
            if frozen:
                raise Conflict(
                    f"{frozen[0]} cannot change once the campaign has started", field=frozen[0]
                )
        merged = {
            f: getattr(current, f) for f in CampaignInput.__dataclass_fields__ if f != "segment_id"
        }
        merged.update(changes)
        values = _validate(conn, principal.org_id, CampaignInput(**merged))
        conn.execute(
            sa.update(campaigns)
            .where(campaigns.c.id == campaign_id, campaigns.c.org_id == principal.org_id)
            .values(updated_at=utcnow(), **values)
        )
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="campaign.update",
            target=f"campaign:{campaign_id}",
            request=request,
            detail={"fields": sorted(changes)},
        )
        return get_campaign(conn, principal.org_id, campaign_id)


def delete_draft(
    db: Database, principal: Principal, campaign_id: int, *, request: RequestInfo | None = None
) -> None:
    """Only a draft can be deleted; a started campaign has history and is archived instead."""
    principal.require(Role.ADMIN)
    with db.write() as conn:
        current = get_campaign(conn, principal.org_id, campaign_id, lock=True)
        if current.status != DRAFT:
            raise Conflict(
                f"only a draft can be deleted; this campaign is {current.status} (archive it)",
                field="status",
            )
        conn.execute(sa.delete(campaigns).where(campaigns.c.id == campaign_id))
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="campaign.delete",
            target=f"campaign:{campaign_id}",
            request=request,
            detail={"name": current.name},
        )


def get_campaign(
    conn: Connection, org_id: int, campaign_id: int, *, lock: bool = False
) -> Campaign:
    query = sa.select(campaigns).where(campaigns.c.id == campaign_id, campaigns.c.org_id == org_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return Campaign.from_row(row)


def list_campaigns(conn: Connection, org_id: int) -> list[Campaign]:
    rows = conn.execute(
        sa.select(campaigns).where(campaigns.c.org_id == org_id).order_by(campaigns.c.id.desc())
    )
    return [Campaign.from_row(r) for r in rows]


def _assigned(principal: Principal) -> Any:
    return sa.select(campaign_agents.c.campaign_id).where(
        campaign_agents.c.user_id == principal.user_id
    )


def visible_campaigns(conn: Connection, principal: Principal) -> list[Campaign]:
    """Admins see every campaign; agents the ones they are assigned to (an agent-role API key
    stands for no person, so it is assigned to nothing)."""
    query = sa.select(campaigns).where(campaigns.c.org_id == principal.org_id)
    if not principal.role.at_least(Role.ADMIN):
        query = query.where(campaigns.c.id.in_(_assigned(principal)))
    return [Campaign.from_row(r) for r in conn.execute(query.order_by(campaigns.c.id.desc()))]


def get_visible(conn: Connection, principal: Principal, campaign_id: int) -> Campaign:
    """A campaign the principal may read; not found (not forbidden) for an unassigned agent."""
    campaign = get_campaign(conn, principal.org_id, campaign_id)
    if not principal.role.at_least(Role.ADMIN):
        assigned = conn.execute(
            _assigned(principal).where(campaign_agents.c.campaign_id == campaign_id)
        ).first()
        if assigned is None:
            raise NotFound(f"campaign {campaign_id} not found")
    return campaign


# --- agents -------------------------------------------------------------------------------------


def list_agents(conn: Connection, org_id: int, campaign_id: int) -> list[Agent]:
    rows = conn.execute(
        sa.select(users.c.id, users.c.name, users.c.email, users.c.role)
        .join(campaign_agents, campaign_agents.c.user_id == users.c.id)
        .where(campaign_agents.c.campaign_id == campaign_id, users.c.org_id == org_id)
        .order_by(users.c.name, users.c.id)
    )
    return [Agent(r.id, r.name, r.email, r.role) for r in rows]


def set_agents(
    db: Database,
    principal: Principal,
    campaign_id: int,
    user_ids: list[int],
    *,
    request: RequestInfo | None = None,
) -> list[Agent]:
    """Replace the campaign's agents. Removing an agent does not take back contacts already
    assigned to them: those return to the pool when their assignment times out."""
    principal.require(Role.ADMIN)
    wanted = sorted(set(user_ids))
    with db.write() as conn:
        campaign = get_campaign(conn, principal.org_id, campaign_id, lock=True)
        if campaign.status == ARCHIVED:
            raise Conflict("an archived campaign cannot change", field="status")
        if wanted:
            found = {
                r.id: r.is_active
                for r in conn.execute(
                    sa.select(users.c.id, users.c.is_active).where(
                        users.c.org_id == principal.org_id, users.c.id.in_(wanted)
                    )
                )
            }
            for position, user_id in enumerate(wanted):
                if user_id not in found:
                    raise Invalid(f"user {user_id} not found", field=f"user_ids[{position}]")
                if not found[user_id]:
                    raise Invalid(f"user {user_id} is deactivated", field=f"user_ids[{position}]")
        current = set(
            conn.execute(
                sa.select(campaign_agents.c.user_id).where(
                    campaign_agents.c.campaign_id == campaign_id
                )
            ).scalars()
        )
        removed = current - set(wanted)
        added = [u for u in wanted if u not in current]
        if removed:
            conn.execute(
                sa.delete(campaign_agents).where(
                    campaign_agents.c.campaign_id == campaign_id,
                    campaign_agents.c.user_id.in_(removed),
                )
            )
        if added:
            now = utcnow()
            conn.execute(
                campaign_agents.insert(),
                [{"campaign_id": campaign_id, "user_id": u, "created_at": now} for u in added],
            )
        if added or removed:
            audit.record(
                conn,
                org_id=principal.org_id,
                actor=principal.actor,
                action="campaign.agents",
                target=f"campaign:{campaign_id}",
                request=request,
                detail={"added": added, "removed": sorted(removed)},
            )
        return list_agents(conn, principal.org_id, campaign_id)


# --- lifecycle ----------------------------------------------------------------------------------


def transition(
    db: Database,
    principal: Principal,
    campaign_id: int,
    action: str,
    *,
    request: RequestInfo | None = None,
) -> Campaign:
    """start, pause, resume or archive, as :data:`TRANSITIONS` allows."""
    principal.require(Role.ADMIN)
    if action not in TRANSITIONS:
        raise Invalid(f"unknown action {action!r}", field="action")
    allowed_from, target = TRANSITIONS[action]
    now = utcnow()
    with db.write() as conn:
        if action == "start":
            # Serialize starts per organization (SQLite's BEGIN IMMEDIATE already does): two
            # campaigns started at once must each see the other's audience to exclude it.
            conn.execute(
                sa.select(organizations.c.id)
                .where(organizations.c.id == principal.org_id)
                .with_for_update()
            )
        campaign = get_campaign(conn, principal.org_id, campaign_id, lock=True)
        if campaign.status not in allowed_from:
            raise Conflict(
                f"cannot {action} a campaign that is {campaign.status}; "
                f"{action} needs {' or '.join(sorted(allowed_from))}",
                field="status",
            )
        values: dict[str, Any] = {"status": target, "updated_at": now}
        detail: dict[str, Any] = {"from": campaign.status}
        if action == "start":
            _check_startable(conn, campaign, now)
            detail.update(materialize(conn, campaign, now=now))
            values["started_at"] = now
        elif action == "archive":
            values["archived_at"] = now
        conn.execute(sa.update(campaigns).where(campaigns.c.id == campaign_id).values(**values))
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action=f"campaign.{action}",
            target=f"campaign:{campaign_id}",
            request=request,
            detail=detail,
        )
        return get_campaign(conn, principal.org_id, campaign_id)


def _check_startable(conn: Connection, campaign: Campaign, now: datetime) -> None:
    if not campaign.script.strip():
        raise Invalid("write the script before starting the campaign", field="script")
    validate_script(conn, campaign.org_id, campaign.script)
    if campaign.ends_at is not None and campaign.ends_at <= now:
        raise Invalid("the schedule window has already ended", field="ends_at")
    active = sa.select(channels.c.id).where(
        channels.c.org_id == campaign.org_id, channels.c.is_active
    )
    if campaign.channel_ids:
        active = active.where(channels.c.id.in_(campaign.channel_ids))
    if conn.execute(active.limit(1)).first() is None:
        raise Invalid("the campaign has no active sender number", field="channel_ids")


def materialize(conn: Connection, campaign: Campaign, *, now: datetime) -> dict[str, int]:
    """Copy the audience into ``campaign_contacts`` (inside the caller's transaction) and
    return how many rows were written as ``pending`` and as ``excluded``."""
    from textdesk.services.segments import contact_filter

    where = contact_filter(conn, campaign.org_id, campaign.segment_query, now=now)
    other = campaign_contacts.alias("other")
    elsewhere = sa.exists(
        sa.select(other.c.id)
        .join(campaigns, campaigns.c.id == other.c.campaign_id)
        .where(
            other.c.contact_id == contacts.c.id,
            other.c.campaign_id != campaign.id,
            other.c.status.in_(("pending", "assigned")),
            campaigns.c.status == ACTIVE,
        )
    )
    status = sa.case(
        (contacts.c.opted_out, sa.literal("excluded")),
        (elsewhere, sa.literal("excluded")),
        else_=sa.literal("pending"),
    )
    reason = sa.case(
        (contacts.c.opted_out, sa.literal(EXCLUDED_OPTED_OUT)),
        (elsewhere, sa.literal(EXCLUDED_ACTIVE_ELSEWHERE)),
        else_=sa.null(),
    )
    scope = sa.and_(contacts.c.org_id == campaign.org_id, where)
    after = 0
    while True:
        # The upper id of the next batch, then one INSERT ... SELECT for ids in (after, upper].
        ids = (
            sa.select(contacts.c.id)
            .where(scope, contacts.c.id > after)
            .order_by(contacts.c.id)
            .limit(MATERIALIZE_BATCH)
            .subquery()
        )
        upper = conn.execute(sa.select(sa.func.max(ids.c.id))).scalar()
        if upper is None:
            break
        conn.execute(
            campaign_contacts.insert().from_select(
                ["org_id", "campaign_id", "contact_id", "status", "reason", "created_at"],
                sa.select(
                    sa.literal(campaign.org_id, type_=sa.BigInteger()),
                    sa.literal(campaign.id, type_=sa.BigInteger()),
                    contacts.c.id,
                    status,
                    reason,
                    sa.literal(now, type_=UTCDateTime()),
                ).where(scope, contacts.c.id > after, contacts.c.id <= upper),
            )
        )
        after = int(upper)
    counts: dict[str, int] = dict(
        conn.execute(
            sa.select(campaign_contacts.c.status, sa.func.count())
            .where(campaign_contacts.c.campaign_id == campaign.id)
            .group_by(campaign_contacts.c.status)
        ).all()
    )
    return {"pending": int(counts.get("pending", 0)), "excluded": int(counts.get("excluded", 0))}
