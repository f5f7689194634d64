"""Runs: one automation working on one event for one contact, with its step-by-step history.

States (``automation_runs.state``)::

    waiting ──steps run (timers.py)──▶ done
       │  └─a step fails for good──▶ failed
       └─cancelled (a cancelling or rescheduling event of its subject, an opt-out,
                    the automation edited, paused or archived with in_flight=cancel)
    skipped: the conditions did not hold when the event arrived (no step ever runs)

Every change of state writes a history row in the same transaction, so the history always
explains the state. Cancelling a run also discards its pending drafts and, for its subject's
runs, stops their messages that are still waiting in the outbox (``pending``, ``queued``): a
reminder held by quiet hours must not go out for an appointment cancelled meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.states import MessageStatus
from textdesk.services import messaging
from textdesk.services.errors import NotFound
from textdesk.store.tables import (
    automation_run_history,
    automation_runs,
    automations,
    message_drafts,
    messages,
)

S = MessageStatus
ACTOR = "system:automations"
STATES = ("waiting", "done", "cancelled", "skipped", "failed")


@dataclass(frozen=True)
class HistoryRow:
    id: int
    step: int | None
    kind: str
    outcome: str
    detail: str
    message_id: int | None
    draft_id: int | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> HistoryRow:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Run:
    id: int
    org_id: int
    automation_id: int
    automation_name: str
    version: int
    event_id: int | None
    contact_id: int
    subject: str | None
    state: str
    cursor: int
    due_at: datetime | None
    attempts: int
    reason: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Run:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})


def history_row(
    run_id: int,
    org_id: int,
    kind: str,
    outcome: str,
    detail: str,
    now: datetime,
    *,
    step: int | None = None,
    message_id: int | None = None,
    draft_id: int | None = None,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "org_id": org_id,
        "step": step,
        "kind": kind,
        "outcome": outcome,
        "detail": detail,
        "message_id": message_id,
        "draft_id": draft_id,
        "created_at": now,
    }


def add_history(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(automation_run_history.insert(), list(rows))


# --- cancelling ----------------------------------------------------------------------------------


def _cancel(
    conn: Connection,
    where: sa.ColumnElement[bool],
    *,
    reason: str,
    detail: str,
    now: datetime,
    skip_locked: bool = False,
) -> list[int]:
    """Cancel the waiting runs ``where`` selects; returns their ids."""
    query = (
        sa.select(automation_runs.c.id, automation_runs.c.org_id, automation_runs.c.cursor)
        .where(where, automation_runs.c.state == "waiting")
        .order_by(automation_runs.c.id)
    )
    if conn.dialect.name == "postgresql":
        # By default this waits for a worker that is running one of them (it holds the row
        # until it commits) and then sees the row as that worker left it.
        query = query.with_for_update(skip_locked=skip_locked)
    rows = conn.execute(query).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    conn.execute(
        sa.update(automation_runs)
        .where(automation_runs.c.id.in_(ids))
        .values(state="cancelled", reason=reason, due_at=None, updated_at=now, finished_at=now)
    )
    add_history(
        conn,
        [
            history_row(r.id, r.org_id, "cancelled", reason, detail, now, step=r.cursor)
            for r in rows
        ],
    )
    discard_drafts(conn, ids, reason=detail, now=now)
    return ids


def cancel_subject(
    conn: Connection,
    org_id: int,
    subject: str,
    *,
    reason: str,
    detail: str,
    now: datetime,
) -> list[int]:
    """A cancelled or rescheduled event: cancel the subject's waiting runs and stop the
    messages its runs left waiting in the outbox."""
    of_subject = sa.and_(automation_runs.c.org_id == org_id, automation_runs.c.subject == subject)
    cancelled = _cancel(conn, of_subject, reason=reason, detail=detail, now=now)
    all_runs = list(conn.execute(sa.select(automation_runs.c.id).where(of_subject)).scalars())
    _stop_waiting_messages(conn, all_runs, detail, now)
    discard_drafts(conn, all_runs, reason=detail, now=now)
    return cancelled


def cancel_for_contact(
    conn: Connection, org_id: int, contact_id: int, *, reason: str, detail: str, now: datetime
) -> list[int]:
    """An opt-out: every waiting run of the contact, and its pending drafts.

    A run a worker is running at this very moment is skipped, not waited for: the opt-out's
    transaction already holds the contact's row (and, for a STOP, the conversation's), which
    that worker may need next, so waiting could deadlock. Nothing reaches the contact through
    such a run all the same: the gate refuses its messages (at the claim at the latest), and
    the history says so."""
    cancelled = _cancel(
        conn,
        sa.and_(automation_runs.c.org_id == org_id, automation_runs.c.contact_id == contact_id),
        reason=reason,
        detail=detail,
        now=now,
        skip_locked=True,
    )
    conn.execute(
        sa.update(message_drafts)
        .where(
            message_drafts.c.org_id == org_id,
            message_drafts.c.contact_id == contact_id,
            message_drafts.c.status == "pending",
        )
        .values(status="discarded", reason=detail, acted_at=now)
    )
    return cancelled


def cancel_where(
    conn: Connection, where: sa.ColumnElement[bool], *, reason: str, detail: str, now: datetime
) -> list[int]:
    """Cancel the waiting runs ``where`` selects, skipping any a worker is running right now
    (see ``cancel_for_contact``), and discard their drafts. Their messages are left alone."""
    return _cancel(conn, where, reason=reason, detail=detail, now=now, skip_locked=True)


def cancel_for_automation(
    conn: Connection, automation_id: int, *, reason: str, detail: str, now: datetime
) -> list[int]:
    cancelled = _cancel(
        conn,
        automation_runs.c.automation_id == automation_id,
        reason=reason,
        detail=detail,
        now=now,
    )
    _stop_waiting_messages(conn, cancelled, detail, now)
    return cancelled


def discard_drafts(conn: Connection, run_ids: Sequence[int], *, reason: str, now: datetime) -> None:
    if run_ids:
        conn.execute(
            sa.update(message_drafts)
            .where(message_drafts.c.run_id.in_(list(run_ids)), message_drafts.c.status == "pending")
            .values(status="discarded", reason=reason, acted_at=now)
        )


def _stop_waiting_messages(
    conn: Connection, run_ids: Sequence[int], detail: str, now: datetime
) -> None:
    """Block the runs' messages that have not been handed to a provider yet (``pending``,
    ``queued``); one a worker is claiming right now is waited for, and left alone if the claim
    made it ``sending``."""
    if not run_ids:
        return
    ids = sorted(
        {
            m
            for m in conn.execute(
                sa.select(automation_run_history.c.message_id).where(
                    automation_run_history.c.run_id.in_(list(run_ids)),
                    automation_run_history.c.message_id.is_not(None),
                )
            ).scalars()
            if m is not None
        }
    )
    if not ids:
        return
    text = f"not sent: {detail}"
    query = sa.select(messages.c.id, messages.c.org_id, messages.c.status).where(
        messages.c.id.in_(ids), messages.c.status.in_([S.PENDING, S.QUEUED])
    )
    if conn.dialect.name == "postgresql":
        # A worker claiming one holds it; once it commits the row is ``sending`` and no longer
        # matches (PostgreSQL re-checks the WHERE on the row it waited for).
        query = query.order_by(messages.c.id).with_for_update()
    waiting = conn.execute(query).all()
    if not waiting:
        return
    conn.execute(
        sa.update(messages)
        .where(messages.c.id.in_([r.id for r in waiting]))
        .values(
            status=S.BLOCKED, gate_code="automation_cancelled", gate_detail=text, updated_at=now
        )
    )
    messaging.add_events(
        conn,
        [
            messaging.event_row(
                org_id=r.org_id,
                message_id=r.id,
                from_status=r.status,
                to_status=S.BLOCKED,
                actor=ACTOR,
                now=now,
                reason="automation_cancelled",
                detail=text,
            )
            for r in waiting
        ],
    )


# --- reading -------------------------------------------------------------------------------------

_RUNS = sa.select(automation_runs, automations.c.name.label("automation_name")).join(
    automations, automations.c.id == automation_runs.c.automation_id
)


def get_run(conn: Connection, org_id: int, run_id: int) -> Run:
    row = conn.execute(
        _RUNS.where(automation_runs.c.id == run_id, automation_runs.c.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound(f"run {run_id} not found")
    return Run.from_row(row)


def history(conn: Connection, org_id: int, run_id: int) -> list[HistoryRow]:
    rows = conn.execute(
        sa.select(automation_run_history)
        .where(
            automation_run_history.c.run_id == run_id,
            automation_run_history.c.org_id == org_id,
        )
        .order_by(automation_run_history.c.id)
    )
    return [HistoryRow.from_row(r) for r in rows]


def list_runs(
    conn: Connection,
    org_id: int,
    *,
    automation_id: int | None = None,
    contact_id: int | None = None,
    event_id: int | None = None,
    state: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[Run]:
    """Newest first, keyset pages with ``before_id``."""
    query = _RUNS.where(automation_runs.c.org_id == org_id)
    if automation_id is not None:
        query = query.where(automation_runs.c.automation_id == automation_id)
    if contact_id is not None:
        query = query.where(automation_runs.c.contact_id == contact_id)
    if event_id is not None:
        query = query.where(automation_runs.c.event_id == event_id)
    if state is not None:
        query = query.where(automation_runs.c.state == state)
    if before_id is not None:
        query = query.where(automation_runs.c.id < before_id)
    rows = conn.execute(query.order_by(automation_runs.c.id.desc()).limit(max(1, min(limit, 500))))
    return [Run.from_row(r) for r in rows]
