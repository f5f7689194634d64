"""Contacts UI beyond the list and detail pages of ``ui.py``: filtered results (live search, tag,
segment), the edit form with typed custom fields, tags, and CSV downloads.

Paths under ``/contacts/`` here have two segments (``/contacts/list/rows``,
``/contacts/{id}/edit``) so they never collide with ``/contacts/{contact_id}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.datastructures import FormData

from textdesk.services import contacts, custom_fields, exports, segments
from textdesk.services.auth import Principal
from textdesk.services.contacts import Contact
from textdesk.services.errors import Invalid, ServiceError
from textdesk.web.deps import Db, Origin
from textdesk.web.ui import Actor, Viewer, page

router = APIRouter(include_in_schema=False)

PAGE = 50
#: The built-in attributes the edit form shows, with their labels and input types.
BUILT_IN = (
    ("phone", "Phone", "tel"),
    ("first_name", "First name", "text"),
    ("last_name", "Last name", "text"),
    ("email", "E-mail", "email"),
    ("zip", "ZIP", "text"),
    ("state", "State", "text"),
    ("time_zone", "Time zone", "text"),
    ("external_id", "External id", "text"),
)
_INPUT_TYPES = {"text": "text", "number": "number", "date": "date", "boolean": "select"}


@dataclass(frozen=True)
class Filters:
    q: str = ""
    tag: str = ""
    segment_id: int | None = None
    query: str = ""

    @property
    def active(self) -> bool:
        return bool(self.q or self.tag or self.segment_id or self.query)

    def params(self, **extra: Any) -> dict[str, Any]:
        values = {"q": self.q, "tag": self.tag, "segment_id": self.segment_id, "query": self.query}
        return {k: v for k, v in {**values, **extra}.items() if v not in (None, "")}


def _filters(q: str, tag: str, segment_id: str, query: str) -> Filters:
    seg = int(segment_id) if segment_id.strip().isdigit() else None
    return Filters(q=q.strip()[:200], tag=tag.strip()[:64], segment_id=seg, query=query[:2000])


@router.get("/contacts/list/rows", response_class=HTMLResponse)
def contact_rows(
    request: Request,
    db: Db,
    viewer: Viewer,
    q: str = "",
    tag: str = "",
    segment_id: str = "",
    query: str = "",
    after: int = 0,
) -> Response:
    """The filtered list: the results fragment for htmx, the whole page otherwise (a reload
    or a link keeps the filters)."""
    filters = _filters(q, tag, segment_id, query)
    # htmx asks for the whole page when it restores a pushed URL missing from its cache.
    fragment = (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
    )
    error: str | None = None
    rows: list[Contact] = []
    with db.read() as conn:
        try:
            where = contacts.filter_clause(
                conn,
                viewer.org_id,
                q=filters.q,
                tag=filters.tag,
                query=filters.query,
                segment_id=filters.segment_id,
            )
            rows = contacts.list_contacts(
                conn, viewer.org_id, after_id=after, limit=PAGE, where=where
            )
        except ServiceError as exc:
            error = exc.message
        context: dict[str, Any] = {
            "contacts": rows,
            "next_after": rows[-1].id if len(rows) == PAGE else None,
            "filters": filters,
            "filter_error": error,
        }
        if not fragment:
            context.update(_filter_options(conn, viewer.org_id))
    status = 422 if error else 200
    if fragment:
        response = page(request, "_contact_rows.html", viewer, **context)
    else:
        response = page(request, "contacts.html", viewer, **context)
    response.status_code = status
    return response


@router.get("/contacts/list/filters", response_class=HTMLResponse)
def contact_filters(request: Request, db: Db, viewer: Viewer) -> Response:
    """The filter bar (tags and saved segments to pick from), loaded into the list page."""
    with db.read() as conn:
        options = _filter_options(conn, viewer.org_id)
    return page(request, "_contact_filters.html", viewer, filters=Filters(), **options)


def _filter_options(conn: Any, org_id: int) -> dict[str, Any]:
    return {
        "tag_options": contacts.tag_counts(conn, org_id),
        "segment_options": segments.list_segments(conn, org_id),
    }


# --- edit -----------------------------------------------------------------------------------------


def _edit_page(
    request: Request,
    db: Db,
    viewer: Principal,
    contact_id: int,
    *,
    values: dict[str, Any] | None = None,
    error: ServiceError | None = None,
    saved: bool = False,
) -> Response:
    with db.read() as conn:
        contact = contacts.get_contact(conn, viewer.org_id, contact_id)
        fields = custom_fields.list_fields(conn, viewer.org_id)
    if values is None:
        values = {
            "phone": contact.phone_e164,
            **{name: getattr(contact, name) or "" for name, _l, _t in BUILT_IN[1:]},
            **{f"fields.{f.key}": _form_value(f.type, contact.fields.get(f.key)) for f in fields},
        }
    response = page(
        request,
        "contact_edit.html",
        viewer,
        contact=contact,
        built_in=BUILT_IN,
        fields=fields,
        input_types=_INPUT_TYPES,
        values=values,
        error=error.message if error else None,
        error_field=error.field if error else None,
        saved=saved,
    )
    if error is not None:
        response.status_code = error.status
    return response


def _form_value(type_: str, value: Any) -> str:
    if value is None:
        return ""
    if type_ == "boolean":
        return "true" if value else "false"
    return str(value)


@router.get("/contacts/{contact_id}/edit", response_class=HTMLResponse)
def edit_form(request: Request, contact_id: int, db: Db, viewer: Viewer) -> Response:
    return _edit_page(request, db, viewer, contact_id)


@router.post("/contacts/{contact_id}/edit", response_class=HTMLResponse)
async def edit_contact(
    request: Request, contact_id: int, db: Db, origin: Origin, actor: Actor
) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    try:
        changes = _changes(db, actor, form)
        contacts.patch_contact(db, actor, contact_id, changes, request=origin)
    except ServiceError as exc:
        return _edit_page(request, db, actor, contact_id, values=values, error=exc)
    return _edit_page(request, db, actor, contact_id, saved=True)


def _changes(db: Db, actor: Principal, form: FormData) -> dict[str, Any]:
    """The form as a PATCH: every built-in attribute, every defined custom field (an empty
    input clears it)."""

    def text(name: str) -> str:
        value = form.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    changes: dict[str, Any] = {"phone": text("phone")}
    for name, _label, _type in BUILT_IN[1:]:
        value = text(name)
        changes[name] = value if name in ("first_name", "last_name") else (value or None)
    with db.read() as conn:
        keys = list(custom_fields.field_types(conn, actor.org_id))
    changes["fields"] = {key: text(f"fields.{key}") or None for key in keys}
    return changes


# --- tags -----------------------------------------------------------------------------------------


def _tags_fragment(
    request: Request, viewer: Principal, contact: Contact, error: str | None = None
) -> Response:
    response = page(request, "_contact_tags.html", viewer, contact=contact, tag_error=error)
    if error:
        response.status_code = 422
    return response


@router.post("/contacts/{contact_id}/tags/add", response_class=HTMLResponse)
def add_tags(
    request: Request,
    contact_id: int,
    db: Db,
    origin: Origin,
    actor: Actor,
    tags: Annotated[str, Form()] = "",
) -> Response:
    """Comma-separated tags, added to the contact's."""
    try:
        contact = contacts.tag_contact(db, actor, contact_id, tags.split(","), request=origin)
    except Invalid as exc:
        with db.read() as conn:
            contact = contacts.get_contact(conn, actor.org_id, contact_id)
        return _tags_fragment(request, actor, contact, exc.message)
    return _tags_fragment(request, actor, contact)


@router.post("/contacts/{contact_id}/tags/remove", response_class=HTMLResponse)
def remove_tag(
    request: Request,
    contact_id: int,
    db: Db,
    origin: Origin,
    actor: Actor,
    tag: Annotated[str, Form()] = "",
) -> Response:
    contact = contacts.untag_contact(db, actor, contact_id, tag, request=origin)
    return _tags_fragment(request, actor, contact)


# --- downloads ------------------------------------------------------------------------------------
# POST with the CSRF token: an export is audited, so another site must not be able to start one
# in an admin's browser with a link.


def _download(export: exports.Export) -> StreamingResponse:
    return StreamingResponse(
        export.chunks,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/exports/contacts.csv", response_model=None)
def download_contacts(
    db: Db,
    origin: Origin,
    actor: Actor,
    q: Annotated[str, Form()] = "",
    tag: Annotated[str, Form()] = "",
    segment_id: Annotated[str, Form()] = "",
    query: Annotated[str, Form()] = "",
) -> Response:
    f = _filters(q, tag, segment_id, query)
    return _download(
        exports.export_contacts(
            db,
            actor,
            q=f.q or None,
            tag=f.tag or None,
            query=f.query or None,
            segment_id=f.segment_id,
            request=origin,
        )
    )


def _day(raw: str, name: str, *, end: bool = False) -> datetime | None:
    """A date picker's day as a UTC instant; ``end``: the day after, so "until" includes it."""
    if not raw.strip():
        return None
    try:
        day = date.fromisoformat(raw.strip())
    except ValueError:
        raise Invalid(f"{name} must be a date like 2026-01-31, got {raw!r}", field=name) from None
    return datetime.combine(day, time(0), tzinfo=UTC) + timedelta(days=1 if end else 0)


@router.post("/exports/messages.csv", response_model=None)
def download_messages(
    db: Db,
    origin: Origin,
    actor: Actor,
    since: Annotated[str, Form()] = "",
    until: Annotated[str, Form()] = "",
) -> Response:
    return _download(
        exports.export_messages(
            db,
            actor,
            since=_day(since, "since"),
            until=_day(until, "until", end=True),
            request=origin,
        )
    )


@router.post("/exports/consent.csv", response_model=None)
def download_consent(db: Db, origin: Origin, actor: Actor) -> Response:
    return _download(exports.export_consent(db, actor, request=origin))
