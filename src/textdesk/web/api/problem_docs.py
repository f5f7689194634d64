"""OpenAPI documentation of the errors every route may answer, as ``application/problem+json``
(``web/problems.py``), and the bounded parameter types the automations routes share."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, Field

from textdesk.services.automations.spec import MAX_ID


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = Field(default=None, description="where the problem is, e.g. events[3].type")
    errors: list[dict[str, str]] | None = Field(
        default=None, description="every invalid field: [{field, message}]"
    )


_SCHEMA = Problem.model_json_schema()
_WHY = {
    400: "the body is not JSON",
    401: "no or an unknown API key",
    403: "the key's role does not allow this",
    404: "not found (or another organization's)",
    409: "conflicts with the current state",
    422: "invalid input: `field` (and `errors`) say where",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each code as a problem document."""
    return {
        code: {
            "description": _WHY[code],
            "content": {"application/problem+json": {"schema": _SCHEMA}},
        }
        for code in codes
    }


Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Before = Annotated[int | None, Query(ge=1, le=MAX_ID, description="keyset: ids below this")]
Limit = Annotated[int, Query(ge=1, le=500)]
