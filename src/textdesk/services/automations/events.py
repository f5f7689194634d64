"""Customer events in: store them once, find or create their contacts, start runs.

(``services/events.py`` is something else: the live event bus of the inbox.)

A request carries one event or a batch of up to 1,000, and is all or nothing: every event is
checked first (an error names the item and the field, ``events[3].occurs_at``), then all are
stored in ONE transaction with the runs they start, so a client that sees an error knows nothing
was stored, and one that sees a success knows everything was.

Idempotency: an event's key is its own ``id`` if it has one, else the request's
``Idempotency-Key`` (``<key>#<index>`` in a batch). Keys are unique per organization, in the
database; an event whose key is already stored is answered with the stored event and the runs it
started (``duplicate``), never stored or run twice, whatever the rest of its body says. Two
concurrent requests with the same key: one stores it, the other's transaction fails on the unique
key and is retried, and then finds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.phone import PhoneError, normalize
from textdesk.domain.roles import Role
from textdesk.services.accounts import get_organization
from textdesk.services.auth import Principal
from textdesk.services.automations import definitions, runs, spec, triggers
from textdesk.services.automations.definitions import Version
from textdesk.services.errors import Conflict, Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import automation_runs, contacts, customer_events, utcnow

MAX_KEY = 200
#: Room left in ``customer_events.idempotency_key`` for the batch suffix ``#999``.
MAX_HEADER_KEY = 200


@dataclass(frozen=True)
class EventInput:
    type: str
    occurs_at: datetime | None = None
    contact_id: int | None = None
    phone: str | None = None
    external_id: str | None = None
    key: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    #: The sender's id for this event: a retry with the same id is the same event.
    id: str | None = None


@dataclass(frozen=True)
class Event:
    id: int
    org_id: int
    contact_id: int
    type: str
    key: str | None
    occurs_at: datetime
    data: dict[str, Any]
    idempotency_key: str | None
    actor: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Event:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})

    @property
    def subject(self) -> str | None:
        """What rescheduling and cancelling match: "<namespace>:<key>"."""
        return f"{self.type.split('.', 1)[0]}:{self.key}" if self.key else None


@dataclass(frozen=True)
class Recorded:
    event: Event
    #: True when the key was already stored: this is the original event, nothing new ran.
    duplicate: bool
    run_ids: list[int]


@dataclass
class _Checked:
    index: int
    item: EventInput
    where: str  # "events[3]." in a batch, "" for one event
    key: str | None
    occurs_at: datetime | None


def _checked(item: EventInput, index: int, where: str, key: str | None) -> _Checked:
    def fail(name: str, message: str) -> Invalid:
        return Invalid(f"{where}{name}: {message}", field=f"{where}{name}")

    try:
        spec.event_type(item.type)
    except ValueError as exc:
        raise fail("type", str(exc)) from None
    occurs_at = None
    if item.occurs_at is not None:
        try:
            occurs_at = spec.aware_in_range(item.occurs_at)
        except ValueError as exc:
            raise fail("occurs_at", str(exc)) from None
    for name in ("key", "id", "external_id", "phone"):
        value = getattr(item, name)
        if value is not None and (not value.strip() or len(value) > MAX_KEY or "\x00" in value):
            raise fail(name, f"1 to {MAX_KEY} characters, no NUL")
    if not isinstance(item.data, dict):
        raise fail("data", "must be a JSON object")
    try:
        spec.check_data(item.data)
    except ValueError as exc:
        raise fail("data", str(exc)) from None
    if item.contact_id is not None:
        if item.phone is not None or item.external_id is not None:
            raise fail("contact_id", "give contact_id alone, or phone and/or external_id")
        if not 1 <= item.contact_id <= spec.MAX_ID:
            raise fail("contact_id", "not a contact id")
    elif item.phone is None and item.external_id is None:
        raise fail("contact_id", "give contact_id, phone or external_id")
    return _Checked(index, item, where, key, occurs_at)


def idempotency_keys(
    items: Sequence[EventInput], header: str | None, *, batch: bool
) -> list[str | None]:
    """Each event's key: its own id, else the request's key (``<key>#<index>`` in a batch)."""
    if header is not None and not 1 <= len(header) <= MAX_HEADER_KEY:
        raise Invalid(
            f"Idempotency-Key is 1 to {MAX_HEADER_KEY} characters", field="Idempotency-Key"
        )
    out: list[str | None] = []
    for i, item in enumerate(items):
        if item.id is not None:
            out.append(item.id.strip())
        elif header is not None:
            out.append(f"{header}#{i}" if batch else header)
        else:
            out.append(None)
    return out


def record_events(
    db: Database,
    principal: Principal,
    items: Sequence[EventInput],
    *,
    idempotency_key: str | None = None,
    batch: bool = False,
    now: datetime | None = None,
) -> list[Recorded]:
    """Store the events (all or none) and start the runs of the automations they trigger."""
    principal.require(Role.ADMIN)
    if not items:
        raise Invalid("give at least one event", field="events")
    if len(items) > spec.MAX_BATCH:
        raise Invalid(f"at most {spec.MAX_BATCH} events per request", field="events")
    keys = idempotency_keys(items, idempotency_key, batch=batch)
    checked = [
        _checked(item, i, f"events[{i}]." if batch else "", keys[i]) for i, item in enumerate(items)
    ]
    for attempt in range(3):
        try:
            with db.write() as conn:
                return _record(conn, principal, checked, now or utcnow())
        except sa.exc.IntegrityError:
            # A concurrent request stored one of these keys (or created one of these
            # contacts) first: go again, and find theirs.
            if attempt == 2:
                raise Conflict(
                    "events with these keys are being stored by another request; retry"
                ) from None
    raise AssertionError("unreachable")


def _record(
    conn: Connection, principal: Principal, checked: list[_Checked], now: datetime
) -> list[Recorded]:
    org_id = principal.org_id
    wanted = sorted({c.key for c in checked if c.key is not None})
    stored: dict[str, Event] = {}
    if wanted:
        for row in conn.execute(
            sa.select(customer_events).where(
                customer_events.c.org_id == org_id,
                customer_events.c.idempotency_key.in_(wanted),
            )
        ):
            stored[row.idempotency_key] = Event.from_row(row)
    fresh: list[_Checked] = []
    first_of_key: dict[str, int] = {}
    for c in checked:
        if c.key is not None and (c.key in stored or c.key in first_of_key):
            continue
        if c.key is not None:
            first_of_key[c.key] = c.index
        fresh.append(c)
    contact_ids = _contacts(conn, principal, fresh)
    rows = [
        {
            "org_id": org_id,
            "contact_id": contact_ids[c.index],
            "type": c.item.type,
            "key": c.item.key.strip() if c.item.key else None,
            "occurs_at": c.occurs_at or now,
            "data": c.item.data,
            "idempotency_key": c.key,
            "actor": principal.actor,
            "created_at": now,
        }
        for c in fresh
    ]
    new: dict[int, Event] = {}
    if rows:
        inserted = conn.execute(
            customer_events.insert().returning(*customer_events.c, sort_by_parameter_order=True),
            rows,
        ).all()
        for c, row in zip(fresh, inserted, strict=True):
            new[c.index] = Event.from_row(row)
    started = _start(conn, org_id, [new[c.index] for c in fresh], now)
    earlier = _runs_of(conn, [e.id for e in stored.values()])
    out: list[Recorded] = []
    for c in checked:
        if c.index in new:
            event = new[c.index]
            out.append(Recorded(event, duplicate=False, run_ids=started.get(event.id, [])))
        elif c.key in stored:
            event = stored[c.key]
            out.append(Recorded(event, duplicate=True, run_ids=earlier.get(event.id, [])))
        else:  # the same key earlier in this batch
            event = new[first_of_key[c.key or ""]]
            out.append(Recorded(event, duplicate=True, run_ids=started.get(event.id, [])))
    return out


def _contacts(conn: Connection, principal: Principal, items: list[_Checked]) -> dict[int, int]:
    """Each item's contact id: by id, by external id, else by phone, else created (with the
    organization's default region, as ``services.contacts`` creates every contact)."""
    from textdesk.services import contacts as contacts_service

    org_id = principal.org_id
    out: dict[int, int] = {}
    by_id = sorted({c.item.contact_id for c in items if c.item.contact_id is not None})
    known_ids: set[int] = set()
    if by_id:
        known_ids = set(
            conn.execute(
                sa.select(contacts.c.id).where(
                    contacts.c.org_id == org_id, contacts.c.id.in_(by_id)
                )
            ).scalars()
        )
    externals = sorted({c.item.external_id.strip() for c in items if c.item.external_id})
    by_external: dict[str, list[int]] = {}
    if externals:
        for cid, ext in conn.execute(
            sa.select(contacts.c.id, contacts.c.external_id)
            .where(contacts.c.org_id == org_id, contacts.c.external_id.in_(externals))
            .order_by(contacts.c.id)
        ):
            by_external.setdefault(ext, []).append(cid)
    region = get_organization(conn, org_id).default_region
    phones: dict[int, str] = {}
    for c in items:
        if c.item.phone is not None:
            try:
                phones[c.index] = normalize(c.item.phone, region)
            except PhoneError as exc:
                raise Invalid(f"{c.where}phone: {exc}", field=f"{c.where}phone") from None
    by_phone: dict[str, int] = {}
    if phones:
        for cid, phone in conn.execute(
            sa.select(contacts.c.id, contacts.c.phone_e164).where(
                contacts.c.org_id == org_id, contacts.c.phone_e164.in_(sorted(set(phones.values())))
            )
        ):
            by_phone[phone] = cid
    for c in items:
        item = c.item
        if item.contact_id is not None:
            if item.contact_id not in known_ids:
                raise NotFound(
                    f"{c.where}contact_id: contact {item.contact_id} not found",
                    field=f"{c.where}contact_id",
                )
            out[c.index] = item.contact_id
            continue
        external = item.external_id.strip() if item.external_id else None
        if external is not None and external in by_external:
            found = by_external[external]
            if len(found) > 1:
                raise Invalid(
                    f"{c.where}external_id: {len(found)} contacts have external id "
                    f"{external!r}; give contact_id",
                    field=f"{c.where}external_id",
                )
            out[c.index] = found[0]
            continue
        phone = phones.get(c.index)
        if phone is None:
            raise Invalid(
                f"{c.where}external_id: no contact has external id {external!r}; give phone "
                "as well to create it",
                field=f"{c.where}external_id",
            )
        if phone not in by_phone:
            created = contacts_service.create_contact_in(
                conn, principal, contacts_service.ContactInput(phone=phone, external_id=external)
            )
            by_phone[phone] = created.id
            if external is not None:
                by_external[external] = [created.id]
        out[c.index] = by_phone[phone]
    return out


def _start(
    conn: Connection, org_id: int, events: list[Event], now: datetime
) -> dict[int, list[int]]:
    """Cancel what cancelling events cancel and start the runs the events trigger, in the
    events' order (a booking and its cancellation in one batch leave the run cancelled)."""
    started: dict[int, list[int]] = {}
    if not events:
        return started
    versions = definitions.active_versions(conn, org_id)
    pending: list[tuple[Event, Version]] = []
    for event in events:
        verb = event.type.rsplit(".", 1)[1]
        subject = event.subject
        if subject is not None and verb in spec.CANCELLING | spec.REPLACING:
            _start_runs(conn, org_id, pending, now, started)
            pending = []
            replaced = verb in spec.REPLACING
            runs.cancel_subject(
                conn,
                org_id,
                subject,
                reason="replaced" if replaced else "event_cancelled",
                detail=f"{'replaced by' if replaced else 'cancelled by'} event {event.id} "
                f"({event.type}, key {event.key})",
                now=now,
            )
        for version in versions:
            trigger = version.definition.trigger
            if isinstance(trigger, spec.EventTrigger) and event.type in trigger.event_types:
                pending.append((event, version))
    _start_runs(conn, org_id, pending, now, started)
    return started


def _start_runs(
    conn: Connection,
    org_id: int,
    pending: list[tuple[Event, Version]],
    now: datetime,
    started: dict[int, list[int]],
) -> None:
    starters = [
        (
            triggers.Starter(
                contact_id=event.contact_id,
                note=f"started by event {event.id} ({event.type})",
                due_at=now,
                event_id=event.id,
                subject=event.subject,
                data=event.data,
            ),
            version,
        )
        for event, version in pending
    ]
    ids = triggers.start_runs(conn, org_id, starters, now)
    for run_id, (event, _version) in zip(ids, pending, strict=True):
        started.setdefault(event.id, []).append(run_id)


def _runs_of(conn: Connection, event_ids: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    if event_ids:
        for run_id, event_id in conn.execute(
            sa.select(automation_runs.c.id, automation_runs.c.event_id)
            .where(automation_runs.c.event_id.in_(sorted(set(event_ids))))
            .order_by(automation_runs.c.id)
        ):
            out.setdefault(event_id, []).append(run_id)
    return out


# --- reading -------------------------------------------------------------------------------------


def get_event(conn: Connection, org_id: int, event_id: int) -> Recorded:
    row = conn.execute(
        sa.select(customer_events).where(
            customer_events.c.id == event_id, customer_events.c.org_id == org_id
        )
    ).first()
    if row is None:
        raise NotFound(f"event {event_id} not found")
    event = Event.from_row(row)
    return Recorded(event, duplicate=False, run_ids=_runs_of(conn, [event.id]).get(event.id, []))


def list_events(
    conn: Connection,
    org_id: int,
    *,
    contact_id: int | None = None,
    type: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[Recorded]:
    """Newest first, keyset pages with ``before_id``."""
    query = sa.select(customer_events).where(customer_events.c.org_id == org_id)
    if contact_id is not None:
        query = query.where(customer_events.c.contact_id == contact_id)
    if type is not None:
        query = query.where(customer_events.c.type == type)
    if before_id is not None:
        query = query.where(customer_events.c.id < before_id)
    found = [
        Event.from_row(r)
        for r in conn.execute(
            query.order_by(customer_events.c.id.desc()).limit(max(1, min(limit, 500)))
        )
    ]
    by_event = _runs_of(conn, [e.id for e in found])
    return [Recorded(e, duplicate=False, run_ids=by_event.get(e.id, [])) for e in found]


def contact_activity(conn: Connection, org_id: int, contact_id: int) -> dict[str, Any]:
    """The contact page's events and automation runs (latest 20 of each)."""
    return {
        "customer_events": list_events(conn, org_id, contact_id=contact_id, limit=20),
        "automation_runs": runs.list_runs(conn, org_id, contact_id=contact_id, limit=20),
    }
