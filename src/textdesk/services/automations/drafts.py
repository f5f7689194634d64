"""Drafts: messages an automation queued for a person (a ``queue_for_person`` step).

A draft sits in the contact's conversation until someone sends it with one action (it then goes
through ``messaging.queue_outbound`` and the gate like any reply, with the draft's purpose and
the idempotency key ``draft:<id>``, so a double click sends once) or discards it. Pending drafts
are discarded when their run is cancelled or the contact opts out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.delivery import wakeup
from textdesk.services import events as live
from textdesk.services import messaging
from textdesk.services.auth import Principal
from textdesk.services.errors import Conflict, NotFound
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import conversations, message_drafts, utcnow


@dataclass(frozen=True)
class Draft:
    id: int
    org_id: int
    conversation_id: int
    contact_id: int
    body: str
    purpose: str
    run_id: int | None
    step: int | None
    status: str
    reason: str | None
    message_id: int | None
    acted_by: int | None
    created_at: datetime
    acted_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Draft:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})


def create_draft(
    conn: Connection,
    *,
    org_id: int,
    contact_id: int,
    body: str,
    purpose: str,
    run_id: int | None,
    step: int | None,
    now: datetime,
) -> Draft:
    """In the caller's transaction; the conversation is created if the contact has none and
    comes up in the inbox (open, latest activity now)."""
    # The one get-or-create of a contact's thread (it copes with a concurrent creation).
    conversation = messaging._conversation(conn, org_id, contact_id, now)
    conn.execute(
        sa.update(conversations)
        .where(conversations.c.id == conversation.id)
        .values(status="open", last_message_at=now)
    )
    row = conn.execute(
        message_drafts.insert()
        .values(
            org_id=org_id,
            conversation_id=conversation.id,
            contact_id=contact_id,
            body=body,
            purpose=purpose,
            run_id=run_id,
            step=step,
            status="pending",
            created_at=now,
        )
        .returning(*message_drafts.c)
    ).one()
    _changed(conn, org_id, conversation.id)
    return Draft.from_row(row)


def _changed(conn: Connection, org_id: int, conversation_id: int) -> None:
    live.publish(
        conn,
        org_id,
        "conversation.updated",
        {"conversation_id": conversation_id, "change": "draft"},
    )


def pending_drafts(conn: Connection, org_id: int, conversation_id: int) -> list[Draft]:
    rows = conn.execute(
        sa.select(message_drafts)
        .where(
            message_drafts.c.org_id == org_id,
            message_drafts.c.conversation_id == conversation_id,
            message_drafts.c.status == "pending",
        )
        .order_by(message_drafts.c.id)
    )
    return [Draft.from_row(r) for r in rows]


def get_draft(conn: Connection, org_id: int, draft_id: int) -> Draft:
    row = conn.execute(
        sa.select(message_drafts).where(
            message_drafts.c.id == draft_id, message_drafts.c.org_id == org_id
        )
    ).first()
    if row is None:
        raise NotFound(f"draft {draft_id} not found")
    return Draft.from_row(row)


def _locked(
    conn: Connection, org_id: int, draft_id: int, conversation_id: int | None = None
) -> Draft:
    row = conn.execute(
        sa.select(message_drafts)
        .where(message_drafts.c.id == draft_id, message_drafts.c.org_id == org_id)
        .with_for_update()
    ).first()
    if row is None or conversation_id not in (None, row.conversation_id):
        raise NotFound(f"draft {draft_id} not found")
    return Draft.from_row(row)


def send_draft(
    db: Database,
    settings: Settings,
    principal: Principal,
    draft_id: int,
    *,
    conversation_id: int | None = None,
) -> messaging.Queued:
    """The one action: queue the draft as this person's message (through the gate). Sending a
    draft already sent answers its message; a discarded one is a conflict. ``conversation_id``:
    the draft must be that conversation's (the inbox's URLs name both)."""
    from textdesk.services import conversations as inbox

    now = utcnow()
    with db.write() as conn:
        draft = _locked(conn, principal.org_id, draft_id, conversation_id)
        if draft.status == "discarded":
            raise Conflict(f"draft {draft_id} was discarded: {draft.reason or 'by a person'}")
        # The inbox's own rules: an agent works unassigned conversations and their own.
        thread = inbox._lock(conn, principal.org_id, draft.conversation_id)
        inbox._may_work(principal, thread)
        queued = messaging.queue_outbound(
            conn,
            settings,
            org_id=principal.org_id,
            contact_id=draft.contact_id,
            body=draft.body,
            actor=principal.actor,
            purpose=draft.purpose,
            created_by=principal.user_id,
            idempotency_key=f"draft:{draft.id}",
            now=now,
        )
        if draft.status == "pending":
            conn.execute(
                sa.update(message_drafts)
                .where(message_drafts.c.id == draft.id)
                .values(
                    status="sent",
                    message_id=queued.message.id,
                    acted_by=principal.user_id,
                    acted_at=now,
                )
            )
            if thread.assignee_id is None and principal.user_id is not None:
                conn.execute(
                    sa.update(conversations)
                    .where(conversations.c.id == thread.id)
                    .values(assignee_id=principal.user_id)
                )
            _changed(conn, principal.org_id, draft.conversation_id)
    if queued.message.status == "queued":
        wakeup.notify()
    return queued


def discard_draft(
    db: Database,
    principal: Principal,
    draft_id: int,
    *,
    reason: str = "",
    conversation_id: int | None = None,
) -> Draft:
    from textdesk.services import conversations as inbox

    now = utcnow()
    with db.write() as conn:
        draft = _locked(conn, principal.org_id, draft_id, conversation_id)
        inbox._may_work(principal, inbox._lock(conn, principal.org_id, draft.conversation_id))
        if draft.status == "sent":
            raise Conflict(f"draft {draft_id} was already sent (message {draft.message_id})")
        if draft.status == "pending":
            conn.execute(
                sa.update(message_drafts)
                .where(message_drafts.c.id == draft.id)
                .values(
                    status="discarded",
                    reason=reason.strip()[:500]
                    or f"discarded by {principal.name or principal.actor}",
                    acted_by=principal.user_id,
                    acted_at=now,
                )
            )
            _changed(conn, principal.org_id, draft.conversation_id)
        return get_draft(conn, principal.org_id, draft_id)
