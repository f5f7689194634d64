"""The outbound message state machine, written down where it lives.

::

    pending ──gate allows──▶ queued ──claimed──▶ sending ──accepted──▶ sent ──DLR──▶ delivered
       │  ▲                    │  ▲                 │ │                  │             undelivered
       │  └─gate defers────────┘  └──retryable──────┘ │                  ├──DLR──────▶ failed
       │                                              │                  └──no DLR──▶ unknown
       ├──gate blocks──▶ blocked                      ├──permanent error──▶ failed
       └──validity passed──▶ expired                  └──crash/timeout──▶ unknown ─▶ sent…

Inbound messages are stored as ``received`` and never move.

A status has a *rank*; delivery reports and provider callbacks arrive late, twice or out of
order, so a callback may only move a message to a status of higher rank (``can_advance``).
Transitions made by the platform itself must be listed in ``TRANSITIONS``; ``transition()``
refuses the rest, and ``tests/domain/test_states.py`` checks every pair.
"""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    BLOCKED = "blocked"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    RECEIVED = "received"


class Direction(StrEnum):
    OUTBOUND = "out"
    INBOUND = "in"


S = MessageStatus

#: Final statuses: nothing the platform does moves a message out of them.
FINAL: frozenset[MessageStatus] = frozenset(
    {S.DELIVERED, S.UNDELIVERED, S.FAILED, S.BLOCKED, S.EXPIRED, S.RECEIVED}
)

#: Every transition the platform may make. Anything else is a bug.
TRANSITIONS: dict[MessageStatus, frozenset[MessageStatus]] = {
    # pending/queued -> unknown: the gate now blocks (or the validity passed) a message whose
    # earlier attempt may have reached the provider (a re-send after a crash or a timeout):
    # calling it blocked would say it never went out, so it waits for a report or a person.
    S.PENDING: frozenset({S.QUEUED, S.BLOCKED, S.EXPIRED, S.PENDING, S.UNKNOWN}),
    # queued -> pending: the gate deferred it again at dispatch (quiet hours began meanwhile).
    S.QUEUED: frozenset({S.SENDING, S.PENDING, S.BLOCKED, S.EXPIRED, S.UNKNOWN}),
    # sending -> queued: a retryable error before the provider accepted it.
    S.SENDING: frozenset({S.SENT, S.QUEUED, S.FAILED, S.UNKNOWN, S.DELIVERED, S.UNDELIVERED}),
    # sent -> unknown: no delivery report within TEXTDESK_SENT_RECONCILE_AFTER_SECONDS and no
    # provider lookup to ask (delivery/reconcile.py); a report that comes later still settles it.
    S.SENT: frozenset({S.DELIVERED, S.UNDELIVERED, S.FAILED, S.UNKNOWN}),
    # unknown is resolved by a delivery report or a provider lookup, never by a blind re-send.
    S.UNKNOWN: frozenset({S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED}),
    S.DELIVERED: frozenset(),
    S.UNDELIVERED: frozenset(),
    S.FAILED: frozenset(),
    S.BLOCKED: frozenset(),
    S.EXPIRED: frozenset(),
    S.RECEIVED: frozenset(),
}

#: Order used to ignore late callbacks: a message never moves to a lower rank.
RANK: dict[MessageStatus, int] = {
    S.PENDING: 0,
    S.QUEUED: 1,
    S.SENDING: 2,
    S.UNKNOWN: 3,
    S.SENT: 4,
    S.DELIVERED: 5,
    S.UNDELIVERED: 5,
    S.FAILED: 5,
    S.BLOCKED: 5,
    S.EXPIRED: 5,
    S.RECEIVED: 5,
}


class IllegalTransition(ValueError):
    def __init__(self, current: MessageStatus, target: MessageStatus) -> None:
        super().__init__(f"a message cannot go from {current.value!r} to {target.value!r}")
        self.current = current
        self.target = target


def is_allowed(current: MessageStatus, target: MessageStatus) -> bool:
    return target in TRANSITIONS[current]


def transition(current: MessageStatus, target: MessageStatus) -> MessageStatus:
    """Return ``target`` if the move is allowed, else raise ``IllegalTransition``."""
    if not is_allowed(current, target):
        raise IllegalTransition(current, target)
    return target


def can_advance(current: MessageStatus, reported: MessageStatus) -> bool:
    """Whether a provider report of ``reported`` should move a message now at ``current``."""
    return is_allowed(current, reported) and RANK[reported] > RANK[current]
