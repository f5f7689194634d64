"""Consent: a contact's history, opt-out by a team member, admin re-opt-in, ledger export."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from textdesk.services import consent, exports
from textdesk.web.api.exports import streamed
from textdesk.web.api.inputs import Input, PathId
from textdesk.web.deps import ApiCaller, Db, Origin
from textdesk.web.openapi import errors

router = APIRouter(tags=["consent"])


class ConsentEventOut(BaseModel):
    id: int
    phone_e164: str
    contact_id: int | None
    kind: str
    purpose: str
    source: str
    evidence: dict[str, Any]
    message_id: int | None
    actor: str
    created_at: datetime


class OptOutIn(Input):
    note: str = Field(default="", max_length=1000)


class OptInIn(Input):
    reason: str = Field(max_length=1000, description="why, as evidence (10+ characters)")


@router.get("/contacts/{contact_id}/consent", response_model=list[ConsentEventOut])
def consent_history(contact_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return consent.history(conn, caller.org_id, contact_id)


@router.post("/contacts/{contact_id}/opt-out", status_code=status.HTTP_204_NO_CONTENT)
def opt_out(contact_id: PathId, body: OptOutIn, caller: ApiCaller, db: Db, origin: Origin) -> None:
    consent.agent_opt_out(db, caller, contact_id, note=body.note, request=origin)


@router.post(
    "/contacts/{contact_id}/opt-in", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403)
)
def opt_in(contact_id: PathId, body: OptInIn, caller: ApiCaller, db: Db, origin: Origin) -> None:
    consent.admin_opt_in(db, caller, contact_id, reason=body.reason, request=origin)


@router.get("/consent-events.csv", response_class=StreamingResponse, responses=errors(403))
def export(caller: ApiCaller, db: Db, origin: Origin) -> StreamingResponse:
    """The whole ledger (admins), formula-guarded and audited like every export."""
    return streamed(exports.export_consent(db, caller, request=origin))
