"""The import pages: upload, preview with the mapping step, live progress (SSE), report."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from textdesk.domain.csvimport import ATTRIBUTES
from textdesk.services import custom_fields, imports
from textdesk.services.errors import ServiceError
from textdesk.web.deps import Config, Db, Origin
from textdesk.web.ui import Actor, Viewer, page, templates

router = APIRouter(include_in_schema=False)

#: How often the progress stream re-reads the import row (it works the same whichever process
#: runs the import, on either engine).
POLL_SECONDS = 0.5

LABELS = {
    "phone": "Phone",
    "first_name": "First name",
    "last_name": "Last name",
    "full_name": "Full name (split)",
    "email": "E-mail",
    "zip": "ZIP",
    "state": "State",
    "time_zone": "Time zone",
    "external_id": "External id",
    "opted_in": "Opted in (consent)",
    "consent_source": "Consent source",
    "consent_timestamp": "Consent timestamp",
}


@router.get("/imports", response_class=HTMLResponse)
def import_list(request: Request, db: Db, viewer: Viewer) -> Response:
    with db.read() as conn:
        items = imports.list_imports(conn, viewer.org_id)
    return page(request, "imports.html", viewer, items=items, error=None)


@router.post("/imports", response_model=None)
async def import_upload(
    request: Request, db: Db, config: Config, origin: Origin, actor: Actor
) -> Response:
    form = await request.form()
    file = form.get("file")
    try:
        if not isinstance(file, UploadFile) or not file.filename:
            raise ServiceError("choose a CSV file to upload", field="file")
        view = await run_in_threadpool(
            imports.upload,
            db,
            config,
            actor,
            filename=file.filename,
            stream=file.file,
            request=origin,
        )
    except ServiceError as exc:
        with db.read() as conn:
            items = imports.list_imports(conn, actor.org_id)
        response = page(request, "imports.html", actor, items=items, error=exc.message)
        response.status_code = exc.status
        return response
    return RedirectResponse(f"/imports/{view.id}", status_code=303)


def _attributes(db: Db, org_id: int) -> list[tuple[str, str]]:
    with db.read() as conn:
        fields = custom_fields.list_fields(conn, org_id)
    return [(a, LABELS[a]) for a in ATTRIBUTES] + [
        (f"fields.{f.key}", f"{f.label} (custom)") for f in fields
    ]


def _import_page(
    request: Request, db: Db, principal: Any, import_id: int, error: str | None = None
) -> Response:
    with db.read() as conn:
        view = imports.get_import(conn, principal.org_id, import_id)
    return page(
        request,
        "import.html",
        principal,
        item=view,
        attributes=_attributes(db, principal.org_id),
        error=error,
    )


@router.get("/imports/{import_id}", response_class=HTMLResponse)
def import_detail(request: Request, import_id: int, db: Db, viewer: Viewer) -> Response:
    return _import_page(request, db, viewer, import_id)


@router.post("/imports/{import_id}/start", response_model=None)
async def import_start(
    request: Request, import_id: int, db: Db, origin: Origin, actor: Actor
) -> Response:
    form = await request.form()
    with db.read() as conn:
        view = imports.get_import(conn, actor.org_id, import_id)
    mapping = {}
    for i, column in enumerate(view.columns):
        value = form.get(f"map_{i}")
        if isinstance(value, str) and value:
            mapping[column] = value
    tags = str(form.get("tags") or "").replace(";", ",").split(",")
    try:
        await run_in_threadpool(
            imports.start_import,
            db,
            actor,
            import_id,
            mapping=mapping,
            policy=str(form.get("policy") or "fill"),
            tags=tags,
            all_opted_in=form.get("all_opted_in") == "on",
            consent_source=str(form.get("consent_source") or ""),
            request=origin,
        )
    except ServiceError as exc:
        response = _import_page(request, db, actor, import_id, error=exc.message)
        response.status_code = exc.status
        return response
    runner: imports.ImportRunner | None = getattr(request.app.state, "import_runner", None)
    if runner is not None:
        runner.wake()
    return RedirectResponse(f"/imports/{import_id}", status_code=303)


@router.post("/imports/{import_id}/cancel", response_model=None)
def import_cancel(import_id: int, db: Db, origin: Origin, actor: Actor) -> Response:
    imports.cancel_import(db, actor, import_id, request=origin)
    return RedirectResponse(f"/imports/{import_id}", status_code=303)


@router.get("/imports/{import_id}/rejects.csv", response_class=StreamingResponse)
def import_rejects(import_id: int, db: Db, viewer: Viewer) -> StreamingResponse:
    return StreamingResponse(
        imports.rejects_csv(db, viewer, import_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="import-{import_id}-rejects.csv"'},
    )


def _sse(event: str, html: str) -> str:
    data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{data}\n"


@router.get("/imports/{import_id}/events")
async def import_events(request: Request, import_id: int, db: Db, viewer: Viewer) -> Response:
    """Server-sent events: the progress fragment whenever it changes, then ``done``."""

    def read() -> imports.ImportView:
        with db.read() as conn:
            return imports.get_import(conn, viewer.org_id, import_id)

    read()  # 404 before the stream starts
    fragment = templates.get_template("_import_progress.html")

    async def stream() -> AsyncIterator[str]:
        last = None
        while not await request.is_disconnected():
            view = await run_in_threadpool(read)
            html = fragment.render(item=view)
            if html != last:
                yield _sse("progress", html)
                last = html
            if view.finished:
                yield _sse("done", "")
                return
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
