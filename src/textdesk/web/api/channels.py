"""Sender numbers. Credentials go in, and never come back out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from textdesk.services import channels
from textdesk.services.channels import NumberType
from textdesk.web.api.inputs import Input, PathId
from textdesk.web.deps import ApiCaller, Db, Origin
from textdesk.web.openapi import errors

router = APIRouter(tags=["channels"])


class ChannelOut(BaseModel):
    id: int
    name: str
    provider: str
    phone_e164: str
    number_type: NumberType
    rate_per_second: float
    is_active: bool
    paused_until: datetime | None = Field(
        description="set while the circuit breaker holds it; its messages wait until then"
    )
    pause_reason: str | None = Field(
        description="why it is paused (failures, refused credentials, not bound); kept while "
        "the channel is tried again after the pause, cleared once the provider answers"
    )
    created_at: datetime


class ChannelIn(Input):
    name: str = Field(default="", max_length=200)
    provider: str
    phone: str = Field(description="E.164 or any human-written form; a short code's digits")
    number_type: NumberType = NumberType.TEN_DLC
    rate_per_second: float | None = None
    config: dict[str, Any] = Field(default_factory=dict, description="provider credentials")


@router.get("/channels", response_model=list[ChannelOut])
def list_channels(caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return channels.list_channels(conn, caller.org_id)


@router.post(
    "/channels",
    response_model=ChannelOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403, 409),
)
def create_channel(body: ChannelIn, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    return channels.create_channel(
        db,
        caller,
        name=body.name,
        provider=body.provider,
        phone=body.phone,
        number_type=body.number_type,
        rate_per_second=body.rate_per_second,
        config=body.config,
        request=origin,
    )


@router.get("/channels/{channel_id}", response_model=ChannelOut)
def get_channel(channel_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return channels.get_channel(conn, caller.org_id, channel_id)
