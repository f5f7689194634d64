"""The outbox: claim due messages under a lease, record what providers answered, and take
care of messages whose worker died.

A claim is one write transaction per channel. PostgreSQL: ``FOR UPDATE SKIP LOCKED`` on the
candidate rows, so workers never block on (or double-claim) each other's messages, and a row
lock on the channel's throttle row, so the send rate holds across processes. SQLite: the same
statements under ``BEGIN IMMEDIATE``, which makes the whole claim exclusive.

Claimed messages are committed as ``sending`` before any provider is called. If the worker
dies, the lease runs out (``reap``): the message becomes ``unknown`` and is never re-sent
blindly, unless its provider de-duplicates by our idempotency key, in which case re-sending
is safe and it goes back to ``queued``.

Such a message (back in the queue after an attempt that may have reached the provider: a lease
that ran out, or a timeout after the request went out) meets the gate again before its
re-send. If the gate now blocks it (the contact opted out meanwhile, often by answering the
very message) or its validity passed, it is not re-sent, and not called ``blocked`` or
``expired`` either, which would say it never went out: it becomes ``unknown``
(``maybe_sent``), with the gate's code, for a delivery report or a person to settle.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from textdesk.domain.states import MessageStatus
from textdesk.services import compliance, consent, messaging, org_settings
from textdesk.services.compliance import Recipient, Verdict
from textdesk.services.messaging import (
    add_events,
    apply_orphans,
    event_row,
    lock_provider_ids,
    orphaned_ids,
)
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import (
    UTCDateTime,
    channel_throttle,
    channels,
    contacts,
    message_events,
    messages,
    org_daily_usage,
    organizations,
    utcnow,
)

S = MessageStatus
#: Seconds before trying again a channel whose throttle row another worker holds (it is held
#: only while that worker's claim transaction runs, a few milliseconds).
BUSY_RETRY_SECONDS = 0.01
#: Event reasons of a return to the queue after an attempt that may have reached the provider.
LEASE_EXPIRED_RESEND = "lease_expired_resend"
RETRY_AMBIGUOUS = "retry_ambiguous"
MAYBE_SENT_REASONS = (LEASE_EXPIRED_RESEND, RETRY_AMBIGUOUS)
DEFAULT_RATE = {"10dlc": 1.0, "toll_free": 3.0, "short_code": 100.0, "smpp": 10.0, "other": 1.0}


@dataclass(frozen=True)
class Claimed:
    id: int
    org_id: int
    channel_id: int
    to: str
    body: str
    attempts: int
    idempotency_key: str
    valid_until: datetime | None
    segments: int
    #: An earlier attempt may have reached the provider (``maybe_sent``): if this one's
    #: retries run out, the message is ``unknown``, not ``failed``.
    maybe_sent: bool = False
    #: Claimed from a channel whose pause just ran out (its circuit half-open): the one
    #: message that tries whether the provider works again (see ``claim``).
    probe: bool = False


@dataclass
class ClaimResult:
    claimed: list[Claimed] = field(default_factory=list)
    #: Seconds until some throttled channel may send again (None: nothing waits on a rate).
    next_in: float | None = None
    #: Channels paused now (circuit open) or half-open (the pause ran out, no probe has answered
    #: yet): id -> (until, reason). A worker holding messages of theirs that it has not sent yet
    #: puts them back instead of calling the provider; only the probe may go.
    paused: dict[int, tuple[datetime, str | None]] = field(default_factory=dict)


def gcra_budget(tat: datetime, now: datetime, rate: float, burst: float) -> int:
    """Segments a channel may send now under a GCRA with ``burst`` segments of tolerance."""
    interval = 1.0 / rate
    ahead = max(0.0, (tat - now).total_seconds())  # how far the schedule runs ahead of now
    return max(0, math.floor(burst - ahead / interval + 1e-9))


def _burst(rate: float) -> float:
    # One second's worth of segments may go at once (at least one), which keeps the long-run
    # rate exact while letting a batch fill the provider's own window.
    return max(1.0, rate)


def _lock_throttle(conn: Connection, channel_id: int, now: datetime) -> datetime | None:
    """The channel's throttle state, locked for this transaction (None: another worker has it)."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
        channel_throttle
    )
    conn.execute(insert.values(channel_id=channel_id, tat=now).on_conflict_do_nothing())
    query = sa.select(channel_throttle.c.tat).where(channel_throttle.c.channel_id == channel_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = conn.execute(query).first()
    return None if row is None else row.tat


def _daily_remaining(conn: Connection, org_id: int, day: date) -> int | None:
    org_settings = conn.execute(
        sa.select(organizations.c.settings).where(organizations.c.id == org_id)
    ).scalar_one()
    cap = (org_settings or {}).get("daily_cap")
    if not cap:
        return None
    used = conn.execute(
        sa.select(org_daily_usage.c.segments).where(
            org_daily_usage.c.org_id == org_id, org_daily_usage.c.day == day
        )
    ).scalar()
    return max(0, int(cap) - int(used or 0))


def _add_usage(conn: Connection, org_id: int, day: date, segments: int) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(org_daily_usage).values(org_id=org_id, day=day, segments=segments)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["org_id", "day"],
            set_={"segments": org_daily_usage.c.segments + segments},
        )
    )


def maybe_sent(conn: Connection, ids: Sequence[int]) -> set[int]:
    """Of these messages, those an earlier attempt of which may have reached the provider."""
    if not ids:
        return set()
    return set(
        conn.execute(
            sa.select(message_events.c.message_id)
            .where(
                message_events.c.message_id.in_(ids),
                message_events.c.reason.in_(MAYBE_SENT_REASONS),
            )
            .distinct()
        ).scalars()
    )


def _not_sent_or_unsure(
    status: MessageStatus, decision: compliance.Decision, unsure: bool
) -> tuple[MessageStatus, dict[str, Any]]:
    """The status (and extra columns) for a message the gate stops: ``status`` (blocked,
    expired), or ``unknown`` when an earlier attempt may have reached the provider."""
    if not unsure:
        return status, {}
    return S.UNKNOWN, {
        "error_code": "gate_after_ambiguous_attempt",
        "error_detail": f"not re-sent ({decision.code}: {decision.detail}); an earlier "
        "attempt may have reached the provider",
    }


def claim(
    db: Database,
    settings: Settings,
    *,
    worker_id: str,
    limit: int,
    now: datetime | None = None,
) -> ClaimResult:
    """Claim up to ``limit`` due messages across all sendable channels.

    A paused channel (circuit open: ``paused_until`` ahead) is skipped: its messages wait,
    their attempts untouched. Once its pause has run out, while ``pause_reason`` is still set
    (half-open), one claim takes ONE message from it, the probe, and extends the pause by
    ``TEXTDESK_CIRCUIT_BREAKER_PAUSE_SECONDS`` in the same transaction, so no other claim of any
    worker sends there meanwhile. The probe's outcome closes the circuit (the provider
    answered) or opens it again (``delivery/dispatcher.py``)."""
    result = ClaimResult()
    now = now or utcnow()
    with db.read() as conn:
        rows = conn.execute(
            sa.select(
                channels.c.id,
                channels.c.number_type,
                channels.c.rate_per_second,
                channels.c.paused_until,
                channels.c.pause_reason,
            ).where(channels.c.is_active)
        ).all()
    sendable = []
    for row in rows:
        if row.paused_until is not None and row.paused_until > now:
            result.paused[row.id] = (row.paused_until, row.pause_reason)
            continue
        if row.paused_until is not None and row.pause_reason is not None:
            # Half-open: its probe may be claimed below, but nothing claimed before the pause
            # may go until the probe has answered (it would spend an attempt on a channel that
            # is still down; seen on a loaded machine, where claimed messages wait longest).
            result.paused[row.id] = (row.paused_until, row.pause_reason)
        sendable.append(row)
    random.shuffle(sendable)  # no channel starves another when the limit is tight
    for channel in sendable:
        room = limit - len(result.claimed)
        if room <= 0:
            break
        rate = channel.rate_per_second or DEFAULT_RATE.get(channel.number_type, 1.0)
        with db.write() as conn:
            got, wait = _claim_channel(conn, settings, channel.id, rate, room, worker_id, now)
        result.claimed.extend(got)
        if wait is not None:
            result.next_in = wait if result.next_in is None else min(result.next_in, wait)
    return result


def _claim_channel(
    conn: Connection,
    settings: Settings,
    channel_id: int,
    rate: float,
    room: int,
    worker_id: str,
    now: datetime,
) -> tuple[list[Claimed], float | None]:
    tat = _lock_throttle(conn, channel_id, now)
    if tat is None:
        # Another worker is claiming this channel right now: look again as soon as its claim
        # is done, not after the idle poll (a whole second by default, which two workers
        # sending on one channel kept paying).
        return [], BUSY_RETRY_SECONDS
    # Read again under the throttle row's lock: a claim that probed this channel a moment ago
    # (and extended its pause) has committed by now, and this one must not probe it again.
    pause = conn.execute(
        sa.select(channels.c.paused_until, channels.c.pause_reason).where(
            channels.c.id == channel_id
        )
    ).one()
    if pause.paused_until is not None and pause.paused_until > now:
        return [], None
    probe = pause.pause_reason is not None
    budget = min(room, gcra_budget(tat, now, rate, _burst(rate)))
    if probe:
        budget = min(budget, 1)
    if budget <= 0:
        return [], max(0.0, (tat - now).total_seconds() - (_burst(rate) - 1) / rate)
    query = (
        sa.select(
            messages.c.id,
            messages.c.org_id,
            messages.c.body,
            messages.c.attempts,
            messages.c.segments,
            messages.c.valid_until,
            messages.c.purpose,
            messages.c.idempotency_key,
            messages.c.contact_id,
            contacts.c.phone_e164,
            contacts.c.opted_out,
            contacts.c.time_zone,
            contacts.c.zip,
            contacts.c.state,
        )
        .join(contacts, contacts.c.id == messages.c.contact_id)
        .where(
            messages.c.status == S.QUEUED,
            messages.c.channel_id == channel_id,
            sa.or_(messages.c.send_after.is_(None), messages.c.send_after <= now),
        )
        .order_by(messages.c.priority.desc(), messages.c.id)
        .limit(budget)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=messages, skip_locked=True)
    rows = conn.execute(query).all()
    if not rows:
        return [], None
    # Messages an earlier attempt of which may have reached the provider (usually none).
    unsure = maybe_sent(conn, [row.id for row in rows if row.attempts > 0])

    lease_until = now + timedelta(seconds=settings.delivery_lease_seconds)
    day = now.date()
    remaining: dict[int, int | None] = {}
    claimed: list[Claimed] = []
    blocked: list[tuple[Any, compliance.Decision, MessageStatus]] = []
    deferred: list[tuple[Any, compliance.Decision]] = []
    capped: list[int] = []
    capped_rows = [r.contact_id for r in rows if r.purpose in compliance.CAPPED]
    recent = messaging.recent_sends(conn, capped_rows, now, include_queued=False)
    rules: dict[int, org_settings.OrgSettings] = {}
    for row in rows:
        # The gate again, at dispatch: the contact may have opted out since it was queued.
        if row.org_id not in rules:
            rules[row.org_id] = org_settings.load(conn, row.org_id)
        org_rules = rules[row.org_id]
        history = None
        if row.purpose in compliance.CAPPED:
            history = recent.get(row.contact_id, compliance.RecentSends())
        decision = compliance.evaluate(
            Recipient.from_mapping(row._mapping),
            purpose=row.purpose,
            now=now,
            valid_until=row.valid_until,
            recent=history,
            daily_cap=org_rules.contact_daily_cap,
            org_window=org_rules.window(),
            org_days=org_rules.days(),
        )
        if row.valid_until is not None and row.valid_until <= now:
            decision = compliance.Decision(
                Verdict.BLOCK, "expired", "not sent: its validity window passed in the queue"
            )
        if decision.verdict is Verdict.BLOCK:
            status = S.EXPIRED if decision.code == "expired" else S.BLOCKED
            blocked.append((row, decision, status))
            continue
        if decision.verdict is Verdict.DEFER:
            deferred.append((row, decision))
            continue
        if row.org_id not in remaining:
            remaining[row.org_id] = _daily_remaining(conn, row.org_id, day)
        left = remaining[row.org_id]
        if left is not None:
            if left < row.segments:
                capped.append(row.id)
                continue
            remaining[row.org_id] = left - row.segments
        if history is not None:  # later candidates for the same contact count this one
            marketing = row.purpose == compliance.Purpose.MARKETING
            recent[row.contact_id] = compliance.RecentSends(
                history.total + 1,
                history.marketing + int(marketing),
                history.oldest or now,
                history.oldest_marketing or (now if marketing else None),
            )
        claimed.append(
            Claimed(
                id=row.id,
                org_id=row.org_id,
                channel_id=channel_id,
                to=row.phone_e164,
                body=row.body,
                attempts=row.attempts + 1,
                idempotency_key=row.idempotency_key or f"td-{row.id}",
                valid_until=row.valid_until,
                segments=row.segments,
                maybe_sent=row.id in unsure,
                probe=probe,
            )
        )

    events: list[dict[str, Any]] = []
    if claimed:
        conn.execute(
            sa.update(messages)
            .where(messages.c.id.in_([c.id for c in claimed]))
            .values(
                status=S.SENDING,
                lease_until=lease_until,
                leased_by=worker_id,
                attempts=messages.c.attempts + 1,
                updated_at=now,
            )
        )
        events += [
            event_row(
                org_id=c.org_id,
                message_id=c.id,
                from_status=S.QUEUED,
                to_status=S.SENDING,
                actor=f"worker:{worker_id}",
                now=now,
                reason="claimed",
            )
            for c in claimed
        ]
        per_org: dict[int, int] = defaultdict(int)
        for c in claimed:
            per_org[c.org_id] += c.segments
        for org_id, segments in per_org.items():
            if remaining.get(org_id) is not None:
                _add_usage(conn, org_id, day, segments)
        spent = sum(c.segments for c in claimed)
        conn.execute(
            sa.update(channel_throttle)
            .where(channel_throttle.c.channel_id == channel_id)
            .values(tat=max(tat, now) + timedelta(seconds=spent / rate))
        )
        if probe:
            conn.execute(
                sa.update(channels)
                .where(channels.c.id == channel_id)
                .values(
                    paused_until=now + timedelta(seconds=settings.circuit_breaker_pause_seconds)
                )
            )
    for row, decision, gate_status in blocked:
        status, extra = _not_sent_or_unsure(gate_status, decision, row.id in unsure)
        conn.execute(
            sa.update(messages)
            .where(messages.c.id == row.id)
            .values(
                status=status,
                gate_code=decision.code,
                gate_detail=decision.detail,
                updated_at=now,
                **extra,
            )
        )
        events.append(
            event_row(
                org_id=row.org_id,
                message_id=row.id,
                from_status=S.QUEUED,
                to_status=status,
                actor="system:gate",
                now=now,
                reason=decision.code,
                detail=decision.detail,
            )
        )
    for row, decision in deferred:
        conn.execute(
            sa.update(messages)
            .where(messages.c.id == row.id)
            .values(
                status=S.PENDING,
                send_after=decision.until,
                gate_code=decision.code,
                gate_detail=decision.detail,
                updated_at=now,
            )
        )
        events.append(
            event_row(
                org_id=row.org_id,
                message_id=row.id,
                from_status=S.QUEUED,
                to_status=S.PENDING,
                actor="system:gate",
                now=now,
                reason=decision.code,
                detail=decision.detail,
            )
        )
    if capped:
        # Over the organization's daily cap: wait for the next UTC day instead of re-scanning.
        tomorrow = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        conn.execute(
            sa.update(messages)
            .where(messages.c.id.in_(capped))
            .values(
                send_after=tomorrow,
                gate_code="daily_cap",
                gate_detail="held: the organization reached its daily message cap",
                updated_at=now,
            )
        )
    add_events(conn, events)
    return claimed, None


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    message: Claimed
    provider_message_id: str
    status: MessageStatus = S.SENT
    segments: int | None = None


@dataclass(frozen=True)
class Retry:
    message: Claimed
    code: str
    detail: str
    retry_at: datetime
    #: The attempt may have reached the provider (a timeout after the request went out); the
    #: re-send carries the same idempotency key, which the provider de-duplicates.
    ambiguous: bool = False


@dataclass(frozen=True)
class Failed:
    message: Claimed
    code: str
    detail: str
    opted_out: bool = False


@dataclass(frozen=True)
class Unknown:
    """The provider may or may not have accepted it; never re-sent blindly."""

    message: Claimed
    code: str
    detail: str
    #: The id the provider will report its news under, if it gave one (an SMPP submit left in
    #: doubt): stored, so that a late answer or a receipt settles the message.
    provider_message_id: str | None = None


@dataclass(frozen=True)
class Deferred:
    """Not sent because the channel cannot send (not bound, credentials refused, circuit
    open): back to the queue with its attempt given back, to wait for the channel."""

    message: Claimed
    code: str
    detail: str
    send_after: datetime | None = None


Outcome = Sent | Retry | Failed | Unknown | Deferred
#: Event reason of a message put back because its channel is paused.
CHANNEL_PAUSED = "channel_paused"


def _mark_sent(
    conn: Connection, sent: Sequence[Sent], now: datetime, receipt_due: datetime | None
) -> None:
    """Store the providers' ids and statuses of a batch of accepted messages.

    A message left ``sent`` keeps ``lease_until`` = ``receipt_due``: when, if no delivery report
    came, ``reconcile.reconcile_stuck_sent`` checks on it (the provider has it "on lease"; the
    outbox's status index on ``lease_until`` finds the due ones without a scan).

    PostgreSQL: one ``UPDATE ... FROM unnest(arrays)`` for the batch (one statement to parse and
    plan); SQLite: ``executemany`` (in-process, a statement per row costs no round trip)."""
    rows = [
        {
            "mid": o.message.id,
            "new_status": str(o.status),
            "pid": o.provider_message_id,
            "segs": o.segments,
            "delivered_at": now if o.status == S.DELIVERED else None,
            "due": receipt_due if o.status == S.SENT else None,
        }
        for o in sent
    ]
    live = sa.or_(messages.c.status == S.SENDING, messages.c.status == S.UNKNOWN)
    if conn.dialect.name != "postgresql":
        conn.execute(
            sa.update(messages)
            # Not IN (...): expanding parameters cannot be used with executemany.
            .where(messages.c.id == sa.bindparam("mid"), live)
            .values(
                status=sa.bindparam("new_status"),
                provider_message_id=sa.bindparam("pid"),
                segments=sa.func.coalesce(sa.bindparam("segs"), messages.c.segments),
                sent_at=now,
                delivered_at=sa.bindparam("delivered_at", type_=UTCDateTime()),
                lease_until=sa.bindparam("due", type_=UTCDateTime()),
                # The provider took it: an earlier attempt's error no longer describes it.
                error_code=None,
                error_detail=None,
                updated_at=now,
            ),
            rows,
        )
        return
    conn.execute(
        _MARK_SENT_PG,
        {
            "mids": [r["mid"] for r in rows],
            "statuses": [r["new_status"] for r in rows],
            "pids": [r["pid"] for r in rows],
            "segs": [r["segs"] for r in rows],
            "delivered": [r["delivered_at"] for r in rows],
            "dues": [r["due"] for r in rows],
            "now": now,
        },
    )


#: The batch travels as six arrays, so the statement text never changes: SQLAlchemy compiles it
#: once, and PostgreSQL parses six parameters instead of a literal VALUES list (rendering that
#: list was about a tenth of a worker's CPU time at 500 messages/s).
_MARK_SENT_PG = sa.text(
    """
    UPDATE messages AS m SET
        status = v.new_status,
        provider_message_id = v.pid,
        segments = coalesce(v.segs, m.segments),
        sent_at = :now,
        delivered_at = v.delivered_at,
        lease_until = v.due,
        error_code = NULL,
        error_detail = NULL,
        updated_at = :now
    FROM unnest(
        CAST(:mids AS bigint[]),
        CAST(:statuses AS text[]),
        CAST(:pids AS text[]),
        CAST(:segs AS integer[]),
        CAST(:delivered AS timestamptz[]),
        CAST(:dues AS timestamptz[])
    ) AS v(mid, new_status, pid, segs, delivered_at, due)
    WHERE m.id = v.mid AND m.status IN ('sending', 'unknown')
    """
).bindparams(sa.bindparam("now", type_=UTCDateTime()))


def record(
    db: Database,
    outcomes: Sequence[Outcome],
    *,
    actor: str,
    now: datetime | None = None,
    receipt_wait: timedelta | None = None,
) -> None:
    """Store a batch of send outcomes in one transaction (one fsync for many messages).
    ``receipt_wait``: how long a ``sent`` message waits for its delivery report before it is
    reconciled (``TEXTDESK_SENT_RECONCILE_AFTER_SECONDS``; None: never)."""
    if not outcomes:
        return
    now = now or utcnow()
    events: list[dict[str, Any]] = []
    with db.write() as conn:
        sent = [o for o in outcomes if isinstance(o, Sent)]
        if sent:
            _mark_sent(conn, sent, now, None if receipt_wait is None else now + receipt_wait)
            events += [
                event_row(
                    org_id=o.message.org_id,
                    message_id=o.message.id,
                    from_status=S.SENDING,
                    to_status=o.status,
                    actor=actor,
                    now=now,
                    reason="accepted",
                    detail=o.provider_message_id,
                )
                for o in sent
            ]
        for o in outcomes:
            if isinstance(o, Sent):
                continue
            # (new status, event reason, extra columns) per kind of failure.
            extra: dict[str, Any]
            if isinstance(o, Retry):
                reason = RETRY_AMBIGUOUS if o.ambiguous else "retry"
                status, extra = S.QUEUED, {"send_after": o.retry_at}
            elif isinstance(o, Deferred):
                # The channel could not send: this was no attempt at the message.
                reason = CHANNEL_PAUSED
                status = S.QUEUED
                extra = {"send_after": o.send_after, "attempts": messages.c.attempts - 1}
            elif isinstance(o, Unknown):
                status, reason, extra = S.UNKNOWN, "ambiguous", {}
                if o.provider_message_id is not None:
                    extra = {"provider_message_id": o.provider_message_id}
            else:
                status, reason, extra = S.FAILED, "provider_error", {}
            conn.execute(
                sa.update(messages)
                .where(messages.c.id == o.message.id, messages.c.status == S.SENDING)
                .values(
                    status=status,
                    lease_until=None,
                    error_code=o.code,
                    error_detail=o.detail,
                    updated_at=now,
                    **extra,
                )
            )
            events.append(
                event_row(
                    org_id=o.message.org_id,
                    message_id=o.message.id,
                    from_status=S.SENDING,
                    to_status=status,
                    actor=actor,
                    now=now,
                    reason=reason,
                    provider_code=o.code,
                    detail=o.detail,
                )
            )
            if isinstance(o, Failed) and o.opted_out:
                consent.provider_opt_out(
                    conn, o.message.org_id, o.message.to, o.message.id, o.code, now
                )
        add_events(conn, events)
        if sent:
            # For segments ("last_outbound < -30d"): one statement per batch, not per message.
            sent_ids = [o.message.id for o in sent]
            for start in range(0, len(sent_ids), 500):
                conn.execute(
                    sa.update(contacts)
                    .where(
                        contacts.c.id.in_(
                            sa.select(messages.c.contact_id).where(
                                messages.c.id.in_(sent_ids[start : start + 500])
                            )
                        )
                    )
                    .values(last_outbound_at=now)
                )
        # Provider ids stored now (sent, or left in doubt with an id for later news).
        stored = [(o.message, o.provider_message_id) for o in sent] + [
            (o.message, o.provider_message_id)
            for o in outcomes
            if isinstance(o, Unknown) and o.provider_message_id is not None
        ]
        by_channel: dict[int, list[str]] = defaultdict(list)
        for message, pid in stored:
            by_channel[message.channel_id].append(pid)
        for channel_id, ids in sorted(by_channel.items()):
            lock_provider_ids(conn, channel_id, ids)
        # Reports that beat the submit response: one look for the whole batch (usually none).
        parked = orphaned_ids(conn, [(m.channel_id, pid) for m, pid in stored])
        for message, pid in stored:
            if (message.channel_id, pid) in parked:
                apply_orphans(conn, message.id, message.org_id, message.channel_id, pid, now)


def backoff(
    attempt: int, *, base: float = 2.0, cap: float = 300.0, retry_after: float | None = None
) -> float:
    """Seconds before attempt ``attempt + 1``: exponential with full jitter, never below a
    provider's Retry-After."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311 - jitter
    return max(delay, retry_after or 0.0)


# --- housekeeping --------------------------------------------------------------------------------


def reap(
    db: Database,
    *,
    resend_providers: Iterable[str],
    actor: str,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Messages whose lease ran out: re-queue those whose provider de-duplicates by our key,
    mark the rest ``unknown``. Returns (requeued, unknown)."""
    now = now or utcnow()
    safe = set(resend_providers)
    with db.write() as conn:
        query = (
            sa.select(messages.c.id, messages.c.org_id, channels.c.provider)
            .join(channels, channels.c.id == messages.c.channel_id)
            .where(messages.c.status == S.SENDING, messages.c.lease_until < now)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=messages, skip_locked=True)
        rows = conn.execute(query).all()
        requeue = [r for r in rows if r.provider in safe]
        lost = [r for r in rows if r.provider not in safe]
        if requeue:
            conn.execute(
                sa.update(messages)
                .where(messages.c.id.in_([r.id for r in requeue]))
                .values(status=S.QUEUED, lease_until=None, leased_by=None, updated_at=now)
            )
        if lost:
            conn.execute(
                sa.update(messages)
                .where(messages.c.id.in_([r.id for r in lost]))
                .values(
                    status=S.UNKNOWN,
                    lease_until=None,
                    updated_at=now,
                    error_code="lease_expired",
                    error_detail="the worker stopped while sending; the provider may or "
                    "may not have accepted it",
                )
            )
        add_events(
            conn,
            [
                event_row(
                    org_id=r.org_id,
                    message_id=r.id,
                    from_status=S.SENDING,
                    to_status=S.QUEUED,
                    actor=actor,
                    now=now,
                    reason=LEASE_EXPIRED_RESEND,
                    detail="the provider de-duplicates by idempotency key; safe to re-send",
                )
                for r in requeue
            ]
            + [
                event_row(
                    org_id=r.org_id,
                    message_id=r.id,
                    from_status=S.SENDING,
                    to_status=S.UNKNOWN,
                    actor=actor,
                    now=now,
                    reason="lease_expired",
                )
                for r in lost
            ],
        )
    return len(requeue), len(lost)


def promote_and_expire(
    db: Database, *, actor: str, limit: int = 500, now: datetime | None = None
) -> int:
    """Pending messages whose ``send_after`` came: run the gate again. Queued or pending ones
    past their validity window: expire. Returns how many changed."""
    now = now or utcnow()
    changed = 0
    with db.write() as conn:
        rows = conn.execute(
            sa.select(
                messages.c.id,
                messages.c.org_id,
                messages.c.status,
                messages.c.purpose,
                messages.c.valid_until,
                messages.c.attempts,
                contacts.c.phone_e164,
                contacts.c.opted_out,
                contacts.c.time_zone,
                contacts.c.zip,
                contacts.c.state,
            )
            .join(contacts, contacts.c.id == messages.c.contact_id)
            .where(
                sa.or_(
                    sa.and_(
                        messages.c.status == S.PENDING,
                        sa.or_(messages.c.send_after.is_(None), messages.c.send_after <= now),
                    ),
                    sa.and_(
                        messages.c.status.in_([S.QUEUED, S.PENDING]), messages.c.valid_until <= now
                    ),
                )
            )
            .limit(limit)
        ).all()
        events = []
        rules: dict[int, org_settings.OrgSettings] = {}
        unsure = maybe_sent(conn, [row.id for row in rows if row.attempts > 0])
        for row in rows:
            if row.valid_until is not None and row.valid_until <= now:
                decision = compliance.Decision(
                    Verdict.BLOCK, "expired", "not sent: its validity window passed"
                )
            else:
                if row.org_id not in rules:
                    rules[row.org_id] = org_settings.load(conn, row.org_id)
                # Caps are checked at claim, where what was handed over is counted.
                decision = compliance.evaluate(
                    Recipient.from_mapping(row._mapping),
                    purpose=row.purpose,
                    now=now,
                    valid_until=row.valid_until,
                    org_window=rules[row.org_id].window(),
                    org_days=rules[row.org_id].days(),
                )
            status, send_after = messaging.status_for(decision, None)
            extra: dict[str, Any] = {}
            if status in (S.BLOCKED, S.EXPIRED):
                status, extra = _not_sent_or_unsure(status, decision, row.id in unsure)
            conn.execute(
                sa.update(messages)
                .where(messages.c.id == row.id, messages.c.status == row.status)
                .values(
                    status=status,
                    send_after=send_after,
                    gate_code=decision.code,
                    gate_detail=decision.detail,
                    updated_at=now,
                    **extra,
                )
            )
            events.append(
                event_row(
                    org_id=row.org_id,
                    message_id=row.id,
                    from_status=row.status,
                    to_status=status,
                    actor=actor,
                    now=now,
                    reason=decision.code,
                    detail=decision.detail,
                )
            )
            changed += 1
        add_events(conn, events)
    return changed
