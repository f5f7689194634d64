"""Render a template for a contact and measure it: what the recipient gets and what it costs."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel, Field

from textdesk.domain import content
from textdesk.domain.templates import TemplateError, parse_template, preview
from textdesk.services import accounts, compliance, contacts
from textdesk.services.errors import Invalid
from textdesk.store.tables import organizations
from textdesk.web.api.inputs import BodyId, Input
from textdesk.web.deps import ApiCaller, Db
from textdesk.web.openapi import errors

router = APIRouter(tags=["templates"])


class PreviewIn(Input):
    template: str = Field(max_length=1600)
    contact_id: BodyId | None = None
    first_message: bool = Field(
        default=True, description="check brand and opt-out language (a first message)"
    )
    values: dict[str, Any] = Field(
        default_factory=dict, description="merge values; a contact's values take precedence"
    )


class FindingOut(BaseModel):
    code: str
    severity: str
    message: str
    span: tuple[int, int] | None
    fix: str | None = Field(description="a whole replacement body that resolves this finding")


class PreviewOut(BaseModel):
    text: str
    encoding: str
    segment_count: int
    length: int
    missing_fields: list[str]
    non_gsm_chars: list[str]
    findings: list[FindingOut] = Field(description="content rules: blocks first, then warnings")


@router.post("/templates/preview", response_model=PreviewOut, responses=errors(404))
def preview_template(body: PreviewIn, caller: ApiCaller, db: Db) -> Any:
    try:
        template = parse_template(body.template)
    except TemplateError as exc:
        raise Invalid(str(exc), field="template") from exc
    values = dict(body.values)
    if body.contact_id is not None:
        with db.read() as conn:
            values.update(contacts.get_contact(conn, caller.org_id, body.contact_id).merge_values())
    result = preview(template, values)
    with db.read() as conn:
        org = accounts.get_organization(conn, caller.org_id)
        org_settings = conn.execute(
            sa.select(organizations.c.settings).where(organizations.c.id == caller.org_id)
        ).scalar()
    policy = compliance.content_policy(org.name, org_settings, first_message=body.first_message)
    findings = [
        FindingOut(code=f.code, severity=f.severity, message=f.message, span=f.span, fix=f.fix)
        for f in content.check(result.text, policy)
    ]
    return PreviewOut(
        findings=findings,
        text=result.text,
        encoding=str(result.encoding),
        segment_count=result.segment_count,
        length=result.length,
        missing_fields=list(result.missing_fields),
        non_gsm_chars=list(result.non_gsm_chars),
    )
