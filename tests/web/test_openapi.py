"""The OpenAPI document tells the truth about errors, and OPTIONS and 405 say which methods a
path takes. (The fuzz test checks every answer against the document; these check the document
itself.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Org
from textdesk.settings import Environment, Settings
from textdesk.web.app import create_app
from textdesk.web.problems import PROBLEM

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PROBLEM_CONTENT = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app without its lifespan or a migrated database: the document and OPTIONS need
    neither."""
    settings = Settings(
        env=Environment.TEST,
        database_url=f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'none.db'}",
        secret_key="test-secret-key-0123456789",
        embedded_worker=False,
        _env_file=None,  # type: ignore[call-arg]
    )
    yield TestClient(create_app(settings))


@pytest.fixture(scope="module")
def document(bare: TestClient) -> dict[str, Any]:
    response = bare.get("/api/openapi.json")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def test_every_error_is_problem_json(document: dict[str, Any]) -> None:
    wrong = [
        f"{method} {path} {status}: {response.get('content')}"
        for method, path, operation in _operations(document)
        if path.startswith("/api/v1")
        for status, response in operation["responses"].items()
        if int(status) >= 400 and response.get("content") != PROBLEM_CONTENT
    ]
    assert not wrong
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_problem_schema(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["properties"]) == {"type", "title", "status", "detail", "field", "errors"}
    assert set(problem["required"]) == {"title", "status", "detail"}
    assert problem["additionalProperties"] is True  # a refused send adds `reason`
    field_error = document["components"]["schemas"]["FieldError"]
    assert set(field_error["properties"]) == {"field", "message"}


def test_each_operation_lists_the_statuses_its_shape_implies(document: dict[str, Any]) -> None:
    missing = []
    for method, path, operation in _operations(document):
        if not path.startswith("/api/v1"):
            continue
        statuses = set(operation["responses"])
        wanted = {"401"}
        if "{" in path:
            wanted |= {"404", "422"}
        if operation.get("parameters") or "requestBody" in operation:
            wanted.add("422")
        if "requestBody" in operation:
            wanted.add("400")
        if wanted - statuses:
            missing.append(f"{method} {path}: {sorted(wanted - statuses)}")
    assert not missing


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("GET", "/api/v1/users", {"403"}),
        ("POST", "/api/v1/users", {"403", "409"}),
        ("DELETE", "/api/v1/contacts/{contact_id}", {"403"}),
        ("PUT", "/api/v1/contacts/{contact_id}", {"409"}),
        ("POST", "/api/v1/campaigns/{campaign_id}/start", {"403", "409"}),
        ("POST", "/api/v1/campaigns/{campaign_id}/send", {"200", "403", "409", "503"}),
        ("POST", "/api/v1/messages", {"200", "404"}),
        ("POST", "/api/v1/imports", {"403", "413"}),
        ("GET", "/api/v1/contacts", {"404"}),
    ],
)
def test_what_the_service_may_answer_is_listed(
    document: dict[str, Any], method: str, path: str, statuses: set[str]
) -> None:
    responses = document["paths"][path][method.lower()]["responses"]
    assert statuses <= set(responses)


def test_busy_says_when_to_retry(document: dict[str, Any]) -> None:
    busy = document["paths"]["/api/v1/campaigns/{campaign_id}/send"]["post"]["responses"]["503"]
    assert "Retry-After" in busy["headers"]


def test_a_real_problem_matches_the_schema(client: TestClient, acme: Org) -> None:
    r = client.post("/api/v1/contacts", json={"tags": "vip"}, headers=acme.admin.headers)
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert {"type", "title", "status", "detail", "field", "errors"} <= set(body)
    assert all(set(e) == {"field", "message"} for e in body["errors"])


def test_options_lists_the_methods_of_every_path(
    document: dict[str, Any], bare: TestClient
) -> None:
    wrong = []
    for path, item in document["paths"].items():
        url = re.sub(r"\{[^}]+\}", "1", path)
        documented = {m.upper() for m in item if m in METHODS} | {"OPTIONS"}
        r = bare.options(url)  # no API key: what a path takes is no secret (the document)
        allow = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
        if r.status_code != 204 or allow != documented:
            wrong.append(f"OPTIONS {url}: {r.status_code} Allow={sorted(allow)}")
    assert not wrong


@pytest.mark.parametrize(
    ("method", "url", "allow"),
    [
        ("TRACE", "/api/v1/contacts/1", "GET, PUT, PATCH, DELETE, OPTIONS"),
        ("POST", "/api/v1/me", "GET, OPTIONS"),
        ("GET", "/api/v1/segments/preview", "POST, OPTIONS"),
        ("PUT", "/api/v1/campaigns/1/questions/2", "PATCH, DELETE, OPTIONS"),
    ],
)
def test_405_names_every_method_of_the_path(
    bare: TestClient, method: str, url: str, allow: str
) -> None:
    r = bare.request(method, url)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["detail"] == f"{method} is not allowed here; this path takes {allow}"


def test_options_on_an_unknown_path_is_404(bare: TestClient) -> None:
    assert bare.options("/api/v1/nothing-here").status_code == 404


def test_the_api_doc_describes_errors_and_options() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    for words in ("application/problem+json", "OPTIONS", "Allow", "schemathesis"):
        assert words in text
