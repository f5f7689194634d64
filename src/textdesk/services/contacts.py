"""Contacts: the people an organization texts. (Import, segments and search build on this.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.phone import PhoneError, normalize
from textdesk.domain.roles import Role
from textdesk.services import audit
from textdesk.services.accounts import get_organization
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.errors import Conflict, Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import contacts, utcnow

MAX_PAGE = 500


@dataclass(frozen=True)
class Contact:
    id: int
    org_id: int
    phone_e164: str
    first_name: str
    last_name: str
    email: str | None
    zip: str | None
    state: str | None
    time_zone: str | None
    external_id: str | None
    fields: dict[str, Any]
    tags: list[str]
    opted_out: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Contact:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def merge_values(self) -> dict[str, Any]:
        """Values for template merge fields (see ``domain.templates``)."""
        return {
            "first_name": self.first_name,
            "last_name": self.last_name,
            "full_name": self.full_name,
            "phone": self.phone_e164,
            "email": self.email,
            "zip": self.zip,
            "state": self.state,
            "external_id": self.external_id,
            "fields": self.fields,
        }


@dataclass
class ContactInput:
    phone: str
    first_name: str = ""
    last_name: str = ""
    email: str | None = None
    zip: str | None = None
    state: str | None = None
    time_zone: str | None = None
    external_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


def _values(data: ContactInput, region: str) -> dict[str, Any]:
    try:
        phone = normalize(data.phone, region)
    except PhoneError as exc:
        raise Invalid(str(exc), field="phone") from exc
    state = (data.state or "").strip().upper() or None
    if state is not None and not (len(state) == 2 and state.isalpha()):
        raise Invalid(f"state must be a two-letter code, got {data.state!r}", field="state")
    if data.time_zone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(data.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise Invalid(f"unknown time zone {data.time_zone!r}", field="time_zone") from None
    tags = sorted({t.strip().lower() for t in data.tags if t.strip()})
    return {
        "phone_e164": phone,
        "first_name": data.first_name.strip(),
        "last_name": data.last_name.strip(),
        "email": (data.email or "").strip() or None,
        "zip": (data.zip or "").strip() or None,
        "state": state,
        "time_zone": data.time_zone or None,
        "external_id": (data.external_id or "").strip() or None,
        "fields": dict(data.fields),
        "tags": tags,
    }


def create_contact(
    db: Database, principal: Principal, data: ContactInput, request: RequestInfo | None = None
) -> Contact:
    with db.write() as conn:
        return create_contact_in(conn, principal, data, request)


def create_contact_in(
    conn: Connection,
    principal: Principal,
    data: ContactInput,
    request: RequestInfo | None = None,
) -> Contact:
    org = get_organization(conn, principal.org_id)
    values = _values(data, org.default_region)
    exists = conn.execute(
        sa.select(contacts.c.id).where(
            contacts.c.org_id == principal.org_id, contacts.c.phone_e164 == values["phone_e164"]
        )
    ).first()
    if exists:
        raise Conflict(f"a contact with phone {values['phone_e164']} exists", field="phone")
    now = utcnow()
    contact_id = conn.execute(
        contacts.insert()
        .values(org_id=principal.org_id, created_at=now, updated_at=now, **values)
        .returning(contacts.c.id)
    ).scalar_one()
    return get_contact(conn, principal.org_id, contact_id)


def get_contact(conn: Connection, org_id: int, contact_id: int) -> Contact:
    row = conn.execute(
        sa.select(contacts).where(contacts.c.id == contact_id, contacts.c.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound(f"contact {contact_id} not found")
    return Contact.from_row(row)


def list_contacts(
    conn: Connection, org_id: int, *, after_id: int = 0, limit: int = 100
) -> list[Contact]:
    """Keyset pagination by id: stable under concurrent inserts, O(limit) at any depth."""
    limit = max(1, min(limit, MAX_PAGE))
    rows = conn.execute(
        sa.select(contacts)
        .where(contacts.c.org_id == org_id, contacts.c.id > after_id)
        .order_by(contacts.c.id)
        .limit(limit)
    )
    return [Contact.from_row(r) for r in rows]


def update_contact(
    db: Database,
    principal: Principal,
    contact_id: int,
    data: ContactInput,
    request: RequestInfo | None = None,
) -> Contact:
    with db.write() as conn:
        current = get_contact(conn, principal.org_id, contact_id)
        org = get_organization(conn, principal.org_id)
        values = _values(data, org.default_region)
        if values["phone_e164"] != current.phone_e164:
            clash = conn.execute(
                sa.select(contacts.c.id).where(
                    contacts.c.org_id == principal.org_id,
                    contacts.c.phone_e164 == values["phone_e164"],
                )
            ).first()
            if clash:
                raise Conflict(f"another contact has phone {values['phone_e164']}", field="phone")
        conn.execute(
            sa.update(contacts)
            .where(contacts.c.id == contact_id)
            .values(updated_at=utcnow(), **values)
        )
        return get_contact(conn, principal.org_id, contact_id)


def delete_contact(
    db: Database, principal: Principal, contact_id: int, request: RequestInfo | None = None
) -> None:
    principal.require(Role.ADMIN)
    with db.write() as conn:
        contact = get_contact(conn, principal.org_id, contact_id)
        conn.execute(sa.delete(contacts).where(contacts.c.id == contact_id))
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="contact.delete",
            target=f"contact:{contact_id}",
            request=request,
            detail={"phone": contact.phone_e164},
        )


def count_contacts(conn: Connection, org_id: int) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count()).select_from(contacts).where(contacts.c.org_id == org_id)
        ).scalar_one()
    )
