"""Conversations over the API: list, thread, reply, assign, close, notes, review."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response, status
from pydantic import BaseModel, Field

from textdesk.services import conversations
from textdesk.services.conversations import Conversation, Filters
from textdesk.web.api.inputs import BodyId, Input, PathId, QueryId, Text
from textdesk.web.api.messages import REPEAT, MessageOut
from textdesk.web.deps import ApiCaller, Config, Db, Origin
from textdesk.web.openapi import errors

router = APIRouter(tags=["conversations"])


class ConversationOut(BaseModel):
    id: int
    contact_id: int
    contact_name: str
    phone_e164: str
    opted_out: bool
    tags: list[str]
    channel_id: int | None
    channel_phone: str | None
    assignee_id: int | None
    assignee_name: str | None
    status: str
    unread_count: int
    needs_review: bool
    review_reason: str | None
    campaign_id: int | None
    last_message_at: datetime | None
    last_inbound_at: datetime | None
    last_body: str | None
    last_direction: str | None
    created_at: datetime


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")
    unread: dict[str, int] = Field(description="unread in open conversations: mine, unassigned")


class ThreadMessageOut(MessageOut):
    why_not_sent: str | None = Field(description="the gate's or provider's reason, if not sent")


class NoteOut(BaseModel):
    id: int
    author_id: int | None
    author_name: str | None
    body: str
    created_at: datetime


class ConversationDetail(ConversationOut):
    messages: list[ThreadMessageOut]
    notes: list[NoteOut]


class ReplyIn(Input):
    body: str = Field(min_length=1, max_length=1600)


class AssignIn(Input):
    assignee_id: BodyId | None = Field(description="a user of the organization; null releases it")


class NoteIn(Input):
    body: str = Field(min_length=1, max_length=conversations.MAX_NOTE)


class ReviewIn(Input):
    action: Literal["confirm", "dismiss"]


def _out(c: Conversation) -> dict[str, Any]:
    return vars(c)


@router.get("/conversations", response_model=ConversationPage)
def list_conversations(
    caller: ApiCaller,
    db: Db,
    view: Literal["all", "mine", "unassigned"] = "all",
    status_: Annotated[Literal["open", "closed", "any"], Query(alias="status")] = "open",
    needs_review: bool | None = None,
    tag: Annotated[Text | None, Query(max_length=50)] = None,
    campaign_id: QueryId = None,
    channel_id: QueryId = None,
    q: Annotated[Text, Query(max_length=200, description="contact name, e-mail or phone")] = "",
    cursor: Annotated[Text | None, Query(max_length=200)] = None,
    limit: int = Query(default=50, ge=1, le=conversations.MAX_PAGE),
) -> Any:
    filters = Filters(
        view=view,
        status=None if status_ == "any" else status_,
        needs_review=needs_review,
        tag=tag,
        campaign_id=campaign_id,
        channel_id=channel_id,
        q=q,
    )
    with db.read() as conn:
        page = conversations.list_conversations(conn, caller, filters, cursor=cursor, limit=limit)
        unread = conversations.unread_counts(conn, caller)
    return {
        "items": [_out(c) for c in page.items],
        "next_cursor": page.next_cursor,
        "unread": unread,
    }


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail)
def get_conversation(conversation_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        t = conversations.thread(conn, caller.org_id, conversation_id)
    return {
        **_out(t.conversation),
        "messages": [{**vars(m.message), "why_not_sent": m.why_not_sent} for m in t.messages],
        "notes": [vars(n) for n in t.notes],
    }


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=MessageOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: REPEAT, **errors(403)},
)
def reply(
    conversation_id: PathId,
    body: ReplyIn,
    caller: ApiCaller,
    db: Db,
    config: Config,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(description="Retries with the same key return the first message, never a second."),
    ] = None,
) -> Any:
    queued = conversations.reply(
        db,
        config,
        caller,
        conversation_id,
        body.body,
        idempotency_key=f"api:{idempotency_key}" if idempotency_key else None,
    )
    if not queued.created:
        response.status_code = status.HTTP_200_OK
    return queued.message


@router.post(
    "/conversations/{conversation_id}/assign", response_model=ConversationOut, responses=errors(403)
)
def assign(
    conversation_id: PathId, body: AssignIn, caller: ApiCaller, db: Db, origin: Origin
) -> Any:
    return _out(conversations.assign(db, caller, conversation_id, body.assignee_id, request=origin))


@router.post(
    "/conversations/{conversation_id}/close", response_model=ConversationOut, responses=errors(403)
)
def close(conversation_id: PathId, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    return _out(conversations.set_status(db, caller, conversation_id, "closed", request=origin))


@router.post(
    "/conversations/{conversation_id}/reopen", response_model=ConversationOut, responses=errors(403)
)
def reopen(conversation_id: PathId, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    return _out(conversations.set_status(db, caller, conversation_id, "open", request=origin))


@router.post("/conversations/{conversation_id}/read", response_model=ConversationOut)
def mark_read(conversation_id: PathId, caller: ApiCaller, db: Db) -> Any:
    return _out(conversations.mark_read(db, caller, conversation_id))


@router.post(
    "/conversations/{conversation_id}/notes",
    response_model=NoteOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403),
)
def add_note(conversation_id: PathId, body: NoteIn, caller: ApiCaller, db: Db) -> Any:
    return vars(conversations.add_note(db, caller, conversation_id, body.body))


@router.post(
    "/conversations/{conversation_id}/review", response_model=ConversationOut, responses=errors(409)
)
def review(
    conversation_id: PathId,
    body: ReviewIn,
    caller: ApiCaller,
    db: Db,
    config: Config,
    origin: Origin,
) -> Any:
    return _out(
        conversations.review(db, config, caller, conversation_id, body.action, request=origin)
    )
