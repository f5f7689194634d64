"""P2P campaigns. This module holds drafts; sending builds on it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.roles import Role
from textdesk.domain.templates import BUILTIN_FIELDS, TemplateError, parse_template
from textdesk.services import audit
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.errors import Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import campaigns, utcnow


@dataclass(frozen=True)
class Campaign:
    id: int
    org_id: int
    name: str
    status: str
    script: str
    segment_query: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Campaign:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})


def create_campaign(
    db: Database,
    principal: Principal,
    *,
    name: str,
    script: str,
    segment_query: str = "",
    request: RequestInfo | None = None,
) -> Campaign:
    principal.require(Role.ADMIN)
    name = name.strip()
    if not name:
        raise Invalid("a campaign needs a name", field="name")
    try:
        template = parse_template(script)
        # Custom fields (fields.*) are free-form until contacts get typed custom fields.
        custom = [f for f in template.fields if f.startswith("fields.")]
        parse_template(script, known_fields=[*BUILTIN_FIELDS, *custom])
    except TemplateError as exc:
        raise Invalid(f"script: {exc}", field="script") from exc
    now = utcnow()
    with db.write() as conn:
        campaign_id = conn.execute(
            campaigns.insert()
            .values(
                org_id=principal.org_id,
                name=name,
                status="draft",
                script=script,
                segment_query=segment_query,
                created_by=principal.user_id,
                created_at=now,
                updated_at=now,
            )
            .returning(campaigns.c.id)
        ).scalar_one()
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="campaign.create",
            target=f"campaign:{campaign_id}",
            request=request,
        )
        return get_campaign(conn, principal.org_id, campaign_id)


def get_campaign(conn: Connection, org_id: int, campaign_id: int) -> Campaign:
    row = conn.execute(
        sa.select(campaigns).where(campaigns.c.id == campaign_id, campaigns.c.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return Campaign.from_row(row)


def list_campaigns(conn: Connection, org_id: int) -> list[Campaign]:
    rows = conn.execute(
        sa.select(campaigns).where(campaigns.c.org_id == org_id).order_by(campaigns.c.id.desc())
    )
    return [Campaign.from_row(r) for r in rows]
