"""Contacts: list (keyset pages, filters), create, read, replace, patch, delete, tag, untag."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from textdesk.services import contacts
from textdesk.services.contacts import ContactInput
from textdesk.web.api.inputs import MAX_INT, After, Input, PathId, Text
from textdesk.web.deps import ApiCaller, Db, Origin
from textdesk.web.openapi import errors

router = APIRouter(tags=["contacts"])


class ContactOut(BaseModel):
    id: int
    phone_e164: str
    first_name: str
    last_name: str
    email: str | None
    zip: str | None
    state: str | None
    time_zone: str | None
    external_id: str | None
    fields: dict[str, Any]
    tags: list[str]
    opted_out: bool
    created_at: datetime
    updated_at: datetime


class ContactPage(BaseModel):
    items: list[ContactOut]
    next_after: int | None = Field(description="pass as ?after= for the next page")


class ContactIn(Input):
    phone: str = Field(max_length=64)
    first_name: str = Field(default="", max_length=200)
    last_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)
    zip: str | None = Field(default=None, max_length=16)
    state: str | None = Field(default=None, max_length=8)
    time_zone: str | None = Field(default=None, max_length=64)
    external_id: str | None = Field(default=None, max_length=200)
    fields: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, max_length=100)

    def to_input(self) -> ContactInput:
        return ContactInput(**self.model_dump())


class ContactPatch(Input):
    """Only the attributes sent change; ``fields`` merges key by key (null removes a key)."""

    model_config = ConfigDict(extra="forbid")

    phone: str | None = Field(default=None, max_length=64)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    zip: str | None = Field(default=None, max_length=16)
    state: str | None = Field(default=None, max_length=8)
    time_zone: str | None = Field(default=None, max_length=64)
    external_id: str | None = Field(default=None, max_length=200)
    fields: dict[str, Any] | None = None
    tags: list[str] | None = Field(default=None, max_length=100)


class TagsIn(Input):
    tags: list[str] = Field(min_length=1, max_length=100)


@router.get("/contacts", response_model=ContactPage, responses=errors(404))
def list_contacts(
    caller: ApiCaller,
    db: Db,
    after: After = 0,
    limit: int = Query(default=100, ge=1, le=contacts.MAX_PAGE),
    q: Annotated[
        Text | None, Query(max_length=200, description="search: name, e-mail, phone")
    ] = None,
    tag: Annotated[Text | None, Query(max_length=64)] = None,
    segment_id: int | None = Query(default=None, ge=1, le=MAX_INT, description="a saved segment"),
    query: Annotated[Text | None, Query(max_length=2000, description="a segment query")] = None,
) -> Any:
    with db.read() as conn:
        where = contacts.filter_clause(
            conn, caller.org_id, q=q, tag=tag, query=query, segment_id=segment_id
        )
        items = contacts.list_contacts(
            conn, caller.org_id, after_id=after, limit=limit, where=where
        )
    return {"items": items, "next_after": items[-1].id if len(items) == limit else None}


@router.post(
    "/contacts",
    response_model=ContactOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(409),
)
def create_contact(body: ContactIn, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    return contacts.create_contact(db, caller, body.to_input(), request=origin)


@router.get("/contacts/{contact_id}", response_model=ContactOut)
def get_contact(contact_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return contacts.get_contact(conn, caller.org_id, contact_id)


@router.put("/contacts/{contact_id}", response_model=ContactOut, responses=errors(409))
def replace_contact(
    contact_id: PathId, body: ContactIn, caller: ApiCaller, db: Db, origin: Origin
) -> Any:
    return contacts.update_contact(db, caller, contact_id, body.to_input(), request=origin)


@router.patch("/contacts/{contact_id}", response_model=ContactOut, responses=errors(409))
def patch_contact(
    contact_id: PathId, body: ContactPatch, caller: ApiCaller, db: Db, origin: Origin
) -> Any:
    changes = body.model_dump(exclude_unset=True)
    return contacts.patch_contact(db, caller, contact_id, changes, request=origin)


@router.post("/contacts/{contact_id}/tags", response_model=ContactOut)
def tag_contact(contact_id: PathId, body: TagsIn, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    return contacts.tag_contact(db, caller, contact_id, body.tags, request=origin)


@router.delete("/contacts/{contact_id}/tags/{tag}", response_model=ContactOut)
def untag_contact(contact_id: PathId, tag: Text, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    return contacts.untag_contact(db, caller, contact_id, tag, request=origin)


@router.delete(
    "/contacts/{contact_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403)
)
def delete_contact(contact_id: PathId, caller: ApiCaller, db: Db, origin: Origin) -> Response:
    contacts.delete_contact(db, caller, contact_id, request=origin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
