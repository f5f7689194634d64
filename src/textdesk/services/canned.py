"""Canned responses: saved replies with merge fields, org-wide (no campaign) or for one campaign.

Admins write them; everyone uses them. The inbox's ``/`` picker searches titles and bodies by
word prefix, and a chosen response is rendered for the conversation's contact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.encoding import MAX_BODY_CHARS
from textdesk.domain.roles import Role
from textdesk.domain.templates import Preview, preview
from textdesk.services import audit
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.contacts import get_contact
from textdesk.services.errors import Conflict, Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import canned_responses, utcnow

MAX_TITLE = 200


@dataclass(frozen=True)
class CannedResponse:
    id: int
    org_id: int
    campaign_id: int | None
    title: str
    body: str
    created_by: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> CannedResponse:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})


def _validate(conn: Connection, org_id: int, title: str, body: str, campaign_id: int | None) -> str:
    """The clean title; errors name the field. Bodies are checked like campaign scripts: merge
    fields must be built-ins or the org's custom fields (a typo fails here, not at send)."""
    from textdesk.services.campaigns import ARCHIVED, get_campaign, validate_script

    title = title.strip()
    if not title:
        raise Invalid("the title is empty", field="title")
    if len(title) > MAX_TITLE:
        raise Invalid(
            f"the title is {len(title)} characters; the limit is {MAX_TITLE}", field="title"
        )
    if not body.strip():
        raise Invalid("the body is empty", field="body")
    if len(body) > MAX_BODY_CHARS:
        raise Invalid(
            f"the body is {len(body)} characters; the limit is {MAX_BODY_CHARS}", field="body"
        )
    validate_script(conn, org_id, body, where="body")
    if campaign_id is not None:
        try:
            campaign = get_campaign(conn, org_id, campaign_id)
        except NotFound:
            raise Invalid(f"campaign {campaign_id} not found", field="campaign_id") from None
        if campaign.status == ARCHIVED:
            raise Conflict("an archived campaign cannot change", field="campaign_id")
    return title


def insert(
    conn: Connection,
    principal: Principal,
    *,
    title: str,
    body: str,
    campaign_id: int | None = None,
) -> CannedResponse:
    """Validate and store one response in the caller's transaction (no audit row)."""
    principal.require(Role.ADMIN)
    clean = _validate(conn, principal.org_id, title, body, campaign_id)
    now = utcnow()
    row = conn.execute(
        canned_responses.insert()
        .values(
            org_id=principal.org_id,
            campaign_id=campaign_id,
            title=clean,
            body=body,
            created_by=principal.user_id,
            created_at=now,
            updated_at=now,
        )
        .returning(*canned_responses.c)
    ).one()
    return CannedResponse.from_row(row)


def change(
    conn: Connection,
    principal: Principal,
    canned_id: int,
    *,
    title: str,
    body: str,
    campaign_id: int | None,
) -> CannedResponse:
    """Validate and update one response in the caller's transaction (no audit row)."""
    principal.require(Role.ADMIN)
    get(conn, principal.org_id, canned_id)
    clean = _validate(conn, principal.org_id, title, body, campaign_id)
    row = conn.execute(
        sa.update(canned_responses)
        .where(canned_responses.c.id == canned_id, canned_responses.c.org_id == principal.org_id)
        .values(title=clean, body=body, campaign_id=campaign_id, updated_at=utcnow())
        .returning(*canned_responses.c)
    ).one()
    return CannedResponse.from_row(row)


def remove(conn: Connection, principal: Principal, canned_id: int) -> None:
    principal.require(Role.ADMIN)
    get(conn, principal.org_id, canned_id)
    conn.execute(
        sa.delete(canned_responses).where(
            canned_responses.c.id == canned_id, canned_responses.c.org_id == principal.org_id
        )
    )


def create(
    db: Database,
    principal: Principal,
    *,
    title: str,
    body: str,
    campaign_id: int | None = None,
    request: RequestInfo | None = None,
) -> CannedResponse:
    with db.write() as conn:
        created = insert(conn, principal, title=title, body=body, campaign_id=campaign_id)
        _audit(conn, principal, "canned.create", created.id, request)
    return created


def _audit(
    conn: Connection,
    principal: Principal,
    action: str,
    canned_id: int,
    request: RequestInfo | None,
) -> None:
    audit.record(
        conn,
        org_id=principal.org_id,
        actor=principal.actor,
        action=action,
        target=f"canned:{canned_id}",
        request=request,
    )


def get(conn: Connection, org_id: int, canned_id: int) -> CannedResponse:
    row = conn.execute(
        sa.select(canned_responses).where(
            canned_responses.c.id == canned_id, canned_responses.c.org_id == org_id
        )
    ).first()
    if row is None:
        raise NotFound(f"canned response {canned_id} not found")
    return CannedResponse.from_row(row)


def update(
    db: Database,
    principal: Principal,
    canned_id: int,
    *,
    title: str,
    body: str,
    campaign_id: int | None = None,
    request: RequestInfo | None = None,
) -> CannedResponse:
    with db.write() as conn:
        updated = change(
            conn, principal, canned_id, title=title, body=body, campaign_id=campaign_id
        )
        _audit(conn, principal, "canned.update", canned_id, request)
    return updated


def delete(
    db: Database, principal: Principal, canned_id: int, *, request: RequestInfo | None = None
) -> None:
    with db.write() as conn:
        remove(conn, principal, canned_id)
        _audit(conn, principal, "canned.delete", canned_id, request)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(
    conn: Connection,
    org_id: int,
    q: str = "",
    *,
    campaign_id: int | None = None,
    limit: int = 20,
) -> list[CannedResponse]:
    """Org-wide responses plus the campaign's (if given); ``q`` matches the start of the title,
    or the start of any word of the title or body, case-insensitively. Titles in order."""
    scope: sa.ColumnElement[bool] = canned_responses.c.campaign_id.is_(None)
    if campaign_id is not None:
        scope = sa.or_(scope, canned_responses.c.campaign_id == campaign_id)
    query = sa.select(canned_responses).where(canned_responses.c.org_id == org_id, scope)
    for word in q.replace("\x00", " ").lower().split():  # NUL: in no stored text
        w = _escape_like(word)
        title, body = (
            sa.func.lower(canned_responses.c.title),
            sa.func.lower(canned_responses.c.body),
        )
        query = query.where(
            sa.or_(
                title.like(f"{w}%", escape="\\"),
                title.like(f"% {w}%", escape="\\"),
                body.like(f"{w}%", escape="\\"),
                body.like(f"% {w}%", escape="\\"),
            )
        )
    rows = conn.execute(
        query.order_by(canned_responses.c.title, canned_responses.c.id).limit(
            max(1, min(limit, 200))
        )
    )
    return [CannedResponse.from_row(r) for r in rows]


def render(conn: Connection, org_id: int, canned_id: int, contact_id: int) -> Preview:
    """The response as the contact would get it (missing fields render empty; see
    ``Preview.missing_fields``)."""
    canned = get(conn, org_id, canned_id)
    contact = get_contact(conn, org_id, contact_id)
    return preview(canned.body, contact.merge_values())
