"""P2P campaigns: drafts, lifecycle, agents, survey questions, canned responses, preview and
progress. Admins manage; agents read the campaigns they are assigned to."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from textdesk.domain.roles import Role
from textdesk.services import campaign_reports, campaign_survey, campaigns
from textdesk.web.api.inputs import BodyId, BodyInt, Input, PathId
from textdesk.web.deps import ApiCaller, Db, Origin
from textdesk.web.openapi import errors

router = APIRouter(tags=["campaigns"])


class CampaignOut(BaseModel):
    id: int
    name: str
    status: str
    script: str
    segment_query: str
    purpose: str
    channel_ids: list[int]
    starts_at: datetime | None
    ends_at: datetime | None
    batch_size: int
    assignment_timeout_seconds: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    archived_at: datetime | None


class CampaignIn(Input):
    name: str = Field(min_length=1, max_length=200)
    script: str = Field(default="", max_length=1600)
    segment_query: str = Field(default="", max_length=2000)
    segment_id: BodyId | None = Field(
        default=None, description="copy this saved segment's query (overrides segment_query)"
    )
    purpose: str = "marketing"
    channel_ids: list[BodyId] = Field(default_factory=list, description="empty: any active number")
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    batch_size: BodyInt = 50
    assignment_timeout_seconds: BodyInt = 900


class CampaignPatch(Input):
    """Only the keys sent change. Null clears segment_id, starts_at or ends_at; the others
    always have a value (the document says so: ``None`` there only stands for "not sent")."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | SkipJsonSchema[None] = None
    script: Annotated[str, Field(max_length=1600)] | SkipJsonSchema[None] = None
    segment_query: Annotated[str, Field(max_length=2000)] | SkipJsonSchema[None] = None
    segment_id: BodyId | None = None
    purpose: str | SkipJsonSchema[None] = None
    channel_ids: list[BodyId] | SkipJsonSchema[None] = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    batch_size: BodyInt | SkipJsonSchema[None] = None
    assignment_timeout_seconds: BodyInt | SkipJsonSchema[None] = None


@router.get("/campaigns", response_model=list[CampaignOut])
def list_campaigns(caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return campaigns.visible_campaigns(conn, caller)


@router.post(
    "/campaigns",
    response_model=CampaignOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403),
)
def create_campaign(body: CampaignIn, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    return campaigns.create_draft(
        db, caller, campaigns.CampaignInput(**body.model_dump()), request=origin
    )


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut)
def get_campaign(campaign_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return campaigns.get_visible(conn, caller, campaign_id)


@router.patch("/campaigns/{campaign_id}", response_model=CampaignOut, responses=errors(403, 409))
def update_campaign(
    campaign_id: PathId, body: CampaignPatch, caller: ApiCaller, db: Db, origin: Origin
) -> Any:
    changes = body.model_dump(exclude_unset=True)
    return campaigns.update_campaign(db, caller, campaign_id, changes, request=origin)


@router.delete(
    "/campaigns/{campaign_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403, 409)
)
def delete_campaign(campaign_id: PathId, caller: ApiCaller, db: Db, origin: Origin) -> Response:
    campaigns.delete_draft(db, caller, campaign_id, request=origin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _lifecycle(action: str) -> Any:
    def handler(campaign_id: PathId, caller: ApiCaller, db: Db, origin: Origin) -> Any:
        return campaigns.transition(db, caller, campaign_id, action, request=origin)

    handler.__name__ = f"{action}_campaign"
    handler.__doc__ = f"{action.capitalize()} the campaign (409 if its status does not allow it)."
    return handler


for _action in campaigns.TRANSITIONS:
    router.add_api_route(
        f"/campaigns/{{campaign_id}}/{_action}",
        _lifecycle(_action),
        methods=["POST"],
        response_model=CampaignOut,
        name=f"{_action}_campaign",
        responses=errors(403, 409),
    )


# --- agents -------------------------------------------------------------------------------------


class AgentOut(BaseModel):
    user_id: int
    name: str
    email: str
    role: str


class AgentsIn(Input):
    user_ids: list[BodyId] = Field(description="the campaign's agents after this call")


@router.get("/campaigns/{campaign_id}/agents", response_model=list[AgentOut])
def list_agents(campaign_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        campaigns.get_visible(conn, caller, campaign_id)
        return campaigns.list_agents(conn, caller.org_id, campaign_id)


@router.put(
    "/campaigns/{campaign_id}/agents", response_model=list[AgentOut], responses=errors(403, 409)
)
def set_agents(
    campaign_id: PathId, body: AgentsIn, caller: ApiCaller, db: Db, origin: Origin
) -> Any:
    return campaigns.set_agents(db, caller, campaign_id, body.user_ids, request=origin)


# --- survey questions ---------------------------------------------------------------------------


class QuestionOut(BaseModel):
    id: int
    campaign_id: int
    position: int
    prompt: str
    options: list[dict[str, Any]]


class QuestionIn(Input):
    prompt: str = Field(max_length=500)
    options: list[dict[str, Any]] = Field(
        description='[{"label": "Yes", "tag": "interested"}, {"label": "No"}]'
    )


class QuestionPatch(Input):
    prompt: str | None = Field(default=None, max_length=500)
    options: list[dict[str, Any]] | None = None
    position: BodyInt | None = None


@router.get("/campaigns/{campaign_id}/questions", response_model=list[QuestionOut])
def list_questions(campaign_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        campaigns.get_visible(conn, caller, campaign_id)
        return campaign_survey.list_questions(conn, caller.org_id, campaign_id)


@router.post(
    "/campaigns/{campaign_id}/questions",
    response_model=QuestionOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403, 409),
)
def add_question(
    campaign_id: PathId, body: QuestionIn, caller: ApiCaller, db: Db, origin: Origin
) -> Any:
    return campaign_survey.add_question(
        db, caller, campaign_id, prompt=body.prompt, options=body.options, request=origin
    )


@router.patch(
    "/campaigns/{campaign_id}/questions/{question_id}",
    response_model=QuestionOut,
    responses=errors(403, 409),
)
def update_question(
    campaign_id: PathId, question_id: PathId, body: QuestionPatch, caller: ApiCaller, db: Db
) -> Any:
    return campaign_survey.update_question(
        db,
        caller,
        campaign_id,
        question_id,
        prompt=body.prompt,
        options=body.options,
        position=body.position,
    )


@router.delete(
    "/campaigns/{campaign_id}/questions/{question_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(403, 409),
)
def delete_question(
    campaign_id: PathId, question_id: PathId, caller: ApiCaller, db: Db, origin: Origin
) -> Response:
    campaign_survey.delete_question(db, caller, campaign_id, question_id, request=origin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- canned responses of a campaign -------------------------------------------------------------


class CannedOut(BaseModel):
    id: int
    campaign_id: int | None
    title: str
    body: str
    created_at: datetime
    updated_at: datetime


class CannedIn(Input):
    title: str = Field(max_length=200)
    body: str = Field(max_length=1600)


class CannedPatch(Input):
    title: str | None = Field(default=None, max_length=200)
    body: str | None = Field(default=None, max_length=1600)


@router.get("/campaigns/{campaign_id}/canned-responses", response_model=list[CannedOut])
def list_canned(campaign_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        campaigns.get_visible(conn, caller, campaign_id)
        return campaign_survey.list_canned(conn, caller.org_id, campaign_id)


@router.post(
    "/campaigns/{campaign_id}/canned-responses",
    response_model=CannedOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403, 409),
)
def add_canned(
    campaign_id: PathId, body: CannedIn, caller: ApiCaller, db: Db, origin: Origin
) -> Any:
    return campaign_survey.add_canned(
        db, caller, campaign_id, title=body.title, body=body.body, request=origin
    )


@router.patch(
    "/campaigns/{campaign_id}/canned-responses/{response_id}",
    response_model=CannedOut,
    responses=errors(403, 409),
)
def update_canned(
    campaign_id: PathId, response_id: PathId, body: CannedPatch, caller: ApiCaller, db: Db
) -> Any:
    return campaign_survey.update_canned(
        db, caller, campaign_id, response_id, title=body.title, body=body.body
    )


@router.delete(
    "/campaigns/{campaign_id}/canned-responses/{response_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(403, 409),
)
def delete_canned(
    campaign_id: PathId, response_id: PathId, caller: ApiCaller, db: Db, origin: Origin
) -> Response:
    campaign_survey.delete_canned(db, caller, campaign_id, response_id, request=origin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- preview and progress -----------------------------------------------------------------------


class PreviewIn(Input):
    script: str | None = Field(default=None, max_length=1600, description="default: saved script")
    segment_query: str | None = Field(
        default=None, max_length=2000, description="default: the campaign's audience"
    )
    limit: int = Field(default=5, ge=1, le=campaign_reports.MAX_SAMPLES)


class FindingOut(BaseModel):
    code: str
    severity: str
    message: str


class SampleOut(BaseModel):
    contact_id: int
    name: str
    phone: str
    text: str
    encoding: str
    segment_count: int
    length: int
    missing_fields: list[str]
    findings: list[FindingOut]


class PreviewOut(BaseModel):
    audience: int = Field(description="contacts matching the audience query")
    opted_out: int = Field(description="of those, opted out (excluded at start)")
    samples: list[SampleOut]


@router.post("/campaigns/{campaign_id}/preview", response_model=PreviewOut, responses=errors(403))
def preview_campaign(campaign_id: PathId, body: PreviewIn, caller: ApiCaller, db: Db) -> Any:
    caller.require(Role.ADMIN)
    with db.read() as conn:
        campaign = campaigns.get_campaign(conn, caller.org_id, campaign_id)
        return campaign_reports.preview_script(
            conn,
            caller.org_id,
            script=campaign.script if body.script is None else body.script,
            query=campaign.segment_query if body.segment_query is None else body.segment_query,
            agent_name=caller.name,
            limit=body.limit,
        )


class CountsOut(BaseModel):
    audience: int
    pending: int
    assigned: int
    sent: int
    skipped: int
    excluded: int
    delivered: int
    failed: int
    replied: int
    opted_out: int
    answers: int


class AgentProgressOut(BaseModel):
    user_id: int
    name: str
    counts: CountsOut


class OptionCountOut(BaseModel):
    label: str
    count: int


class QuestionProgressOut(BaseModel):
    question_id: int
    prompt: str
    options: list[OptionCountOut]
    total: int


class ProgressOut(BaseModel):
    campaign_id: int
    status: str
    totals: CountsOut
    agents: list[AgentProgressOut]
    questions: list[QuestionProgressOut]


@router.get("/campaigns/{campaign_id}/progress", response_model=ProgressOut)
def campaign_progress(campaign_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        campaign = campaigns.get_visible(conn, caller, campaign_id)
        return campaign_reports.progress(conn, campaign)
