"""Sender numbers ("channels"): a provider plus a phone number (or short code) of an org."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.phone import PhoneError, normalize
from textdesk.domain.roles import Role
from textdesk.providers import registry
from textdesk.services import audit
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.errors import Conflict, Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import channels, utcnow


class NumberType(StrEnum):
    TEN_DLC = "10dlc"
    TOLL_FREE = "toll_free"
    SHORT_CODE = "short_code"
    SMPP = "smpp"
    OTHER = "other"


#: Default segments per second by number type (carrier norms; see compliance.md §4).
DEFAULT_RATE: dict[NumberType, float] = {
    NumberType.TEN_DLC: 1.0,
    NumberType.TOLL_FREE: 3.0,
    NumberType.SHORT_CODE: 100.0,
    NumberType.SMPP: 10.0,
    NumberType.OTHER: 1.0,
}

KNOWN_PROVIDERS = tuple(registry.PROVIDERS)


@dataclass(frozen=True)
class Channel:
    """A sender number. ``config`` (credentials) is deliberately not part of this view."""

    id: int
    org_id: int
    name: str
    provider: str
    phone_e164: str
    number_type: NumberType
    rate_per_second: float
    is_active: bool
    paused_until: datetime | None
    pause_reason: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Channel:
        m = row._mapping
        number_type = NumberType(m["number_type"])
        return cls(
            id=m["id"],
            org_id=m["org_id"],
            name=m["name"],
            provider=m["provider"],
            phone_e164=m["phone_e164"],
            number_type=number_type,
            rate_per_second=m["rate_per_second"] or DEFAULT_RATE[number_type],
            is_active=m["is_active"],
            paused_until=m["paused_until"],
            pause_reason=m["pause_reason"],
            created_at=m["created_at"],
        )


def _sender_address(raw: str, number_type: NumberType) -> str:
    raw = raw.strip()
    if number_type is NumberType.SHORT_CODE:
        if not (raw.isdigit() and 3 <= len(raw) <= 8):
            raise Invalid(f"{raw!r} is not a short code (3-8 digits)", field="phone")
        return raw
    try:
        return normalize(raw)
    except PhoneError as exc:
        raise Invalid(str(exc), field="phone") from exc


def create_channel(
    db: Database,
    principal: Principal,
    *,
    name: str,
    provider: str,
    phone: str,
    number_type: NumberType = NumberType.TEN_DLC,
    rate_per_second: float | None = None,
    config: dict[str, Any] | None = None,
    request: RequestInfo | None = None,
) -> Channel:
    principal.require(Role.ADMIN)
    if provider not in KNOWN_PROVIDERS:
        raise Invalid(
            f"unknown provider {provider!r}; use one of {', '.join(KNOWN_PROVIDERS)}",
            field="provider",
        )
    if rate_per_second is not None and not 0 < rate_per_second <= 10_000:
        raise Invalid("rate_per_second must be between 0 and 10000", field="rate_per_second")
    address = _sender_address(phone, number_type)
    try:
        config = registry.validate_config(provider, config or {})
    except ValueError as exc:
        raise Invalid(str(exc), field="config") from exc
    with db.write() as conn:
        taken = conn.execute(
            sa.select(channels.c.id).where(
                channels.c.org_id == principal.org_id, channels.c.phone_e164 == address
            )
        ).first()
        if taken:
            raise Conflict(f"{address} is already a sender number here", field="phone")
        channel_id = conn.execute(
            channels.insert()
            .values(
                org_id=principal.org_id,
                name=name.strip() or address,
                provider=provider,
                phone_e164=address,
                number_type=number_type.value,
                rate_per_second=rate_per_second,
                config=config,
                created_at=utcnow(),
            )
            .returning(channels.c.id)
        ).scalar_one()
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="channel.create",
            target=f"channel:{channel_id}",
            request=request,
            detail={"provider": provider, "phone": address},
        )
        return get_channel(conn, principal.org_id, channel_id)


def get_channel(conn: Connection, org_id: int, channel_id: int) -> Channel:
    row = conn.execute(
        sa.select(channels).where(channels.c.id == channel_id, channels.c.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound(f"channel {channel_id} not found")
    return Channel.from_row(row)


def list_channels(conn: Connection, org_id: int) -> list[Channel]:
    rows = conn.execute(
        sa.select(channels).where(channels.c.org_id == org_id).order_by(channels.c.id)
    )
    return [Channel.from_row(r) for r in rows]


# --- the circuit breaker's state -----------------------------------------------------------------
#
# ``paused_until`` ahead: the circuit is open and claims skip the channel. ``pause_reason`` set
# but ``paused_until`` passed: half-open, the next claim takes one probe message
# (``delivery/outbox.claim``). Both cleared: closed. The reason is what the home page's banner
# and the API show.


def pause_channel(db: Database, channel_id: int, *, until: datetime, reason: str) -> None:
    """Open the circuit: nothing is claimed for the channel before ``until``."""
    with db.write() as conn:
        conn.execute(
            sa.update(channels)
            .where(channels.c.id == channel_id)
            .values(paused_until=until, pause_reason=reason[:1000])
        )


def resume_channel(db: Database, channel_id: int) -> None:
    """Close the circuit: the provider answered a probe."""
    with db.write() as conn:
        conn.execute(
            sa.update(channels)
            .where(channels.c.id == channel_id, channels.c.pause_reason.is_not(None))
            .values(paused_until=None, pause_reason=None)
        )
