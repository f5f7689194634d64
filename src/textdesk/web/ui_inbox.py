"""The inbox UI (two panes: conversation list, thread with composer) and the live event stream.

Every action answers with the re-rendered thread fragment; ``static/js/inbox.js`` refreshes the
list and the open thread when ``/events`` (SSE, per organization) says something changed.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from textdesk.services import (
    accounts,
    canned,
    channels,
    consent,
    conversation_survey,
    conversations,
    events,
    scheduled,
)
from textdesk.services.auth import Principal
from textdesk.services.automations import drafts
from textdesk.services.conversations import Filters
from textdesk.services.errors import Invalid, ServiceError
from textdesk.web.deps import Config, Db, Origin
from textdesk.web.ui import Actor, Viewer, page

router = APIRouter(include_in_schema=False)

#: Seconds between SSE comments that keep proxies from closing an idle stream.
KEEPALIVE_SECONDS = 15.0


def _filters(request: Request) -> Filters:
    p = request.query_params
    status = p.get("status", "open")
    review = p.get("review")

    def number(name: str) -> int | None:
        value = p.get(name, "")
        return int(value) if value.isdigit() else None

    return Filters(
        view=p.get("view", "all") if p.get("view") in conversations.VIEWS else "all",
        status=status if status in conversations.STATUSES else None,
        needs_review=True if review == "1" else None,
        tag=p.get("tag") or None,
        campaign_id=number("campaign_id"),
        channel_id=number("channel_id"),
        q=p.get("q", "")[:200],
    )


def _list_context(db: Db, viewer: Principal, request: Request) -> dict[str, Any]:
    filters = _filters(request)
    error = None
    with db.read() as conn:
        try:
            result = conversations.list_conversations(
                conn, viewer, filters, cursor=request.query_params.get("cursor") or None
            )
        except ServiceError as exc:
            result, error = conversations.Page([], None), exc.message
        unread = conversations.unread_counts(conn, viewer)
    # The filters alone (no cursor, no open conversation): what a live refresh re-requests.
    query = urlencode(
        [(k, v) for k, v in request.query_params.multi_items() if k not in ("c", "cursor", "open")]
    )
    return {
        "filters": filters,
        "page": result,
        "unread": unread,
        "list_error": error,
        "query": query,
    }


#: How the thread's opt-out banner says where an opt-out came from (consent ledger sources).
OPT_OUT_SOURCES = {
    "keyword": "replied",
    "free_text": "wrote",
    "agent": "an agent recorded it",
    "provider": "the carrier reported it",
    "import": "an import marked it",
    "api": "the API recorded it",
    "web_form": "a web form recorded it",
}


def _opt_out_event(conn: Any, org_id: int, contact_id: int) -> consent.ConsentEvent | None:
    """The ledger entry that opted the contact out (the latest one)."""
    return next(
        (e for e in reversed(consent.history(conn, org_id, contact_id)) if e.kind == "opt_out"),
        None,
    )


def _thread_context(db: Db, viewer: Principal, conversation_id: int) -> dict[str, Any]:
    with db.read() as conn:
        t = conversations.thread(conn, viewer.org_id, conversation_id)
        team = accounts.list_users(conn, viewer.org_id)
        survey = conversation_survey.for_conversation(conn, viewer.org_id, t.conversation)
        opt_out = (
            _opt_out_event(conn, viewer.org_id, t.conversation.contact_id)
            if t.conversation.opted_out
            else None
        )
        pending = drafts.pending_drafts(conn, viewer.org_id, conversation_id)
        later = scheduled.scheduled(conn, viewer.org_id, conversation_id)
        zone = accounts.get_organization(conn, viewer.org_id).time_zone
    return {
        "drafts": pending,
        "scheduled": later,
        "org_zone": zone,
        "thread": t,
        "team": [u for u in team if u.is_active],
        "send_key": uuid.uuid4().hex,
        "survey": survey,
        "opt_out": opt_out,
        "opt_out_sources": OPT_OUT_SOURCES,
    }


@router.get("/inbox", response_class=HTMLResponse)
def inbox(request: Request, db: Db, viewer: Viewer, c: int | None = None) -> Response:
    context = _list_context(db, viewer, request)
    with db.read() as conn:
        numbers = channels.list_channels(conn, viewer.org_id)
    thread: dict[str, Any] = {"thread": None}
    if c is not None:
        conversations.mark_read(db, viewer, c)
        thread = _thread_context(db, viewer, c)
    return page(request, "inbox.html", viewer, channels=numbers, **context, **thread, error=None)


@router.get("/inbox/list", response_class=HTMLResponse)
def inbox_list(request: Request, db: Db, viewer: Viewer) -> Response:
    open_id = request.query_params.get("open", "")
    context = _list_context(db, viewer, request)
    return page(
        request,
        "_inbox_list.html",
        viewer,
        **context,
        open_id=int(open_id) if open_id.isdigit() else None,
    )


def _thread(
    request: Request, db: Db, viewer: Principal, conversation_id: int, error: str | None = None
) -> Response:
    context = _thread_context(db, viewer, conversation_id)
    response = page(request, "_inbox_thread.html", viewer, **context, error=error)
    if error:
        response.headers["HX-Retarget"] = "#thread"
    return response


@router.get("/inbox/c/{conversation_id}", response_class=HTMLResponse)
def open_thread(
    request: Request, conversation_id: int, db: Db, viewer: Viewer, read: int = 1
) -> Response:
    if read:
        conversations.mark_read(db, viewer, conversation_id)
    return _thread(request, db, viewer, conversation_id)


def _act(request: Request, db: Db, actor: Principal, conversation_id: int, action: Any) -> Response:
    try:
        action()
    except ServiceError as exc:
        if exc.status == 404:
            raise
        return _thread(request, db, actor, conversation_id, error=exc.message)
    return _thread(request, db, actor, conversation_id)


@router.post("/inbox/c/{conversation_id}/reply", response_class=HTMLResponse)
def reply(
    request: Request,
    conversation_id: int,
    db: Db,
    config: Config,
    actor: Actor,
    body: Annotated[str, Form()] = "",
    send_key: Annotated[str, Form()] = "",
    send_at: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    # The form's key makes a double submit (held Enter, a retry) send once.
    key = f"inbox:{actor.user_id}:{send_key}" if send_key else None

    def send() -> None:
        later = _local_time(db, actor, send_at) if send_at.strip() else None
        conversations.reply(
            db, config, actor, conversation_id, body, idempotency_key=key, merge=True, send_at=later
        )

    return _act(request, db, actor, conversation_id, send)


def _local_time(db: Db, viewer: Principal, text: str) -> datetime:
    """The composer's "send later" field (``YYYY-MM-DDTHH:MM``, the browser's datetime-local)
    read in the organization's time zone."""
    try:
        naive = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Invalid(f"{text[:40]!r} is not a date and time", field="send_at") from None
    if naive.tzinfo is not None:
        return naive
    with db.read() as conn:
        zone = accounts.get_organization(conn, viewer.org_id).time_zone
    return naive.replace(tzinfo=ZoneInfo(zone))


@router.post(
    "/inbox/c/{conversation_id}/scheduled/{message_id}/cancel", response_class=HTMLResponse
)
def cancel_scheduled(
    request: Request, conversation_id: int, message_id: int, db: Db, actor: Actor
) -> Response:
    return _act(
        request,
        db,
        actor,
        conversation_id,
        lambda: scheduled.cancel(db, actor, message_id, conversation_id=conversation_id),
    )


@router.post("/inbox/c/{conversation_id}/assign", response_class=HTMLResponse)
def assign(
    request: Request,
    conversation_id: int,
    db: Db,
    origin: Origin,
    actor: Actor,
    assignee: Annotated[str, Form()] = "",
) -> Response:
    target = actor.user_id if assignee == "me" else (int(assignee) if assignee.isdigit() else None)
    return _act(
        request,
        db,
        actor,
        conversation_id,
        lambda: conversations.assign(db, actor, conversation_id, target, request=origin),
    )


@router.post("/inbox/c/{conversation_id}/close", response_class=HTMLResponse)
def close(request: Request, conversation_id: int, db: Db, origin: Origin, actor: Actor) -> Response:
    return _act(
        request,
        db,
        actor,
        conversation_id,
        lambda: conversations.set_status(db, actor, conversation_id, "closed", request=origin),
    )


@router.post("/inbox/c/{conversation_id}/reopen", response_class=HTMLResponse)
def reopen(
    request: Request, conversation_id: int, db: Db, origin: Origin, actor: Actor
) -> Response:
    return _act(
        request,
        db,
        actor,
        conversation_id,
        lambda: conversations.set_status(db, actor, conversation_id, "open", request=origin),
    )


@router.post("/inbox/c/{conversation_id}/notes", response_class=HTMLResponse)
def add_note(
    request: Request,
    conversation_id: int,
    db: Db,
    actor: Actor,
    body: Annotated[str, Form()] = "",
) -> Response:
    return _act(
        request,
        db,
        actor,
        conversation_id,
        lambda: conversations.add_note(db, actor, conversation_id, body),
    )


@router.post("/inbox/c/{conversation_id}/tags", response_class=HTMLResponse)
def tag(
    request: Request,
    conversation_id: int,
    db: Db,
    actor: Actor,
    tag: Annotated[str, Form()] = "",
    remove: Annotated[str, Form()] = "",
) -> Response:
    return _act(
        request,
        db,
        actor,
        conversation_id,
        lambda: conversations.tag(db, actor, conversation_id, tag, remove=remove == "1"),
    )


@router.post("/inbox/c/{conversation_id}/opt-out", response_class=HTMLResponse)
def opt_out(
    request: Request,
    conversation_id: int,
    db: Db,
    origin: Origin,
    actor: Actor,
    note: Annotated[str, Form()] = "",
) -> Response:
    return _act(
        request,
        db,
        actor,
        conversation_id,
        lambda: conversations.opt_out(db, actor, conversation_id, note=note, request=origin),
    )


@router.post("/inbox/c/{conversation_id}/review", response_class=HTMLResponse)
def review(
    request: Request,
    conversation_id: int,
    db: Db,
    config: Config,
    origin: Origin,
    actor: Actor,
    action: Annotated[str, Form()] = "",
) -> Response:
    return _act(
        request,
        db,
        actor,
        conversation_id,
        lambda: conversations.review(db, config, actor, conversation_id, action, request=origin),
    )


@router.post("/inbox/c/{conversation_id}/survey", response_class=HTMLResponse)
def survey_answer(
    request: Request,
    conversation_id: int,
    db: Db,
    actor: Actor,
    question_id: Annotated[str, Form()] = "",
    option: Annotated[str, Form()] = "",
) -> Response:
    """One option of a survey question picked in the thread (applies its tag / field)."""
    if not question_id.isdigit():
        return _thread(
            request, db, actor, conversation_id, error="question_id: pick a survey question"
        )
    return _act(
        request,
        db,
        actor,
        conversation_id,
        lambda: conversation_survey.answer(
            db, actor, conversation_id, int(question_id), option[:200]
        ),
    )


@router.get("/inbox/c/{conversation_id}/canned")
def canned_picker(conversation_id: int, db: Db, viewer: Viewer, q: str = "") -> JSONResponse:
    """The ``/`` picker: matching responses, rendered for this conversation's contact."""
    with db.read() as conn:
        convo = conversations.get_conversation(conn, viewer.org_id, conversation_id)
        found = canned.search(conn, viewer.org_id, q[:100], campaign_id=convo.campaign_id)
        items = [
            {
                "id": c.id,
                "title": c.title,
                "text": canned.render(conn, viewer.org_id, c.id, convo.contact_id).text,
            }
            for c in found
        ]
    return JSONResponse({"items": items})


@router.post("/inbox/c/{conversation_id}/preview")
def preview(
    conversation_id: int, db: Db, actor: Actor, body: Annotated[str, Form()] = ""
) -> JSONResponse:
    """The composer's merge-field preview and the content rules' findings (blocks, warnings);
    the segment counter itself is computed in the browser."""
    with db.read() as conn:
        try:
            shown = conversations.preview_for(conn, actor.org_id, conversation_id, body)
            findings = conversations.composer_findings(
                conn, actor.org_id, conversation_id, shown.text, raw=body
            )
        except ServiceError as exc:
            return JSONResponse({"error": exc.message})
    return JSONResponse(
        {
            "text": shown.text,
            "encoding": shown.encoding,
            "segments": shown.segment_count,
            "missing": list(shown.missing_fields),
            "findings": findings,
        }
    )


@router.get("/events")
async def event_stream(request: Request, viewer: Viewer) -> StreamingResponse:
    """Server-sent events for the viewer's organization: ids of what changed, never content
    (the page fetches what it shows through its own authorized routes)."""

    async def stream() -> AsyncIterator[str]:
        sub = events.subscribe(viewer.org_id)
        try:
            yield "retry: 3000\n: connected\n\n"
            while True:
                try:
                    ev = await asyncio.wait_for(sub.__anext__(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                except StopAsyncIteration:
                    return
                yield f"event: {ev.kind}\ndata: {json.dumps(ev.data)}\n\n"
        finally:
            sub.close()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
