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
from textdesk.services import compliance, org_settings
from textdesk.services import events as live
from textdesk.services.auth import Principal
from textdesk.services.compliance import Recipient, Verdict
from textdesk.services.errors import Invalid, NotFound
from textdesk.settings import Settings
from textdesk.store.db import Database
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


def add_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(message_events.insert(), list(rows))
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


#: The channels a message may go out on, built once (building Core statements per message was
#: most of a send's cost; a pre-built statement compiles once and is cached by SQLAlchemy).
_ACTIVE_CHANNEL = sa.select(channels.c.id).where(
    channels.c.id == sa.bindparam("channel_id"),
    channels.c.org_id == sa.bindparam("org_id"),
    channels.c.is_active,
)
_CHANNEL_POOL = (
    sa.select(channels.c.id)
    .where(channels.c.org_id == sa.bindparam("org_id"), channels.c.is_active)
    .order_by(channels.c.id)
)


def _pick_channel(
    conn: Connection, org_id: int, sticky: int | None, explicit: int | None, phone: str
) -> int:
    if explicit is not None:
        found = conn.execute(_ACTIVE_CHANNEL, {"channel_id": explicit, "org_id": org_id}).scalar()
        if found is None:
            raise Invalid(f"channel {explicit} is not an active sender number", field="channel_id")
        return int(found)
    if sticky is not None:
        # Sticky sender: a contact keeps the number it last talked to.
        found = conn.execute(_ACTIVE_CHANNEL, {"channel_id": sticky, "org_id": org_id}).scalar()
        if found is not None:
            return int(found)
    pool = conn.execute(_CHANNEL_POOL, {"org_id": org_id}).scalars().all()
    if not pool:
        raise Invalid("this organization has no active sender number", field="channel_id")
    # Spread new contacts over the pool deterministically, so a retry picks the same number.
    digest = int(hashlib.sha256(phone.encode()).hexdigest()[:8], 16)
    return int(pool[digest % len(pool)])


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


def _history_statement() -> Any:
    """The contact's outbound history the gate needs, in one statement: the capped sends of the
    last 24 hours (as ``recent_sends(include_queued=True)`` counts them) and whether anything
    that can reach the contact was ever sent (the first-message content rules)."""
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
    return sa.select(
        sa.func.count(sa.case((capped, 1))).label("total"),
        sa.func.count(sa.case((marketing, 1))).label("marketing"),
        sa.type_coerce(sa.func.min(sa.case((capped, when))), UTCDateTime()).label("oldest"),
        sa.type_coerce(sa.func.min(sa.case((marketing, when))), UTCDateTime()).label(
            "oldest_marketing"
        ),
        sa.func.count(sa.case((reaches, 1))).label("reaching"),
    ).where(
        messages.c.contact_id == sa.bindparam("contact_id"),
        messages.c.direction == Direction.OUTBOUND,
    )


_HANDED_OVER = (S.SENDING, S.SENT, S.DELIVERED, S.UNDELIVERED, S.UNKNOWN)
_HISTORY = _history_statement()

_UPSERTS: dict[tuple[str, bool], Any] = {}


def _conversation_upsert(dialect: str, for_campaign: bool) -> Any:
    """Create the contact's conversation or touch it, in one statement (``INSERT ... ON
    CONFLICT (org_id, contact_id) DO UPDATE ... RETURNING id``; both engines have it): the
    sticky sender is set once, and a campaign's first message gives the thread to its agent
    unless someone already has it."""
    key = (dialect, for_campaign)
    stmt = _UPSERTS.get(key)
    if stmt is None:
        make = pg_insert if dialect == "postgresql" else sqlite_insert
        base = make(conversations)
        c = conversations.c
        changes: dict[str, Any] = {
            "last_message_at": base.excluded.last_message_at,
            "channel_id": sa.func.coalesce(c.channel_id, base.excluded.channel_id),
        }
        if for_campaign:
            changes["assignee_id"] = sa.func.coalesce(c.assignee_id, base.excluded.assignee_id)
            changes["campaign_id"] = base.excluded.campaign_id
        stmt = base.on_conflict_do_update(
            index_elements=[c.org_id, c.contact_id], set_=changes
        ).returning(c.id)
        _UPSERTS[key] = stmt
    return stmt


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
) -> Queued:
    """Create an outbound message and run the gate on it, in the caller's transaction.

    ``context``: the recipient's rows, if the caller read them in this transaction.
    ``lookup_key=False``: the caller holds a lock proving no message has this idempotency key
    yet, so the look-up is skipped (the unique key still refuses a duplicate: IntegrityError).
    ``campaign_id``/``assign_to``: the conversation is marked as the campaign's and given to
    the agent unless it has an assignee.

    The caller commits, then calls ``wakeup.notify()`` (``send_message`` does both)."""
    if idempotency_key is not None and lookup_key:
        existing = conn.execute(
            sa.select(messages).where(
                messages.c.org_id == org_id, messages.c.idempotency_key == idempotency_key
            )
        ).first()
        if existing is not None:
            return Queued(Message.from_row(existing), created=False)
    if not body.strip():
        raise Invalid("the message is empty", field="body")
    if len(body) > MAX_BODY_CHARS:
        raise Invalid(
            f"the message is {len(body)} characters; the limit is {MAX_BODY_CHARS}", field="body"
        )
    try:
        purpose = compliance.Purpose(purpose)
    except ValueError:
        raise Invalid(
            f"purpose must be one of {', '.join(p.value for p in compliance.USER_PURPOSES)}",
            field="purpose",
        ) from None
    if context is None:
        context = outbound_context(conn, org_id, contact_id)
    recipient = context.recipient
    now = now or utcnow()
    channel = _pick_channel(
        conn, org_id, context.conversation_channel_id, channel_id, recipient.phone_e164
    )
    measured = analyze(body)
    valid_until = now + timedelta(hours=settings.message_validity_hours)
    send_after = _spacing(conn, settings, contact_id, now)
    rules = org_settings.parse(context.org_settings)
    recent = None
    first = True
    if purpose != compliance.Purpose.COMPLIANCE and not recipient.opted_out:
        # (An opted-out contact is blocked whatever the history says.)
        seen = conn.execute(
            _HISTORY, {"contact_id": contact_id, "since": now - timedelta(hours=24)}
        ).one()
        first = not seen.reaching
        if purpose in compliance.CAPPED:
            recent = compliance.RecentSends(
                int(seen.total), int(seen.marketing), seen.oldest, seen.oldest_marketing
            )
    decision = compliance.evaluate(
        recipient,
        purpose=purpose,
        now=now,
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
        blocked, warnings = compliance.content_decision(body, policy)
        if blocked is not None:
            decision = blocked
    status, send_after = status_for(decision, send_after)
    conversation_id = conn.execute(
        _conversation_upsert(conn.dialect.name, campaign_id is not None),
        {
            "org_id": org_id,
            "contact_id": contact_id,
            "status": "open",
            "channel_id": channel,
            "assignee_id": assign_to,
            "campaign_id": campaign_id,
            "last_message_at": now,
            "created_at": now,
        },
    ).scalar_one()
    row = conn.execute(
        messages.insert().returning(*messages.c),
        {
            "org_id": org_id,
            "conversation_id": conversation_id,
            "contact_id": contact_id,
            "channel_id": channel,
            "direction": Direction.OUTBOUND,
            "body": measured.text,
            "status": status,
            "purpose": purpose,
            "encoding": str(measured.encoding),
            "segments": max(1, measured.segment_count),
            "send_after": send_after,
            "valid_until": valid_until,
            "priority": priority,
            "idempotency_key": idempotency_key,
            "gate_code": decision.code,
            "gate_detail": decision.detail,
            "warnings": warnings,
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
        },
    ).one()
    message = Message.from_row(row)
    events = [
        event_row(
            org_id=org_id,
            message_id=message.id,
            from_status=None,
            to_status=S.PENDING,
            actor=actor,
            now=now,
            reason="created",
        ),
    ]
    if status != S.PENDING or decision.verdict is Verdict.DEFER:
        events.append(
            event_row(
                org_id=org_id,
                message_id=message.id,
                from_status=S.PENDING,
                to_status=status,
                actor="system:gate",
                now=now,
                reason=decision.code,
                detail=decision.detail,
            )
        )
    add_events(conn, events)
    if status == S.QUEUED:
        wakeup.notify_in_transaction(conn)
    live.publish(
        conn,
        org_id,
        "message.new",
        {"message_id": message.id, "conversation_id": conversation_id, "direction": "out"},
    )
    return Queued(message, created=True)


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


def _spacing(
    conn: Connection, settings: Settings, contact_id: int, now: datetime
) -> datetime | None:
    if settings.contact_spacing_seconds <= 0:
        return None
    latest = sa.func.max(sa.func.coalesce(messages.c.send_after, messages.c.created_at))
    last = conn.execute(
        # type_coerce: an aggregate loses the column type, and SQLite would hand back text.
        sa.select(sa.type_coerce(latest, UTCDateTime())).where(
            messages.c.contact_id == contact_id, messages.c.direction == Direction.OUTBOUND
        )
    ).scalar()
    if last is None:
        return None
    earliest = last + timedelta(seconds=settings.contact_spacing_seconds)
    return earliest if earliest > now else None


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
) -> Queued:
    """A one-to-one message from a person or an API key, to a contact (by id) or to a phone
    number (the contact is found by its number, or created in the same transaction)."""
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise Invalid("idempotency key must be 1 to 200 characters", field="idempotency_key")
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
    now = utcnow()
    with db.write() as conn:
        channel = conn.execute(sa.select(channels).where(channels.c.id == channel_id)).first()
        if channel is None:
            raise NotFound(f"channel {channel_id} not found")
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
        try:
            phone = normalize(sms.sender, None)
        except PhoneError:
            phone = sms.sender.strip()  # alphanumeric or short-code senders are kept verbatim
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
        by_channel: dict[int, list[str]] = {}
        for channel_id, report, _actor in reports:
            by_channel.setdefault(channel_id, []).append(report.provider_message_id)
        for channel_id in sorted(by_channel):
            lock_provider_ids(conn, channel_id, by_channel[channel_id])
        keys = sorted({(c, r.provider_message_id) for c, r, _a in reports})
        current: dict[tuple[int, str], tuple[int, int, MessageStatus]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = conn.execute(
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
            )
            for row in rows:
                key = (row.channel_id, row.provider_message_id)
                current[key] = (row.id, row.org_id, MessageStatus(row.status))
        before = dict(current)
        events: list[dict[str, Any]] = []
        orphans: list[dict[str, Any]] = []
        changed: dict[int, dict[str, Any]] = {}
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
                        "created_at": now,
                    }
                )
                continue
            found.append(True)
            message_id, org_id, status = hit
            if not can_advance(status, report.status):
                continue
            current[key] = (message_id, org_id, report.status)
            values = changed.setdefault(
                message_id,
                {
                    "mid": message_id,
                    "was": before[key][2],
                    "delivered_at": None,
                    "error_code": None,
                    "error_detail": None,
                },
            )
            values["new"] = report.status
            if report.status == S.DELIVERED:
                values["delivered_at"] = now
            if report.error_code:
                values["error_code"] = report.error_code
                values["error_detail"] = report.error_message
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
        if orphans:
            conn.execute(orphan_reports.insert(), orphans)
    return found


_STATUS_UPDATE = (
    sa.update(messages)
    .where(messages.c.id == sa.bindparam("mid"), messages.c.status == sa.bindparam("was"))
    .values(
        status=sa.bindparam("new"),
        updated_at=sa.bindparam("now", type_=UTCDateTime()),
        delivered_at=sa.func.coalesce(
            sa.bindparam("delivered_at", type_=UTCDateTime()), messages.c.delivered_at
        ),
        error_code=sa.func.coalesce(sa.bindparam("error_code"), messages.c.error_code),
        error_detail=sa.func.coalesce(sa.bindparam("error_detail"), messages.c.error_detail),
    )
)


def _update_statuses(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> None:
    """Move many messages on (each only from the status it was read in).

    PostgreSQL: one ``UPDATE ... FROM (VALUES ...)`` for the batch, one statement to parse,
    plan and execute instead of one per message. SQLite: ``executemany`` of the same UPDATE
    (in-process, so a statement per row costs no round trip)."""
    if conn.dialect.name != "postgresql":
        conn.execute(_STATUS_UPDATE, [{**row, "now": now} for row in rows])
        return
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        v = sa.values(
            sa.column("mid", sa.BigInteger()),
            sa.column("was", sa.String()),
            sa.column("new", sa.String()),
            sa.column("delivered_at", UTCDateTime()),
            sa.column("error_code", sa.String()),
            sa.column("error_detail", sa.Text()),
            name="v",
        ).data(
            [
                (
                    r["mid"],
                    str(r["was"]),
                    str(r["new"]),
                    r["delivered_at"],
                    r["error_code"],
                    r["error_detail"],
                )
                for r in chunk
            ]
        )
        conn.execute(
            sa.update(messages)
            .where(messages.c.id == v.c.mid, messages.c.status == v.c.was)
            .values(
                status=v.c.new,
                updated_at=now,
                delivered_at=sa.func.coalesce(
                    sa.cast(v.c.delivered_at, UTCDateTime()), messages.c.delivered_at
                ),
                error_code=sa.func.coalesce(
                    sa.cast(v.c.error_code, sa.String()), messages.c.error_code
                ),
                error_detail=sa.func.coalesce(
                    sa.cast(v.c.error_detail, sa.Text()), messages.c.error_detail
                ),
            )
        )


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


def orphaned_ids(conn: Connection, keys: Sequence[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of these (channel, provider id) pairs have parked reports waiting."""
    found: set[tuple[int, str]] = set()
    unique = sorted(set(keys))
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
            provider_id, MessageStatus(orphan.status), orphan.error_code, orphan.error_detail
        )
        _advance(conn, message_id, org_id, MessageStatus(current), report, "system:orphan", now)
    if rows:
        conn.execute(sa.delete(orphan_reports).where(orphan_reports.c.id.in_([r.id for r in rows])))
