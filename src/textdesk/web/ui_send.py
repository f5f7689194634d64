"""The send screen in the UI: ``/campaigns/{id}/send``.

The page is rendered once; ``static/js/send.js`` then works from small JSON calls on the same
session (CSRF header): take a batch, send to one contact, skip one. Each send POST carries the
contact id, so a repeated key press for a contact the server already messaged returns the same
message instead of a second one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from textdesk.services import p2p
from textdesk.web.api.p2p import offer_out, refused
from textdesk.web.deps import Db
from textdesk.web.send_batching import SendBatcher
from textdesk.web.ui import Actor, Viewer, page

router = APIRouter(include_in_schema=False)


class ContactIn(BaseModel):
    contact_id: int


@router.get("/campaigns/{campaign_id}/send", response_class=HTMLResponse)
def send_screen(request: Request, campaign_id: int, db: Db, viewer: Viewer) -> Response:
    assert viewer.user_id is not None  # a UI session is always a person
    with db.read() as conn:
        campaign = p2p.load_campaign(conn, viewer.org_id, campaign_id)
        stats = p2p.agent_stats(conn, viewer.org_id, campaign_id, viewer.user_id)
    return page(request, "send.html", viewer, campaign=campaign, stats=stats)


@router.post("/campaigns/{campaign_id}/send/batch")
def take_batch(campaign_id: int, db: Db, actor: Actor) -> Any:
    try:
        batch = p2p.request_batch(db, actor, campaign_id)
    except p2p.Refused as exc:
        return refused(exc)
    return {
        "contacts": [offer_out(o) for o in batch.offers],
        "held_back": batch.held_back,
        "skipped": batch.skipped,
        # The screen says when quiet hours end instead of looking empty (see send.js).
        "next_allowed": batch.next_allowed.isoformat() if batch.next_allowed else None,
        "quiet_detail": batch.quiet_detail,
    }


@router.post("/campaigns/{campaign_id}/send/contact")
async def send_one(request: Request, campaign_id: int, body: ContactIn, actor: Actor) -> Any:
    batcher: SendBatcher = request.app.state.send_batcher  # shared with the API's sends
    try:
        sent = await batcher.submit(p2p.SendRequest(actor, campaign_id, body.contact_id))
    except p2p.Refused as exc:
        return refused(exc)
    m = sent.message
    return JSONResponse(
        {
            "contact_id": sent.contact_id,
            "created": sent.created,
            "status": sent.status,
            "message_id": m.id,
            "message_status": m.status,
            "gate_detail": m.gate_detail if sent.status == "skipped" else None,
        },
        status_code=201 if sent.created else 200,
    )


@router.post("/campaigns/{campaign_id}/send/skip")
def skip_one(campaign_id: int, body: ContactIn, db: Db, actor: Actor) -> Any:
    try:
        p2p.skip(db, actor, campaign_id, body.contact_id)
    except p2p.Refused as exc:
        return refused(exc)
    return {"contact_id": body.contact_id, "status": "skipped"}
