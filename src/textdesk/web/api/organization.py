"""The organization's own rules (reply texts, opt-out policy, caps, content blocks, hours)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from textdesk.domain.roles import Role
from textdesk.services import org_settings
from textdesk.services.org_settings import OrgSettings
from textdesk.web.api.inputs import JsonObject
from textdesk.web.deps import ApiCaller, Db, Origin
from textdesk.web.openapi import errors

router = APIRouter(tags=["organization"])


@router.get("/organization/settings", response_model=OrgSettings)
def get_settings(caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return org_settings.load(conn, caller.org_id)


@router.patch("/organization/settings", response_model=OrgSettings, responses=errors(403))
def patch_settings(body: JsonObject, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    """Change some settings; the others keep their values. Admins and owners only."""
    caller.require(Role.ADMIN)
    return org_settings.update(db, caller, body, request=origin)
