"""Messages: send one-to-one, list, and read one with its full event history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response, status
from pydantic import AwareDatetime, BaseModel, Field

from textdesk.services import messaging
from textdesk.services.compliance import Purpose
from textdesk.web.api.inputs import MAX_INT, BodyId, Input, PathId, QueryId, Text
from textdesk.web.deps import ApiCaller, Config, Db
from textdesk.web.openapi import errors

router = APIRouter(tags=["messages"])


class MessageOut(BaseModel):
    id: int
    conversation_id: int | None
    contact_id: int
    channel_id: int | None
    direction: str
    body: str
    status: str
    purpose: str
    encoding: str | None
    segments: int
    send_after: datetime | None
    valid_until: datetime | None
    attempts: int
    provider_message_id: str | None
    error_code: str | None
    error_detail: str | None
    gate_code: str | None = Field(description="the compliance gate's last decision")
    gate_detail: str | None = Field(description="the same in a sentence, e.g. why not sent")
    warnings: list[dict[str, str]] = Field(
        description="content warnings that did not block: [{code, message}]"
    )
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


class EventOut(BaseModel):
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    provider_code: str | None
    detail: str | None
    created_at: datetime


class MessageDetail(MessageOut):
    events: list[EventOut]


class MessageIn(Input):
    contact_id: BodyId | None = Field(default=None, description="the contact; or give `phone`")
    phone: str | None = Field(
        default=None,
        max_length=64,
        description="a phone number in any format; its contact is created if there is none",
    )
    body: str = Field(min_length=1, max_length=1600)
    channel_id: BodyId | None = Field(
        default=None, description="default: the contact's sticky sender"
    )
    purpose: Literal[Purpose.MARKETING, Purpose.INFORMATIONAL, Purpose.CONVERSATIONAL] = (
        Purpose.CONVERSATIONAL
    )
    send_at: AwareDatetime | None = Field(
        default=None,
        description="send later: at this time (with its offset; at most 90 days ahead). The "
        "gate decides as of then; until a worker sends it, POST /messages/{id}/cancel cancels it",
    )


#: A retry with the same Idempotency-Key: the message the first call created.
REPEAT: dict[str, Any] = {
    "description": "a repeat (the same Idempotency-Key): the message the first call made",
    "model": MessageOut,
}


@router.post(
    "/messages",
    response_model=MessageOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: REPEAT, **errors(404)},
)
def send_message(
    body: MessageIn,
    caller: ApiCaller,
    db: Db,
    config: Config,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(description="Retries with the same key return the first message, never a second."),
    ] = None,
) -> Any:
    queued = messaging.send_message(
        db,
        config,
        caller,
        contact_id=body.contact_id,
        phone=body.phone,
        body=body.body,
        channel_id=body.channel_id,
        purpose=body.purpose,
        idempotency_key=f"api:{idempotency_key}" if idempotency_key else None,
        send_at=body.send_at,
    )
    if not queued.created:
        response.status_code = status.HTTP_200_OK
    return queued.message


@router.get("/messages", response_model=list[MessageOut])
def list_messages(
    caller: ApiCaller,
    db: Db,
    contact_id: QueryId = None,
    status_: Annotated[Text | None, Query(alias="status")] = None,
    before: int | None = Query(default=None, ge=1, le=MAX_INT),
    limit: int = Query(default=100, ge=1, le=500),
) -> Any:
    with db.read() as conn:
        return messaging.list_messages(
            conn,
            caller.org_id,
            contact_id=contact_id,
            status=status_,
            before_id=before,
            limit=limit,
        )


@router.get("/messages/{message_id}", response_model=MessageDetail)
def get_message(message_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        message = messaging.get_message(conn, caller.org_id, message_id)
        events = messaging.list_events(conn, caller.org_id, message_id)
    return {**vars(message), "events": [vars(e) for e in events]}
