"""Send later: messages queued with ``send_at`` wait in the outbox (``send_after``) until then.

They are ordinary messages (``queued``, or ``pending`` when the gate deferred them as of their
time), so the claim sends them when due and runs the gate again. Until a worker has handed one
to a provider, a person may cancel it: it becomes ``blocked`` with ``gate_code``
``cancelled`` and an event that says who cancelled it. A message that has been tried once
(``attempts`` > 0) is never cancelled: an attempt may have reached the provider.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.states import Direction, MessageStatus
from textdesk.services import messaging
from textdesk.services.auth import Principal
from textdesk.services.errors import Conflict, Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import messages, utcnow

S = MessageStatus
#: How far ahead a message may be scheduled.
MAX_AHEAD = timedelta(days=90)
CANCELLED = "cancelled"


def check_send_at(send_at: datetime, now: datetime) -> None:
    if send_at.tzinfo is None or send_at.utcoffset() is None:
        raise Invalid("send_at needs a time zone, e.g. 2026-03-10T09:00:00-04:00", field="send_at")
    if send_at <= now:
        raise Invalid("send_at is in the past; leave it out to send now", field="send_at")
    if send_at > now + MAX_AHEAD:
        raise Invalid(f"send_at is at most {MAX_AHEAD.days} days ahead", field="send_at")


def scheduled(
    conn: Connection, org_id: int, conversation_id: int, *, now: datetime | None = None
) -> list[messaging.Message]:
    """The conversation's messages waiting for a later time, soonest first."""
    rows = conn.execute(
        sa.select(messages)
        .where(
            messages.c.org_id == org_id,
            messages.c.conversation_id == conversation_id,
            messages.c.direction == Direction.OUTBOUND,
            messages.c.status.in_([S.QUEUED, S.PENDING]),
            messages.c.send_after > (now or utcnow()),
        )
        .order_by(messages.c.send_after, messages.c.id)
    )
    return [messaging.Message.from_row(r) for r in rows]


def cancel(
    db: Database, principal: Principal, message_id: int, *, conversation_id: int | None = None
) -> messaging.Message:
    """Cancel a message that no worker has handed to a provider yet. ``conversation_id``: it
    must be that conversation's (the inbox's URLs name both)."""
    now = utcnow()
    with db.write() as conn:
        query = sa.select(messages).where(
            messages.c.id == message_id, messages.c.org_id == principal.org_id
        )
        if conn.dialect.name == "postgresql":
            # Waits for a claim that holds it; then sees it as the claim left it (sending).
            query = query.with_for_update()
        row = conn.execute(query).first()
        if (
            row is None
            or row.direction != Direction.OUTBOUND
            or conversation_id not in (None, row.conversation_id)
        ):
            raise NotFound(f"message {message_id} not found")
        if row.conversation_id is not None:
            from textdesk.services import conversations

            # The inbox's rules: an agent works unassigned conversations and their own.
            conversations._may_work(
                principal, conversations._lock(conn, principal.org_id, row.conversation_id)
            )
        if row.status not in (S.QUEUED, S.PENDING):
            raise Conflict(
                f"message {message_id} is {row.status}: too late to cancel", field="status"
            )
        if row.attempts > 0:
            raise Conflict(
                f"message {message_id} was tried once already; it may have reached the provider",
                field="status",
            )
        who = principal.name or principal.actor
        detail = f"not sent: cancelled by {who}"
        conn.execute(
            sa.update(messages)
            .where(messages.c.id == message_id)
            .values(status=S.BLOCKED, gate_code=CANCELLED, gate_detail=detail, updated_at=now)
        )
        messaging.add_events(
            conn,
            [
                messaging.event_row(
                    org_id=principal.org_id,
                    message_id=message_id,
                    from_status=row.status,
                    to_status=S.BLOCKED,
                    actor=principal.actor,
                    now=now,
                    reason=CANCELLED,
                    detail=detail,
                )
            ],
        )
        return messaging.get_message(conn, principal.org_id, message_id)
