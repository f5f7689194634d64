"""The caller, users of the organization, API keys and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from textdesk.domain.roles import Role
from textdesk.services import accounts, audit, auth
from textdesk.web.api.inputs import Input, PathId
from textdesk.web.deps import ApiCaller, Db, Origin
from textdesk.web.openapi import errors

router = APIRouter(tags=["accounts"])


class MeOut(BaseModel):
    org_id: int
    org_name: str
    role: Role
    user_id: int | None
    api_key_id: int | None


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    role: Role
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class UserIn(Input):
    email: str = Field(max_length=320)
    name: str = Field(min_length=1, max_length=200)
    role: Role = Role.AGENT
    password: str = Field(max_length=200)


class UserPatch(Input):
    is_active: bool


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself. Shown this once; store it now.")


class ApiKeyIn(Input):
    name: str = Field(min_length=1, max_length=200)
    role: Role = Role.ADMIN


class AuditOut(BaseModel):
    id: int
    actor: str
    action: str
    target: str | None
    ip: str | None
    detail: dict[str, Any]
    created_at: datetime


@router.get("/me", response_model=MeOut)
def me(caller: ApiCaller, db: Db) -> MeOut:
    with db.read() as conn:
        org = accounts.get_organization(conn, caller.org_id)
    return MeOut(
        org_id=org.id,
        org_name=org.name,
        role=caller.role,
        user_id=caller.user_id,
        api_key_id=caller.api_key_id,
    )


@router.get("/users", response_model=list[UserOut], responses=errors(403))
def list_users(caller: ApiCaller, db: Db) -> Any:
    caller.require(Role.ADMIN)
    with db.read() as conn:
        return accounts.list_users(conn, caller.org_id)


@router.post(
    "/users",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403, 409),
)
def create_user(body: UserIn, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    caller.require(Role.ADMIN)
    return accounts.create_user(
        db,
        org_id=caller.org_id,
        email=body.email,
        name=body.name,
        role=body.role,
        password=body.password,
        actor=caller.actor,
        actor_role=caller.role,
        request=origin,
    )


@router.get("/users/{user_id}", response_model=UserOut, responses=errors(403))
def get_user(user_id: PathId, caller: ApiCaller, db: Db) -> Any:
    caller.require(Role.ADMIN)
    with db.read() as conn:
        return accounts.get_user(conn, caller.org_id, user_id)


@router.patch("/users/{user_id}", response_model=UserOut, responses=errors(403))
def patch_user(user_id: PathId, body: UserPatch, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    caller.require(Role.ADMIN)
    return accounts.set_user_active(
        db,
        org_id=caller.org_id,
        user_id=user_id,
        active=body.is_active,
        actor=caller.actor,
        actor_role=caller.role,
        request=origin,
    )


@router.get("/api-keys", response_model=list[ApiKeyOut], responses=errors(403))
def list_api_keys(caller: ApiCaller, db: Db) -> Any:
    return auth.list_api_keys(db, caller)


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403),
)
def create_api_key(body: ApiKeyIn, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    key, plain = auth.create_api_key(db, caller, name=body.name, role=body.role, request=origin)
    return ApiKeyCreated(
        **ApiKeyOut.model_validate(key, from_attributes=True).model_dump(), key=plain
    )


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, responses=errors(403))
def revoke_api_key(key_id: PathId, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    return auth.revoke_api_key(db, caller, key_id, request=origin)


@router.get("/audit-log", response_model=list[AuditOut], responses=errors(403))
def audit_log(caller: ApiCaller, db: Db, limit: int = Query(default=100, ge=1, le=1000)) -> Any:
    caller.require(Role.ADMIN)
    with db.read() as conn:
        return audit.list_for_org(conn, caller.org_id, limit=limit)
