"""The send screen over the API: take contacts, send to one contact per call, record survey
answers. There is deliberately no call that sends to more than one contact."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textdesk.services import auth, p2p
from textdesk.services.auth import Principal
from textdesk.services.errors import ServiceError
from textdesk.web.api.inputs import MAX_INT, BodyId, Input, PathId, QueryId
from textdesk.web.api.messages import MessageOut
from textdesk.web.deps import ApiCaller, Db
from textdesk.web.openapi import errors
from textdesk.web.problems import problem, service_problem
from textdesk.web.send_batching import SendBatcher

router = APIRouter(tags=["send screen"])

_AGENT = Field(
    default=None,
    description="the agent this API key acts for (required with an API key: every campaign "
    "message is sent by a person)",
)


class OfferOut(BaseModel):
    contact_id: int
    name: str
    phone: str
    body: str = Field(description="the personalized message")
    encoding: str
    segments: int
    missing_fields: list[str] = Field(description="merge fields without a value (send refuses)")
    assigned_until: datetime


class BatchIn(Input):
    count: int | None = Field(
        default=None,
        ge=1,
        le=MAX_INT,
        description="contacts to hold (default and cap: the batch size)",
    )
    agent_id: BodyId | None = _AGENT


class BatchOut(BaseModel):
    campaign_id: int
    agent_id: int
    contacts: list[OfferOut]
    held_back: int = Field(description="passed over now: quiet hours where they are")
    skipped: int = Field(description="taken out of the pool now: opted out, active elsewhere")
    next_allowed: datetime | None = Field(
        default=None,
        description="when the first held-back contact may be texted (null: none is held back)",
    )
    quiet_detail: str | None = Field(
        default=None, description="the quiet-hours rule that holds that contact, as a sentence"
    )


class NextOut(BaseModel):
    contact: OfferOut | None = Field(description="null: you hold no contact; ask for a batch")


class SendIn(Input):
    contact_id: BodyId
    agent_id: BodyId | None = _AGENT
    step: str = Field(default=p2p.STEP_FIRST, description="the campaign step; one message each")
    body: str | None = Field(
        default=None, min_length=1, max_length=1600, description="default: the rendered script"
    )


class SendOut(BaseModel):
    message: MessageOut
    created: bool = Field(description="false: a repeat; this is the message the first call made")
    contact_id: int
    status: str = Field(description="the campaign contact: sent, or skipped if the gate blocked")


class AnswerIn(Input):
    question_id: BodyId
    contact_id: BodyId
    option: str = Field(min_length=1, max_length=200, description="the option's label")


class AnswerOut(BaseModel):
    id: int
    question_id: int
    contact_id: int
    campaign_id: int | None
    answer: str
    tags: list[str]
    fields: dict[str, Any]


def offer_out(offer: p2p.Offer) -> dict[str, Any]:
    return {
        "contact_id": offer.contact_id,
        "name": offer.name,
        "phone": offer.phone,
        "body": offer.body,
        "encoding": offer.encoding,
        "segments": offer.segments,
        "missing_fields": list(offer.missing_fields),
        "assigned_until": offer.assigned_until,
    }


def refused(exc: p2p.Refused) -> JSONResponse:
    """A refusal with its machine-readable ``reason`` beside the sentence."""
    return problem(exc.status, exc.title, exc.message, field=exc.field, reason=exc.reason)


def busy(exc: p2p.Busy) -> JSONResponse:
    """503 with Retry-After: the write lock was not free in time; repeating is safe (a send is
    idempotent per contact and step, a batch request tops up to the same count)."""
    return problem(
        exc.status, exc.title, exc.message, headers={"Retry-After": str(exc.retry_after)}
    )


@router.post(
    "/campaigns/{campaign_id}/assignments",
    response_model=BatchOut,
    responses=errors(
        403, 503, described={409: "the campaign is not sending (problem with `reason`)"}
    ),
)
def request_batch(campaign_id: PathId, body: BatchIn, caller: ApiCaller, db: Db) -> Any:
    try:
        batch = p2p.request_batch(db, caller, campaign_id, body.count, agent_id=body.agent_id)
    except p2p.Refused as exc:
        return refused(exc)
    except p2p.Busy as exc:
        return busy(exc)
    return {
        "campaign_id": batch.campaign_id,
        "agent_id": batch.agent_id,
        "contacts": [offer_out(o) for o in batch.offers],
        "held_back": batch.held_back,
        "skipped": batch.skipped,
        "next_allowed": batch.next_allowed,
        "quiet_detail": batch.quiet_detail,
    }


@router.get("/campaigns/{campaign_id}/next", response_model=NextOut)
def next_contact(campaign_id: PathId, caller: ApiCaller, db: Db, agent_id: QueryId = None) -> Any:
    offer = p2p.next_contact(db, caller, campaign_id, agent_id=agent_id)
    return {"contact": offer_out(offer) if offer else None}


@router.post(
    "/campaigns/{campaign_id}/send",
    response_model=SendOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "a repeat: the message the first call created", "model": SendOut},
        **errors(
            403,
            503,
            described={409: "refused (problem with `reason`): not assigned, opted out, ..."},
        ),
    },
)
async def send(campaign_id: PathId, body: SendIn, caller: ApiCaller, request: Request) -> Response:
    return await send_action(request.app.state, caller, campaign_id, body)


async def send_action(state: Any, caller: Principal, campaign_id: int, body: SendIn) -> Response:
    """One send action, answered: 201 with the message, 200 for a repeat, or the refusal.
    Sends arriving together share a transaction (``web/send_batching.py``); each is answered on
    its own once that transaction committed."""
    batcher: SendBatcher = state.send_batcher
    try:
        sent = await batcher.submit(
            p2p.SendRequest(
                caller, campaign_id, body.contact_id, body.step, body.body, body.agent_id
            )
        )
    except p2p.Refused as exc:
        return refused(exc)
    except p2p.Busy as exc:
        return busy(exc)
    except ServiceError as exc:
        return service_problem(exc)
    out = SendOut.model_validate(
        {
            "message": sent.message,
            "created": sent.created,
            "contact_id": sent.contact_id,
            "status": sent.status,
        },
        from_attributes=True,
    )
    return Response(
        out.model_dump_json(),
        status_code=status.HTTP_201_CREATED if sent.created else status.HTTP_200_OK,
        media_type="application/json",
    )


_SEND_PREFIX = "/api/v1/campaigns/"
_SEND_SUFFIX = "/send"
#: Bodies larger than this go the usual way (a send action is a few dozen bytes).
_FAST_BODY_LIMIT = 16_384


class SendFastPath:
    """ASGI middleware that serves ``POST /api/v1/campaigns/{id}/send`` before FastAPI's routing.

    Hundreds of agents pressing Enter make this the busiest call of the API, and FastAPI's route
    matching (over every route of the app) and dependency machinery cost more per request than
    the send itself. The fast path takes the requests it can answer exactly as the route would:
    an API key resolved in the last few seconds and a body that is a valid ``SendIn``; then it
    calls the same ``send_action``. Anything else (no or unknown key, invalid JSON, a large
    body) goes on to the app with its body replayed, so errors keep their one shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(_SEND_PREFIX) and path.endswith(_SEND_SUFFIX):
                middle = path[len(_SEND_PREFIX) : -len(_SEND_SUFFIX)]
                # Only an id the route would take; anything else gets the route's 422.
                if (
                    middle.isascii()
                    and middle.isdigit()
                    and len(middle) < 20
                    and 0 < int(middle) <= MAX_INT
                ):
                    await self._send(int(middle), scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _send(self, campaign_id: int, scope: Scope, receive: Receive, send: Send) -> None:
        received: list[Message] = []
        size = 0
        complete = False
        while size <= _FAST_BODY_LIMIT:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
        state = scope["app"].state
        caller = _known_caller(scope, state.db) if complete else None
        body = None
        if caller is not None:
            try:
                body = SendIn.model_validate_json(b"".join(m.get("body", b"") for m in received))
            except ValidationError:
                body = None
        if caller is None or body is None:
            await self.app(scope, _replaying(received, receive), send)
            return
        response = await send_action(state, caller, campaign_id, body)
        await response(scope, receive, send)


def _known_caller(scope: Scope, db: Any) -> Principal | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return auth.cached_api_key(db, token.strip())
            return None
    return None


def _replaying(received: list[Message], receive: Receive) -> Receive:
    pending = list(received)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


@router.post("/survey-answers", response_model=AnswerOut, responses=errors(404))
def record_answer(body: AnswerIn, caller: ApiCaller, db: Db) -> Any:
    return p2p.record_answer(db, caller, body.question_id, body.contact_id, body.option)
