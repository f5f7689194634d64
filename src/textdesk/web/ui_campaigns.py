"""Campaign administration UI: the list, the editor (audience with a live count, script with a
merge-field picker and a live preview, agents, senders, schedule, survey, canned responses,
lifecycle) and the live progress page. Agents see the campaigns they are assigned to and join
them on the send screen (``ui_send``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from textdesk.domain.roles import Role
from textdesk.domain.templates import BUILTIN_FIELDS
from textdesk.services import (
    accounts,
    campaign_reports,
    campaign_survey,
    campaigns,
    channels,
    custom_fields,
    segments,
)
from textdesk.services.auth import Principal
from textdesk.services.campaigns import CampaignInput
from textdesk.services.errors import Forbidden, Invalid, ServiceError
from textdesk.web.deps import Db, Origin
from textdesk.web.ui import Actor, Viewer, page

router = APIRouter(include_in_schema=False)

LIFECYCLE_LABELS = {"start": "Start", "pause": "Pause", "resume": "Resume", "archive": "Archive"}


def _see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


@router.get("/campaigns", response_class=HTMLResponse)
def campaign_list(request: Request, db: Db, viewer: Viewer) -> Response:
    return _list_page(request, db, viewer, error=None)


def _list_page(
    request: Request, db: Db, viewer: Principal, *, error: str | None, status: int = 200
) -> Response:
    with db.read() as conn:
        visible = campaigns.visible_campaigns(conn, viewer)
        saved = (
            segments.list_segments(conn, viewer.org_id) if viewer.role.at_least(Role.ADMIN) else []
        )
    response = page(
        request, "campaigns.html", viewer, campaigns=visible, segments=saved, error=error
    )
    response.status_code = status
    return response


@router.post("/campaigns", response_model=None)
def campaign_create(
    request: Request,
    db: Db,
    origin: Origin,
    actor: Actor,
    name: Annotated[str, Form()] = "",
    segment_id: Annotated[str, Form()] = "",
    segment_query: Annotated[str, Form()] = "",
) -> Response:
    try:
        campaign = campaigns.create_draft(
            db,
            actor,
            CampaignInput(
                name=name,
                segment_query=segment_query,
                segment_id=int(segment_id) if segment_id.strip() else None,
            ),
            request=origin,
        )
    except ServiceError as exc:
        return _list_page(request, db, actor, error=exc.message, status=422)
    return _see_other(f"/campaigns/{campaign.id}/edit")


# --- the editor ---------------------------------------------------------------------------------


def _local(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if value else ""


def _edit_page(
    request: Request,
    db: Db,
    viewer: Principal,
    campaign_id: int,
    *,
    error: str | None = None,
    error_field: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    viewer.require(Role.ADMIN)
    with db.read() as conn:
        campaign = campaigns.get_campaign(conn, viewer.org_id, campaign_id)
        org = accounts.get_organization(conn, viewer.org_id)
        zone = ZoneInfo(org.time_zone)
        context: dict[str, Any] = {
            "campaign": campaign,
            "org": org,
            "starts_local": _local(campaign.starts_at, zone),
            "ends_local": _local(campaign.ends_at, zone),
            "segments": segments.list_segments(conn, viewer.org_id),
            "channels": channels.list_channels(conn, viewer.org_id),
            "team": [u for u in accounts.list_users(conn, viewer.org_id) if u.is_active],
            "agent_ids": {
                a.user_id for a in campaigns.list_agents(conn, viewer.org_id, campaign_id)
            },
            "questions": campaign_survey.list_questions(conn, viewer.org_id, campaign_id),
            "canned": campaign_survey.list_canned(conn, viewer.org_id, campaign_id),
            "merge_fields": [
                *BUILTIN_FIELDS,
                *(f"fields.{f.key}" for f in custom_fields.list_fields(conn, viewer.org_id)),
            ],
            "actions": [a for a in campaigns.TRANSITIONS if campaign.can(a)],
            "labels": LIFECYCLE_LABELS,
            "editable": campaign.status == campaigns.DRAFT,
            "error": error,
            "error_field": error_field,
            "notice": notice,
        }
    response = page(request, "campaign_edit.html", viewer, **context)
    response.status_code = status
    return response


@router.get("/campaigns/{campaign_id}", response_model=None)
def campaign_home(campaign_id: int, viewer: Viewer) -> Response:
    """A campaign's own address: admins land in the editor, agents on its progress page."""
    target = "edit" if viewer.role.at_least(Role.ADMIN) else "progress"
    return RedirectResponse(f"/campaigns/{campaign_id}/{target}", status_code=303)


@router.get("/campaigns/{campaign_id}/edit", response_class=HTMLResponse)
def campaign_edit(request: Request, campaign_id: int, db: Db, viewer: Viewer) -> Response:
    return _edit_page(request, db, viewer, campaign_id)


def _parse_local(raw: str, zone: ZoneInfo, field: str) -> datetime | None:
    if not raw.strip():
        return None
    try:
        return datetime.fromisoformat(raw.strip()).replace(tzinfo=zone)
    except ValueError:
        raise Invalid(f"{field}: {raw!r} is not a date and time", field=field) from None


def _int(raw: str, field: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise Invalid(f"{field} must be a whole number, got {raw!r}", field=field) from None


@router.post("/campaigns/{campaign_id}/edit", response_class=HTMLResponse)
async def campaign_save(
    request: Request, campaign_id: int, db: Db, origin: Origin, actor: Actor
) -> Response:
    form = await request.form()

    def text(key: str) -> str:
        value = form.get(key)
        return value if isinstance(value, str) else ""

    try:
        with db.read() as conn:
            zone = ZoneInfo(accounts.get_organization(conn, actor.org_id).time_zone)
            current = campaigns.get_campaign(conn, actor.org_id, campaign_id)
        changes: dict[str, Any] = {
            "name": text("name"),
            "channel_ids": [
                _int(v, "channel_ids") for v in form.getlist("channel_ids") if isinstance(v, str)
            ],
            "starts_at": _parse_local(text("starts_at"), zone, "starts_at"),
            "ends_at": _parse_local(text("ends_at"), zone, "ends_at"),
            "batch_size": _int(text("batch_size"), "batch_size"),
            "assignment_timeout_seconds": _int(
                text("assignment_timeout_minutes"), "assignment_timeout_minutes"
            )
            * 60,
        }
        if current.status == campaigns.DRAFT:
            changes.update(
                script=text("script"), segment_query=text("segment_query"), purpose=text("purpose")
            )
        campaigns.update_campaign(db, actor, campaign_id, changes, request=origin)
    except ServiceError as exc:
        return _edit_page(
            request, db, actor, campaign_id, error=exc.message, error_field=exc.field, status=422
        )
    return _edit_page(request, db, actor, campaign_id, notice="Saved.")


@router.post("/campaigns/{campaign_id}/audience", response_class=HTMLResponse)
def campaign_audience(
    request: Request,
    campaign_id: int,
    db: Db,
    actor: Actor,
    segment_query: Annotated[str, Form()] = "",
) -> Response:
    """htmx: the live count of contacts matching the query being typed."""
    actor.require(Role.ADMIN)
    count: int | None = None
    error: str | None = None
    with db.read() as conn:
        campaigns.get_campaign(conn, actor.org_id, campaign_id)
        try:
            campaigns.validate_query(conn, actor.org_id, segment_query)
            count = segments.count_matching(conn, actor.org_id, segment_query)
        except Invalid as exc:
            error = exc.message
    return page(request, "_campaign_audience.html", actor, count=count, error=error)


@router.post("/campaigns/{campaign_id}/preview", response_class=HTMLResponse)
def campaign_preview(
    request: Request,
    campaign_id: int,
    db: Db,
    actor: Actor,
    script: Annotated[str | None, Form()] = None,
    segment_query: Annotated[str | None, Form()] = None,
) -> Response:
    """htmx: the script rendered for sample contacts, as it is being typed."""
    actor.require(Role.ADMIN)
    result: campaign_reports.CampaignPreview | None = None
    error: str | None = None
    with db.read() as conn:
        campaign = campaigns.get_campaign(conn, actor.org_id, campaign_id)
        try:
            result = campaign_reports.preview_script(
                conn,
                actor.org_id,
                script=campaign.script if script is None else script,
                query=campaign.segment_query if segment_query is None else segment_query,
                agent_name=actor.name,
                limit=3,
            )
        except Invalid as exc:
            error = exc.message
    return page(request, "_campaign_preview.html", actor, preview=result, error=error)


@router.post("/campaigns/{campaign_id}/agents", response_model=None)
async def campaign_agents(
    request: Request, campaign_id: int, db: Db, origin: Origin, actor: Actor
) -> Response:
    form = await request.form()
    try:
        user_ids = [_int(v, "user_ids") for v in form.getlist("user_ids") if isinstance(v, str)]
        campaigns.set_agents(db, actor, campaign_id, user_ids, request=origin)
    except ServiceError as exc:
        return _edit_page(request, db, actor, campaign_id, error=exc.message, status=422)
    return _edit_page(request, db, actor, campaign_id, notice="Agents saved.")


def parse_options(raw: str) -> list[dict[str, Any]]:
    """One option a line: ``Label | tag | field=value`` (tag and field optional)."""
    options: list[dict[str, Any]] = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        label, *rest = (part.strip() for part in line.split("|"))
        option: dict[str, Any] = {"label": label}
        for part in rest:
            if "=" in part:
                key, _, value = part.partition("=")
                option["field"], option["value"] = key.strip(), value.strip()
            elif part:
                option["tag"] = part
        options.append(option)
    return options


@router.post("/campaigns/{campaign_id}/questions", response_model=None)
def question_add(
    request: Request,
    campaign_id: int,
    db: Db,
    origin: Origin,
    actor: Actor,
    prompt: Annotated[str, Form()] = "",
    options: Annotated[str, Form()] = "",
) -> Response:
    try:
        campaign_survey.add_question(
            db, actor, campaign_id, prompt=prompt, options=parse_options(options), request=origin
        )
    except ServiceError as exc:
        return _edit_page(request, db, actor, campaign_id, error=exc.message, status=422)
    return _see_other(f"/campaigns/{campaign_id}/edit#survey")


@router.post("/campaigns/{campaign_id}/questions/{question_id}/delete", response_model=None)
def question_delete(
    request: Request, campaign_id: int, question_id: int, db: Db, origin: Origin, actor: Actor
) -> Response:
    try:
        campaign_survey.delete_question(db, actor, campaign_id, question_id, request=origin)
    except ServiceError as exc:
        return _edit_page(request, db, actor, campaign_id, error=exc.message, status=422)
    return _see_other(f"/campaigns/{campaign_id}/edit#survey")


@router.post("/campaigns/{campaign_id}/canned", response_model=None)
def canned_add(
    request: Request,
    campaign_id: int,
    db: Db,
    origin: Origin,
    actor: Actor,
    title: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
) -> Response:
    try:
        campaign_survey.add_canned(db, actor, campaign_id, title=title, body=body, request=origin)
    except ServiceError as exc:
        return _edit_page(request, db, actor, campaign_id, error=exc.message, status=422)
    return _see_other(f"/campaigns/{campaign_id}/edit#canned")


@router.post("/campaigns/{campaign_id}/canned/{response_id}/delete", response_model=None)
def canned_delete(
    request: Request, campaign_id: int, response_id: int, db: Db, origin: Origin, actor: Actor
) -> Response:
    try:
        campaign_survey.delete_canned(db, actor, campaign_id, response_id, request=origin)
    except ServiceError as exc:
        return _edit_page(request, db, actor, campaign_id, error=exc.message, status=422)
    return _see_other(f"/campaigns/{campaign_id}/edit#canned")


@router.post("/campaigns/{campaign_id}/lifecycle/{action}", response_model=None)
def campaign_lifecycle(
    request: Request, campaign_id: int, action: str, db: Db, origin: Origin, actor: Actor
) -> Response:
    try:
        campaigns.transition(db, actor, campaign_id, action, request=origin)
    except ServiceError as exc:
        if isinstance(exc, Forbidden):
            raise
        return _edit_page(
            request, db, actor, campaign_id, error=exc.message, error_field=exc.field, status=422
        )
    return _edit_page(
        request, db, actor, campaign_id, notice=f"{LIFECYCLE_LABELS.get(action, action)}: done."
    )


# --- progress -----------------------------------------------------------------------------------


def _progress_context(db: Db, viewer: Principal, campaign_id: int) -> dict[str, Any]:
    with db.read() as conn:
        campaign = campaigns.get_visible(conn, viewer, campaign_id)
        return {"campaign": campaign, "report": campaign_reports.progress(conn, campaign)}


@router.get("/campaigns/{campaign_id}/progress", response_class=HTMLResponse)
def campaign_progress(request: Request, campaign_id: int, db: Db, viewer: Viewer) -> Response:
    return page(
        request, "campaign_progress.html", viewer, **_progress_context(db, viewer, campaign_id)
    )


@router.get("/campaigns/{campaign_id}/progress/live", response_class=HTMLResponse)
def campaign_progress_live(request: Request, campaign_id: int, db: Db, viewer: Viewer) -> Response:
    """htmx polls this every 2 s: the numbers only, swapped in place."""
    return page(
        request, "_campaign_progress.html", viewer, **_progress_context(db, viewer, campaign_id)
    )
