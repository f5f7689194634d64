"""Server-rendered UI (Jinja2 + htmx). Every state-changing request carries a CSRF token:
the session's token in a hidden form field or the ``X-CSRF-Token`` header htmx sends."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from textdesk import __version__
from textdesk.domain.roles import Role
from textdesk.services import (
    accounts,
    auth,
    campaigns,
    channels,
    consent,
    contacts,
    custom_fields,
    messaging,
)
from textdesk.services.auth import Principal
from textdesk.services.automations.events import contact_activity
from textdesk.services.errors import Forbidden, RateLimited, ServiceError, Unauthenticated
from textdesk.store.tables import utcnow
from textdesk.web.deps import SESSION_COOKIE, Config, Db, Origin, session_principal

LOGIN_CSRF_COOKIE = "td_login_csrf"
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["version"] = __version__

router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """Raised by UI dependencies; the app turns it into a redirect to /login."""


def ui_principal(request: Request, db: Db) -> Principal:
    principal = session_principal(request, db)
    if principal is None:
        raise LoginRequired
    return principal


async def csrf_checked(
    request: Request, principal: Annotated[Principal, Depends(ui_principal)]
) -> Principal:
    given = request.headers.get("x-csrf-token")
    if given is None:
        form = await request.form()
        value = form.get("csrf_token")
        given = value if isinstance(value, str) else None
    if not auth.csrf_matches(principal.csrf_token, given):
        raise Forbidden("the form expired or came from another site; reload the page and retry")
    return principal


Viewer = Annotated[Principal, Depends(ui_principal)]
Actor = Annotated[Principal, Depends(csrf_checked)]


def page(request: Request, name: str, principal: Principal | None, **context: Any) -> Response:
    """Render a template with the signed-in principal (UI modules of other features use this)."""
    return templates.TemplateResponse(
        request, name, {"principal": principal, "Role": Role, **context}
    )


_page = page


@router.get("/", response_model=None)
def root(request: Request, db: Db) -> Response:
    target = "/home" if session_principal(request, db) else "/login"
    return RedirectResponse(target, status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, config: Config, error: str | None = None) -> Response:
    return _login_page(request, config, error=error)


def _login_page(
    request: Request,
    config: Config,
    *,
    error: str | None,
    email: str = "",
    organizations: list[tuple[str, str]] | None = None,
) -> Response:
    token = secrets.token_urlsafe(24)
    response = _page(
        request,
        "login.html",
        None,
        csrf_token=token,
        error=error,
        email=email,
        organizations=organizations or [],
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=config.secure_cookies,
        max_age=3600,
    )
    return response


@router.post("/login", response_model=None)
def login(
    request: Request,
    db: Db,
    config: Config,
    origin: Origin,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    org: Annotated[str, Form()] = "",
) -> Response:
    if not auth.csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token):
        return _login_again(request, config, "Your login form expired. Please try again.", 403)
    try:
        user = auth.authenticate(
            db, config, email=email, password=password, request=origin, org=org or None
        )
    except auth.ChooseOrganization as choice:
        return _login_page(
            request,
            config,
            error="This e-mail and password open several organizations. Choose one and "
            "enter your password again.",
            email=email,
            organizations=choice.organizations,
        )
    except RateLimited as exc:
        response = _login_again(request, config, "Too many failed attempts. Try again later.", 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except Unauthenticated:
        return _login_again(request, config, "Wrong e-mail or password.", 401)
    token, _csrf = auth.create_session(db, config, user, origin)
    response = RedirectResponse("/home", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=config.secure_cookies,
        max_age=config.session_max_age,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


def _login_again(request: Request, config: Config, error: str, status: int) -> Response:
    response = _login_page(request, config, error=error)
    response.status_code = status
    return response


@router.post("/logout", response_model=None)
def logout(request: Request, db: Db, origin: Origin, _actor: Actor) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        auth.end_session(db, token, origin)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/home", response_class=HTMLResponse)
def home(request: Request, db: Db, viewer: Viewer) -> Response:
    with db.read() as conn:
        org = accounts.get_organization(conn, viewer.org_id)
        numbers = channels.list_channels(conn, viewer.org_id)
        drafts = campaigns.list_campaigns(conn, viewer.org_id)
        contact_count = contacts.count_contacts(conn, viewer.org_id)
    return _page(
        request,
        "home.html",
        viewer,
        org=org,
        channels=numbers,
        campaigns=drafts,
        contact_count=contact_count,
        now=utcnow(),
    )


@router.get("/contacts", response_class=HTMLResponse)
def contact_list(request: Request, db: Db, viewer: Viewer, after: int = 0) -> Response:
    with db.read() as conn:
        org = accounts.get_organization(conn, viewer.org_id)
        page = contacts.list_contacts(conn, viewer.org_id, after_id=after, limit=50)
    return _page(
        request,
        "contacts.html",
        viewer,
        org=org,
        contacts=page,
        next_after=page[-1].id if len(page) == 50 else None,
    )


@router.get("/contacts/{contact_id}", response_class=HTMLResponse)
def contact_detail(request: Request, contact_id: int, db: Db, viewer: Viewer) -> Response:
    return _contact_page(request, db, viewer, contact_id, error=None)


def _contact_page(
    request: Request, db: Db, viewer: Principal, contact_id: int, *, error: str | None
) -> Response:
    with db.read() as conn:
        contact = contacts.get_contact(conn, viewer.org_id, contact_id)
        thread = messaging.list_messages(conn, viewer.org_id, contact_id=contact_id, limit=50)
        history = consent.history(conn, viewer.org_id, contact_id)
        activity = contact_activity(conn, viewer.org_id, contact_id)
    return _page(
        request,
        "contact.html",
        viewer,
        contact=contact,
        messages=thread[::-1],
        history=history,
        error=error,
        **activity,
    )


@router.post("/contacts/{contact_id}/opt-out", response_class=HTMLResponse)
def contact_opt_out(
    request: Request,
    contact_id: int,
    db: Db,
    origin: Origin,
    actor: Actor,
    note: Annotated[str, Form()] = "",
) -> Response:
    consent.agent_opt_out(db, actor, contact_id, note=note, request=origin)
    return _contact_page(request, db, actor, contact_id, error=None)


@router.post("/contacts/{contact_id}/opt-in", response_class=HTMLResponse)
def contact_opt_in(
    request: Request,
    contact_id: int,
    db: Db,
    origin: Origin,
    actor: Actor,
    reason: Annotated[str, Form()] = "",
) -> Response:
    try:
        consent.admin_opt_in(db, actor, contact_id, reason=reason, request=origin)
    except ServiceError as exc:
        return _contact_page(request, db, actor, contact_id, error=exc.message)
    return _contact_page(request, db, actor, contact_id, error=None)


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, db: Db, viewer: Viewer) -> Response:
    with db.read() as conn:
        org = accounts.get_organization(conn, viewer.org_id)
        team = accounts.list_users(conn, viewer.org_id)
        fields = custom_fields.list_fields(conn, viewer.org_id)
    keys = auth.list_api_keys(db, viewer) if viewer.role.at_least(Role.ADMIN) else []
    return _page(
        request,
        "settings.html",
        viewer,
        org=org,
        users=team,
        api_keys=keys,
        fields=fields,
        new_key=None,
        error=None,
        field_error=None,
    )


def _fields_fragment(request: Request, db: Db, actor: Principal, error: str | None) -> Response:
    with db.read() as conn:
        fields = custom_fields.list_fields(conn, actor.org_id)
    return _page(request, "_custom_fields.html", actor, fields=fields, field_error=error)


@router.post("/settings/custom-fields", response_class=HTMLResponse)
def create_custom_field(
    request: Request,
    db: Db,
    origin: Origin,
    actor: Actor,
    key: Annotated[str, Form()] = "",
    label: Annotated[str, Form()] = "",
    type_: Annotated[str, Form(alias="type")] = "text",
) -> Response:
    try:
        custom_fields.create_field(db, actor, key=key, label=label, type_=type_, request=origin)
    except ServiceError as exc:
        return _fields_fragment(request, db, actor, exc.message)
    return _fields_fragment(request, db, actor, None)


@router.post("/settings/custom-fields/{key}/delete", response_class=HTMLResponse)
def delete_custom_field(
    request: Request, key: str, db: Db, origin: Origin, actor: Actor
) -> Response:
    try:
        custom_fields.delete_field(db, actor, key, request=origin)
    except ServiceError as exc:
        return _fields_fragment(request, db, actor, exc.message)
    return _fields_fragment(request, db, actor, None)


@router.post("/settings/api-keys", response_class=HTMLResponse)
def create_key(
    request: Request,
    db: Db,
    origin: Origin,
    actor: Actor,
    name: Annotated[str, Form()] = "",
) -> Response:
    new_key: str | None = None
    error: str | None = None
    try:
        _key, new_key = auth.create_api_key(db, actor, name=name, request=origin)
    except ServiceError as exc:
        error = exc.message
    keys = auth.list_api_keys(db, actor) if actor.role.at_least(Role.ADMIN) else []
    return _page(request, "_api_keys.html", actor, api_keys=keys, new_key=new_key, error=error)


@router.post("/settings/api-keys/{key_id}/revoke", response_class=HTMLResponse)
def revoke_key(request: Request, key_id: int, db: Db, origin: Origin, actor: Actor) -> Response:
    auth.revoke_api_key(db, actor, key_id, request=origin)
    keys = auth.list_api_keys(db, actor)
    return _page(request, "_api_keys.html", actor, api_keys=keys, new_key=None, error=None)
