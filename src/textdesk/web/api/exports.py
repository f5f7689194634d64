"""CSV exports (admins): contacts or a segment, messages. Streamed; the consent ledger is at
``/api/v1/consent-events.csv``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from textdesk.services import exports
from textdesk.web.api.inputs import MAX_INT, Text
from textdesk.web.deps import ApiCaller, Db, Origin
from textdesk.web.openapi import errors

router = APIRouter(tags=["exports"])


def streamed(export: exports.Export) -> StreamingResponse:
    return StreamingResponse(
        export.chunks,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/exports/contacts.csv", response_class=StreamingResponse, responses=errors(403, 404))
def export_contacts(
    caller: ApiCaller,
    db: Db,
    origin: Origin,
    segment_id: int | None = Query(default=None, ge=1, le=MAX_INT, description="a saved segment"),
    query: Annotated[Text | None, Query(max_length=2000, description="a segment query")] = None,
    q: Annotated[
        Text | None, Query(max_length=200, description="search: name, e-mail, phone")
    ] = None,
    tag: Annotated[Text | None, Query(max_length=64)] = None,
) -> StreamingResponse:
    return streamed(
        exports.export_contacts(
            db, caller, query=query, segment_id=segment_id, q=q, tag=tag, request=origin
        )
    )


@router.get("/exports/messages.csv", response_class=StreamingResponse, responses=errors(403))
def export_messages(
    caller: ApiCaller,
    db: Db,
    origin: Origin,
    since: datetime | None = Query(default=None, description="created at or after (ISO 8601)"),
    until: datetime | None = Query(default=None, description="created before (ISO 8601)"),
) -> StreamingResponse:
    return streamed(exports.export_messages(db, caller, since=since, until=until, request=origin))
