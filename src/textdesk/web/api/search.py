"""Search: contacts by name, e-mail or phone (any format); messages by their text."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from textdesk.services import search
from textdesk.web.api.contacts import ContactOut
from textdesk.web.api.inputs import Text
from textdesk.web.deps import ApiCaller, Db

router = APIRouter(tags=["search"])


class MessageHitOut(BaseModel):
    id: int
    contact_id: int
    contact_name: str
    contact_phone: str
    direction: str
    status: str
    snippet: str
    created_at: datetime


class ContactHits(BaseModel):
    items: list[ContactOut]


class MessageHits(BaseModel):
    items: list[MessageHitOut]


@router.get("/search/contacts", response_model=ContactHits)
def search_contacts(
    caller: ApiCaller,
    db: Db,
    q: Annotated[
        Text, Query(max_length=search.MAX_QUERY, description="words (prefixes) or a phone number")
    ],
    limit: int = Query(default=50, ge=1, le=search.MAX_LIMIT),
) -> Any:
    with db.read() as conn:
        return {"items": search.search_contacts(conn, caller.org_id, q, limit=limit)}


@router.get("/search/messages", response_model=MessageHits)
def search_messages(
    caller: ApiCaller,
    db: Db,
    q: Annotated[
        Text, Query(max_length=search.MAX_QUERY, description="words (prefixes) of the body")
    ],
    limit: int = Query(default=50, ge=1, le=search.MAX_LIMIT),
) -> Any:
    with db.read() as conn:
        return {"items": search.search_messages(conn, caller.org_id, q, limit=limit)}
