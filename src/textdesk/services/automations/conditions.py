"""An automation's conditions, checked once, when the event that starts a run arrives.

The segment part is the segment language (``services.segments``) over the contact, one query
for all the batch's contacts; the event part compares the event's data in Python. Two-valued, as
the segment language is: a missing or differently typed value is false, ``!=`` its complement.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.services import segments
from textdesk.services.automations.spec import Conditions, EventCondition
from textdesk.store.tables import contacts

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_MISSING = object()


def _lookup(data: dict[str, Any], field: str) -> Any:
    node: Any = data
    for key in field.split(".")[2:]:  # "event.data.a.b" -> a, b
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same_kind(a: Any, b: Any) -> bool:
    if _number(a) and _number(b):
        return True
    return type(a) is type(b)


def event_matches(condition: EventCondition, data: dict[str, Any]) -> bool:
    found = _lookup(data, condition.field)
    if condition.op == "exists":
        return found is not _MISSING and found is not None
    equal = (
        found is not _MISSING and _same_kind(found, condition.value) and found == condition.value
    )
    if condition.op == "=":
        return equal
    if condition.op == "!=":
        return not equal
    if found is _MISSING or not _same_kind(found, condition.value):
        return False
    if isinstance(found, dict | list) or found is None:
        return False
    return _ORDER[condition.op](found, condition.value)


def failed_event_condition(conditions: Conditions, data: dict[str, Any]) -> EventCondition | None:
    """The first event condition that does not hold (None: all hold)."""
    return next((c for c in conditions.event if not event_matches(c, data)), None)


def in_segment(
    conn: Connection, org_id: int, query: str, contact_ids: Sequence[int], now: datetime
) -> set[int]:
    """Which of these contacts the segment query matches. Raises ``Invalid`` when the query no
    longer compiles (a custom field it names was deleted since)."""
    if not contact_ids:
        return set()
    where = segments.contact_filter(conn, org_id, query, now=now)
    return set(
        conn.execute(
            sa.select(contacts.c.id).where(where, contacts.c.id.in_(sorted(set(contact_ids))))
        ).scalars()
    )


def describe(condition: EventCondition) -> str:
    if condition.op == "exists":
        return f"{condition.field} exists"
    return f"{condition.field} {condition.op} {condition.value!r}"
