"""Segments UI: the saved segments, and an editor whose query box shows a live count and
sample while typing (htmx, 300 ms after the last key), with errors pointing at the position."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from textdesk.domain.roles import Role
from textdesk.services import custom_fields, segments
from textdesk.services.auth import Principal
from textdesk.services.errors import ServiceError
from textdesk.services.segments import QueryInvalid
from textdesk.web.deps import Db, Origin
from textdesk.web.ui import Actor, Viewer, page

router = APIRouter(include_in_schema=False)

SAMPLE_SIZE = 10


def _error_context(exc: ServiceError, query: str) -> dict[str, Any]:
    """The message, and where to draw the caret under the query (when there is a position)."""
    position = exc.position if isinstance(exc, QueryInvalid) else None
    if position is None:
        return {"error": exc.message, "caret": None}
    # The caret goes under the line holding the position, so multi-line queries work too.
    line_start = query.rfind("\n", 0, position) + 1
    line_end = query.find("\n", position)
    line = query[line_start : line_end if line_end != -1 else len(query)]
    return {"error": exc.message, "caret": {"line": line, "column": position - line_start}}


def _preview_context(db: Db, viewer: Principal, query: str) -> dict[str, Any]:
    try:
        with db.read() as conn:
            result = segments.preview(conn, viewer.org_id, query, limit=SAMPLE_SIZE)
    except ServiceError as exc:
        return {"query": query, **_error_context(exc, query)}
    return {"query": query, "count": result.count, "sample": result.sample, "error": None}


def _editor(
    request: Request,
    db: Db,
    viewer: Principal,
    *,
    current: segments.Segment | None,
    name: str,
    query: str,
    form_error: str | None = None,
    form_field: str | None = None,
    status: int = 200,
) -> Response:
    with db.read() as conn:
        saved = segments.list_segments(conn, viewer.org_id)
        fields = custom_fields.list_fields(conn, viewer.org_id)
    response = page(
        request,
        "segments.html",
        viewer,
        segments=saved,
        current=current,
        seg_name=name,
        fields=fields,
        form_error=form_error,
        form_field=form_field,
        can_edit=viewer.role.at_least(Role.ADMIN),
        **_preview_context(db, viewer, query),
    )
    response.status_code = status
    return response


@router.get("/segments", response_class=HTMLResponse)
def segment_list(request: Request, db: Db, viewer: Viewer, query: str = "") -> Response:
    return _editor(request, db, viewer, current=None, name="", query=query)


@router.get("/segments/preview", response_class=HTMLResponse)
def segment_preview(request: Request, db: Db, viewer: Viewer, query: str = "") -> Response:
    """The fragment under the query box: count and sample, or the error with a caret."""
    return page(request, "_segment_preview.html", viewer, **_preview_context(db, viewer, query))


@router.get("/segments/{segment_id}", response_class=HTMLResponse)
def segment_edit(request: Request, db: Db, viewer: Viewer, segment_id: int) -> Response:
    with db.read() as conn:
        current = segments.get_segment(conn, viewer.org_id, segment_id)
    return _editor(request, db, viewer, current=current, name=current.name, query=current.query)


@router.post("/segments", response_model=None)
def segment_create(
    request: Request,
    db: Db,
    actor: Actor,
    origin: Origin,
    name: Annotated[str, Form()] = "",
    query: Annotated[str, Form()] = "",
) -> Response:
    try:
        seg = segments.create_segment(db, actor, name=name, query=query, request=origin)
    except ServiceError as exc:
        return _editor(
            request,
            db,
            actor,
            current=None,
            name=name,
            query=query,
            form_error=exc.message,
            form_field=exc.field,
            status=exc.status,
        )
    return RedirectResponse(f"/segments/{seg.id}?saved=1", status_code=303)


@router.post("/segments/{segment_id}", response_model=None)
def segment_update(
    request: Request,
    db: Db,
    actor: Actor,
    origin: Origin,
    segment_id: int,
    name: Annotated[str, Form()] = "",
    query: Annotated[str, Form()] = "",
) -> Response:
    try:
        seg = segments.update_segment(db, actor, segment_id, name=name, query=query, request=origin)
    except ServiceError as exc:
        with db.read() as conn:
            current = segments.get_segment(conn, actor.org_id, segment_id)
        return _editor(
            request,
            db,
            actor,
            current=current,
            name=name,
            query=query,
            form_error=exc.message,
            form_field=exc.field,
            status=exc.status,
        )
    return RedirectResponse(f"/segments/{seg.id}?saved=1", status_code=303)


@router.post("/segments/{segment_id}/delete", response_model=None)
def segment_delete(db: Db, actor: Actor, origin: Origin, segment_id: int) -> Response:
    segments.delete_segment(db, actor, segment_id, request=origin)
    return RedirectResponse("/segments", status_code=303)
