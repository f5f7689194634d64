"""Typed custom fields: an organization defines ``key: type`` and contacts carry values.

Values live in ``contacts.fields`` under the key, stored so that both engines can compare them
without casts: text as a string, number as a JSON number, date as ``"YYYY-MM-DD"`` (ISO dates sort
as text), boolean as a JSON boolean. Every writer (API, UI, CSV import, survey answers) goes
through :func:`coerce_fields`, so a stored value always has its field's type.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.roles import Role
from textdesk.services import audit
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.errors import Conflict, Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import custom_fields, utcnow

FIELD_TYPES = ("text", "number", "date", "boolean")
MAX_FIELDS = 100
MAX_TEXT = 2000
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
#: Names the segment language and templates already use for built-in attributes.
RESERVED_KEYS = frozenset(
    {
        "id",
        "phone",
        "first_name",
        "last_name",
        "full_name",
        "email",
        "zip",
        "state",
        "time_zone",
        "external_id",
        "tags",
        "tag",
        "opted_out",
        "created_at",
        "updated_at",
    }
)
_TRUE = frozenset({"true", "yes", "y", "1", "t", "on", "x"})
_FALSE = frozenset({"false", "no", "n", "0", "f", "off"})


@dataclass(frozen=True)
class CustomField:
    id: int
    org_id: int
    key: str
    label: str
    type: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> CustomField:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})


def list_fields(conn: Connection, org_id: int) -> list[CustomField]:
    rows = conn.execute(
        sa.select(custom_fields)
        .where(custom_fields.c.org_id == org_id)
        .order_by(custom_fields.c.key)
    )
    return [CustomField.from_row(r) for r in rows]


def field_types(conn: Connection, org_id: int) -> dict[str, str]:
    rows = conn.execute(
        sa.select(custom_fields.c.key, custom_fields.c.type).where(custom_fields.c.org_id == org_id)
    )
    return {key: type_ for key, type_ in rows}


def parse_date(raw: str) -> date | None:
    """ISO ``2026-01-31``, US ``01/31/2026`` and ``1/31/26``; ``None`` when it is none of them."""
    text = raw.strip()
    for fmt in ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%Y/%m/%d", "%m-%d-%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    # An ISO timestamp: keep its date.
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        return None


def coerce_value(type_: str, raw: Any, *, key: str) -> Any:
    """The stored form of ``raw`` for a field of ``type_``; ``None`` for an empty value."""
    where = f"fields.{key}"
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if type_ == "text":
        if isinstance(raw, bool | dict | list):
            raise Invalid(f"{where} is a text field; got {type(raw).__name__}", field=where)
        text = str(raw).strip()
        if len(text) > MAX_TEXT:
            raise Invalid(f"{where} is longer than {MAX_TEXT} characters", field=where)
        return text
    if type_ == "number":
        if isinstance(raw, bool):
            raise Invalid(f"{where} is a number field; got a boolean", field=where)
        if isinstance(raw, int | float):
            number: int | float = raw
        elif isinstance(raw, str):
            text = raw.strip().replace(",", "")
            try:
                number = int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
            except ValueError:
                raise Invalid(f"{where} must be a number, got {raw!r}", field=where) from None
        else:
            raise Invalid(f"{where} must be a number, got {type(raw).__name__}", field=where)
        if isinstance(number, float) and not math.isfinite(number):
            raise Invalid(f"{where} must be a finite number, got {raw!r}", field=where)
        return number
    if type_ == "date":
        if isinstance(raw, datetime):
            return raw.date().isoformat()
        if isinstance(raw, date):
            return raw.isoformat()
        if not isinstance(raw, str):
            raise Invalid(f"{where} must be a date, got {type(raw).__name__}", field=where)
        parsed = parse_date(raw)
        if parsed is None:
            raise Invalid(
                f"{where} must be a date like 2026-01-31 or 01/31/2026, got {raw!r}", field=where
            )
        return parsed.isoformat()
    if type_ == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise Invalid(f"{where} must be yes/no or true/false, got {raw!r}", field=where)
    raise Invalid(f"unknown field type {type_!r}", field="type")


def coerce_fields(types: dict[str, str], values: dict[str, Any]) -> dict[str, Any]:
    """Typed values for every key of ``values``; an undefined key is an error naming it."""
    out: dict[str, Any] = {}
    for key, raw in values.items():
        type_ = types.get(key)
        if type_ is None:
            raise Invalid(
                f"unknown custom field {key!r}; define it first "
                "(POST /api/v1/custom-fields or Settings → Custom fields)",
                field=f"fields.{key}",
            )
        value = coerce_value(type_, raw, key=key)
        if value is not None:
            out[key] = value
    return out


def create_field(
    db: Database,
    principal: Principal,
    *,
    key: str,
    label: str,
    type_: str,
    request: RequestInfo | None = None,
) -> CustomField:
    principal.require(Role.ADMIN)
    key = key.strip()
    if not _KEY.match(key):
        raise Invalid(
            "key must start with a lowercase letter and hold only a-z, 0-9 and _ "
            f"(at most 40 characters), got {key!r}",
            field="key",
        )
    if key in RESERVED_KEYS:
        raise Invalid(f"{key!r} is a built-in contact attribute; pick another key", field="key")
    if type_ not in FIELD_TYPES:
        raise Invalid(f"type must be one of {', '.join(FIELD_TYPES)}, got {type_!r}", field="type")
    label = label.strip() or key.replace("_", " ").capitalize()
    if len(label) > 200:
        raise Invalid("label is longer than 200 characters", field="label")
    with db.write() as conn:
        existing = field_types(conn, principal.org_id)
        if key in existing:
            raise Conflict(f"custom field {key!r} exists", field="key")
        if len(existing) >= MAX_FIELDS:
            raise Conflict(f"an organization has at most {MAX_FIELDS} custom fields")
        field_id = conn.execute(
            custom_fields.insert()
            .values(org_id=principal.org_id, key=key, label=label, type=type_, created_at=utcnow())
            .returning(custom_fields.c.id)
        ).scalar_one()
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="custom_field.create",
            target=f"custom_field:{field_id}",
            request=request,
            detail={"key": key, "type": type_},
        )
        row = conn.execute(sa.select(custom_fields).where(custom_fields.c.id == field_id)).one()
        return CustomField.from_row(row)


def delete_field(
    db: Database, principal: Principal, key: str, request: RequestInfo | None = None
) -> None:
    """Forget the definition. Values already stored stay on contacts (and in exports) but are
    no longer editable or usable in segments until the field is defined again."""
    principal.require(Role.ADMIN)
    with db.write() as conn:
        deleted = conn.execute(
            sa.delete(custom_fields).where(
                custom_fields.c.org_id == principal.org_id, custom_fields.c.key == key
            )
        ).rowcount
        if not deleted:
            raise NotFound(f"custom field {key!r} not found")
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="custom_field.delete",
            target=f"custom_field:{key}",
            request=request,
        )
