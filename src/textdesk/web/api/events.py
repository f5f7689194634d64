"""Customer events: post one or a batch (all or nothing), list them, read one with its runs."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Discriminator, Field, Tag

from textdesk.services.automations import events, spec
from textdesk.web.api.problem_docs import Before, Id, Limit, problems
from textdesk.web.deps import ApiCaller, Db

_SHAPES = ("event", "batch")


class _Untagged(APIRoute):
    """The body is one event or a batch; pydantic puts the branch's tag in an error's location
    (``batch.events[3].type``). Clients see where the problem is in what they sent:
    ``events[3].type``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise RequestValidationError(
                    [_untag(e) for e in exc.errors()], body=exc.body
                ) from None

        return route


def _untag(error: Any) -> Any:
    loc = tuple(error.get("loc", ()))
    if len(loc) >= 2 and loc[0] == "body" and loc[1] in _SHAPES:
        return {**error, "loc": ("body", *loc[2:])}
    return error


router = APIRouter(tags=["events"], route_class=_Untagged)

Text200 = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(spec.no_nul)]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Text200 | None = Field(
        default=None,
        description="your id for this event: a retry with the same id is the same event "
        "(stored and run once); default: the Idempotency-Key header",
    )
    type: spec.EventType = Field(
        description="namespace.name: " + ", ".join(spec.KNOWN_EVENT_TYPES) + ", or your own"
    )
    contact_id: int | None = Field(default=None, ge=1, le=spec.MAX_ID)
    phone: (
        Annotated[str, Field(min_length=1, max_length=64), AfterValidator(spec.no_nul)] | None
    ) = Field(default=None, description="the contact by phone; created if there is none")
    external_id: Text200 | None = Field(
        default=None,
        description="the contact by your id for it; with phone, a new contact gets both",
    )
    key: Text200 | None = Field(
        default=None,
        description="what the event is about in your system (an appointment's id): a "
        "*.rescheduled or *.cancelled event with the same namespace and key replaces or "
        "cancels the pending runs",
    )
    occurs_at: Annotated[AwareDatetime, AfterValidator(spec.aware_in_range)] | None = Field(
        default=None,
        description="when it happens (the appointment's start), with its offset; default: now",
    )
    data: Annotated[dict[str, Any], AfterValidator(spec.check_data)] = Field(
        default_factory=dict,
        description=f"free data, {{event.data.x}} in templates (at most "
        f"{spec.MAX_DATA_BYTES} bytes, {spec.MAX_DATA_DEPTH} levels)",
    )

    def to_input(self) -> events.EventInput:
        return events.EventInput(**self.model_dump())


class EventBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=spec.MAX_BATCH)


def _shape(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "events" in value else "event"


EventsBody = Annotated[
    Annotated[EventIn, Tag("event")] | Annotated[EventBatchIn, Tag("batch")],
    Discriminator(_shape),
]


class EventOut(BaseModel):
    id: int
    type: str
    key: str | None
    contact_id: int
    occurs_at: datetime
    data: dict[str, Any]
    idempotency_key: str | None
    created_at: datetime
    duplicate: bool = Field(description="true: this key was stored before; nothing new ran")
    run_ids: list[int] = Field(description="the automation runs this event started")


class EventBatchOut(BaseModel):
    events: list[EventOut]


class EventPage(BaseModel):
    items: list[EventOut]
    next_before: int | None = Field(description="pass as ?before= for the next page")


def _out(recorded: events.Recorded) -> dict[str, Any]:
    e = recorded.event
    return {
        "id": e.id,
        "type": e.type,
        "key": e.key,
        "contact_id": e.contact_id,
        "occurs_at": e.occurs_at,
        "data": e.data,
        "idempotency_key": e.idempotency_key,
        "created_at": e.created_at,
        "duplicate": recorded.duplicate,
        "run_ids": recorded.run_ids,
    }


@router.post(
    "/events",
    response_model=EventOut | EventBatchOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "every event was a retry: the stored events, nothing new ran"},
        **problems(400, 401, 403, 404, 409, 422),
    },
)
def post_events(
    body: Annotated[EventsBody, Body()],
    caller: ApiCaller,
    db: Db,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=events.MAX_HEADER_KEY,
            description="a retry with the same key is answered with the first result; in a "
            "batch, event i gets <key>#i (an event's own id wins)",
        ),
    ] = None,
) -> Any:
    """One event or `{"events": [...]}` (up to 1,000), all or nothing: the first invalid event
    refuses the request (`field` names it, `events[3].occurs_at`) and nothing is stored."""
    batch = isinstance(body, EventBatchIn)
    items = body.events if isinstance(body, EventBatchIn) else [body]
    recorded = events.record_events(
        db,
        caller,
        [item.to_input() for item in items],
        idempotency_key=idempotency_key,
        batch=batch,
    )
    if all(r.duplicate for r in recorded):
        response.status_code = status.HTTP_200_OK
    if batch:
        return {"events": [_out(r) for r in recorded]}
    return _out(recorded[0])


@router.get("/events", response_model=EventPage, responses=problems(401, 422))
def list_events(
    caller: ApiCaller,
    db: Db,
    contact_id: Annotated[int | None, Query(ge=1, le=spec.MAX_ID)] = None,
    type: Annotated[str | None, Query(max_length=100, pattern=r"^[a-z0-9_.]+$")] = None,
    before: Before = None,
    limit: Limit = 100,
) -> Any:
    """Newest first."""
    with db.read() as conn:
        found = events.list_events(
            conn, caller.org_id, contact_id=contact_id, type=type, before_id=before, limit=limit
        )
    return {
        "items": [_out(r) for r in found],
        "next_before": found[-1].event.id if len(found) == limit else None,
    }


@router.get("/events/{event_id}", response_model=EventOut, responses=problems(401, 404, 422))
def get_event(event_id: Id, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return _out(events.get_event(conn, caller.org_id, event_id))
