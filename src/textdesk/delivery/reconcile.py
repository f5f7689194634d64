"""Reconciliation: ask the provider what became of messages left ``unknown``.

A message is ``unknown`` when the provider may or may not have accepted it (a crash or a
timeout after the request went out). It is never re-sent blindly. What resolves it, in order:

1. a provider lookup, here, for a message that has a provider id on a channel whose adapter
   offers ``lookup`` (``providers.base.SupportsLookup``: the simulator, Twilio, Telnyx);
2. the delivery report, whenever it arrives (``messaging.apply_statuses``, ranks only go up);
3. a person, who sees the message as ``unknown`` with its events.

A ``sent`` message whose delivery report does not come (``reconcile_stuck_sent``, after
``TEXTDESK_SENT_RECONCILE_AFTER_SECONDS``) is looked up the same way where the provider allows,
and otherwise marked ``unknown`` (``no_receipt``): "sent" would claim more than anyone knows.

Each pass takes the oldest candidates, at most ``limit``, and first writes a
``reconcile.lookup`` event for each in one transaction: it shows in the message's history, and
it is how the next pass (of this worker or another) knows not to ask again within ``interval``
and to stop after ``max_lookups``. So lookups per message are bounded, whatever the number of
workers; on PostgreSQL the candidates are also locked (``SKIP LOCKED``) while they are picked.
(Two workers may rarely both ask about one message; that costs a read and changes nothing,
because applying a status is idempotent.)

The answers go through ``messaging.apply_statuses`` with actor ``provider:<name>:lookup``, the
same path as a delivery report, so the history says where the status came from. "Not found"
and failed lookups leave the message ``unknown`` with an event that says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.states import MessageStatus
from textdesk.providers import registry
from textdesk.providers.base import ProviderError, StatusReport, offers_lookup
from textdesk.services import messaging
from textdesk.services.messaging import add_events, event_row
from textdesk.store.db import Database
from textdesk.store.tables import channels, message_events, messages, utcnow

log = logging.getLogger(__name__)

S = MessageStatus

LOOKUP = "reconcile.lookup"
NOT_FOUND = "reconcile.not_found"
FAILED = "reconcile.error"
NO_RECEIPT = "reconcile.no_receipt"
#: ``error_code`` of a ``sent`` message marked ``unknown`` for want of a report and a lookup.
NO_RECEIPT_CODE = "no_receipt"

#: Channel id -> its adapter (the dispatcher's cached one). Anything with ``lookup`` will do.
AdapterFor = Callable[[int], Awaitable[object]]


@dataclass(frozen=True)
class Candidate:
    message_id: int
    org_id: int
    channel_id: int
    provider: str
    provider_message_id: str
    attempt: int  # 1 for the first lookup of this message
    status: MessageStatus = S.UNKNOWN  # when picked: unknown, or sent with no report in time


@dataclass(frozen=True)
class _Note:
    """An event for a lookup that settled nothing."""

    candidate: Candidate
    reason: str
    code: str | None
    detail: str
    actor: str


@dataclass
class ReconcileResult:
    asked: int = 0  # lookups made
    resolved: int = 0  # messages that left ``unknown``
    not_found: int = 0  # the provider does not know the id
    failed: int = 0  # the lookup itself failed (timeout, 5xx, credentials, adapter bug)
    unchanged: int = 0  # answered, but nothing changed (still sent, or moved on meanwhile)
    resolved_ids: list[int] = field(default_factory=list)
    marked_unknown: int = 0  # sent, no report in time, no lookup to ask: now ``unknown``


async def reconcile_unknown(
    db: Database,
    adapters_for_channel: AdapterFor,
    *,
    limit: int = 200,
    min_age: timedelta = timedelta(seconds=60),
    interval: timedelta = timedelta(minutes=10),
    max_lookups: int = 6,
    concurrency: int = 8,
    timeout: float = 20.0,
    actor: str = "system:reconcile",
    now: datetime | None = None,
) -> ReconcileResult:
    """One pass: ask providers about up to ``limit`` ``unknown`` messages and apply what they
    say. ``min_age``: how long a message stays ``unknown`` before the first lookup (a delivery
    report often settles it first); ``interval``: the least time between two lookups of one
    message; ``max_lookups``: after that many, it is left to the delivery report or a person.
    At most ``concurrency`` lookups are in flight, each bounded by ``timeout`` seconds."""
    providers = sorted(name for name in registry.PROVIDERS if registry.offers_lookup(name))
    picked = await asyncio.to_thread(
        pick,
        db,
        providers,
        limit=limit,
        min_age=min_age,
        interval=interval,
        max_lookups=max_lookups,
        actor=actor,
        now=now,
    )
    return await _settle(db, picked, adapters_for_channel, max_lookups, concurrency, timeout, actor)


async def reconcile_stuck_sent(
    db: Database,
    adapters_for_channel: AdapterFor,
    *,
    after: timedelta,
    limit: int = 200,
    interval: timedelta = timedelta(minutes=10),
    max_lookups: int = 6,
    concurrency: int = 8,
    timeout: float = 20.0,
    actor: str = "system:reconcile",
    now: datetime | None = None,
) -> ReconcileResult:
    """One pass over ``sent`` messages whose delivery report has not come within ``after``
    (``TEXTDESK_SENT_RECONCILE_AFTER_SECONDS``): ask the provider where it has a lookup (again
    every ``interval``, at most ``max_lookups`` times; its answer is applied like a report),
    else mark them ``unknown`` with the reason, for the report (which still settles them) or
    a person."""
    providers = sorted(name for name in registry.PROVIDERS if registry.offers_lookup(name))
    picked, marked = await asyncio.to_thread(
        pick_stuck_sent,
        db,
        providers,
        after=after,
        limit=limit,
        interval=interval,
        max_lookups=max_lookups,
        actor=actor,
        now=now,
    )
    result = await _settle(
        db, picked, adapters_for_channel, max_lookups, concurrency, timeout, actor
    )
    result.marked_unknown = marked
    return result


async def _settle(
    db: Database,
    picked: Sequence[Candidate],
    adapters_for_channel: AdapterFor,
    max_lookups: int,
    concurrency: int,
    timeout: float,
    actor: str,
) -> ReconcileResult:
    """Ask about the picked messages and apply the answers."""
    result = ReconcileResult(asked=len(picked))
    if not picked:
        return result
    slots = asyncio.Semaphore(max(1, concurrency))

    async def ask(candidate: Candidate) -> StatusReport | ProviderError | None:
        async with slots:
            return await _lookup(candidate, adapters_for_channel, timeout)

    answers = await asyncio.gather(*(ask(c) for c in picked))
    reports: list[tuple[int, StatusReport, str]] = []
    asked_for: list[Candidate] = []
    notes: list[_Note] = []
    for candidate, answer in zip(picked, answers, strict=True):
        last = candidate.attempt >= max_lookups
        if isinstance(answer, StatusReport):
            # Keyed by the id we asked about, whatever the provider echoed back.
            report = dataclasses.replace(answer, provider_message_id=candidate.provider_message_id)
            reports.append((candidate.channel_id, report, f"provider:{candidate.provider}:lookup"))
            asked_for.append(candidate)
        elif answer is None:
            result.not_found += 1
            detail = (
                f"{candidate.provider} does not know {candidate.provider_message_id}; "
                "left unknown for the delivery report or a person"
            )
            if last:
                detail += f" (no further lookups after {max_lookups})"
            # The provider said so: its answer, like a report, is attributed to it.
            notes.append(
                _Note(candidate, NOT_FOUND, None, detail, f"provider:{candidate.provider}:lookup")
            )
        else:
            result.failed += 1
            detail = f"lookup failed: {answer.message}"
            if last:
                detail += f" (no further lookups after {max_lookups})"
            notes.append(_Note(candidate, FAILED, answer.code, detail, actor))
    if reports:
        before = {c.message_id for c in asked_for}
        await asyncio.to_thread(messaging.apply_statuses, db, reports)
        after = await asyncio.to_thread(_statuses, db, sorted(before))
        for candidate in asked_for:
            if after.get(candidate.message_id) == candidate.status:
                result.unchanged += 1
            else:
                result.resolved += 1
                result.resolved_ids.append(candidate.message_id)
    if notes:
        await asyncio.to_thread(_note, db, notes)
    return result


async def _lookup(
    candidate: Candidate, adapters_for_channel: AdapterFor, timeout: float
) -> StatusReport | ProviderError | None:
    """The provider's answer, or the error that kept it from answering (never raised: one bad
    channel must not stop the others)."""
    try:
        adapter = await adapters_for_channel(candidate.channel_id)
        if not offers_lookup(adapter):
            return ProviderError(f"{candidate.provider}:no_lookup", "the adapter has no lookup")
        return await asyncio.wait_for(adapter.lookup(candidate.provider_message_id), timeout)
    except ProviderError as exc:
        return exc
    except TimeoutError:
        return ProviderError(f"{candidate.provider}:timeout", f"no answer within {timeout:g} s")
    except Exception as exc:  # an adapter bug: note it on the message, keep going
        log.exception("lookup of message %s failed", candidate.message_id)
        return ProviderError(f"{candidate.provider}:adapter_error", f"{type(exc).__name__}: {exc}")


def pick(
    db: Database,
    providers: Sequence[str],
    *,
    limit: int,
    min_age: timedelta,
    interval: timedelta,
    max_lookups: int,
    actor: str,
    now: datetime | None = None,
) -> list[Candidate]:
    """Choose this pass's messages and record a ``reconcile.lookup`` event for each, in one
    transaction, so no other pass picks them again within ``interval``."""
    if not providers or limit <= 0:
        return []
    now = now or utcnow()
    lookups = _lookups_so_far()
    recent = sa.exists().where(
        message_events.c.message_id == messages.c.id,
        message_events.c.reason == LOOKUP,
        message_events.c.created_at > now - interval,
    )
    query = (
        sa.select(
            messages.c.id,
            messages.c.org_id,
            messages.c.channel_id,
            messages.c.provider_message_id,
            channels.c.provider,
            lookups.label("lookups"),
        )
        .join(channels, channels.c.id == messages.c.channel_id)
        .where(
            messages.c.status == S.UNKNOWN,
            messages.c.provider_message_id.is_not(None),
            channels.c.provider.in_(list(providers)),
            messages.c.updated_at <= now - min_age,
            ~recent,
            lookups < max_lookups,
        )
        .order_by(messages.c.id)  # oldest first
        .limit(limit)
    )
    with db.write() as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=messages, skip_locked=True)
        picked = [
            Candidate(
                message_id=row.id,
                org_id=row.org_id,
                channel_id=row.channel_id,
                provider=row.provider,
                provider_message_id=row.provider_message_id,
                attempt=int(row.lookups) + 1,
            )
            for row in conn.execute(query)
        ]
        add_events(
            conn,
            [
                event_row(
                    org_id=c.org_id,
                    message_id=c.message_id,
                    from_status=S.UNKNOWN,
                    to_status=S.UNKNOWN,
                    actor=actor,
                    now=now,
                    reason=LOOKUP,
                    detail=f"asking {c.provider} about {c.provider_message_id} "
                    f"(lookup {c.attempt} of {max_lookups})",
                )
                for c in picked
            ],
        )
    return picked


def _statuses(db: Database, ids: Sequence[int]) -> dict[int, str]:
    with db.read() as conn:
        return _current(conn, ids)


def _current(conn: Connection, ids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            sa.select(messages.c.id, messages.c.status).where(
                messages.c.id.in_(ids[start : start + 500])
            )
        )
        out.update({r.id: r.status for r in rows})
    return out


def _note(db: Database, notes: Sequence[_Note]) -> None:
    """Events for lookups that settled nothing, on messages still where they were picked."""
    now = utcnow()
    with db.write() as conn:
        current = _current(conn, sorted({n.candidate.message_id for n in notes}))
        rows: list[dict[str, Any]] = [
            event_row(
                org_id=n.candidate.org_id,
                message_id=n.candidate.message_id,
                from_status=n.candidate.status,
                to_status=n.candidate.status,
                actor=n.actor,
                now=now,
                reason=n.reason,
                provider_code=n.code,
                detail=n.detail,
            )
            for n in notes
            if current.get(n.candidate.message_id) == n.candidate.status
        ]
        add_events(conn, rows)


def _lookups_so_far() -> Any:
    # Correlated per candidate (few: those picked), so it uses the index on
    # message_events.message_id instead of scanning every event ever written.
    return (
        sa.select(sa.func.count())
        .where(message_events.c.message_id == messages.c.id, message_events.c.reason == LOOKUP)
        .scalar_subquery()
    )


def pick_stuck_sent(
    db: Database,
    providers: Sequence[str],
    *,
    after: timedelta,
    limit: int,
    interval: timedelta,
    max_lookups: int,
    actor: str,
    now: datetime | None = None,
) -> tuple[list[Candidate], int]:
    """``sent`` messages whose receipt is overdue (``lease_until``, set when they were sent, has
    passed; the outbox's ``(status, lease_until)`` index finds them, however many are ``sent``).
    Those a provider can be asked about get a ``reconcile.lookup`` event and their next due time
    (none after the last lookup: then they stay ``sent``, which is what the provider says); the
    rest become ``unknown`` (``no_receipt``), in the same transaction. Returns the candidates
    to ask and how many were marked ``unknown``."""
    if limit <= 0:
        return [], 0
    now = now or utcnow()
    query = (
        sa.select(
            messages.c.id,
            messages.c.org_id,
            messages.c.channel_id,
            messages.c.provider_message_id,
            channels.c.provider,
            _lookups_so_far().label("lookups"),
        )
        .select_from(messages.outerjoin(channels, channels.c.id == messages.c.channel_id))
        .where(messages.c.status == S.SENT, messages.c.lease_until <= now)
        .order_by(messages.c.lease_until)
        .limit(limit)
    )
    waited = f"{after.total_seconds():g} s"
    with db.write() as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=messages, skip_locked=True)
        rows = conn.execute(query).all()
        asked = [r for r in rows if r.provider in providers and r.provider_message_id]
        marked = [r for r in rows if not (r.provider in providers and r.provider_message_id)]
        picked = [
            Candidate(
                message_id=r.id,
                org_id=r.org_id,
                channel_id=r.channel_id,
                provider=r.provider,
                provider_message_id=r.provider_message_id,
                attempt=int(r.lookups) + 1,
                status=S.SENT,
            )
            for r in asked
        ]
        again = [c.message_id for c in picked if c.attempt < max_lookups]
        last = [c.message_id for c in picked if c.attempt >= max_lookups]
        for ids, due in ((again, now + interval), (last, None)):
            if ids:
                conn.execute(
                    sa.update(messages).where(messages.c.id.in_(ids)).values(lease_until=due)
                )
        events = [
            event_row(
                org_id=c.org_id,
                message_id=c.message_id,
                from_status=S.SENT,
                to_status=S.SENT,
                actor=actor,
                now=now,
                reason=LOOKUP,
                detail=f"no delivery report within {waited}: asking {c.provider} about "
                f"{c.provider_message_id} (lookup {c.attempt} of {max_lookups})",
            )
            for c in picked
        ]
        if marked:
            conn.execute(
                sa.update(messages)
                .where(messages.c.id.in_([r.id for r in marked]), messages.c.status == S.SENT)
                .values(
                    status=S.UNKNOWN,
                    lease_until=None,
                    error_code=NO_RECEIPT_CODE,
                    error_detail=f"no delivery report within {waited} of sending, and the "
                    "provider has no status lookup: it may or may not have arrived",
                    updated_at=now,
                )
            )
            events += [
                event_row(
                    org_id=r.org_id,
                    message_id=r.id,
                    from_status=S.SENT,
                    to_status=S.UNKNOWN,
                    actor=actor,
                    now=now,
                    reason=NO_RECEIPT,
                    detail=f"no delivery report within {waited}; "
                    f"{r.provider or 'its channel'} cannot be asked",
                )
                for r in marked
            ]
        add_events(conn, events)
    return picked, len(marked)
