"""The message state machine: allowed moves, forbidden moves, and late callbacks."""

from __future__ import annotations

import itertools

import pytest

from textdesk.domain.states import (
    FINAL,
    RANK,
    TRANSITIONS,
    IllegalTransition,
    MessageStatus,
    can_advance,
    transition,
)

S = MessageStatus
ALLOWED = {
    (S.PENDING, S.QUEUED),
    (S.PENDING, S.BLOCKED),
    (S.PENDING, S.EXPIRED),
    (S.PENDING, S.PENDING),
    (S.PENDING, S.UNKNOWN),
    (S.QUEUED, S.SENDING),
    (S.QUEUED, S.PENDING),
    (S.QUEUED, S.BLOCKED),
    (S.QUEUED, S.EXPIRED),
    (S.QUEUED, S.UNKNOWN),
    (S.SENDING, S.SENT),
    (S.SENDING, S.QUEUED),
    (S.SENDING, S.FAILED),
    (S.SENDING, S.UNKNOWN),
    (S.SENDING, S.DELIVERED),
    (S.SENDING, S.UNDELIVERED),
    (S.SENT, S.DELIVERED),
    (S.SENT, S.UNDELIVERED),
    (S.SENT, S.FAILED),
    (S.SENT, S.UNKNOWN),
    (S.UNKNOWN, S.SENT),
    (S.UNKNOWN, S.DELIVERED),
    (S.UNKNOWN, S.UNDELIVERED),
    (S.UNKNOWN, S.FAILED),
}


@pytest.mark.parametrize(("a", "b"), list(itertools.product(S, S)))
def test_exactly_the_written_transitions_are_allowed(a: S, b: S) -> None:
    if (a, b) in ALLOWED:
        assert transition(a, b) is b
    else:
        with pytest.raises(IllegalTransition, match=f"from '{a.value}' to '{b.value}'"):
            transition(a, b)


def test_final_states_have_no_exit() -> None:
    for status in FINAL:
        assert TRANSITIONS[status] == frozenset()
    assert S.UNKNOWN not in FINAL, "unknown must be reconciled, not left alone"


def test_every_status_is_ranked_and_in_the_table() -> None:
    assert set(RANK) == set(S) == set(TRANSITIONS)


def test_late_callbacks_never_move_backwards() -> None:
    assert can_advance(S.SENT, S.DELIVERED)
    assert not can_advance(S.DELIVERED, S.SENT)
    assert not can_advance(S.DELIVERED, S.FAILED)
    assert not can_advance(S.SENT, S.SENT)
    assert can_advance(S.UNKNOWN, S.SENT)
    assert not can_advance(S.SENT, S.UNKNOWN), "only the reconciler says a sent one is unknown"
    assert can_advance(S.SENDING, S.DELIVERED), "a report may beat the submit response"
