"""The OpenAPI document tells the truth about errors: each operation lists the problem statuses
it can answer, each as ``application/problem+json`` with the :class:`Problem` schema.

Some statuses follow from the route itself and are added here: 401 for every call that takes
an API key, 404 for every path with an id, 422 for every call with a parameter or a body, 400
for every call with a body (one that cannot even be decoded).
The others (403, 409, a 404 for an id in the body, 503) depend on what the service does; a
route declares them with :func:`errors`. The fuzz test (tests/web/test_api_fuzz.py) fails on
any status an operation answers without documenting it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from textdesk.web.deps import api_principal
from textdesk.web.problems import PROBLEM


class FieldError(BaseModel):
    field: str = Field(description="where: `contacts[3].phone`, `limit`, `file`")
    message: str


class Problem(BaseModel):
    """An error, RFC 9457. Some carry more members (a refused send has ``reason``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank")
    title: str = Field(description="the kind of error, e.g. 'Invalid input'")
    status: int
    detail: str = Field(description="what was wrong, as a sentence")
    field: str | None = Field(default=None, description="the input at fault, if one is")
    errors: list[FieldError] | None = Field(
        default=None, description="every invalid input (422 from request validation)"
    )


#: What each status means for any route; a route may say it more precisely.
MEANINGS = {
    400: "The body could not be read: not UTF-8, or a broken multipart form",
    401: "No API key, or an unknown or revoked one",
    403: "The API key's role does not allow this",
    404: "Not found (or it belongs to another organization)",
    409: "Conflicts with the current state: a unique value taken, a status that does not allow it",
    413: "The upload is larger than the limit",
    422: "Invalid input; `field` (and `errors`) say where",
    503: "The database was busy; retry after `Retry-After` seconds",
}


def errors(
    *statuses: int, described: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the problem statuses it answers beyond the automatic ones;
    ``described`` gives some a sentence of their own."""
    out: dict[int | str, dict[str, Any]] = {s: {"description": MEANINGS[s]} for s in statuses}
    out.update({s: {"description": text} for s, text in (described or {}).items()})
    return out


def _takes_api_key(dependant: Dependant) -> bool:
    return any(d.call is api_principal or _takes_api_key(d) for d in dependant.dependencies)


def _has_input(dependant: Dependant) -> bool:
    return bool(
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.body_params
        or any(_has_input(d) for d in dependant.dependencies)
    )


def document_problems(router: APIRouter) -> None:
    """Give every route of ``router`` its problem responses. Call it before the router is
    included anywhere: FastAPI resolves an included router lazily, from the routes it has."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        statuses = {int(s) for s in route.responses if str(s).isdigit() and int(s) >= 400}
        if _takes_api_key(route.dependant):
            statuses.add(401)
        if route.dependant.path_params:
            statuses.add(404)
        if route.dependant.body_params:
            statuses.add(400)
        if _has_input(route.dependant):
            statuses.add(422)
        for status in sorted(statuses):
            entry = route.responses.get(status) or route.responses.get(str(status)) or {}
            route.responses.pop(str(status), None)
            route.responses[status] = {
                "description": entry.get("description") or MEANINGS[status],
                "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
            if status == 503:
                route.responses[status]["headers"] = {
                    "Retry-After": {"description": "seconds", "schema": {"type": "integer"}}
                }


def install(app: FastAPI) -> None:
    """Put :class:`Problem` into the document's components (routes refer to it by name)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem.pop("$defs", {}))
        schemas["Problem"] = problem
        return document

    app.openapi = openapi  # type: ignore[method-assign]
