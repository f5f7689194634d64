"""Messages in and out: queue an outbound message (through the gate), store an inbound one,
apply a delivery report. Every status change writes a ``message_events`` row.

Outbound messages are created in the same transaction as whatever caused them; the
``messages`` table is the outbox that ``delivery`` drains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from textdesk.delivery import wakeup
from textdesk.domain.encoding import MAX_BODY_CHARS, analyze
from textdesk.domain.phone import PhoneError, normalize
from textdesk.domain.states import Direction, MessageStatus, can_advance
from textdesk.providers.base import InboundSms, StatusReport
from textdesk.services import compliance, consent, org_settings, provider_input
from textdesk.services import events as live
from textdesk.services.auth import Principal
from textdesk.services.compliance import Recipient, Verdict
from textdesk.services.errors import Invalid, NotFound, ServiceError
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.recordset import any_of, recordset, rows_param
from textdesk.store.tables import (
    UTCDateTime,
    channels,
    contacts,
    conversations,
    message_events,
    messages,
    organizations,
    orphan_reports,
    utcnow,
)

S = MessageStatus

#: Priority of replies inside a live conversation: they go before bulk campaign traffic.
PRIORITY_REPLY = 10
PRIORITY_BULK = 0


@dataclass(frozen=True)
class Message:
    id: int
    org_id: int
    conversation_id: int | None
    contact_id: int
    channel_id: int | None
    direction: str
    body: str
    status: str
    purpose: str
    encoding: str | None
    segments: int
    send_after: datetime | None
    valid_until: datetime | None
    attempts: int
    priority: int
    idempotency_key: str | None
    provider_message_id: str | None
    error_code: str | None
    error_detail: str | None
    gate_code: str | None
    gate_detail: str | None
    warnings: list[dict[str, str]]
    created_by: int | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Message:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Event:
    id: int
    message_id: int
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    provider_code: str | None
    detail: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Event:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})


def event_row(
    *,
    org_id: int,
    message_id: int,
    from_status: str | None,
    to_status: str,
    actor: str,
    now: datetime,
    reason: str | None = None,
    provider_code: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "message_id": message_id,
        "from_status": from_status,
        "to_status": to_status,
        "actor": actor,
        "reason": reason,
        "provider_code": provider_code,
        "detail": detail,
        "created_at": now,
    }


_EVENT_COLS = (
    "org_id",
    "message_id",
    "from_status",
    "to_status",
    "actor",
    "reason",
    "provider_code",
    "detail",
    "created_at",
)
_EVENTS = recordset(message_events, _EVENT_COLS)
#: One statement for any number of event rows (see store/recordset.py).
_INSERT_EVENTS = {
    "postgresql": message_events.insert().from_select(
        list(_EVENT_COLS), sa.select(*[_EVENTS.c[n] for n in _EVENT_COLS])
    ),
    "sqlite": message_events.insert(),
}


def add_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(_INSERT_EVENTS[conn.dialect.name], rows_param(conn, list(rows)))
        # One live event per organization per batch (never one per message): the outbox
        # writes thousands of these a second.
        by_org: dict[int, list[int]] = {}
        for row in rows:
            ids = by_org.setdefault(row["org_id"], [])
            if not ids or ids[-1] != row["message_id"]:
                ids.append(row["message_id"])
        for org_id, ids in by_org.items():
            live.publish(conn, org_id, "message.status", {"message_ids": ids})


# --- outbound ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    message: Message
    created: bool  # False when the idempotency key matched an earlier message


def _conversation(conn: Connection, org_id: int, contact_id: int, now: datetime) -> Any:
    query = sa.select(conversations).where(
        conversations.c.org_id == org_id, conversations.c.contact_id == contact_id
    )
    row = conn.execute(query).first()
    if row is not None:
        return row
    try:
        with conn.begin_nested():
            conn.execute(
                conversations.insert().values(
                    org_id=org_id, contact_id=contact_id, status="open", created_at=now
                )
            )
    except sa.exc.IntegrityError:
        pass  # another transaction created it first; read theirs
    return conn.execute(query).one()


#: The organization's active sender numbers, built once (building Core statements per message
#: was most of a send's cost; a pre-built statement compiles once and is cached by SQLAlchemy).
_CHANNEL_POOL = (
    sa.select(channels.c.id)
    .where(channels.c.org_id == sa.bindparam("org_id"), channels.c.is_active)
    .order_by(channels.c.id)
)


def _choose_channel(
    pool: Sequence[int], sticky: int | None, explicit: int | None, phone: str
) -> int:
    """The sender number among the organization's active ones (``pool``, by id)."""
    if explicit is not None:
        if explicit not in pool:
            raise Invalid(f"channel {explicit} is not an active sender number", field="channel_id")
        return explicit
    if sticky is not None and sticky in pool:
        # Sticky sender: a contact keeps the number it last talked to.
        return sticky
    if not pool:
        raise Invalid("this organization has no active sender number", field="channel_id")
    return spread(phone, pool)


def spread(phone: str, numbers: Sequence[int]) -> int:
    """One of ``numbers`` (in the order given, never empty) for a contact without a sticky
    sender: new contacts spread over the numbers deterministically, so a retry picks the same."""
    digest = int(hashlib.sha256(phone.encode()).hexdigest()[:8], 16)
    return int(numbers[digest % len(numbers)])


@dataclass(frozen=True)
class OutboundContext:
    """What ``queue_outbound`` reads about the recipient, read in the caller's transaction. A
    caller that has already joined these rows (the send screen's one locked SELECT) passes them
    in and saves the round trip; otherwise ``queue_outbound`` reads them in one statement."""

    recipient: Recipient
    conversation_id: int | None
    conversation_channel_id: int | None
    org_name: str
    #: ``organizations.settings`` as stored (parsed through ``org_settings.parse``).
    org_settings: Any


_CONTEXT = (
    sa.select(
        contacts.c.phone_e164,
        contacts.c.opted_out,
        contacts.c.time_zone,
        contacts.c.zip,
        contacts.c.state,
        conversations.c.id.label("conversation_id"),
        conversations.c.channel_id.label("conversation_channel_id"),
        organizations.c.name.label("org_name"),
        organizations.c.settings.label("org_settings"),
    )
    .select_from(contacts)
    .join(organizations, organizations.c.id == contacts.c.org_id)
    .outerjoin(
        conversations,
        sa.and_(
            conversations.c.org_id == contacts.c.org_id,
            conversations.c.contact_id == contacts.c.id,
        ),
    )
    .where(contacts.c.id == sa.bindparam("contact_id"), contacts.c.org_id == sa.bindparam("org_id"))
)


def outbound_context(conn: Connection, org_id: int, contact_id: int) -> OutboundContext:
    row = conn.execute(_CONTEXT, {"contact_id": contact_id, "org_id": org_id}).first()
    if row is None:
        raise NotFound(f"contact {contact_id} not found")
    return OutboundContext(
        recipient=Recipient.from_mapping(row._mapping),
        conversation_id=row.conversation_id,
        conversation_channel_id=row.conversation_channel_id,
        org_name=row.org_name,
        org_settings=row.org_settings,
    )


def _history_statement(dialect: str) -> Any:
    """The outbound history the gate needs, per contact, in one statement: the capped sends of
    the last 24 hours (as ``recent_sends(include_queued=True)`` counts them), whether anything
    that can reach the contact was ever sent (the first-message content rules), and the latest
    send time (the spacing between messages to one contact)."""
    when = sa.type_coerce(
        sa.func.coalesce(messages.c.sent_at, messages.c.created_at), UTCDateTime()
    )
    capped = sa.and_(
        messages.c.purpose.in_(list(compliance.CAPPED)),
        messages.c.status.in_([*_HANDED_OVER, S.QUEUED]),
        when >= sa.bindparam("since", type_=UTCDateTime()),
    )
    marketing = sa.and_(capped, messages.c.purpose == compliance.Purpose.MARKETING)
    # Only what can reach the contact counts as having introduced ourselves.
    reaches = sa.and_(
        messages.c.purpose != compliance.Purpose.COMPLIANCE,
        messages.c.status.not_in([S.BLOCKED, S.EXPIRED, S.FAILED]),
    )
    latest = sa.func.max(sa.func.coalesce(messages.c.send_after, messages.c.created_at))
    return (
        sa.select(
            messages.c.contact_id,
            sa.func.count(sa.case((capped, 1))).label("total"),
            sa.func.count(sa.case((marketing, 1))).label("marketing"),
            sa.type_coerce(sa.func.min(sa.case((capped, when))), UTCDateTime()).label("oldest"),
            sa.type_coerce(sa.func.min(sa.case((marketing, when))), UTCDateTime()).label(
                "oldest_marketing"
            ),
            sa.func.count(sa.case((reaches, 1))).label("reaching"),
            # type_coerce: an aggregate loses the column type, and SQLite would hand back text.
            sa.type_coerce(latest, UTCDateTime()).label("latest"),
        )
        .where(
            any_of(dialect, messages.c.contact_id, "contact_ids"),
            messages.c.direction == Direction.OUTBOUND,
        )
        .group_by(messages.c.contact_id)
    )


_HANDED_OVER = (S.SENDING, S.SENT, S.DELIVERED, S.UNDELIVERED, S.UNKNOWN)
_HISTORY = {d: _history_statement(d) for d in ("postgresql", "sqlite")}

_UPSERTS: dict[tuple[str, bool], Any] = {}

#: The columns ``_queue_wave`` writes.
_CONVERSATION_COLS = (
    "org_id",
    "contact_id",
    "status",
    "channel_id",
    "assignee_id",
    "campaign_id",
    "last_message_at",
    "created_at",
)
_MESSAGE_COLS = (
    "org_id",
    "conversation_id",
    "contact_id",
    "channel_id",
    "direction",
    "body",
    "status",
    "purpose",
    "encoding",
    "segments",
    "send_after",
    "valid_until",
    "priority",
    "idempotency_key",
    "gate_code",
    "gate_detail",
    "warnings",
    "created_by",
    "created_at",
    "updated_at",
)


def _conversation_upsert(dialect: str, for_campaign: bool) -> Any:
    """Create the contacts' conversations or touch them, in one statement (``INSERT ... ON
    CONFLICT (org_id, contact_id) DO UPDATE ... RETURNING``; both engines have it): the sticky
    sender is set once, and a campaign's first message gives the thread to its agent unless
    someone already has it. Run it with ``rows_param``."""
    key = (dialect, for_campaign)
    stmt = _UPSERTS.get(key)
    if stmt is None:
        c = conversations.c
        if dialect == "postgresql":
            r = recordset(conversations, _CONVERSATION_COLS)
            base: Any = pg_insert(conversations).from_select(
                list(_CONVERSATION_COLS), sa.select(*[r.c[n] for n in _CONVERSATION_COLS])
            )
        else:
            base = sqlite_insert(conversations)
        changes: dict[str, Any] = {
            "last_message_at": base.excluded.last_message_at,
            "channel_id": sa.func.coalesce(c.channel_id, base.excluded.channel_id),
        }
        if for_campaign:
            changes["assignee_id"] = sa.func.coalesce(c.assignee_id, base.excluded.assignee_id)
            changes["campaign_id"] = base.excluded.campaign_id
        stmt = base.on_conflict_do_update(
            index_elements=[c.org_id, c.contact_id], set_=changes
        ).returning(c.org_id, c.contact_id, c.id)
        _UPSERTS[key] = stmt
    return stmt


def _insert_messages_statement(dialect: str) -> Any:
    if dialect == "postgresql":
        r = recordset(messages, _MESSAGE_COLS)
        return (
            messages.insert()
            .from_select(list(_MESSAGE_COLS), sa.select(*[r.c[n] for n in _MESSAGE_COLS]))
            .returning(*messages.c)
        )
    return messages.insert().returning(*messages.c)


#: Rows come back in no particular order (SQLite's multi-row RETURNING has none): a wave has
#: each contact once, so they are matched by contact. Run them with ``rows_param``.
_INSERT_MESSAGES = {d: _insert_messages_statement(d) for d in ("postgresql", "sqlite")}


@dataclass(frozen=True)
class Outbound:
    """One message for :func:`queue_outbound_many`; the fields are ``queue_outbound``'s
    arguments (see there)."""

    org_id: int
    contact_id: int
    body: str
    actor: str
    purpose: str = compliance.Purpose.CONVERSATIONAL
    created_by: int | None = None
    channel_id: int | None = None
    idempotency_key: str | None = None
    priority: int = PRIORITY_REPLY
    context: OutboundContext | None = None
    lookup_key: bool = True
    campaign_id: int | None = None
    assign_to: int | None = None
    send_at: datetime | None = None


def queue_outbound(
    conn: Connection,
    settings: Settings,
    *,
    org_id: int,
    contact_id: int,
    body: str,
    actor: str,
    purpose: str = compliance.Purpose.CONVERSATIONAL,
    created_by: int | None = None,
    channel_id: int | None = None,
    idempotency_key: str | None = None,
    priority: int = PRIORITY_REPLY,
    now: datetime | None = None,
    context: OutboundContext | None = None,
    lookup_key: bool = True,
    campaign_id: int | None = None,
    assign_to: int | None = None,
    send_at: datetime | None = None,
) -> Queued:
    """Create an outbound message and run the gate on it, in the caller's transaction.

    ``context``: the recipient's rows, if the caller read them in this transaction.
    ``lookup_key=False``: the caller holds a lock proving no message has this idempotency key
    yet, so the look-up is skipped (the unique key still refuses a duplicate: IntegrityError).
    ``campaign_id``/``assign_to``: the conversation is marked as the campaign's and given to
    the agent unless it has an assignee.
    ``send_at``: send later. The gate decides as of that moment (quiet hours then, not now),
    the message waits in the outbox until then (``send_after``) and is valid for
    ``message_validity_hours`` from then; the claim runs the gate again when it is due.

    The caller commits, then calls ``wakeup.notify()`` (``send_message`` does both)."""
    item = Outbound(
        org_id=org_id,
        contact_id=contact_id,
        body=body,
        actor=actor,
        purpose=purpose,
        created_by=created_by,
        channel_id=channel_id,
        idempotency_key=idempotency_key,
        priority=priority,
        context=context,
        lookup_key=lookup_key,
        campaign_id=campaign_id,
        assign_to=assign_to,
        send_at=send_at,
    )
    result = queue_outbound_many(conn, settings, [item], now=now)[0]
    if isinstance(result, ServiceError):
        raise result
    return result


def queue_outbound_many(
    conn: Connection,
    settings: Settings,
    items: Sequence[Outbound],
    *,
    now: datetime | None = None,
) -> list[Queued | ServiceError]:
    """Create many outbound messages in the caller's transaction, each exactly as
    ``queue_outbound`` would, with a handful of statements for all of them (the send screen's
    group commit). Each item gets its message, or the error that refused it (nothing was written
    for that item). Items for the same contact (or idempotency key) are handled one after the
    other, so each sees the messages the earlier ones created."""
    now = now or utcnow()
    results: list[Queued | ServiceError | None] = [None] * len(items)
    for wave in _waves(items):
        _queue_wave(conn, settings, items, wave, now, results)
    answered = [r for r in results if r is not None]
    assert len(answered) == len(items), "every item gets its message or its error"
    if any(it.campaign_id is not None or it.actor.startswith("automation:") for it in items):
        # No-reply automations start waiting on a campaign's or an automation's message in the
        # transaction that queues it.
        from textdesk.services.automations import triggers

        created = [
            (it, r.message)
            for it, r in zip(items, answered, strict=True)
            if isinstance(r, Queued) and r.created
        ]
        triggers.on_outbound(conn, created, now)
    return answered


def _waves(items: Sequence[Outbound]) -> list[list[int]]:
    """Indexes of ``items`` in waves with no contact or idempotency key twice in one wave."""
    waves: list[list[int]] = []
    last: dict[Any, int] = {}
    for i, it in enumerate(items):
        marks: list[tuple[str, int, int | str]] = [("c", it.org_id, it.contact_id)]
        if it.idempotency_key is not None:
            marks.append(("k", it.org_id, it.idempotency_key))
        wave = max((last[m] + 1 for m in marks if m in last), default=0)
        if wave == len(waves):
            waves.append([])
        waves[wave].append(i)
        for m in marks:
            last[m] = wave
    return waves


@dataclass
class _Plan:
    index: int
    item: Outbound
    context: OutboundContext
    channel: int
    purpose: compliance.Purpose
    row: dict[str, Any]
    decision: compliance.Decision


def _queue_wave(
    conn: Connection,
    settings: Settings,
    items: Sequence[Outbound],
    wave: list[int],
    now: datetime,
    results: list[Queued | ServiceError | None],
) -> None:
    todo = _known_keys(conn, items, wave, results)
    checked: list[tuple[int, compliance.Purpose, OutboundContext]] = []
    for i in todo:
        it = items[i]
        try:
            purpose = _checked(it)
            context = it.context or outbound_context(conn, it.org_id, it.contact_id)
        except ServiceError as exc:
            results[i] = exc
            continue
        checked.append((i, purpose, context))
    if not checked:
        return
    pools = {
        org_id: list(conn.execute(_CHANNEL_POOL, {"org_id": org_id}).scalars())
        for org_id in {items[i].org_id for i, _p, _c in checked}
    }
    needs_history = settings.contact_spacing_seconds > 0 or any(
        p != compliance.Purpose.COMPLIANCE and not c.recipient.opted_out for _i, p, c in checked
    )
    history = {}
    if needs_history:
        history = {
            row.contact_id: row
            for row in conn.execute(
                _HISTORY[conn.dialect.name],
                {
                    "contact_ids": sorted({items[i].contact_id for i, _p, _c in checked}),
                    "since": now - timedelta(hours=24),
                },
            )
        }
    validity = timedelta(hours=settings.message_validity_hours)
    plans: list[_Plan] = []
    for i, purpose, context in checked:
        it = items[i]
        try:
            channel = _choose_channel(
                pools[it.org_id],
                context.conversation_channel_id,
                it.channel_id,
                context.recipient.phone_e164,
            )
        except ServiceError as exc:
            results[i] = exc
            continue
        plans.append(
            _plan(
                settings,
                i,
                it,
                purpose,
                context,
                channel,
                history.get(it.contact_id),
                now,
                (it.send_at if it.send_at and it.send_at > now else now) + validity,
            )
        )
    if not plans:
        return
    conversation_ids: dict[tuple[int, int], int] = {}
    for for_campaign in (False, True):
        group = [p for p in plans if (p.item.campaign_id is not None) == for_campaign]
        if not group:
            continue
        upserted = conn.execute(
            _conversation_upsert(conn.dialect.name, for_campaign),
            rows_param(
                conn,
                [
                    {
                        "org_id": p.item.org_id,
                        "contact_id": p.item.contact_id,
                        "status": "open",
                        "channel_id": p.channel,
                        "assignee_id": p.item.assign_to,
                        "campaign_id": p.item.campaign_id,
                        "last_message_at": now,
                        "created_at": now,
                    }
                    for p in group
                ],
            ),
        ).all()
        assert len(upserted) == len(group)
        for org_id, contact_id, conversation_id in upserted:
            conversation_ids[(org_id, contact_id)] = conversation_id
    for p in plans:
        p.row["conversation_id"] = conversation_ids[(p.item.org_id, p.item.contact_id)]
    stored = {
        (r.org_id, r.contact_id): r
        for r in conn.execute(
            _INSERT_MESSAGES[conn.dialect.name], rows_param(conn, [p.row for p in plans])
        )
    }
    assert len(stored) == len(plans)
    inserted = [stored[(p.item.org_id, p.item.contact_id)] for p in plans]
    event_rows: list[dict[str, Any]] = []
    queued = False
    for p, row in zip(plans, inserted, strict=True):
        message = Message.from_row(row)
        results[p.index] = Queued(message, created=True)
        event_rows.append(
            event_row(
                org_id=message.org_id,
                message_id=message.id,
                from_status=None,
                to_status=S.PENDING,
                actor=p.item.actor,
                now=now,
                reason="created",
            )
        )
        if message.status != S.PENDING or p.decision.verdict is Verdict.DEFER:
            event_rows.append(
                event_row(
                    org_id=message.org_id,
                    message_id=message.id,
                    from_status=S.PENDING,
                    to_status=message.status,
                    actor="system:gate",
                    now=now,
                    reason=p.decision.code,
                    detail=p.decision.detail,
                )
            )
        queued = queued or message.status == S.QUEUED
    add_events(conn, event_rows)
    if queued:
        wakeup.notify_in_transaction(conn)
    for p, row in zip(plans, inserted, strict=True):
        live.publish(
            conn,
            p.item.org_id,
            "message.new",
            {"message_id": row.id, "conversation_id": row.conversation_id, "direction": "out"},
        )


def _known_keys(
    conn: Connection,
    items: Sequence[Outbound],
    wave: list[int],
    results: list[Queued | ServiceError | None],
) -> list[int]:
    """Answer the items whose idempotency key already has a message (``created=False``); the
    rest are returned, to be created."""
    lookups: dict[int, list[int]] = {}
    for i in wave:
        it = items[i]
        if it.idempotency_key is not None and it.lookup_key:
            lookups.setdefault(it.org_id, []).append(i)
    found: dict[tuple[int, str], Message] = {}
    for org_id, indexes in lookups.items():
        keys = [items[i].idempotency_key for i in indexes]
        for row in conn.execute(
            sa.select(messages).where(
                messages.c.org_id == org_id,
                messages.c.idempotency_key.in_(sa.bindparam("keys", expanding=True)),
            ),
            {"keys": keys},
        ):
            found[(org_id, row.idempotency_key)] = Message.from_row(row)
    todo = []
    for i in wave:
        it = items[i]
        existing = (
            found.get((it.org_id, it.idempotency_key)) if it.idempotency_key is not None else None
        )
        if existing is not None:
            results[i] = Queued(existing, created=False)
        else:
            todo.append(i)
    return todo


def _checked(it: Outbound) -> compliance.Purpose:
    if not it.body.strip():
        raise Invalid("the message is empty", field="body")
    if len(it.body) > MAX_BODY_CHARS:
        raise Invalid(
            f"the message is {len(it.body)} characters; the limit is {MAX_BODY_CHARS}",
            field="body",
        )
    try:
        return compliance.Purpose(it.purpose)
    except ValueError:
        raise Invalid(
            f"purpose must be one of {', '.join(p.value for p in compliance.USER_PURPOSES)}",
            field="purpose",
        ) from None


def _plan(
    settings: Settings,
    index: int,
    it: Outbound,
    purpose: compliance.Purpose,
    context: OutboundContext,
    channel: int,
    seen: Any,
    now: datetime,
    valid_until: datetime,
) -> _Plan:
    """The gate's decision on one message and the row to insert (pure: no statements)."""
    recipient = context.recipient
    measured = analyze(it.body)
    # Send later: the gate's "now" is the moment it is meant to go.
    later = it.send_at if it.send_at is not None and it.send_at > now else None
    send_after = later
    if settings.contact_spacing_seconds > 0 and seen is not None and seen.latest is not None:
        earliest = seen.latest + timedelta(seconds=settings.contact_spacing_seconds)
        if earliest > (later or now):
            send_after = earliest
    rules = org_settings.parse(context.org_settings)
    recent = None
    first = True
    if purpose != compliance.Purpose.COMPLIANCE and not recipient.opted_out:
        # (An opted-out contact is blocked whatever the history says.)
        first = seen is None or not seen.reaching
        if purpose in compliance.CAPPED:
            recent = (
                compliance.RecentSends(
                    int(seen.total), int(seen.marketing), seen.oldest, seen.oldest_marketing
                )
                if seen is not None
                else compliance.RecentSends(0, 0, None, None)
            )
    decision = compliance.evaluate(
        recipient,
        purpose=purpose,
        now=later or now,
        valid_until=valid_until,
        recent=recent,
        daily_cap=rules.contact_daily_cap,
        org_window=rules.window(),
        org_days=rules.days(),
    )
    warnings: list[dict[str, str]] = []
    if purpose != compliance.Purpose.COMPLIANCE and decision.verdict is not Verdict.BLOCK:
        policy = compliance.content_policy(
            context.org_name, context.org_settings, first_message=first
        )
        blocked, warnings = compliance.content_decision(it.body, policy)
        if blocked is not None:
            decision = blocked
    status, send_after = status_for(decision, send_after)
    row = {
        "org_id": it.org_id,
        "conversation_id": None,
        "contact_id": it.contact_id,
        "channel_id": channel,
        "direction": Direction.OUTBOUND,
        "body": measured.text,
        "status": status,
        "purpose": purpose,
        "encoding": str(measured.encoding),
        "segments": max(1, measured.segment_count),
        "send_after": send_after,
        "valid_until": valid_until,
        "priority": it.priority,
        "idempotency_key": it.idempotency_key,
        "gate_code": decision.code,
        "gate_detail": decision.detail,
        "warnings": warnings,
        "created_by": it.created_by,
        "created_at": now,
        "updated_at": now,
    }
    return _Plan(index, it, context, channel, purpose, row, decision)


def recent_sends(
    conn: Connection, contact_ids: Sequence[int], now: datetime, *, include_queued: bool
) -> dict[int, compliance.RecentSends]:
    """Capped-purpose messages per contact in the last 24 hours (for frequency caps).

    At creation, queued messages count too (they are about to go); at claim only those
    already handed to a provider count, since the candidates themselves are queued."""
    if not contact_ids:
        return {}
    statuses = [*_HANDED_OVER, S.QUEUED] if include_queued else list(_HANDED_OVER)
    when = sa.type_coerce(
        sa.func.coalesce(messages.c.sent_at, messages.c.created_at), UTCDateTime()
    )
    is_marketing = messages.c.purpose == compliance.Purpose.MARKETING
    rows = conn.execute(
        sa.select(
            messages.c.contact_id,
            sa.func.count(),
            sa.func.sum(sa.case((is_marketing, 1), else_=0)),
            sa.type_coerce(sa.func.min(when), UTCDateTime()),
            sa.type_coerce(sa.func.min(sa.case((is_marketing, when))), UTCDateTime()),
        )
        .where(
            messages.c.contact_id.in_(sorted(set(contact_ids))),
            messages.c.direction == Direction.OUTBOUND,
            messages.c.purpose.in_(list(compliance.CAPPED)),
            messages.c.status.in_(statuses),
            when >= now - timedelta(hours=24),
        )
        .group_by(messages.c.contact_id)
    ).all()
    return {r[0]: compliance.RecentSends(int(r[1]), int(r[2] or 0), r[3], r[4]) for r in rows}


def status_for(
    decision: compliance.Decision, send_after: datetime | None
) -> tuple[MessageStatus, datetime | None]:
    """The status (and send_after) a gate decision puts a message in."""
    if decision.verdict is Verdict.ALLOW:
        return S.QUEUED, send_after
    if decision.verdict is Verdict.DEFER:
        return S.PENDING, decision.until
    return (S.EXPIRED if decision.code == "expired" else S.BLOCKED), send_after


def send_message(
    db: Database,
    settings: Settings,
    principal: Principal,
    *,
    contact_id: int | None = None,
    phone: str | None = None,
    body: str,
    channel_id: int | None = None,
    purpose: str = compliance.Purpose.CONVERSATIONAL,
    idempotency_key: str | None = None,
    send_at: datetime | None = None,
) -> Queued:
    """A one-to-one message from a person or an API key, to a contact (by id) or to a phone
    number (the contact is found by its number, or created in the same transaction).
    ``send_at``: send later (see ``queue_outbound``; ``services/scheduled.py`` lists and
    cancels such messages)."""
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise Invalid("idempotency key must be 1 to 200 characters", field="idempotency_key")
    if send_at is not None:
        from textdesk.services.scheduled import check_send_at

        check_send_at(send_at, utcnow())
    if (contact_id is None) == (phone is None):
        raise Invalid("give exactly one of contact_id and phone", field="contact_id")
    with db.write() as conn:
        if contact_id is None:
            contact_id = _contact_for_phone(conn, principal, phone or "")
        queued = queue_outbound(
            conn,
            settings,
            org_id=principal.org_id,
            contact_id=contact_id,
            body=body,
            actor=principal.actor,
            purpose=purpose,
            created_by=principal.user_id,
            channel_id=channel_id,
            idempotency_key=idempotency_key,
            send_at=send_at,
        )
    if queued.message.status == S.QUEUED:
        wakeup.notify()
    return queued


def _contact_for_phone(conn: Connection, principal: Principal, phone: str) -> int:
    from textdesk.services import contacts as contacts_service
    from textdesk.services.accounts import get_organization

    region = get_organization(conn, principal.org_id).default_region
    try:
        e164 = normalize(phone, region)
    except PhoneError as exc:
        raise Invalid(str(exc), field="phone") from exc
    found = conn.execute(
        sa.select(contacts.c.id).where(
            contacts.c.org_id == principal.org_id, contacts.c.phone_e164 == e164
        )
    ).scalar()
    if found is not None:
        return int(found)
    created = contacts_service.create_contact_in(
        conn, principal, contacts_service.ContactInput(phone=e164)
    )
    return created.id


def get_message(conn: Connection, org_id: int, message_id: int) -> Message:
    row = conn.execute(
        sa.select(messages).where(messages.c.id == message_id, messages.c.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound(f"message {message_id} not found")
    return Message.from_row(row)


def list_messages(
    conn: Connection,
    org_id: int,
    *,
    contact_id: int | None = None,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[Message]:
    """Newest first, keyset-paginated with ``before_id``."""
    query = sa.select(messages).where(messages.c.org_id == org_id)
    if contact_id is not None:
        query = query.where(messages.c.contact_id == contact_id)
    if status is not None:
        query = query.where(messages.c.status == status)
    if before_id is not None:
        query = query.where(messages.c.id < before_id)
    rows = conn.execute(query.order_by(messages.c.id.desc()).limit(max(1, min(limit, 500))))
    return [Message.from_row(r) for r in rows]


def list_events(conn: Connection, org_id: int, message_id: int) -> list[Event]:
    get_message(conn, org_id, message_id)
    rows = conn.execute(
        sa.select(message_events)
        .where(message_events.c.message_id == message_id, message_events.c.org_id == org_id)
        .order_by(message_events.c.id)
    )
    return [Event.from_row(r) for r in rows]


# --- inbound -----------------------------------------------------------------------------------

#: Called inside the transaction that stored an inbound message, after the opt-out handling
#: (automations register here). Signature: (conn, settings, message, channel_row).
InboundHook = Callable[[Connection, Settings, Message, Any], None]
INBOUND_HOOKS: list[InboundHook] = []


@dataclass(frozen=True)
class Received:
    message: Message | None  # None: a duplicate of a message already stored
    duplicate: bool


def receive_inbound(db: Database, settings: Settings, channel_id: int, sms: InboundSms) -> Received:
    """Store an inbound message once (a retried callback is a duplicate). Raises ``Invalid``
    for one that can't be stored (``provider_input.inbound``: a sender that is no phone
    number, an id that doesn't fit): nothing is written, no contact created."""
    now = utcnow()
    with db.write() as conn:
        channel = conn.execute(sa.select(channels).where(channels.c.id == channel_id)).first()
        if channel is None:
            raise NotFound(f"channel {channel_id} not found")
        region = conn.execute(
            sa.select(organizations.c.default_region).where(organizations.c.id == channel.org_id)
        ).scalar_one()
        sms = provider_input.inbound(sms, region=region, now=now)
        duplicate = conn.execute(
            sa.select(messages.c.id).where(
                messages.c.channel_id == channel_id,
                messages.c.provider_message_id == sms.provider_message_id,
                messages.c.direction == Direction.INBOUND,
            )
        ).first()
        if duplicate is not None:
            return Received(None, duplicate=True)
        org_id = channel.org_id
        phone = sms.sender
        contact = conn.execute(
            sa.select(contacts).where(contacts.c.org_id == org_id, contacts.c.phone_e164 == phone)
        ).first()
        if contact is None:
            contact_id = conn.execute(
                contacts.insert()
                .values(
                    org_id=org_id,
                    phone_e164=phone,
                    fields={},
                    tags=[],
                    # A number that opted out stays opted out when it writes again after
                    # its contact was deleted (the ledger outlives contacts).
                    opted_out=consent.number_opted_out(conn, org_id, phone),
                    created_at=now,
                    updated_at=now,
                )
                .returning(contacts.c.id)
            ).scalar_one()
        else:
            contact_id = contact.id
        conversation = _conversation(conn, org_id, contact_id, now)
        measured = analyze(sms.body)
        try:
            with conn.begin_nested():
                message_id = conn.execute(
                    messages.insert()
                    .values(
                        org_id=org_id,
                        conversation_id=conversation.id,
                        contact_id=contact_id,
                        channel_id=channel_id,
                        direction=Direction.INBOUND,
                        body=sms.body,
                        status=S.RECEIVED,
                        purpose=compliance.Purpose.CONVERSATIONAL,
                        encoding=str(measured.encoding),
                        segments=max(1, measured.segment_count),
                        provider_message_id=sms.provider_message_id,
                        created_at=sms.received_at or now,
                        updated_at=now,
                    )
                    .returning(messages.c.id)
                ).scalar_one()
        except sa.exc.IntegrityError:
            return Received(None, duplicate=True)  # a concurrent retry of the same callback
        add_events(
            conn,
            [
                event_row(
                    org_id=org_id,
                    message_id=message_id,
                    from_status=None,
                    to_status=S.RECEIVED,
                    actor=f"provider:{channel.provider}",
                    now=now,
                    reason="inbound",
                )
            ],
        )
        conn.execute(
            sa.update(conversations)
            .where(conversations.c.id == conversation.id)
            .values(
                status="open",
                unread_count=conversations.c.unread_count + 1,
                last_message_at=now,
                last_inbound_at=now,
                channel_id=sa.func.coalesce(conversations.c.channel_id, channel_id),
            )
        )
        conn.execute(
            sa.update(contacts).where(contacts.c.id == contact_id).values(last_inbound_at=now)
        )
        live.publish(
            conn,
            org_id,
            "message.new",
            {"message_id": message_id, "conversation_id": conversation.id, "direction": "in"},
        )
        message = Message.from_row(
            conn.execute(sa.select(messages).where(messages.c.id == message_id)).one()
        )
        # Consent first, always: an opt-out is recorded before anything else can be sent.
        from textdesk.services import optout  # it queues replies through this module

        optout.on_inbound(conn, settings, message, channel)
        # Then automations: a reply cancels no-reply waits, a keyword starts its runs (never
        # STOP, HELP or START, which the line above answered).
        from textdesk.services.automations import triggers

        triggers.on_inbound(conn, message, now)
        for hook in INBOUND_HOOKS:
            hook(conn, settings, message, channel)
    return Received(message, duplicate=False)


# --- delivery reports ----------------------------------------------------------------------------


def lock_provider_ids(conn: Connection, channel_id: int, provider_ids: Sequence[str]) -> None:
    """Serialize "store a provider id" with "a report for that id arrives" on PostgreSQL.

    Without it, under READ COMMITTED, a report can miss the message (its id not yet committed)
    while the sender's transaction misses the parked report (not yet committed either), and the
    report is stranded. SQLite's BEGIN IMMEDIATE already serializes the two."""
    if conn.dialect.name != "postgresql" or not provider_ids:
        return
    keys = sorted({_lock_key(channel_id, pid) for pid in provider_ids})
    # One round trip; taken in key order, so two batches never wait on each other in a cycle.
    conn.execute(
        sa.text(
            "SELECT count(pg_advisory_xact_lock(k)) FROM "
            "(SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) AS ordered"
        ),
        {"keys": keys},
    )


def _lock_key(channel_id: int, provider_id: str) -> int:
    digest = hashlib.blake2b(f"{channel_id}:{provider_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def clears_error(report: StatusReport) -> bool:
    """A report that the message went out (``sent``, ``delivered``) with no error of its own:
    the error of an earlier attempt or of a doubt (a timeout) no longer describes it."""
    return report.status in (S.SENT, S.DELIVERED) and not report.error_code


def apply_status(db: Database, channel_id: int, report: StatusReport, *, actor: str) -> bool:
    """Apply a delivery report. Returns False when no message has that provider id (yet): the
    report is parked in ``orphan_reports`` and applied when the send result is stored."""
    return apply_statuses(db, [(channel_id, report, actor)])[0]


def apply_statuses(db: Database, reports: Sequence[tuple[int, StatusReport, str]]) -> list[bool]:
    """Apply many delivery reports (channel id, report, actor) in one transaction.

    The same rules as ``apply_status``, one statement per kind instead of per report: a burst
    of thousands of callbacks a second costs tens of transactions. Returns, per report, whether
    a message had its provider id (False: parked in ``orphan_reports``)."""
    if not reports:
        return []
    now = utcnow()
    found: list[bool] = []
    with db.write() as conn:
        keys = sorted({(c, r.provider_message_id) for c, r, _a in reports})
        current = _current_statuses(conn, keys)
        missing = [key for key in keys if key not in current]
        if missing and conn.dialect.name == "postgresql":
            # A report that found its message needs no lock: the provider id was committed, so
            # nothing can strand it. One that did not may be racing the transaction storing
            # that id: take the id's lock (held by that transaction until it commits, see
            # ``outbox.record``), then look again in a new statement, which sees what
            # committed meanwhile. If it is still missing it is parked below while the lock is
            # held, so the storing transaction, which looks for parked reports only after
            # taking the same lock, finds it.
            by_channel: dict[int, list[str]] = {}
            for channel_id, provider_id in missing:
                by_channel.setdefault(channel_id, []).append(provider_id)
            for channel_id in sorted(by_channel):
                lock_provider_ids(conn, channel_id, by_channel[channel_id])
            current.update(_current_statuses(conn, missing))
        before = dict(current)
        events: list[dict[str, Any]] = []
        orphans: list[dict[str, Any]] = []
        changed: dict[int, dict[str, Any]] = {}
        opt_outs: dict[int, tuple[int, str]] = {}  # message id -> (org id, provider code)
        for channel_id, report, actor in reports:
            key = (channel_id, report.provider_message_id)
            hit = current.get(key)
            if hit is None:
                found.append(False)
                orphans.append(
                    {
                        "channel_id": channel_id,
                        "provider_message_id": report.provider_message_id,
                        "status": report.status,
                        "error_code": report.error_code,
                        "error_detail": report.error_message,
                        "opted_out": report.opted_out,
                        "created_at": now,
                    }
                )
                continue
            found.append(True)
            message_id, org_id, status = hit
            if not can_advance(status, report.status):
                continue
            current[key] = (message_id, org_id, report.status)
            if report.opted_out:
                opt_outs.setdefault(message_id, (org_id, report.error_code or "opted_out"))
            values = changed.setdefault(
                message_id,
                {
                    "mid": message_id,
                    "was": before[key][2],
                    "delivered_at": None,
                    "error_code": None,
                    "error_detail": None,
                    "clear": False,
                },
            )
            values["new"] = report.status
            if report.status == S.DELIVERED:
                values["delivered_at"] = now
            if report.error_code:
                values["error_code"] = report.error_code
                values["error_detail"] = report.error_message
                values["clear"] = False
            else:
                values["clear"] = clears_error(report)
            events.append(
                event_row(
                    org_id=org_id,
                    message_id=message_id,
                    from_status=status,
                    to_status=report.status,
                    actor=actor,
                    now=now,
                    reason="delivery_report",
                    provider_code=report.error_code,
                    detail=report.error_message,
                )
            )
        if changed:
            _update_statuses(conn, list(changed.values()), now)
        add_events(conn, events)
        if opt_outs:
            _record_opt_outs(conn, opt_outs, now)
        if orphans:
            conn.execute(orphan_reports.insert(), orphans)
    return found


#: Locked, in id order: two batches carrying reports for the same messages (a provider's
#: retries, two web processes) take turns on each message instead of both reading the old status
#: (and both writing an event row for one transition), and they always lock in the same order,
#: so they never deadlock (measured: 14 deadlocked batches in 15 s of the callback benchmark
#: with two processes before this). After waiting, PostgreSQL returns the row as committed.
_CURRENT_PG = sa.text(
    """
    SELECT m.id, m.org_id, m.status, m.channel_id, m.provider_message_id
    FROM unnest(CAST(:channels AS bigint[]), CAST(:pids AS text[])) AS k(channel_id, pid)
    JOIN messages AS m ON m.channel_id = k.channel_id AND m.provider_message_id = k.pid
    WHERE m.direction = 'out'
    ORDER BY m.id
    FOR UPDATE OF m
    """
)


def _current_statuses(
    conn: Connection, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], tuple[int, int, MessageStatus]]:
    """(channel, provider id) -> (message id, org id, status) for the outbound messages found.

    PostgreSQL: the keys travel as two arrays, so the statement text never changes (compiled
    once, parsed with two parameters instead of a thousand); SQLite: ``IN`` over pairs."""
    rows: list[Any] = []
    if conn.dialect.name == "postgresql":
        rows = list(
            conn.execute(
                _CURRENT_PG,
                {"channels": [k[0] for k in keys], "pids": [k[1] for k in keys]},
            )
        )
    else:
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            rows += conn.execute(
                sa.select(
                    messages.c.id,
                    messages.c.org_id,
                    messages.c.status,
                    messages.c.channel_id,
                    messages.c.provider_message_id,
                ).where(
                    messages.c.direction == Direction.OUTBOUND,
                    sa.tuple_(messages.c.channel_id, messages.c.provider_message_id).in_(chunk),
                )
            ).all()
    return {
        (row.channel_id, row.provider_message_id): (row.id, row.org_id, MessageStatus(row.status))
        for row in rows
    }


_STATUS_UPDATE = (
    sa.update(messages)
    .where(messages.c.id == sa.bindparam("mid"), messages.c.status == sa.bindparam("was"))
    .values(
        status=sa.bindparam("new"),
        updated_at=sa.bindparam("now", type_=UTCDateTime()),
        delivered_at=sa.func.coalesce(
            sa.bindparam("delivered_at", type_=UTCDateTime()), messages.c.delivered_at
        ),
        error_code=sa.case(
            (sa.bindparam("clear", type_=sa.Boolean()), sa.null()),
            else_=sa.func.coalesce(sa.bindparam("error_code"), messages.c.error_code),
        ),
        error_detail=sa.case(
            (sa.bindparam("clear", type_=sa.Boolean()), sa.null()),
            else_=sa.func.coalesce(sa.bindparam("error_detail"), messages.c.error_detail),
        ),
    )
)


def _update_statuses(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> None:
    """Move many messages on (each only from the status it was read in).

    PostgreSQL: one ``UPDATE ... FROM unnest(arrays)`` for the batch, one statement to parse,
    plan and execute instead of one per message. SQLite: ``executemany`` of the same UPDATE
    (in-process, so a statement per row costs no round trip)."""
    if conn.dialect.name != "postgresql":
        conn.execute(_STATUS_UPDATE, [{**row, "now": now} for row in rows])
        return
    conn.execute(
        _STATUS_UPDATE_PG,
        {
            "mids": [r["mid"] for r in rows],
            "was": [str(r["was"]) for r in rows],
            "new": [str(r["new"]) for r in rows],
            "delivered": [r["delivered_at"] for r in rows],
            "codes": [r["error_code"] for r in rows],
            "details": [r["error_detail"] for r in rows],
            "clears": [r["clear"] for r in rows],
            "now": now,
        },
    )


#: The batch as seven arrays: one statement text, compiled once and parsed with eight parameters
#: (a literal ``VALUES`` list was rendered and parsed anew for every batch).
_STATUS_UPDATE_PG = sa.text(
    """
    UPDATE messages AS m SET
        status = v.new,
        updated_at = :now,
        delivered_at = coalesce(v.delivered_at, m.delivered_at),
        error_code = CASE WHEN v.clear THEN NULL ELSE coalesce(v.error_code, m.error_code) END,
        error_detail = CASE WHEN v.clear THEN NULL
                       ELSE coalesce(v.error_detail, m.error_detail) END
    FROM unnest(
        CAST(:mids AS bigint[]),
        CAST(:was AS text[]),
        CAST(:new AS text[]),
        CAST(:delivered AS timestamptz[]),
        CAST(:codes AS text[]),
        CAST(:details AS text[]),
        CAST(:clears AS boolean[])
    ) AS v(mid, was, new, delivered_at, error_code, error_detail, clear)
    WHERE m.id = v.mid AND m.status = v.was
    """
).bindparams(sa.bindparam("now", type_=UTCDateTime()))


def _record_opt_outs(conn: Connection, found: dict[int, tuple[int, str]], now: datetime) -> None:
    """The provider says these messages' recipients opted out with it (a report, not a send
    refusal): the ledger gets it as it would a STOP, once, with the transition that says so
    (a repeated callback cannot move the message again, so it records nothing more)."""
    rows = conn.execute(
        sa.select(messages.c.id, contacts.c.phone_e164)
        .join(contacts, contacts.c.id == messages.c.contact_id)
        .where(messages.c.id.in_(sorted(found)))
    ).all()
    for row in rows:
        org_id, code = found[row.id]
        consent.provider_opt_out(conn, org_id, row.phone_e164, row.id, code, now)


def _advance(
    conn: Connection,
    message_id: int,
    org_id: int,
    current: MessageStatus,
    report: StatusReport,
    actor: str,
    now: datetime,
) -> None:
    if not can_advance(current, report.status):
        return  # late or duplicate: a message never moves backwards
    values: dict[str, Any] = {"status": report.status, "updated_at": now}
    if report.status == S.DELIVERED:
        values["delivered_at"] = now
    if report.error_code:
        values["error_code"] = report.error_code
        values["error_detail"] = report.error_message
    elif clears_error(report):
        values["error_code"] = values["error_detail"] = None
    updated = conn.execute(
        sa.update(messages)
        .where(messages.c.id == message_id, messages.c.status == current)
        .values(**values)
    )
    if updated.rowcount:
        add_events(
            conn,
            [
                event_row(
                    org_id=org_id,
                    message_id=message_id,
                    from_status=current,
                    to_status=report.status,
                    actor=actor,
                    now=now,
                    reason="delivery_report",
                    provider_code=report.error_code,
                    detail=report.error_message,
                )
            ],
        )
        if report.opted_out:
            _record_opt_outs(conn, {message_id: (org_id, report.error_code or "opted_out")}, now)


def orphaned_ids(conn: Connection, keys: Sequence[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of these (channel, provider id) pairs have parked reports waiting."""
    found: set[tuple[int, str]] = set()
    unique = sorted(set(keys))
    if unique and conn.dialect.name == "postgresql":
        # Two arrays, one statement text (see ``_current_statuses``).
        rows = conn.execute(
            _ORPHANED_PG,
            {"channels": [k[0] for k in unique], "pids": [k[1] for k in unique]},
        )
        return {(r.channel_id, r.provider_message_id) for r in rows}
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        rows = conn.execute(
            sa.select(orphan_reports.c.channel_id, orphan_reports.c.provider_message_id)
            .where(
                sa.tuple_(orphan_reports.c.channel_id, orphan_reports.c.provider_message_id).in_(
                    chunk
                )
            )
            .distinct()
        )
        found.update((r.channel_id, r.provider_message_id) for r in rows)
    return found


_ORPHANED_PG = sa.text(
    """
    SELECT DISTINCT o.channel_id, o.provider_message_id
    FROM unnest(CAST(:channels AS bigint[]), CAST(:pids AS text[])) AS k(channel_id, pid)
    JOIN orphan_reports AS o ON o.channel_id = k.channel_id AND o.provider_message_id = k.pid
    """
)


def apply_orphans(
    conn: Connection, message_id: int, org_id: int, channel_id: int, provider_id: str, now: datetime
) -> None:
    """Apply reports that arrived before the message's provider id was stored."""
    rows = conn.execute(
        sa.select(orphan_reports)
        .where(
            orphan_reports.c.channel_id == channel_id,
            orphan_reports.c.provider_message_id == provider_id,
        )
        .order_by(orphan_reports.c.id)
    ).all()
    for orphan in rows:
        current = conn.execute(
            sa.select(messages.c.status).where(messages.c.id == message_id)
        ).scalar_one()
        report = StatusReport(
            provider_id,
            MessageStatus(orphan.status),
            orphan.error_code,
            orphan.error_detail,
            opted_out=orphan.opted_out,
        )
        _advance(conn, message_id, org_id, MessageStatus(current), report, "system:orphan", now)
    if rows:
        conn.execute(sa.delete(orphan_reports).where(orphan_reports.c.id.in_([r.id for r in rows])))
