"""Durable timers: workers run the steps of the runs that are due.

A waiting run is a row with ``due_at``; there is no timer in memory. ``run_due`` claims due runs
and runs their steps in ONE write transaction: on PostgreSQL the claim is ``FOR UPDATE SKIP
LOCKED``, so two workers never take the same run and never wait for each other; on SQLite the
transaction is ``BEGIN IMMEDIATE``, the single writer. Every effect a step has is a row (a queued
message, a draft, a contact's tags, the history) written in the transaction that advances the
run's cursor, so a worker that dies anywhere before COMMIT leaves nothing behind and the run is
still due: the next claim does the step once. There is no lease to expire: the database's own
rollback of a dead connection's transaction (and the release of its row locks) is the recovery.

A step that fails for a reason that will not change (a merge field without a value, no active
sender number) fails the run, with the reason in its history. An unexpected error rolls back
that run's steps alone (a savepoint), and the run is tried again later, up to ``MAX_ATTEMPTS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.delivery import wakeup
from textdesk.domain import templates
from textdesk.domain.states import MessageStatus
from textdesk.services import compliance, contacts, messaging
from textdesk.services.automations import definitions, drafts, runs, schedule, triggers
from textdesk.services.automations.spec import (
    GATE_PURPOSE,
    KeywordTrigger,
    NoReplyTrigger,
    QueueForPersonStep,
    SendStep,
    StopStep,
    TagStep,
    UntagStep,
    WaitStep,
    parse_duration,
)
from textdesk.services.errors import ServiceError
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import (
    automation_runs,
    customer_events,
    messages,
    organizations,
    utcnow,
)
from textdesk.store.tables import contacts as contacts_table

log = logging.getLogger(__name__)
S = MessageStatus

#: Runs claimed per transaction. SQLite's one write lock is held while they run, so fewer.
BATCH = {"postgresql": 200, "sqlite": 50}
MAX_ATTEMPTS = 5
#: Automated messages go after replies in a live conversation (10), before bulk traffic (0).
PRIORITY_AUTOMATED = 5
POLL_SECONDS = 1.0


class StepFailed(Exception):
    """A step that cannot be done and will not become doable by trying again."""


@dataclass
class Tick:
    claimed: int = 0
    steps: int = 0
    queued: int = 0


def _after_step(run_id: int, step: int) -> None:
    """Called after each step's effect is written, before the transaction commits: the seam
    the crash tests use to kill a worker at the worst moment."""


def due_now(db: Database, now: datetime) -> bool:
    """Whether any run is due (a read, so an idle SQLite worker does not take the write lock
    every second)."""
    with db.read() as conn:
        return (
            conn.execute(
                sa.select(automation_runs.c.id)
                .where(automation_runs.c.state == "waiting", automation_runs.c.due_at <= now)
                .limit(1)
            ).first()
            is not None
        )


def run_due(
    db: Database, settings: Settings, *, now: datetime | None = None, limit: int | None = None
) -> Tick:
    """Claim the runs due at ``now`` (default: the current time) and run their steps."""
    now = now or utcnow()
    limit = limit or BATCH.get(db.dialect, 50)
    tick = Tick()
    with db.write() as conn:
        query = (
            sa.select(automation_runs)
            .where(automation_runs.c.state == "waiting", automation_runs.c.due_at <= now)
            .order_by(automation_runs.c.due_at, automation_runs.c.id)
            .limit(limit)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        claimed = conn.execute(query).all()
        tick.claimed = len(claimed)
        for run in claimed:
            savepoint = conn.begin_nested()
            done = Tick()
            try:
                _advance(conn, settings, run, now, done)
            except Exception as exc:
                savepoint.rollback()
                log.exception("automation run %s failed at step %s", run.id, run.cursor)
                _attempt_failed(conn, run, exc, now)
            else:
                savepoint.commit()
                tick.steps += done.steps
                tick.queued += done.queued
    if tick.queued:
        wakeup.notify()
    return tick


async def run_forever(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    """The worker's timer loop: every ``POLL_SECONDS``, or at once while runs keep coming due."""
    limit = BATCH.get(db.dialect, 50)
    while not stop.is_set():
        busy = False
        try:
            if await asyncio.to_thread(due_now, db, utcnow()):
                tick = await asyncio.to_thread(run_due, db, settings, limit=limit)
                busy = tick.claimed >= limit
        except Exception:
            log.exception("running due automation steps failed")
        if busy:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=POLL_SECONDS)


# --- one run -------------------------------------------------------------------------------------


@dataclass
class _Context:
    run: Any
    contact: contacts.Contact
    org_name: str
    tz: ZoneInfo
    occurs_at: datetime
    event: dict[str, Any]
    #: A keyword's answer, before any wait, is a reply to what the contact just wrote: gated
    #: as conversational (opt-out still blocks it; quiet hours do not hold it).
    answering: bool = False


def _context(conn: Connection, run: Any) -> _Context:
    contact = contacts.get_contact(conn, run.org_id, run.contact_id)
    org = conn.execute(
        sa.select(organizations.c.name, organizations.c.time_zone).where(
            organizations.c.id == run.org_id
        )
    ).one()
    tz = schedule.zone(contact.time_zone, org.time_zone)
    event = None
    if run.event_id is not None:
        event = conn.execute(
            sa.select(customer_events).where(customer_events.c.id == run.event_id)
        ).first()
    occurs_at = event.occurs_at if event is not None else run.created_at
    local = occurs_at.astimezone(tz)
    values: dict[str, Any] = {
        "type": event.type if event is not None else None,
        "key": event.key if event is not None else None,
        "occurs_at": local.strftime("%Y-%m-%d %H:%M"),
        "date": f"{local:%A}, {local:%B} {local.day}",
        "time": f"{local.hour % 12 or 12}:{local:%M} {'AM' if local.hour < 12 else 'PM'}",
        "data": event.data if event is not None else {},
    }
    return _Context(run, contact, org.name, tz, occurs_at, values)


def _advance(conn: Connection, settings: Settings, run: Any, now: datetime, tick: Tick) -> None:
    definition = definitions.version_of(conn, run.automation_id, run.version).definition
    steps = definition.steps
    ctx = _context(conn, run)
    cursor = run.cursor
    history: list[dict[str, Any]] = []
    state, due_at, reason = "waiting", None, None
    ctx.answering = isinstance(definition.trigger, KeywordTrigger) and run.cursor == 0

    def note(kind: str, outcome: str, detail: str, **extra: Any) -> None:
        history.append(
            runs.history_row(run.id, run.org_id, kind, outcome, detail, now, step=cursor, **extra)
        )

    halted = False
    waited_for = triggers.reply_message_id(run.subject)
    if (
        run.cursor == 0
        and waited_for is not None
        and isinstance(definition.trigger, NoReplyTrigger)
    ):
        verdict = _no_reply(conn, run, waited_for, definition.trigger, now)
        if isinstance(verdict, str):
            note("no_reply", "ok", verdict)
        else:
            state, due_at, reason, kind, outcome, detail = verdict
            note(kind, outcome, detail)
            halted = True  # no step runs now
    while not halted:
        if cursor >= len(steps):
            state, reason = "done", "done"
            note("done", "ok", "all steps done")
            break
        step = steps[cursor]
        tick.steps += 1
        if isinstance(step, WaitStep):
            ctx.answering = False
            until = schedule.wait_until(step, now=now, occurs_at=ctx.occurs_at, tz=ctx.tz)
            words = schedule.describe(step)
            if until > now:
                local = until.astimezone(ctx.tz)
                note(
                    "wait",
                    "waiting",
                    f"until {until:%Y-%m-%d %H:%M} UTC ({local:%Y-%m-%d %H:%M} {ctx.tz.key}): "
                    f"{words}",
                )
                cursor += 1
                due_at = until
                break
            if step.if_past == "stop":
                note("wait", "passed", f"{words} had passed ({until:%Y-%m-%d %H:%M} UTC); stopped")
                state, reason = "done", "wait_passed"
                break
            note("wait", "passed", f"{words} had passed ({until:%Y-%m-%d %H:%M} UTC); going on")
        elif isinstance(step, SendStep):
            try:
                message = _send(conn, settings, ctx, step, cursor, now)
            except StepFailed as exc:
                note("send", "error", str(exc))
                state, reason = "failed", "step_failed"
                break
            note("send", *_outcome(message), message_id=message.id)
            if message.status == S.QUEUED:
                tick.queued += 1
        elif isinstance(step, QueueForPersonStep):
            try:
                body = _render(step.template, ctx)
            except StepFailed as exc:
                note("queue_for_person", "error", str(exc))
                state, reason = "failed", "step_failed"
                break
            draft = drafts.create_draft(
                conn,
                org_id=run.org_id,
                contact_id=run.contact_id,
                body=body,
                purpose=GATE_PURPOSE[step.purpose],
                run_id=run.id,
                step=cursor,
                now=now,
            )
            note(
                "queue_for_person",
                "drafted",
                f"draft {draft.id} waits in the conversation for a person to send it",
                draft_id=draft.id,
            )
        elif isinstance(step, TagStep | UntagStep):
            changed = _retag(conn, run, step, now)
            verb = "tagged" if isinstance(step, TagStep) else "untagged"
            note(
                step.type,
                "ok",
                f"{verb} {', '.join(step.tags)}" + ("" if changed else " (no change)"),
            )
        elif isinstance(step, StopStep):
            note("stop", "ok", "stopped by a stop step")
            state, reason = "done", "stopped"
            break
        _after_step(run.id, cursor)
        cursor += 1
    runs.add_history(conn, history)
    updated = conn.execute(
        sa.update(automation_runs)
        .where(
            automation_runs.c.id == run.id,
            automation_runs.c.state == "waiting",
            automation_runs.c.cursor == run.cursor,
        )
        .values(
            state=state,
            cursor=cursor,
            due_at=due_at if state == "waiting" else None,
            attempts=0,
            reason=reason,
            updated_at=now,
            finished_at=None if state == "waiting" else now,
        )
    )
    if updated.rowcount != 1:  # the claim holds the row: anything else is a bug
        raise RuntimeError(f"run {run.id} changed under its claim")


_NOT_SENT = frozenset({S.BLOCKED, S.FAILED, S.EXPIRED, S.UNDELIVERED})
#: How soon a no-reply run looks again when its message is still in the outbox (held).
_RECHECK = timedelta(hours=1)


def _no_reply(
    conn: Connection, run: Any, message_id: int, trigger: NoReplyTrigger, now: datetime
) -> str | tuple[str, datetime | None, str | None, str, str, str]:
    """At the end of a no-reply wait: a note to go on with, or (state, due_at, reason, and the
    history row's kind, outcome, detail) when the run does not go on now."""
    within = parse_duration(trigger.within)
    reply = conn.execute(
        sa.select(messages.c.id)
        .where(
            messages.c.contact_id == run.contact_id,
            messages.c.direction == "in",
            messages.c.created_at > run.created_at,
        )
        .order_by(messages.c.id)
        .limit(1)
    ).scalar()
    if reply is not None:
        detail = f"the contact replied (message {reply})"
        return "cancelled", None, "replied", "cancelled", "replied", detail
    waited = conn.execute(
        sa.select(messages.c.status, messages.c.sent_at, messages.c.gate_code).where(
            messages.c.id == message_id
        )
    ).first()
    if waited is None or waited.status in _NOT_SENT:
        what = "is gone" if waited is None else f"was not sent ({waited.status}"
        what += "" if waited is None else f": {waited.gate_code or 'no code'})"
        detail = f"message {message_id} {what}: no reply to wait for"
        return "cancelled", None, "message_not_sent", "cancelled", "message_not_sent", detail
    if waited.sent_at is None:
        until = now + min(within, _RECHECK)
        detail = (
            f"message {message_id} is still {waited.status}; looking again at {until:%H:%M} UTC"
        )
        return "waiting", until, None, "wait", "waiting", detail
    if waited.sent_at + within > now:
        until = waited.sent_at + within
        detail = (
            f"message {message_id} was sent at {waited.sent_at:%Y-%m-%d %H:%M} UTC; "
            f"waiting until {until:%Y-%m-%d %H:%M} UTC"
        )
        return "waiting", until, None, "wait", "waiting", detail
    return f"no reply within {trigger.within} of message {message_id}"


def _render(template: str, ctx: _Context) -> str:
    values = {**ctx.contact.merge_values(), "org_name": ctx.org_name, "event": ctx.event}
    try:
        return templates.render(template, values, strict=True)
    except templates.TemplateError as exc:
        raise StepFailed(f"not sent: {exc.message}") from None


def _send(
    conn: Connection,
    settings: Settings,
    ctx: _Context,
    step: SendStep,
    cursor: int,
    now: datetime,
) -> messaging.Message:
    body = _render(step.template, ctx)
    purpose = compliance.Purpose.CONVERSATIONAL if ctx.answering else GATE_PURPOSE[step.purpose]
    try:
        queued = messaging.queue_outbound(
            conn,
            settings,
            org_id=ctx.run.org_id,
            contact_id=ctx.run.contact_id,
            body=body,
            actor=f"automation:{ctx.run.automation_id}",
            purpose=purpose,
            # The run and step: were a step's transaction ever to commit twice, the outbox
            # would still hold one message for it.
            idempotency_key=f"run:{ctx.run.id}:step:{cursor}",
            priority=PRIORITY_AUTOMATED,
            now=now,
        )
    except ServiceError as exc:
        raise StepFailed(f"not sent: {exc.message}") from None
    return queued.message


def _outcome(message: messaging.Message) -> tuple[str, str]:
    """The gate's word on the step's message, as the history says it."""
    if message.status == S.QUEUED:
        return "queued", f"message {message.id} queued ({message.purpose})"
    if message.status == S.PENDING:
        until = f" until {message.send_after:%Y-%m-%d %H:%M} UTC" if message.send_after else ""
        return (
            "held",
            f"message {message.id} held{until}: {message.gate_code}: {message.gate_detail}",
        )
    return (
        "refused",
        f"message {message.id} {message.status}: {message.gate_code}: {message.gate_detail}",
    )


def _retag(conn: Connection, run: Any, step: TagStep | UntagStep, now: datetime) -> bool:
    query = sa.select(contacts_table.c.tags).where(contacts_table.c.id == run.contact_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    current = list(conn.execute(query).scalar_one() or [])
    wanted = contacts.clean_tags(list(step.tags))
    if isinstance(step, TagStep):
        new = contacts.clean_tags([*current, *wanted])
    else:
        new = [t for t in current if t not in set(wanted)]
    if new == current:
        return False
    conn.execute(
        sa.update(contacts_table)
        .where(contacts_table.c.id == run.contact_id)
        .values(tags=new, updated_at=now)
    )
    return True


def _attempt_failed(conn: Connection, run: Any, exc: Exception, now: datetime) -> None:
    attempts = run.attempts + 1
    what = f"{type(exc).__name__}: {exc}"[:500]
    if attempts >= MAX_ATTEMPTS:
        values: dict[str, Any] = {
            "state": "failed",
            "reason": "error",
            "due_at": None,
            "finished_at": now,
        }
        detail = f"gave up after {attempts} attempts: {what}"
    else:
        retry_at = now + timedelta(seconds=min(3600, 30 * 2 ** (attempts - 1)))
        values = {"due_at": retry_at}
        detail = f"attempt {attempts} failed ({what}); trying again at {retry_at:%H:%M:%S} UTC"
    conn.execute(
        sa.update(automation_runs)
        .where(automation_runs.c.id == run.id)
        .values(attempts=attempts, updated_at=now, **values)
    )
    runs.add_history(
        conn, [runs.history_row(run.id, run.org_id, "error", "error", detail, now, step=run.cursor)]
    )
