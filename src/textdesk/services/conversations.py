"""The shared inbox: conversations (one per contact), their threads, and what agents do with them.

Who may do what: an agent works conversations that are unassigned or assigned to them (take,
reply, note, close, reopen, release); admins and owners work any. Everyone in the organization
can read every conversation. Every change publishes a ``conversation.updated`` live event in its
own transaction, so every open tab shows it once it is committed.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.delivery import wakeup
from textdesk.domain import content, templates
from textdesk.domain.roles import Role
from textdesk.domain.states import MessageStatus
from textdesk.domain.templates import Preview
from textdesk.services import audit, compliance, consent, events, messaging, optout
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.consent import ConsentKind, ConsentSource
from textdesk.services.contacts import Contact
from textdesk.services.errors import Conflict, Forbidden, Invalid, NotFound
from textdesk.services.messaging import Message, Queued
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import (
    UTCDateTime,
    channels,
    contacts,
    conversation_notes,
    conversations,
    messages,
    organizations,
    users,
    utc_storable,
    utcnow,
)

S = MessageStatus
STATUSES = ("open", "closed")
VIEWS = ("all", "mine", "unassigned")
MAX_PAGE = 200
MAX_NOTE = 4000
MAX_TAG = 50
THREAD_LIMIT = 200
#: Statuses where the gate's sentence explains why a message did not (yet) go.
NOT_SENT = (S.BLOCKED, S.EXPIRED, S.PENDING)
#: Statuses where the provider's error explains it.
FAILED = (S.FAILED, S.UNDELIVERED, S.UNKNOWN)


@dataclass(frozen=True)
class Conversation:
    id: int
    org_id: int
    contact_id: int
    contact_name: str
    phone_e164: str
    opted_out: bool
    tags: list[str]
    channel_id: int | None
    channel_phone: str | None
    assignee_id: int | None
    assignee_name: str | None
    status: str
    unread_count: int
    needs_review: bool
    review_reason: str | None
    campaign_id: int | None
    last_message_at: datetime | None
    last_inbound_at: datetime | None
    last_body: str | None
    last_direction: str | None
    created_at: datetime

    @property
    def display_name(self) -> str:
        return self.contact_name or self.phone_e164


@dataclass(frozen=True)
class Note:
    id: int
    conversation_id: int
    author_id: int | None
    author_name: str | None
    body: str
    created_at: datetime


@dataclass(frozen=True)
class ThreadMessage:
    message: Message

    @property
    def why_not_sent(self) -> str | None:
        """The gate's reason for a message that did not go, or the provider's error."""
        m = self.message
        if m.direction != "out":
            return None
        if m.status in NOT_SENT and m.gate_detail:
            return m.gate_detail
        if m.status in FAILED and (m.error_detail or m.error_code):
            return f"{m.error_code or 'error'}: {m.error_detail or 'no detail'}"
        return None


@dataclass(frozen=True)
class Thread:
    conversation: Conversation
    contact: Contact
    messages: list[ThreadMessage]
    notes: list[Note]


@dataclass(frozen=True)
class Page:
    items: list[Conversation]
    next_cursor: str | None


@dataclass(frozen=True)
class Filters:
    view: str = "all"  # all, mine, unassigned
    status: str | None = "open"  # open, closed, None = both
    needs_review: bool | None = None
    tag: str | None = None
    campaign_id: int | None = None
    channel_id: int | None = None
    q: str = ""


# --- reading -------------------------------------------------------------------------------------

_last = (
    sa.select(messages.c.body, messages.c.direction)
    .where(messages.c.conversation_id == conversations.c.id)
    .order_by(messages.c.id.desc())
    .limit(1)
)
_sort_at = sa.type_coerce(
    sa.func.coalesce(conversations.c.last_message_at, conversations.c.created_at), UTCDateTime()
)


def _base_query() -> sa.Select[Any]:
    last = _last.correlate(conversations)
    return (
        sa.select(
            conversations,
            contacts.c.first_name,
            contacts.c.last_name,
            contacts.c.phone_e164,
            contacts.c.opted_out,
            contacts.c.tags,
            channels.c.phone_e164.label("channel_phone"),
            users.c.name.label("assignee_name"),
            last.with_only_columns(messages.c.body).scalar_subquery().label("last_body"),
            last.with_only_columns(messages.c.direction).scalar_subquery().label("last_direction"),
            _sort_at.label("sort_at"),
        )
        .join(contacts, contacts.c.id == conversations.c.contact_id)
        .outerjoin(channels, channels.c.id == conversations.c.channel_id)
        .outerjoin(users, users.c.id == conversations.c.assignee_id)
    )


def _from_row(row: Any) -> Conversation:
    m = row._mapping
    return Conversation(
        id=m["id"],
        org_id=m["org_id"],
        contact_id=m["contact_id"],
        contact_name=f"{m['first_name']} {m['last_name']}".strip(),
        phone_e164=m["phone_e164"],
        opted_out=bool(m["opted_out"]),
        tags=list(m["tags"] or []),
        channel_id=m["channel_id"],
        channel_phone=m["channel_phone"],
        assignee_id=m["assignee_id"],
        assignee_name=m["assignee_name"],
        status=m["status"],
        unread_count=int(m["unread_count"]),
        needs_review=bool(m["needs_review"]),
        review_reason=m["review_reason"],
        campaign_id=m["campaign_id"],
        last_message_at=m["last_message_at"],
        last_inbound_at=m["last_inbound_at"],
        last_body=m["last_body"],
        last_direction=m["last_direction"],
        created_at=m["created_at"],
    )


def has_tag(conn: Connection, tag: str) -> sa.ColumnElement[bool]:
    """contacts.tags (a JSON list) holds ``tag``, on either engine."""
    if conn.dialect.name == "postgresql":
        return sa.cast(contacts.c.tags, sa.dialects.postgresql.JSONB).contains([tag])
    each = sa.func.json_each(contacts.c.tags).table_valued("value")
    return sa.exists(sa.select(1).select_from(each).where(each.c.value == tag))


def encode_cursor(sort_at: datetime, conversation_id: int) -> str:
    raw = f"{sort_at.isoformat()}|{conversation_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        at = datetime.fromisoformat(when)
        if not utc_storable(at):
            raise ValueError("naive, or beyond the calendar in UTC")
        conversation_id = int(ident)
        if not 0 < conversation_id < 2**63:
            raise ValueError("not an id")
        return at, conversation_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid(
            "the cursor is not one this API returned (use next_cursor as given)", field="cursor"
        ) from None


def list_conversations(
    conn: Connection,
    principal: Principal,
    filters: Filters | None = None,
    *,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """Newest activity first, keyset-paginated by (last message time, id)."""
    f = filters or Filters()
    if f.view not in VIEWS:
        raise Invalid(f"view must be one of {', '.join(VIEWS)}", field="view")
    if f.status is not None and f.status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", field="status")
    limit = max(1, min(limit, MAX_PAGE))
    query = _base_query().where(conversations.c.org_id == principal.org_id)
    if f.view == "mine":
        if principal.user_id is None:
            raise Invalid("'mine' needs a signed-in user, not an API key", field="view")
        query = query.where(conversations.c.assignee_id == principal.user_id)
    elif f.view == "unassigned":
        query = query.where(conversations.c.assignee_id.is_(None))
    if f.status is not None:
        query = query.where(conversations.c.status == f.status)
    if f.needs_review is not None:
        query = query.where(conversations.c.needs_review == f.needs_review)
    if f.tag:
        query = query.where(has_tag(conn, f.tag.strip()))
    if f.campaign_id is not None:
        query = query.where(conversations.c.campaign_id == f.campaign_id)
    if f.channel_id is not None:
        query = query.where(conversations.c.channel_id == f.channel_id)
    if f.q.strip():
        from textdesk.services import search

        query = query.where(search.contact_clause(conn, principal.org_id, f.q.strip()))
    if cursor:
        at, ident = decode_cursor(cursor)
        query = query.where(
            sa.or_(_sort_at < at, sa.and_(_sort_at == at, conversations.c.id < ident))
        )
    rows = conn.execute(
        query.order_by(_sort_at.desc(), conversations.c.id.desc()).limit(limit + 1)
    ).all()
    items = [_from_row(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(last.sort_at, last.id)
    return Page(items, next_cursor)


def get_conversation(conn: Connection, org_id: int, conversation_id: int) -> Conversation:
    row = conn.execute(
        _base_query().where(conversations.c.id == conversation_id, conversations.c.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound(f"conversation {conversation_id} not found")
    return _from_row(row)


def thread(conn: Connection, org_id: int, conversation_id: int) -> Thread:
    """The conversation, its contact, its latest messages (oldest first) and its notes."""
    conversation = get_conversation(conn, org_id, conversation_id)
    from textdesk.services.contacts import get_contact

    contact = get_contact(conn, org_id, conversation.contact_id)
    rows = conn.execute(
        sa.select(messages)
        .where(messages.c.org_id == org_id, messages.c.conversation_id == conversation_id)
        .order_by(messages.c.id.desc())
        .limit(THREAD_LIMIT)
    ).all()
    thread_messages = [ThreadMessage(Message.from_row(r)) for r in reversed(rows)]
    return Thread(conversation, contact, thread_messages, list_notes(conn, org_id, conversation_id))


def list_notes(conn: Connection, org_id: int, conversation_id: int) -> list[Note]:
    rows = conn.execute(
        sa.select(conversation_notes, users.c.name.label("author_name"))
        .outerjoin(users, users.c.id == conversation_notes.c.author_id)
        .where(
            conversation_notes.c.org_id == org_id,
            conversation_notes.c.conversation_id == conversation_id,
        )
        .order_by(conversation_notes.c.id)
    )
    return [
        Note(r.id, r.conversation_id, r.author_id, r.author_name, r.body, r.created_at)
        for r in rows
    ]


def unread_counts(conn: Connection, principal: Principal) -> dict[str, int]:
    """Unread inbound messages in open conversations: the caller's own, and nobody's."""
    total = sa.func.coalesce(sa.func.sum(conversations.c.unread_count), 0)
    base = sa.select(total).where(
        conversations.c.org_id == principal.org_id, conversations.c.status == "open"
    )
    mine = 0
    if principal.user_id is not None:
        mine = int(
            conn.execute(base.where(conversations.c.assignee_id == principal.user_id)).scalar_one()
        )
    unassigned = int(conn.execute(base.where(conversations.c.assignee_id.is_(None))).scalar_one())
    review = int(
        conn.execute(
            sa.select(sa.func.count()).where(
                conversations.c.org_id == principal.org_id, conversations.c.needs_review
            )
        ).scalar_one()
    )
    return {"mine": mine, "unassigned": unassigned, "needs_review": review}


# --- acting --------------------------------------------------------------------------------------


def _lock(conn: Connection, org_id: int, conversation_id: int) -> Any:
    query = sa.select(conversations).where(
        conversations.c.id == conversation_id, conversations.c.org_id == org_id
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"conversation {conversation_id} not found")
    return row


def _may_work(principal: Principal, row: Any) -> None:
    if principal.role.at_least(Role.ADMIN):
        return
    if row.assignee_id is not None and row.assignee_id != principal.user_id:
        raise Forbidden("this conversation is assigned to someone else; ask an admin to reassign")


def _changed(conn: Connection, org_id: int, conversation_id: int, change: str) -> None:
    events.publish(
        conn,
        org_id,
        "conversation.updated",
        {"conversation_id": conversation_id, "change": change},
    )


def assign(
    db: Database,
    principal: Principal,
    conversation_id: int,
    assignee_id: int | None,
    *,
    request: RequestInfo | None = None,
) -> Conversation:
    """Take, hand over or release a conversation. Agents may take an unassigned one or release
    their own; only admins hand a conversation to someone else or take it from someone."""
    with db.write() as conn:
        row = _lock(conn, principal.org_id, conversation_id)
        if not principal.role.at_least(Role.ADMIN):
            if assignee_id not in (None, principal.user_id) or principal.user_id is None:
                raise Forbidden("agents can assign conversations to themselves only")
            _may_work(principal, row)
        if assignee_id is not None:
            active = conn.execute(
                sa.select(users.c.id).where(
                    users.c.id == assignee_id,
                    users.c.org_id == principal.org_id,
                    users.c.is_active,
                )
            ).first()
            if active is None:
                raise Invalid(f"user {assignee_id} is not an active member", field="assignee_id")
        if row.assignee_id != assignee_id:
            conn.execute(
                sa.update(conversations)
                .where(conversations.c.id == conversation_id)
                .values(assignee_id=assignee_id)
            )
            audit.record(
                conn,
                org_id=principal.org_id,
                actor=principal.actor,
                action="conversation.assign",
                target=f"conversation:{conversation_id}",
                request=request,
                detail={"from": row.assignee_id, "to": assignee_id},
            )
            _changed(conn, principal.org_id, conversation_id, "assigned")
        return get_conversation(conn, principal.org_id, conversation_id)


def set_status(
    db: Database,
    principal: Principal,
    conversation_id: int,
    status: str,
    *,
    request: RequestInfo | None = None,
) -> Conversation:
    """Close or reopen."""
    if status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", field="status")
    with db.write() as conn:
        row = _lock(conn, principal.org_id, conversation_id)
        _may_work(principal, row)
        if row.status != status:
            values: dict[str, Any] = {"status": status}
            if status == "closed":
                values["unread_count"] = 0
            conn.execute(
                sa.update(conversations)
                .where(conversations.c.id == conversation_id)
                .values(**values)
            )
            _changed(conn, principal.org_id, conversation_id, status)
        return get_conversation(conn, principal.org_id, conversation_id)


def mark_read(db: Database, principal: Principal, conversation_id: int) -> Conversation:
    with db.write() as conn:
        row = _lock(conn, principal.org_id, conversation_id)
        if row.unread_count:
            conn.execute(
                sa.update(conversations)
                .where(conversations.c.id == conversation_id)
                .values(unread_count=0)
            )
            _changed(conn, principal.org_id, conversation_id, "read")
        return get_conversation(conn, principal.org_id, conversation_id)


def add_note(db: Database, principal: Principal, conversation_id: int, body: str) -> Note:
    text = body.strip()
    if not text:
        raise Invalid("the note is empty", field="body")
    if len(text) > MAX_NOTE:
        raise Invalid(f"the note is {len(text)} characters; the limit is {MAX_NOTE}", field="body")
    now = utcnow()
    with db.write() as conn:
        row = _lock(conn, principal.org_id, conversation_id)
        _may_work(principal, row)
        note_id = conn.execute(
            conversation_notes.insert()
            .values(
                org_id=principal.org_id,
                conversation_id=conversation_id,
                author_id=principal.user_id,
                body=text,
                created_at=now,
            )
            .returning(conversation_notes.c.id)
        ).scalar_one()
        _changed(conn, principal.org_id, conversation_id, "note")
    return Note(note_id, conversation_id, principal.user_id, principal.name or None, text, now)


def _clean_tag(tag: str) -> str:
    value = tag.strip()
    if not value:
        raise Invalid("the tag is empty", field="tag")
    if len(value) > MAX_TAG:
        raise Invalid(
            f"a tag is at most {MAX_TAG} characters; this one is {len(value)}", field="tag"
        )
    if "," in value:
        raise Invalid("a tag cannot contain a comma (add one tag at a time)", field="tag")
    return value


def tag(
    db: Database, principal: Principal, conversation_id: int, tag: str, *, remove: bool = False
) -> Conversation:
    """Tag (or untag) the conversation's contact."""
    value = _clean_tag(tag)
    with db.write() as conn:
        row = _lock(conn, principal.org_id, conversation_id)
        current = conn.execute(
            sa.select(contacts.c.tags).where(contacts.c.id == row.contact_id)
        ).scalar_one()
        tags = list(current or [])
        new = (
            [t for t in tags if t != value]
            if remove
            else (tags if value in tags else [*tags, value])
        )
        if new != tags:
            conn.execute(
                sa.update(contacts)
                .where(contacts.c.id == row.contact_id)
                .values(tags=new, updated_at=utcnow())
            )
            _changed(conn, principal.org_id, conversation_id, "tags")
        return get_conversation(conn, principal.org_id, conversation_id)


def opt_out(
    db: Database,
    principal: Principal,
    conversation_id: int,
    *,
    note: str = "",
    request: RequestInfo | None = None,
) -> Conversation:
    """The agent records that the contact asked to stop (ledger entry, source "agent")."""
    with db.read() as conn:
        contact_id = get_conversation(conn, principal.org_id, conversation_id).contact_id
    consent.agent_opt_out(db, principal, contact_id, note=note, request=request)
    with db.write() as conn:
        _changed(conn, principal.org_id, conversation_id, "opted_out")
        return get_conversation(conn, principal.org_id, conversation_id)


REVIEW_ACTIONS = ("confirm", "dismiss")


def review(
    db: Database,
    settings: Settings,
    principal: Principal,
    conversation_id: int,
    action: str,
    *,
    request: RequestInfo | None = None,
) -> Conversation:
    """Settle a conversation flagged as a possible opt-out.

    ``confirm`` records the opt-out in the ledger (source free_text, the reply as evidence) and
    sends the one confirmation the rules require; ``dismiss`` clears the flag. Both are audited."""
    if action not in REVIEW_ACTIONS:
        raise Invalid(f"action must be one of {', '.join(REVIEW_ACTIONS)}", field="action")
    now = utcnow()
    queued: Queued | None = None
    with db.write() as conn:
        row = _lock(conn, principal.org_id, conversation_id)
        if not row.needs_review:
            raise Conflict("this conversation is not waiting for a review")
        last_in = conn.execute(
            sa.select(messages)
            .where(messages.c.conversation_id == conversation_id, messages.c.direction == "in")
            .order_by(messages.c.id.desc())
            .limit(1)
        ).first()
        if action == "confirm":
            contact = conn.execute(sa.select(contacts).where(contacts.c.id == row.contact_id)).one()
            was_opted_out = bool(contact.opted_out)
            consent.record(
                conn,
                org_id=principal.org_id,
                phone=contact.phone_e164,
                kind=ConsentKind.OPT_OUT,
                source=ConsentSource.FREE_TEXT,
                actor=principal.actor,
                now=now,
                evidence={
                    "body": last_in.body if last_in is not None else None,
                    "explanation": row.review_reason,
                    "confirmed_by": principal.actor,
                },
                message_id=last_in.id if last_in is not None else None,
            )
            if not was_opted_out and last_in is not None:
                org = conn.execute(
                    sa.select(organizations.c.name, organizations.c.settings).where(
                        organizations.c.id == principal.org_id
                    )
                ).one()
                text = optout.org_setting(dict(org.settings or {}), "opt_out_confirmation")
                queued = messaging.queue_outbound(
                    conn,
                    settings,
                    org_id=principal.org_id,
                    contact_id=row.contact_id,
                    body=text.replace("{org}", org.name),
                    actor="system:compliance",
                    purpose=compliance.Purpose.COMPLIANCE,
                    channel_id=last_in.channel_id,
                    # The key optout uses: never a second confirmation for the same reply.
                    idempotency_key=f"opt-out-confirmation:{last_in.id}",
                )
        conn.execute(
            sa.update(conversations)
            .where(conversations.c.id == conversation_id)
            .values(needs_review=False, review_reason=None)
        )
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action=f"conversation.review_{action}",
            target=f"conversation:{conversation_id}",
            request=request,
            detail={"reason": row.review_reason},
        )
        _changed(conn, principal.org_id, conversation_id, f"review_{action}")
        result = get_conversation(conn, principal.org_id, conversation_id)
    if queued is not None and queued.message.status == S.QUEUED:
        wakeup.notify()
    return result


def reply(
    db: Database,
    settings: Settings,
    principal: Principal,
    conversation_id: int,
    body: str,
    *,
    idempotency_key: str | None = None,
    merge: bool = False,
    send_at: datetime | None = None,
) -> Queued:
    """Send a one-to-one reply in the conversation (through the gate, like every message).

    With ``merge`` the body is a template filled in for the contact (a field without a value
    and without a fallback is refused, naming it). An agent who answers an unassigned
    conversation takes it. ``send_at``: send later (``services/scheduled.py``)."""
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise Invalid("idempotency key must be 1 to 200 characters", field="idempotency_key")
    if send_at is not None:
        from textdesk.services.scheduled import check_send_at

        check_send_at(send_at, utcnow())
    with db.write() as conn:
        row = _lock(conn, principal.org_id, conversation_id)
        _may_work(principal, row)
        if merge:
            body = render_for(conn, principal.org_id, row.contact_id, body)
        queued = messaging.queue_outbound(
            conn,
            settings,
            org_id=principal.org_id,
            contact_id=row.contact_id,
            body=body,
            actor=principal.actor,
            purpose=compliance.Purpose.CONVERSATIONAL,
            created_by=principal.user_id,
            idempotency_key=idempotency_key,
            send_at=send_at,
        )
        if queued.created:
            values: dict[str, Any] = {"unread_count": 0, "status": "open"}
            if row.assignee_id is None and principal.user_id is not None:
                values["assignee_id"] = principal.user_id
            conn.execute(
                sa.update(conversations)
                .where(conversations.c.id == conversation_id)
                .values(**values)
            )
            _changed(conn, principal.org_id, conversation_id, "replied")
    if queued.message.status == S.QUEUED:
        wakeup.notify()
    return queued


def render_for(conn: Connection, org_id: int, contact_id: int, body: str) -> str:
    """``body`` as a template filled in for the contact; errors name the position."""
    from textdesk.services.contacts import get_contact

    values = get_contact(conn, org_id, contact_id).merge_values()
    try:
        return templates.render(body, values, strict=True)
    except templates.TemplateError as exc:
        raise Invalid(str(exc), field="body") from exc


def composer_findings(
    conn: Connection, org_id: int, conversation_id: int, text: str, raw: str | None = None
) -> list[dict[str, str | None]]:
    """The content rules' findings for a reply about to be sent (the same rules the gate
    applies when it is queued): blocks and warnings, each with its code and sentence, checked on
    the rendered ``text``. ``fix``, where a rule offers one (the smart-encoding fix for UCS-2,
    the sender's name, the opt-out line), is the composer's own ``raw`` text with that fix
    applied, merge fields left in place."""
    from textdesk.services import compliance
    from textdesk.store.tables import organizations

    org = conn.execute(
        sa.select(organizations.c.name, organizations.c.settings).where(
            organizations.c.id == org_id
        )
    ).one()
    reached = conn.execute(
        sa.select(sa.func.count())
        .select_from(messages)
        .where(
            messages.c.conversation_id == conversation_id,
            messages.c.org_id == org_id,
            messages.c.direction == "out",
            messages.c.status.in_(("queued", "sending", "sent", "delivered")),
        )
    ).scalar_one()
    policy = compliance.content_policy(org.name, org.settings, first_message=not reached)
    findings = content.check(text, policy)
    # The fixes are offered on what was typed; with no merge field in it, that is ``text``.
    typed = findings if raw is None or raw == text else content.check(raw, policy)
    fixes = {f.code: f.fix for f in typed}
    return [
        {
            "code": f.code,
            "severity": f.severity.value,
            "message": f.message,
            "fix": fixes.get(f.code) if f.fix is not None else None,
        }
        for f in findings
    ]


def preview_for(conn: Connection, org_id: int, conversation_id: int, body: str) -> Preview:
    """What the contact would get for ``body`` (non-strict: missing fields are listed)."""
    from textdesk.services.contacts import get_contact

    contact_id = get_conversation(conn, org_id, conversation_id).contact_id
    try:
        return templates.preview(body, get_contact(conn, org_id, contact_id).merge_values())
    except templates.TemplateError as exc:
        raise Invalid(str(exc), field="body") from exc
