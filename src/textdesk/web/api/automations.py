"""Automations (CRUD, versions), their runs with step-by-step history, and the drafts their
queue_for_person steps leave in conversations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from textdesk.services import conversations
from textdesk.services.automations import definitions, drafts, runs
from textdesk.services.automations.spec import MAX_ID, Definition
from textdesk.web.api.messages import MessageOut
from textdesk.web.api.problem_docs import Before, Id, Limit, problems
from textdesk.web.deps import ApiCaller, Config, Db, Origin

router = APIRouter(tags=["automations"])

InFlight = Annotated[
    Literal["finish", "cancel"],
    Query(description="runs in flight: finish on the version they started with, or cancel"),
]


class AutomationIn(Definition):
    status: Literal["active", "paused"] = "active"


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["active", "paused"]


class AutomationOut(BaseModel):
    id: int
    name: str
    status: str
    version: int
    trigger: dict[str, Any]
    conditions: dict[str, Any]
    steps: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    runs: dict[str, int] = Field(description="runs per state, all versions")


class RunOut(BaseModel):
    id: int
    automation_id: int
    automation_name: str
    version: int
    event_id: int | None
    contact_id: int
    subject: str | None
    state: str = Field(description="waiting, done, cancelled, skipped or failed")
    cursor: int = Field(description="index of the next step")
    due_at: datetime | None = Field(description="when the next step runs (waiting runs)")
    attempts: int
    reason: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class HistoryOut(BaseModel):
    step: int | None
    kind: str
    outcome: str
    detail: str
    message_id: int | None
    draft_id: int | None
    created_at: datetime


class RunDetail(RunOut):
    history: list[HistoryOut]


class RunPage(BaseModel):
    items: list[RunOut]
    next_before: int | None


class DraftOut(BaseModel):
    id: int
    conversation_id: int
    contact_id: int
    body: str
    purpose: str
    run_id: int | None
    status: str
    reason: str | None
    message_id: int | None
    created_at: datetime
    acted_at: datetime | None


class DiscardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500, pattern=r"^[^\x00]*$")


@router.get("/automations", response_model=list[AutomationOut], responses=problems(401, 422))
def list_automations(caller: ApiCaller, db: Db, include_archived: bool = False) -> Any:
    with db.read() as conn:
        return definitions.list_automations(conn, caller.org_id, include_archived=include_archived)


@router.post(
    "/automations",
    response_model=AutomationOut,
    status_code=status.HTTP_201_CREATED,
    responses=problems(400, 401, 403, 409, 422),
)
def create_automation(body: AutomationIn, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    definition = Definition.model_validate(body.model_dump(exclude={"status"}))
    return definitions.create_automation(db, caller, definition, status=body.status, request=origin)


@router.get(
    "/automations/{automation_id}",
    response_model=AutomationOut,
    responses=problems(401, 404, 422),
)
def get_automation(automation_id: Id, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return definitions.get_automation(conn, caller.org_id, automation_id)


@router.put(
    "/automations/{automation_id}",
    response_model=AutomationOut,
    responses=problems(400, 401, 403, 404, 409, 422),
)
def replace_automation(
    automation_id: Id,
    body: Definition,
    caller: ApiCaller,
    db: Db,
    origin: Origin,
    in_flight: InFlight = "finish",
) -> Any:
    """A new version of the definition."""
    return definitions.update_automation(
        db, caller, automation_id, body, in_flight=in_flight, request=origin
    )


@router.patch(
    "/automations/{automation_id}",
    response_model=AutomationOut,
    responses=problems(400, 401, 403, 404, 409, 422),
)
def set_status(
    automation_id: Id,
    body: StatusIn,
    caller: ApiCaller,
    db: Db,
    origin: Origin,
    in_flight: InFlight = "finish",
) -> Any:
    """Pause (no new runs start) or resume."""
    return definitions.set_status(
        db, caller, automation_id, body.status, in_flight=in_flight, request=origin
    )


@router.delete(
    "/automations/{automation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 422),
)
def archive_automation(automation_id: Id, caller: ApiCaller, db: Db, origin: Origin) -> Response:
    """Archive: no new runs, waiting runs cancelled; the history stays."""
    definitions.archive_automation(db, caller, automation_id, request=origin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


RunState = Annotated[Literal["waiting", "done", "cancelled", "skipped", "failed"] | None, Query()]


def _page(found: list[runs.Run], limit: int) -> dict[str, Any]:
    return {
        "items": [vars(r) for r in found],
        "next_before": found[-1].id if len(found) == limit else None,
    }


@router.get(
    "/automations/{automation_id}/runs",
    response_model=RunPage,
    responses=problems(401, 404, 422),
)
def automation_runs(
    automation_id: Id,
    caller: ApiCaller,
    db: Db,
    state: RunState = None,
    before: Before = None,
    limit: Limit = 100,
) -> Any:
    with db.read() as conn:
        definitions.get_automation(conn, caller.org_id, automation_id)
        found = runs.list_runs(
            conn,
            caller.org_id,
            automation_id=automation_id,
            state=state,
            before_id=before,
            limit=limit,
        )
    return _page(found, limit)


@router.get("/runs", response_model=RunPage, responses=problems(401, 422))
def list_runs(
    caller: ApiCaller,
    db: Db,
    contact_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    event_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    state: RunState = None,
    before: Before = None,
    limit: Limit = 100,
) -> Any:
    with db.read() as conn:
        found = runs.list_runs(
            conn,
            caller.org_id,
            contact_id=contact_id,
            event_id=event_id,
            state=state,
            before_id=before,
            limit=limit,
        )
    return _page(found, limit)


@router.get("/runs/{run_id}", response_model=RunDetail, responses=problems(401, 404, 422))
def get_run(run_id: Id, caller: ApiCaller, db: Db) -> Any:
    """The run and its step-by-step history: why the customer got, or did not get, a message."""
    with db.read() as conn:
        run = runs.get_run(conn, caller.org_id, run_id)
        steps = runs.history(conn, caller.org_id, run_id)
    return {**vars(run), "history": [vars(h) for h in steps]}


@router.get(
    "/conversations/{conversation_id}/drafts",
    response_model=list[DraftOut],
    responses=problems(401, 404, 422),
)
def conversation_drafts(conversation_id: Id, caller: ApiCaller, db: Db) -> Any:
    """Pending drafts in the conversation."""
    with db.read() as conn:
        conversations.get_conversation(conn, caller.org_id, conversation_id)
        return drafts.pending_drafts(conn, caller.org_id, conversation_id)


@router.post(
    "/drafts/{draft_id}/send",
    response_model=MessageOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "already sent: its message"},
        **problems(400, 401, 403, 404, 409, 422),
    },
)
def send_draft(draft_id: Id, caller: ApiCaller, db: Db, config: Config, response: Response) -> Any:
    """Send the draft as the caller's message (through the gate); a repeat answers the same
    message."""
    queued = drafts.send_draft(db, config, caller, draft_id)
    if not queued.created:
        response.status_code = status.HTTP_200_OK
    return queued.message


@router.post(
    "/drafts/{draft_id}/discard",
    response_model=DraftOut,
    responses=problems(400, 401, 403, 404, 409, 422),
)
def discard_draft(draft_id: Id, body: DiscardIn, caller: ApiCaller, db: Db) -> Any:
    return drafts.discard_draft(db, caller, draft_id, reason=body.reason)
