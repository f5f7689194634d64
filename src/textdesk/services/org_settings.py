"""An organization's own rules: reply texts, opt-out policy, caps, brand names, content blocks,
stricter quiet hours. Stored in ``organizations.settings``; validated here, so a bad value is a
clear error at the API, never a surprise at send time."""

from __future__ import annotations

from datetime import time
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import Connection

from textdesk.domain.quiet_hours import Window
from textdesk.domain.roles import Role
from textdesk.services import audit
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.errors import Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import organizations


class OrgSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    opt_out_confirmation: str | None = Field(
        default=None,
        max_length=320,
        description="The one reply to STOP; {org} is the organization's name. No marketing.",
    )
    help_text: str | None = Field(default=None, max_length=320, description="The reply to HELP.")
    opt_in_confirmation: str | None = Field(
        default=None, max_length=320, description="The reply to START after an opt-out."
    )
    free_text_policy: Literal["auto", "review"] = Field(
        default="auto", description="'likely' free-text opt-outs: suppress (auto) or flag"
    )
    daily_cap: int | None = Field(default=None, ge=1, description="segments per UTC day")
    contact_daily_cap: int | None = Field(
        default=None, ge=1, description="messages per contact per rolling 24 hours"
    )
    brand_names: list[str] = Field(default_factory=list, max_length=10)
    content_blocks: list[str] = Field(
        default_factory=list, description="content codes or prefixes that block, e.g. content.shaft"
    )
    quiet_hours_start: time | None = Field(
        default=None, description="earliest local sending time, stricter than the law"
    )
    quiet_hours_end: time | None = Field(default=None, description="latest local sending time")
    quiet_days: list[int] | None = Field(
        default=None, description="weekdays sending is allowed, 0 = Monday ... 6 = Sunday"
    )

    @field_validator("content_blocks")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        for code in value:
            if not code.startswith("content."):
                raise ValueError(f"{code!r} is not a content rule code (content.…)")
        return value

    @field_validator("quiet_days")
    @classmethod
    def _days(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(d not in range(7) for d in value)):
            raise ValueError("quiet_days must list weekdays 0 (Monday) to 6 (Sunday)")
        return sorted(set(value)) if value is not None else None

    @model_validator(mode="after")
    def _window(self) -> OrgSettings:
        start, end = self.quiet_hours_start, self.quiet_hours_end
        if (start is None) != (end is None):
            raise ValueError("set both quiet_hours_start and quiet_hours_end, or neither")
        if start is not None and end is not None and start >= end:
            raise ValueError("quiet_hours_start must be before quiet_hours_end")
        return self

    def window(self) -> Window | None:
        if self.quiet_hours_start is None or self.quiet_hours_end is None:
            return None
        return Window(self.quiet_hours_start, self.quiet_hours_end)

    def days(self) -> frozenset[int] | None:
        return frozenset(self.quiet_days) if self.quiet_days is not None else None


def parse(raw: Any) -> OrgSettings:
    """Stored settings, tolerant of keys written by older versions."""
    data = {k: v for k, v in dict(raw or {}).items() if k in OrgSettings.model_fields}
    try:
        return OrgSettings.model_validate(data)
    except ValidationError:
        return OrgSettings()


def load(conn: Connection, org_id: int) -> OrgSettings:
    raw = conn.execute(
        sa.select(organizations.c.settings).where(organizations.c.id == org_id)
    ).first()
    if raw is None:
        raise NotFound(f"organization {org_id} not found")
    return parse(raw[0])


def update(
    db: Database, principal: Principal, changes: dict[str, Any], request: RequestInfo | None = None
) -> OrgSettings:
    principal.require(Role.ADMIN)
    with db.write() as conn:
        current = load(conn, principal.org_id).model_dump(mode="json")
        try:
            new = OrgSettings.model_validate({**current, **changes})
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ())) or None
            raise Invalid(
                f"{field}: {first['msg']}" if field else first["msg"], field=field
            ) from None
        conn.execute(
            sa.update(organizations)
            .where(organizations.c.id == principal.org_id)
            .values(settings=new.model_dump(mode="json", exclude_defaults=True))
        )
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="org.settings",
            target=f"org:{principal.org_id}",
            request=request,
            detail={"changed": sorted(changes)},
        )
    return new
