"""Contacts: the people an organization texts. (Import, segments and search build on this.)

Writers validate custom-field values against the organization's definitions
(``services.custom_fields.coerce_fields``), so a stored value always has its field's type. Tags
are lower-cased, trimmed and kept sorted and unique.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from textdesk.domain.phone import PhoneError, normalize
from textdesk.domain.roles import Role
from textdesk.services import audit, consent
from textdesk.services.accounts import get_organization
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.custom_fields import coerce_fields, coerce_value, field_types
from textdesk.services.errors import Conflict, Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import contacts, utcnow

MAX_PAGE = 500
MAX_TAGS = 100
MAX_TAG_LENGTH = 64
#: Built-in attributes a partial update (PATCH) may set.
PATCHABLE = (
    "phone",
    "first_name",
    "last_name",
    "email",
    "zip",
    "state",
    "time_zone",
    "external_id",
    "fields",
    "tags",
)


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


def clean_tags(tags: list[str], *, field_name: str = "tags") -> list[str]:
    """Trimmed, lower-cased, unique and sorted; an over-long tag is an error naming its index."""
    out: set[str] = set()
    for i, raw in enumerate(tags):
        if not isinstance(raw, str):
            raise Invalid(
                f"a tag must be a string, got {type(raw).__name__}", field=f"{field_name}[{i}]"
            )
        tag = raw.strip().lower()
        if len(tag) > MAX_TAG_LENGTH:
            raise Invalid(
                f"a tag is at most {MAX_TAG_LENGTH} characters, got {len(tag)}",
                field=f"{field_name}[{i}]",
            )
        if tag:
            out.add(tag)
    if len(out) > MAX_TAGS:
        raise Invalid(f"a contact has at most {MAX_TAGS} tags, got {len(out)}", field=field_name)
    return sorted(out)


def _values(data: ContactInput, region: str, types: dict[str, str]) -> dict[str, Any]:
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
    tags = clean_tags(data.tags)
    return {
        "phone_e164": phone,
        "first_name": data.first_name.strip(),
        "last_name": data.last_name.strip(),
        "email": (data.email or "").strip() or None,
        "zip": (data.zip or "").strip() or None,
        "state": state,
        "time_zone": data.time_zone or None,
        "external_id": (data.external_id or "").strip() or None,
        "fields": coerce_fields(types, dict(data.fields)),
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
    values = _values(data, org.default_region, field_types(conn, principal.org_id))
    exists = conn.execute(
        sa.select(contacts.c.id).where(
            contacts.c.org_id == principal.org_id, contacts.c.phone_e164 == values["phone_e164"]
        )
    ).first()
    if exists:
        raise Conflict(f"a contact with phone {values['phone_e164']} exists", field="phone")
    now = utcnow()
    opted_out = consent.number_opted_out(conn, principal.org_id, values["phone_e164"])
    contact_id = conn.execute(
        contacts.insert()
        .values(
            org_id=principal.org_id,
            created_at=now,
            updated_at=now,
            opted_out=opted_out,
            **values,
        )
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
    conn: Connection,
    org_id: int,
    *,
    after_id: int = 0,
    limit: int = 100,
    where: sa.ColumnElement[bool] | None = None,
) -> list[Contact]:
    """Keyset pagination by id: stable under concurrent inserts, O(limit) at any depth.
    ``where`` narrows the list (see :func:`filter_clause`)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = sa.select(contacts).where(contacts.c.org_id == org_id, contacts.c.id > after_id)
    if where is not None:
        query = query.where(where)
    rows = conn.execute(query.order_by(contacts.c.id).limit(limit))
    return [Contact.from_row(r) for r in rows]


def has_tag(conn: Connection, tag: str) -> sa.ColumnElement[bool]:
    """``contacts.tags`` holds ``tag`` (tags are stored lower-case)."""
    tag = tag.strip().lower()
    if conn.dialect.name == "postgresql":
        # jsonb containment: served by the ix_pg_contacts_tags GIN index.
        # (type_coerce: the column is generic JSON; its own `contains` would be a LIKE.)
        return sa.type_coerce(contacts.c.tags, postgresql.JSONB).contains([tag])
    each = sa.func.json_each(contacts.c.tags).table_valued("value")
    return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == tag))


def filter_clause(
    conn: Connection,
    org_id: int,
    *,
    q: str | None = None,
    tag: str | None = None,
    query: str | None = None,
    segment_id: int | None = None,
) -> sa.ColumnElement[bool] | None:
    """The list filters of the API and the UI, ANDed: a search (``services.search``), a tag,
    a segment query, a saved segment. ``None`` when nothing narrows the list. Raises
    ``Invalid``/``NotFound`` from the segment language or the saved segment."""
    # Imported here: search and segments build on this module (Contact), not the other way.
    from textdesk.services import search, segments

    parts: list[sa.ColumnElement[bool]] = []
    if q and q.strip():
        parts.append(search.contact_clause(conn, org_id, q))
    if tag and tag.strip():
        parts.append(has_tag(conn, tag))
    if segment_id is not None:
        try:
            saved = segments.get_segment(conn, org_id, segment_id)
        except NotFound as exc:
            raise NotFound(exc.message, field="segment_id") from None
        parts.append(segments.contact_filter(conn, org_id, saved.query))
    if query and query.strip():
        parts.append(segments.contact_filter(conn, org_id, query))
    return sa.and_(*parts) if parts else None


def update_contact(
    db: Database,
    principal: Principal,
    contact_id: int,
    data: ContactInput,
    request: RequestInfo | None = None,
) -> Contact:
    with db.write() as conn:
        current = _locked(conn, principal.org_id, contact_id)
        org = get_organization(conn, principal.org_id)
        values = _values(data, org.default_region, field_types(conn, principal.org_id))
        _check_phone_free(conn, principal.org_id, current, values["phone_e164"])
        conn.execute(
            sa.update(contacts)
            .where(contacts.c.id == contact_id)
            .values(updated_at=utcnow(), **values, **_consent_of(conn, current, values))
        )
        return get_contact(conn, principal.org_id, contact_id)


def _locked(conn: Connection, org_id: int, contact_id: int) -> Contact:
    """The contact, row-locked on PostgreSQL for a read-modify-write (SQLite's write
    transaction already holds the database lock)."""
    row = conn.execute(
        sa.select(contacts)
        .where(contacts.c.id == contact_id, contacts.c.org_id == org_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"contact {contact_id} not found")
    return Contact.from_row(row)


def _check_phone_free(conn: Connection, org_id: int, current: Contact, phone: str) -> None:
    if phone == current.phone_e164:
        return
    clash = conn.execute(
        sa.select(contacts.c.id).where(contacts.c.org_id == org_id, contacts.c.phone_e164 == phone)
    ).first()
    if clash:
        raise Conflict(f"another contact has phone {phone}", field="phone")


def _consent_of(conn: Connection, current: Contact, values: dict[str, Any]) -> dict[str, Any]:
    """A contact given another number takes that number's consent state from the ledger."""
    phone = values["phone_e164"]
    if phone == current.phone_e164:
        return {}
    return {"opted_out": consent.number_opted_out(conn, current.org_id, phone)}


def patch_contact(
    db: Database,
    principal: Principal,
    contact_id: int,
    changes: dict[str, Any],
    request: RequestInfo | None = None,
) -> Contact:
    """A partial update: only the attributes present in ``changes`` change.

    ``fields`` is merged key by key (a ``None`` value removes the key, as in JSON Merge Patch,
    RFC 7396); ``tags`` replaces the list. Unknown attributes are an error naming them."""
    unknown = sorted(set(changes) - set(PATCHABLE))
    if unknown:
        raise Invalid(
            f"unknown attribute {unknown[0]!r}; a contact has {', '.join(PATCHABLE)}",
            field=unknown[0],
        )
    with db.write() as conn:
        current = _locked(conn, principal.org_id, contact_id)
        org = get_organization(conn, principal.org_id)
        types = field_types(conn, principal.org_id)
        merged = ContactInput(
            phone=current.phone_e164,
            first_name=current.first_name,
            last_name=current.last_name,
            email=current.email,
            zip=current.zip,
            state=current.state,
            time_zone=current.time_zone,
            external_id=current.external_id,
            tags=list(current.tags),
        )
        for name, value in changes.items():
            if name == "fields":
                continue
            if name in ("phone", "first_name", "last_name", "tags") and value is None:
                raise Invalid(f"{name} cannot be null", field=name)
            if name == "tags" and not isinstance(value, list):
                raise Invalid("tags must be a list of strings", field="tags")
            if name not in ("tags",) and value is not None and not isinstance(value, str):
                raise Invalid(f"{name} must be a string", field=name)
            setattr(merged, name, value)
        values = _values(merged, org.default_region, {})
        values["fields"] = _merge_fields(types, current.fields, changes.get("fields"))
        _check_phone_free(conn, principal.org_id, current, values["phone_e164"])
        conn.execute(
            sa.update(contacts)
            .where(contacts.c.id == contact_id, contacts.c.org_id == principal.org_id)
            .values(updated_at=utcnow(), **values, **_consent_of(conn, current, values))
        )
        return get_contact(conn, principal.org_id, contact_id)


def _merge_fields(types: dict[str, str], current: dict[str, Any], patch: Any) -> dict[str, Any]:
    if patch is None:
        return dict(current)
    if not isinstance(patch, dict):
        raise Invalid("fields must be an object of custom-field values", field="fields")
    out = dict(current)
    for key, raw in patch.items():
        if key not in types:
            # Reuse coerce_fields' message for an undefined key.
            coerce_fields(types, {key: raw})
        value = coerce_value(types[key], raw, key=key)
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def tag_contact(
    db: Database,
    principal: Principal,
    contact_id: int,
    tags: list[str],
    request: RequestInfo | None = None,
) -> Contact:
    """Add ``tags`` (those already there stay once)."""
    new = clean_tags(tags)
    if not new:
        raise Invalid("give at least one non-empty tag", field="tags")
    with db.write() as conn:
        current = _locked(conn, principal.org_id, contact_id)
        merged = clean_tags([*current.tags, *new])
        if merged != current.tags:
            _set_tags(conn, principal.org_id, contact_id, merged)
        return get_contact(conn, principal.org_id, contact_id)


def untag_contact(
    db: Database,
    principal: Principal,
    contact_id: int,
    tag: str,
    request: RequestInfo | None = None,
) -> Contact:
    """Remove ``tag``; removing a tag the contact does not have changes nothing."""
    wanted = tag.strip().lower()
    with db.write() as conn:
        current = _locked(conn, principal.org_id, contact_id)
        if wanted in current.tags:
            _set_tags(conn, principal.org_id, contact_id, [t for t in current.tags if t != wanted])
        return get_contact(conn, principal.org_id, contact_id)


def _set_tags(conn: Connection, org_id: int, contact_id: int, tags: list[str]) -> None:
    conn.execute(
        sa.update(contacts)
        .where(contacts.c.id == contact_id, contacts.c.org_id == org_id)
        .values(tags=tags, updated_at=utcnow())
    )


def tag_counts(conn: Connection, org_id: int, *, limit: int = 200) -> list[tuple[str, int]]:
    """The organization's tags with how many contacts carry each, most used first."""
    if conn.dialect.name == "postgresql":
        each = sa.func.jsonb_array_elements_text(contacts.c.tags).table_valued("value")
    else:
        each = sa.func.json_each(contacts.c.tags).table_valued("value")
    tag = each.c.value
    rows = conn.execute(
        sa.select(tag, sa.func.count())
        .select_from(contacts)
        .join(each, sa.true())
        .where(contacts.c.org_id == org_id)
        .group_by(tag)
        .order_by(sa.func.count().desc(), tag)
        .limit(limit)
    )
    return [(str(t), int(n)) for t, n in rows]


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
