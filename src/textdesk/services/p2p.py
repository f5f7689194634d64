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

import dataclasses
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from textdesk.services.errors import Conflict, Forbidden, Invalid, NotFound, ServiceError
from textdesk.services.messaging import Message
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.recordset import any_of, recordset, rows_param
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
log = logging.getLogger(__name__)

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
    #: When the first held-back contact may be texted (None: none is held back, or no time in
    #: the gate's search horizon fits), and the gate's sentence for that contact.
    next_allowed: datetime | None = None
    quiet_detail: str | None = None


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


class Busy(ServiceError):
    """The database could not take the write in time (SQLite's single write lock stayed taken
    past the busy timeout): nothing was done, and the same request may simply be repeated."""

    status = 503
    title = "Busy"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _is_lock_timeout(exc: sa.exc.OperationalError) -> bool:
    text = str(exc.orig).lower()
    return (
        "database is locked" in text
        or "database is busy" in text
        or (
            "lock timeout" in text  # PostgreSQL with lock_timeout set
        )
    )


@contextmanager
def _busy_is_retryable(action: str) -> Iterator[None]:
    try:
        yield
    except sa.exc.OperationalError as exc:
        if not _is_lock_timeout(exc):
            raise
        raise Busy(
            f"the database is busy and could not {action} in time; nothing was changed, "
            "retry the same request"
        ) from exc


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


def _quiet_now(
    row: Any, purpose: str, now: datetime, rules: org_settings.OrgSettings
) -> compliance.Decision | None:
    """The gate's hold for a contact in its quiet hours now; None when it may be texted."""
    decision = compliance.evaluate(
        Recipient.from_mapping(row._mapping),
        purpose=purpose,
        now=now,
        valid_until=None,
        org_window=rules.window(),
        org_days=rules.days(),
    )
    return None if decision.verdict is Verdict.ALLOW else decision


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
    and return all of them, each with its personalized message, oldest first.

    PostgreSQL: one transaction, the pool read with ``FOR UPDATE SKIP LOCKED`` (concurrent
    requests take different rows and never wait on each other). SQLite has one write lock for
    the whole database, so the slow part (reading the pool and checking every candidate's
    quiet hours) runs in a read transaction and the write transaction only claims the chosen
    rows, conditionally (``WHERE status = 'pending'``): a row another request took meanwhile is
    simply not claimed, and the scan goes on."""
    if count is not None and count < 1:
        raise Invalid(f"count must be at least 1, got {count}", field="count")
    now = now or utcnow()
    with _busy_is_retryable("hand out contacts"):
        if db.is_sqlite:
            return _request_batch_short_writes(db, principal, campaign_id, count, agent_id, now)
        return _request_batch_locked(db, principal, campaign_id, count, agent_id, now)


@dataclass
class _Scan:
    """Pool rows sorted by what happens to them in one batch request."""

    need: int
    last_id: int = 0
    scanned: int = 0
    chosen: list[int] = field(default_factory=list)
    skipped: dict[str, list[int]] = field(default_factory=dict)
    held_back: int = 0
    #: The quiet-hours hold that ends first (the send screen says until when).
    first_hold: compliance.Decision | None = None

    def more(self) -> bool:
        return len(self.chosen) < self.need and self.scanned < SCAN_LIMIT

    def hold(self, decision: compliance.Decision) -> None:
        self.held_back += 1  # not offered now; stays in the pool for later
        self.first_hold = _earlier(self.first_hold, decision)


def _earlier(
    a: compliance.Decision | None, b: compliance.Decision | None
) -> compliance.Decision | None:
    """Of two holds, the one that ends first (one without an end only if both are)."""
    if a is None or (a.until is None and b is not None):
        return b
    if b is None or b.until is None:
        return a
    return b if a.until is None or b.until < a.until else a


def _scan_chunk(
    conn: Connection,
    campaign_id: int,
    purpose: str,
    rules: org_settings.OrgSettings,
    now: datetime,
    scan: _Scan,
    *,
    lock: bool,
) -> bool:
    """Sort the next chunk of the pool into ``scan``; False when the pool has no more rows."""
    elsewhere = _active_elsewhere(cc.c.contact_id, campaign_id).label("elsewhere")
    query = (
        sa.select(cc.c.id, cc.c.contact_id, elsewhere, *_CONTACT_COLS)
        .join(contacts, contacts.c.id == cc.c.contact_id)
        .where(
            cc.c.campaign_id == campaign_id,
            cc.c.status == "pending",
            cc.c.id > scan.last_id,
        )
        .order_by(cc.c.id)
        .limit(_CHUNK)
    )
    if lock:
        query = query.with_for_update(of=cc, skip_locked=True)
    rows = conn.execute(query).all()
    if not rows:
        return False
    for row in rows:
        # The next scan (another chunk, or another round after a lost claim) starts after the
        # last row looked at; rows past the point where the batch was full are not looked at.
        scan.scanned += 1
        scan.last_id = row.id
        if row.opted_out:
            scan.skipped.setdefault(OPTED_OUT, []).append(row.id)
        elif row.elsewhere:
            scan.skipped.setdefault(ACTIVE_ELSEWHERE, []).append(row.id)
        elif (hold := _quiet_now(row, purpose, now, rules)) is not None:
            scan.hold(hold)
        else:
            scan.chosen.append(row.id)
            if len(scan.chosen) >= scan.need:
                break
    return True


def _batch_request(
    conn: Connection,
    principal: Principal,
    campaign_id: int,
    count: int | None,
    agent_id: int | None,
    now: datetime,
) -> tuple[Any, int, int, datetime]:
    """A batch request checked (campaign, agent, sendable now): the campaign, the agent, how
    many contacts they may hold and until when a new assignment runs."""
    campaign = load_campaign(conn, principal.org_id, campaign_id)  # 404 before anything else
    agent = agent_for(principal, agent_id)
    _check_sendable(campaign_id, campaign.status, campaign.starts_at, campaign.ends_at, now)
    _check_agent(conn, principal.org_id, campaign_id, agent)
    size = max(1, campaign.batch_size)
    until = now + timedelta(seconds=campaign.assignment_timeout_seconds)
    return campaign, agent, min(count or size, size), until


def _request_batch_locked(
    db: Database,
    principal: Principal,
    campaign_id: int,
    count: int | None,
    agent_id: int | None,
    now: datetime,
) -> Batch:
    org_id = principal.org_id
    with db.write() as conn:
        campaign, agent, wanted, until = _batch_request(
            conn, principal, campaign_id, count, agent_id, now
        )
        # The agent is active: their own contacts stay theirs (even if just expired).
        held = _renew_held(conn, campaign_id, agent, until)
        _reap(conn, now, campaign_id)
        scan = _Scan(need=wanted - held)
        if scan.need > 0:
            rules = org_settings.load(conn, org_id)
            while scan.more() and _scan_chunk(
                conn, campaign_id, campaign.purpose, rules, now, scan, lock=True
            ):
                pass
        _claim(conn, org_id, campaign_id, agent, until, scan, conditional=False)
        offers = _offers(conn, org_id, campaign, agent)
    return Batch(
        campaign_id=campaign_id,
        agent_id=agent,
        offers=offers,
        held_back=scan.held_back,
        **_quiet(scan),
        skipped=sum(len(v) for v in scan.skipped.values()),
    )


#: Rounds of "scan, then claim" one SQLite batch request makes when concurrent requests keep
#: taking the rows it chose.
_CLAIM_ROUNDS = 5
_POOL_LOCKS: dict[int, threading.Lock] = {}
_POOL_LOCKS_GUARD = threading.Lock()


def _pool_lock(campaign_id: int) -> threading.Lock:
    with _POOL_LOCKS_GUARD:
        return _POOL_LOCKS.setdefault(campaign_id, threading.Lock())


def _request_batch_short_writes(
    db: Database,
    principal: Principal,
    campaign_id: int,
    count: int | None,
    agent_id: int | None,
    now: datetime,
) -> Batch:
    org_id = principal.org_id
    with db.read() as conn:
        campaign, agent, wanted, until = _batch_request(
            conn, principal, campaign_id, count, agent_id, now
        )
        rules = org_settings.load(conn, org_id)
    with db.write() as conn:
        # The agent is active: their own contacts stay theirs (even if just expired).
        held = _renew_held(conn, campaign_id, agent, until)
        _reap(conn, now, campaign_id)
    # Requests of this process for the same campaign take turns scanning (the write lock is
    # still only held to claim): otherwise they all choose the same first pending rows and
    # all but one lose the claim. Other processes are kept apart by the conditional claim.
    with _pool_lock(campaign_id):
        total = _Scan(need=wanted - held)
        exhausted = False
        for _round in range(_CLAIM_ROUNDS):
            if exhausted or not total.more():
                break
            # Go on after the rows already looked at: those lost to another request are taken.
            scan = _Scan(
                need=total.need - len(total.chosen), last_id=total.last_id, scanned=total.scanned
            )
            with db.read() as conn:
                while scan.more():
                    if not _scan_chunk(
                        conn, campaign_id, campaign.purpose, rules, now, scan, lock=False
                    ):
                        exhausted = True
                        break
            with db.write() as conn:
                _claim(conn, org_id, campaign_id, agent, until, scan, conditional=True)
            total.chosen += scan.chosen
            total.held_back += scan.held_back
            total.first_hold = _earlier(total.first_hold, scan.first_hold)
            for reason, ids in scan.skipped.items():
                total.skipped.setdefault(reason, []).extend(ids)
            total.last_id, total.scanned = scan.last_id, scan.scanned
    with db.read() as conn:
        offers = _offers(conn, org_id, campaign, agent)
    return Batch(
        campaign_id=campaign_id,
        agent_id=agent,
        offers=offers,
        held_back=total.held_back,
        **_quiet(total),
        skipped=sum(len(v) for v in total.skipped.values()),
    )


def _quiet(scan: _Scan) -> dict[str, Any]:
    """Batch.next_allowed and Batch.quiet_detail from a scan."""
    hold = scan.first_hold
    if hold is None:
        return {"next_allowed": None, "quiet_detail": None}
    detail = hold.detail.removeprefix("held: ").removeprefix("not sent: ")
    return {"next_allowed": hold.until, "quiet_detail": detail}


def _renew_held(conn: Connection, campaign_id: int, agent: int, until: datetime) -> int:
    return int(
        conn.execute(
            sa.update(cc)
            .where(
                cc.c.campaign_id == campaign_id,
                cc.c.assignee_id == agent,
                cc.c.status == "assigned",
            )
            .values(assigned_until=until)
        ).rowcount
    )


def _claim(
    conn: Connection,
    org_id: int,
    campaign_id: int,
    agent: int,
    until: datetime,
    scan: _Scan,
    *,
    conditional: bool,
) -> None:
    """Assign the chosen rows and take the skipped ones out of the pool. ``conditional``: the
    rows were read without a lock; only those still pending are taken, and ``scan`` is left
    with the ones that were."""
    if scan.chosen:
        claim = (
            sa.update(cc)
            .where(cc.c.id.in_(scan.chosen))
            .values(status="assigned", assignee_id=agent, assigned_until=until)
        )
        if conditional:
            claim = claim.where(cc.c.status == "pending").returning(cc.c.id)
            taken = set(conn.execute(claim).scalars())
            scan.chosen = [i for i in scan.chosen if i in taken]
        else:
            conn.execute(claim)
    for reason, ids in list(scan.skipped.items()):
        mark = sa.update(cc).where(cc.c.id.in_(ids)).values(status="skipped", reason=reason)
        if conditional:
            mark = mark.where(cc.c.status == "pending").returning(cc.c.id)
            marked = set(conn.execute(mark).scalars())
            scan.skipped[reason] = [i for i in ids if i in marked]
        else:
            conn.execute(mark)
    if scan.chosen or any(scan.skipped.values()):
        events.publish(
            conn,
            org_id,
            "campaign.progress",
            {"campaign_id": campaign_id, "agent_id": agent, "assigned": len(scan.chosen)},
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
    return messaging.spread(phone, sorted(channel_ids))


@dataclass(frozen=True)
class SendRequest:
    """One person's send action: :func:`send`'s arguments."""

    principal: Principal
    campaign_id: int
    contact_id: int
    step: str = STEP_FIRST
    body_override: str | None = None
    agent_id: int | None = None


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
    request = SendRequest(principal, campaign_id, contact_id, step, body_override, agent_id)
    result = send_many(db, settings, [request], now=now)[0]
    if isinstance(result, BaseException):
        raise result
    return result


def send_many(
    db: Database,
    settings: Settings,
    requests: Sequence[SendRequest],
    *,
    now: datetime | None = None,
) -> list[Sent | Exception]:
    """Carry out several people's send actions (each for ONE contact, each exactly as
    :func:`send` would) in one transaction: the group commit behind the send screen, where
    hundreds of agents press Enter at once. Each request gets its own answer: the ``Sent``, or
    the error that refused it. Requests for the same contact run one after the other (the
    second is a repeat of the first). If the group's transaction fails as a whole (a deadlock,
    a concurrent insert of the same key), every request is run again on its own."""
    results: list[Sent | Exception | None] = [None] * len(requests)
    jobs: list[_Job] = []
    for i, req in enumerate(requests):
        try:
            agent = agent_for(req.principal, req.agent_id)
            if req.step not in STEPS:
                raise Invalid(
                    f"step must be one of {', '.join(STEPS)}, got {req.step!r}", field="step"
                )
            if req.body_override is not None and not req.body_override.strip():
                raise Invalid("the message is empty", field="body")
        except ServiceError as exc:
            results[i] = exc
            continue
        jobs.append(_Job(i, req, agent))
    grouped = False
    if len(jobs) > 1:
        try:
            with _busy_is_retryable("send the messages"):
                done = _send_group(db, settings, jobs, now, lookup_key=False)
            for i, result in done.items():
                results[i] = result
            grouped = True
        except Busy as exc:
            for job in jobs:
                results[job.index] = exc
            grouped = True
        except Exception:
            log.warning("a group of %d sends failed together; sending each alone", len(jobs))
    if not grouped:
        for job in jobs:
            results[job.index] = _send_alone(db, settings, job, now)
    answered = [r for r in results if r is not None]
    assert len(answered) == len(requests), "every request gets its own answer"
    return answered


def _send_alone(
    db: Database, settings: Settings, job: _Job, now: datetime | None
) -> Sent | Exception:
    try:
        with _busy_is_retryable("send the message"):
            try:
                done = _send_group(db, settings, [job], now, lookup_key=False)
            except sa.exc.IntegrityError:
                # Only a concurrent insert of the same idempotency key gets here; the retry
                # finds the message that transaction committed and returns it (looking the key
                # up).
                done = _send_group(db, settings, [job], now, lookup_key=True)
        return done[job.index]
    except Exception as exc:  # the caller answers each request on its own
        return exc


@dataclass(frozen=True)
class _Job:
    index: int
    request: SendRequest
    agent: int

    @property
    def org_id(self) -> int:
        return self.request.principal.org_id


def _send_statement(dialect: str) -> sa.Select[Any]:
    """Everything the sends of a campaign need, in one statement: the pool rows (locked on
    PostgreSQL, in id order so two groups never wait on each other in a circle), the campaign,
    the contacts, their conversations, the organization's name and rules, the name of the
    agent holding each row and whether each contact is active in another campaign."""
    agent_name = (
        sa.select(users.c.name)
        .where(users.c.id == cc.c.assignee_id, users.c.org_id == cc.c.org_id)
        .scalar_subquery()
    )
    query = (
        sa.select(
            cc.c.id,
            cc.c.contact_id,
            cc.c.status,
            cc.c.assignee_id,
            cc.c.assigned_until,
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
            conversations.c.id.label("conversation_id"),
            conversations.c.channel_id.label("sticky"),
            organizations.c.name.label("org_name"),
            organizations.c.settings.label("org_settings"),
            agent_name.label("agent_name"),
            _active_elsewhere(cc.c.contact_id, sa.bindparam("campaign_id")).label("elsewhere"),
            *_CONTACT_COLS,
        )
        .select_from(cc)
        .join(campaigns, campaigns.c.id == cc.c.campaign_id)
        .join(contacts, contacts.c.id == cc.c.contact_id)
        .join(organizations, organizations.c.id == cc.c.org_id)
        .outerjoin(
            conversations,
            sa.and_(
                conversations.c.contact_id == cc.c.contact_id,
                conversations.c.org_id == cc.c.org_id,
            ),
        )
        .where(
            cc.c.campaign_id == sa.bindparam("campaign_id"),
            any_of(dialect, cc.c.contact_id, "contact_ids"),
            cc.c.org_id == sa.bindparam("org_id"),
        )
        .order_by(cc.c.id)
    )
    if dialect == "postgresql":
        # Two sends of the same contact queue here; the second sees the first's message.
        query = query.with_for_update(of=cc)
    return query


# Built once (building and cache-keying statements per send was most of its Python cost).
_SEND_ROWS = {d: _send_statement(d) for d in ("postgresql", "sqlite")}
_SENT_COLS = ("id", "status", "reason", "message_id", "sent_by", "sent_at")
_SENT = recordset(cc, _SENT_COLS)
#: The sent rows of a wave: one statement on PostgreSQL (see store/recordset.py).
_MARK_SENT = {
    "postgresql": sa.update(cc)
    .where(cc.c.id == _SENT.c.id)
    .values(
        status=_SENT.c.status,
        reason=_SENT.c.reason,
        message_id=_SENT.c.message_id,
        sent_by=_SENT.c.sent_by,
        sent_at=_SENT.c.sent_at,
        assigned_until=None,
    ),
    "sqlite": sa.update(cc)
    .where(cc.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        reason=sa.bindparam("b_reason"),
        message_id=sa.bindparam("b_message_id"),
        sent_by=sa.bindparam("b_sent_by"),
        sent_at=sa.bindparam("b_sent_at", type_=cc.c.sent_at.type),
        assigned_until=None,
    ),
}
_MARK_SKIPPED = (
    sa.update(cc)
    .where(cc.c.id == sa.bindparam("b_row_id"))
    .values(status="skipped", reason=sa.bindparam("b_reason"), assigned_until=None)
)
_RENEW = (
    sa.update(cc)
    .where(
        cc.c.campaign_id == sa.bindparam("b_campaign_id"),
        cc.c.assignee_id == sa.bindparam("b_agent_id"),
        cc.c.status == "assigned",
        cc.c.assigned_until < sa.bindparam("b_half", type_=cc.c.assigned_until.type),
    )
    .values(assigned_until=sa.bindparam("b_until", type_=cc.c.assigned_until.type))
)


def _send_group(
    db: Database,
    settings: Settings,
    jobs: list[_Job],
    now: datetime | None,
    *,
    lookup_key: bool,
) -> dict[int, Sent | ServiceError]:
    """The jobs in one transaction; their answers by request index, valid once it committed."""
    now = now or utcnow()
    out: dict[int, Sent | ServiceError] = {}
    queued = False
    with db.write() as conn:
        waves: list[list[_Job]] = []
        last: dict[tuple[int, int], int] = {}
        for job in jobs:
            key = (job.org_id, job.request.contact_id)
            wave = last[key] + 1 if key in last else 0
            if wave == len(waves):
                waves.append([])
            waves[wave].append(job)
            last[key] = wave
        for group in waves:
            queued = _send_wave(conn, settings, group, now, lookup_key, out) or queued
    if queued:
        wakeup.notify()
    return out


def _send_wave(
    conn: Connection,
    settings: Settings,
    jobs: list[_Job],
    now: datetime,
    lookup_key: bool,
    out: dict[int, Sent | ServiceError],
) -> bool:
    """Sends for distinct contacts, in the caller's transaction; True if any message is
    queued."""
    rows: dict[tuple[int, int, int], Any] = {}
    by_campaign: dict[tuple[int, int], list[int]] = {}
    for job in jobs:
        by_campaign.setdefault((job.org_id, job.request.campaign_id), []).append(
            job.request.contact_id
        )
    statement = _SEND_ROWS[conn.dialect.name]
    for (org_id, campaign_id), contact_ids in by_campaign.items():
        params = {"campaign_id": campaign_id, "org_id": org_id, "contact_ids": contact_ids}
        for found in conn.execute(statement, params):
            rows[(org_id, campaign_id, found.contact_id)] = found
    skipped: list[dict[str, Any]] = []
    outbound: list[tuple[_Job, Any]] = []
    items: list[messaging.Outbound] = []
    for job in jobs:
        req = job.request
        row = rows.get((job.org_id, req.campaign_id, req.contact_id))
        if row is None:
            try:
                load_campaign(conn, job.org_id, req.campaign_id)  # NotFound: unknown campaign
                out[job.index] = NotFound(
                    f"contact {req.contact_id} is not in campaign {req.campaign_id}",
                    field="contact_id",
                )
            except NotFound as exc:
                out[job.index] = exc
            continue
        try:
            item = _checked_send(job, row, now)
        except _Skip as exc:
            # The refusal is answered after the row leaves the pool (below).
            skipped.append({"b_row_id": row.id, "b_reason": exc.reason})
            out[job.index] = exc
            continue
        except ServiceError as exc:
            out[job.index] = exc
            continue
        if item is None:  # a repeat: the message the first action created
            message = messaging.get_message(conn, job.org_id, row.message_id)
            out[job.index] = Sent(
                message, created=False, contact_id=req.contact_id, status=row.status
            )
            continue
        outbound.append((job, row))
        # lookup_key=False: the row lock (PostgreSQL) or the write lock (SQLite) is held and
        # the row has no message, so nobody can have used this contact's key for this step.
        items.append(dataclasses.replace(item, lookup_key=lookup_key))
    if skipped:
        conn.execute(_MARK_SKIPPED, skipped)
    if not items:
        return False
    queued_any = False
    sent_rows: list[dict[str, Any]] = []
    renew: dict[tuple[int, int], Any] = {}
    for (job, row), result in zip(
        outbound, messaging.queue_outbound_many(conn, settings, items, now=now), strict=True
    ):
        if isinstance(result, ServiceError):
            out[job.index] = result
            continue
        message = result.message
        gone = message.status in (MessageStatus.BLOCKED, MessageStatus.EXPIRED)
        status = "skipped" if gone else "sent"
        sent_rows.append(
            {
                "id": row.id,
                "status": status,
                "reason": message.gate_code if gone else None,
                "message_id": message.id,
                "sent_by": job.agent,
                "sent_at": now,
            }
        )
        # Activity renews the agent's other contacts once half their time is gone. A batch
        # request gives all of an agent's contacts the same deadline, so this row's own
        # deadline says whether any needs renewing (most sends skip the statement).
        timeout = timedelta(seconds=row.assignment_timeout_seconds)
        if row.assigned_until is None or row.assigned_until < now + timeout / 2:
            renew[(job.request.campaign_id, job.agent)] = timeout
        events.publish(
            conn,
            job.org_id,
            "campaign.progress",
            {
                "campaign_id": job.request.campaign_id,
                "agent_id": job.agent,
                "contact_id": job.request.contact_id,
                "status": status,
                "message_id": message.id,
            },
        )
        queued_any = queued_any or message.status == MessageStatus.QUEUED
        out[job.index] = Sent(
            message, created=result.created, contact_id=job.request.contact_id, status=status
        )
    if sent_rows:
        if conn.dialect.name == "postgresql":
            conn.execute(_MARK_SENT["postgresql"], rows_param(conn, sent_rows))
        else:
            conn.execute(
                _MARK_SENT["sqlite"], [{f"b_{k}": v for k, v in r.items()} for r in sent_rows]
            )
    for (campaign_id, agent), timeout in renew.items():
        conn.execute(
            _RENEW,
            {
                "b_campaign_id": campaign_id,
                "b_agent_id": agent,
                "b_half": now + timeout / 2,
                "b_until": now + timeout,
            },
        )
    return queued_any


def _checked_send(job: _Job, row: Any, now: datetime) -> messaging.Outbound | None:
    """The message one send action creates (None: it repeats an earlier action), or the
    refusal (raised)."""
    req = job.request
    contact_id = req.contact_id
    agent = job.agent
    if row.message_id is not None:
        if row.sent_by != agent:
            raise Refused(
                f"contact {contact_id} already got this campaign's message from another agent",
                reason="already_sent",
                field="contact_id",
            )
        return None
    if row.status in ("skipped", "excluded"):
        raise Refused(
            f"contact {contact_id} was {row.status}: "
            + _SENTENCES.get(row.reason or "", row.reason or "no reason recorded"),
            reason=row.reason or row.status,
            field="contact_id",
        )
    _check_sendable(req.campaign_id, row.campaign_status, row.starts_at, row.ends_at, now)
    if row.status != "assigned" or row.assignee_id != agent:
        raise Refused(
            f"contact {contact_id} is not assigned to you (ask for a new batch)",
            reason="not_assigned",
            field="contact_id",
        )
    if row.opted_out:
        raise _Skip(
            f"not sent: {row.phone_e164} opted out of messages from this organization",
            reason=OPTED_OUT,
            field="contact_id",
        )
    if row.elsewhere:
        raise _Skip(
            f"not sent: contact {contact_id} already got the first message of another "
            "active campaign",
            reason=ACTIVE_ELSEWHERE,
            field="contact_id",
        )
    body = req.body_override
    if body is None:
        try:
            # The row is assigned to this agent (checked above): its holder's name is theirs.
            body = render(row.script, _values(row, row.agent_name or "", row.org_name))
        except TemplateError as exc:
            raise _Skip(
                f"not sent: the script has no value for this contact: {exc.message}",
                reason=MISSING_FIELD,
                field="contact_id",
            ) from None
    return messaging.Outbound(
        org_id=job.org_id,
        contact_id=contact_id,
        body=body,
        actor=req.principal.actor,
        purpose=row.purpose,
        created_by=agent,
        channel_id=_pick_channel(list(row.channel_ids or []), row.sticky, row.phone_e164),
        idempotency_key=idempotency_key(req.campaign_id, contact_id, req.step),
        priority=messaging.PRIORITY_BULK,
        context=messaging.OutboundContext(
            recipient=Recipient.from_mapping(row._mapping),
            conversation_id=row.conversation_id,
            conversation_channel_id=row.sticky,
            org_name=row.org_name,
            org_settings=row.org_settings,
        ),
        # Replies go to the agent who sent the first message.
        campaign_id=req.campaign_id,
        assign_to=agent,
    )


class _Skip(Refused):
    """A refusal that also takes the contact out of the pool (``skipped`` with the reason)."""


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
