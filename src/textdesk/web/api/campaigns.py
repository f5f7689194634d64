"""Campaign drafts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from textdesk.services import campaigns
from textdesk.web.deps import ApiCaller, Db, Origin

router = APIRouter(tags=["campaigns"])


class CampaignOut(BaseModel):
    id: int
    name: str
    status: str
    script: str
    segment_query: str
    created_at: datetime
    updated_at: datetime


class CampaignIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    script: str = Field(max_length=1600)
    segment_query: str = Field(default="", max_length=2000)


@router.get("/campaigns", response_model=list[CampaignOut])
def list_campaigns(caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return campaigns.list_campaigns(conn, caller.org_id)


@router.post("/campaigns", response_model=CampaignOut, status_code=status.HTTP_201_CREATED)
def create_campaign(body: CampaignIn, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    return campaigns.create_campaign(
        db,
        caller,
        name=body.name,
        script=body.script,
        segment_query=body.segment_query,
        request=origin,
    )


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut)
def get_campaign(campaign_id: int, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return campaigns.get_campaign(conn, caller.org_id, campaign_id)
