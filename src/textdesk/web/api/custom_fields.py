"""Custom fields: the typed attributes an organization adds to its contacts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from textdesk.services import custom_fields
from textdesk.web.api.inputs import Input, Text
from textdesk.web.deps import ApiCaller, Db, Origin
from textdesk.web.openapi import errors

router = APIRouter(tags=["contacts"])


class CustomFieldOut(BaseModel):
    key: str
    label: str
    type: str
    created_at: datetime


class CustomFieldIn(Input):
    key: str = Field(max_length=40, description="a-z, 0-9 and _, starting with a letter")
    label: str = Field(default="", max_length=200)
    type: Literal["text", "number", "date", "boolean"]


@router.get("/custom-fields", response_model=list[CustomFieldOut])
def list_fields(caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return custom_fields.list_fields(conn, caller.org_id)


@router.post(
    "/custom-fields",
    response_model=CustomFieldOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403, 409),
)
def create_field(body: CustomFieldIn, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    """Admins only. A field's type cannot change later: delete it and define it again."""
    return custom_fields.create_field(
        db, caller, key=body.key, label=body.label, type_=body.type, request=origin
    )


@router.delete(
    "/custom-fields/{field_key}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403)
)
def delete_field(field_key: Text, caller: ApiCaller, db: Db, origin: Origin) -> Response:
    custom_fields.delete_field(db, caller, field_key, request=origin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
