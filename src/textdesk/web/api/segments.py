"""Segments: saved queries in the segment language, a live preview, and their contacts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from textdesk.services import segments
from textdesk.services.contacts import MAX_PAGE
from textdesk.web.api.contacts import ContactOut, ContactPage
from textdesk.web.api.inputs import After, Input, PathId
from textdesk.web.deps import ApiCaller, Db, Origin
from textdesk.web.openapi import errors

router = APIRouter(tags=["segments"])


class SegmentOut(BaseModel):
    id: int
    name: str
    query: str
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class SegmentIn(Input):
    name: str = Field(min_length=1, max_length=200)
    query: str = Field(default="", max_length=segments.MAX_QUERY)


class SegmentPatch(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    query: str | None = Field(default=None, max_length=segments.MAX_QUERY)


class PreviewIn(Input):
    query: str = Field(default="", max_length=segments.MAX_QUERY)
    limit: int = Field(default=10, ge=0, le=segments.MAX_SAMPLE)


class PreviewOut(BaseModel):
    count: int
    sample: list[ContactOut]


@router.get("/segments", response_model=list[SegmentOut])
def list_segments(caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return segments.list_segments(conn, caller.org_id)


@router.post(
    "/segments",
    response_model=SegmentOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403, 409),
)
def create_segment(body: SegmentIn, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    return segments.create_segment(db, caller, name=body.name, query=body.query, request=origin)


@router.post("/segments/preview", response_model=PreviewOut)
def preview(body: PreviewIn, caller: ApiCaller, db: Db) -> Any:
    """Count and sample the contacts a query matches; a bad query is a 422 whose detail
    starts with ``position N:``."""
    with db.read() as conn:
        return segments.preview(conn, caller.org_id, body.query, limit=body.limit)


@router.get("/segments/{segment_id:id}", response_model=SegmentOut)
def get_segment(segment_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return segments.get_segment(conn, caller.org_id, segment_id)


@router.patch("/segments/{segment_id:id}", response_model=SegmentOut, responses=errors(403, 409))
def update_segment(
    segment_id: PathId, body: SegmentPatch, caller: ApiCaller, db: Db, origin: Origin
) -> Any:
    return segments.update_segment(
        db, caller, segment_id, name=body.name, query=body.query, request=origin
    )


@router.delete(
    "/segments/{segment_id:id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403)
)
def delete_segment(segment_id: PathId, caller: ApiCaller, db: Db, origin: Origin) -> Response:
    segments.delete_segment(db, caller, segment_id, request=origin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/segments/{segment_id:id}/contacts", response_model=ContactPage)
def segment_contacts(
    segment_id: PathId,
    caller: ApiCaller,
    db: Db,
    after: After = 0,
    limit: int = Query(default=100, ge=1, le=MAX_PAGE),
) -> Any:
    with db.read() as conn:
        items = segments.segment_contacts(
            conn, caller.org_id, segment_id, after_id=after, limit=limit
        )
    return {"items": items, "next_after": items[-1].id if len(items) == limit else None}
