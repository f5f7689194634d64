"""Canned responses: saved replies, org-wide or per campaign (admins write, everyone reads)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from textdesk.services import canned
from textdesk.web.api.inputs import MAX_INT, BodyId, Input, PathId, Text
from textdesk.web.deps import ApiCaller, Db, Origin
from textdesk.web.openapi import errors

router = APIRouter(tags=["canned responses"])


class CannedOut(BaseModel):
    id: int
    campaign_id: int | None
    title: str
    body: str
    created_at: datetime
    updated_at: datetime


class CannedIn(Input):
    title: str = Field(max_length=canned.MAX_TITLE)
    body: str = Field(max_length=1600, description="a template: merge fields like {first_name}")
    campaign_id: BodyId | None = Field(default=None, description="null: for every conversation")


@router.get("/canned-responses", response_model=list[CannedOut])
def list_canned(
    caller: ApiCaller,
    db: Db,
    q: Annotated[Text, Query(max_length=100, description="word prefixes of title or body")] = "",
    campaign_id: int | None = Query(
        default=None, ge=1, le=MAX_INT, description="add this campaign's responses"
    ),
    limit: int = Query(default=50, ge=1, le=200),
) -> Any:
    with db.read() as conn:
        return canned.search(conn, caller.org_id, q, campaign_id=campaign_id, limit=limit)


@router.post(
    "/canned-responses",
    response_model=CannedOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403, 409),
)
def create_canned(body: CannedIn, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    return canned.create(
        db, caller, title=body.title, body=body.body, campaign_id=body.campaign_id, request=origin
    )


@router.get("/canned-responses/{canned_id}", response_model=CannedOut)
def get_canned(canned_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return canned.get(conn, caller.org_id, canned_id)


@router.put("/canned-responses/{canned_id}", response_model=CannedOut, responses=errors(403, 409))
def update_canned(
    canned_id: PathId, body: CannedIn, caller: ApiCaller, db: Db, origin: Origin
) -> Any:
    return canned.update(
        db,
        caller,
        canned_id,
        title=body.title,
        body=body.body,
        campaign_id=body.campaign_id,
        request=origin,
    )


@router.delete(
    "/canned-responses/{canned_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403)
)
def delete_canned(canned_id: PathId, caller: ApiCaller, db: Db, origin: Origin) -> Response:
    canned.delete(db, caller, canned_id, request=origin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
