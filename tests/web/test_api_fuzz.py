"""Schemathesis against the OpenAPI document, in-process, on both databases: no input makes
the API answer 5xx, and every answer is one the document describes (status code, content type,
body, headers; 405 and OPTIONS with a true ``Allow``).

One app and one database per engine (and xdist worker) serve the module; before each operation
the tables are emptied and the ids restarted (cheaper than the suite's TRUNCATE, which alone
costs PostgreSQL a second), then seeded with a little data so that generated requests name
things that exist. So every operation starts from the same state, whichever worker runs it and
whatever ran before. The cases are the same every run: the boundary and negative cases of
schemathesis' coverage phase are built at collection, in the document's order; the random ones
come from Hypothesis with a fixed seed, derandomized, with no example database.
``EXAMPLES`` random cases per operation keep the module to a few minutes per database;
``TEXTDESK_TEST_FUZZ_SCALE=10`` multiplies them to hunt for rarer causes locally.

The document is read from an app built at import (``schemathesis.pytest.from_fixture`` needs
``Node._nodeid``, which pytest 9 no longer has); the requests go to the module's app through
Starlette's TestClient, so no server is involved."""

from __future__ import annotations

import importlib
import os
import pkgutil
import shutil
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

import textdesk
from tests.conftest import PG_ENV, Org, make_org, pg_database
from textdesk.settings import Environment, Settings
from textdesk.store.db import Database, make_engine
from textdesk.store.tables import metadata
from textdesk.web.app import create_app

SEED = 20260613
EXAMPLES = 50
SCALE = int(os.environ.get("TEXTDESK_TEST_FUZZ_SCALE", "1"))

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    unsupported_method,
    allow_header_conformance,
]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"deterministic": True, "max-examples": EXAMPLES * SCALE},
        # Sequences of calls (stateful) would make each case depend on the ones before it.
        "phases": {"stateful": {"enabled": False}},
    }
)


def _document() -> dict[str, Any]:
    settings = Settings(
        env=Environment.TEST,
        database_url="sqlite://",
        secret_key="test-secret-key-0123456789",
        embedded_worker=False,
        _env_file=None,  # type: ignore[call-arg]
    )
    return create_app(settings).openapi()


# Hypothesis now and then draws a constant found in the local modules loaded so far. Loading
# all of textdesk first keeps that pool the same, whichever tests (and lazy imports) came before.
# (Without xdist the pytest launcher is a local module too: -n 0 and -n 2 differ by its strings,
# each the same from run to run.)
for _module in pkgutil.walk_packages(textdesk.__path__, "textdesk."):
    if not _module.name.endswith("__main__"):
        importlib.import_module(_module.name)

schema = schemathesis.openapi.from_dict(_document(), config=CONFIG)

#: Ids that exist in the current test's database, by path parameter name.
KNOWN: dict[str, list[Any]] = {}


@schema.hook
def flatmap_path_parameters(context: Any, parameters: dict[str, Any] | None) -> Any:
    # Half the random cases name things that exist, so they get past the 404.
    params = parameters or {}
    known = {name: KNOWN[name] for name in params if KNOWN.get(name)}
    if not known:
        return st.just(parameters)
    chosen = st.fixed_dictionaries({name: st.sampled_from(ids) for name, ids in known.items()})
    return st.one_of(st.just(parameters), chosen.map(lambda ids: {**params, **ids}))


@dataclass
class Fuzzed:
    client: TestClient
    owner: dict[str, str]
    agent: dict[str, str]

    def key_for(self, request: requests.PreparedRequest) -> dict[str, str]:
        """The owner's API key, or for a quarter of the requests the agent's (403s must be
        documented too). Chosen from the request itself, so a case always gets the same."""
        body = request.body.encode() if isinstance(request.body, str) else request.body or b""
        chosen = zlib.crc32(f"{request.method} {request.url}".encode() + body) % 4
        return self.agent if chosen == 0 else self.owner


def _seed(client: TestClient, headers: dict[str, str], org: Org) -> dict[str, list[Any]]:
    def made(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(f"/api/v1{path}", json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        data: dict[str, Any] = response.json()
        return data

    channel = made("/channels", {"provider": "simulator", "phone": "+12015550100"})
    made("/custom-fields", {"key": "spend", "label": "Spend", "type": "number"})
    contact = made(
        "/contacts",
        {"phone": "+12015550101", "first_name": "Ann", "tags": ["vip"], "fields": {"spend": 3}},
    )
    segment = made("/segments", {"name": "VIPs", "query": "tag:vip"})
    campaign = made(
        "/campaigns",
        {"name": "Spring", "script": "Hi {first_name}", "segment_query": "tag:vip"},
    )
    question = made(
        f"/campaigns/{campaign['id']}/questions",
        {"prompt": "Coming?", "options": [{"label": "Yes"}, {"label": "No"}]},
    )
    canned = made(
        f"/campaigns/{campaign['id']}/canned-responses", {"title": "Hours", "body": "At 9."}
    )
    message = made("/messages", {"contact_id": contact["id"], "body": "Hello"})
    upload = client.post(
        "/api/v1/imports",
        files={"file": ("list.csv", b"phone,first_name\n+12015550102,Bob\n", "text/csv")},
        headers=headers,
    )
    assert upload.status_code == 201, upload.text
    return {
        "user_id": [org.agent.user.id],
        "channel_id": [channel["id"]],
        "contact_id": [contact["id"]],
        "segment_id": [segment["id"]],
        "campaign_id": [campaign["id"]],
        "question_id": [question["id"]],
        "response_id": [canned["id"]],
        "canned_id": [canned["id"]],
        "message_id": [message["id"]],
        "conversation_id": [message["conversation_id"]],
        "import_id": [upload.json()["id"]],
        "field_key": ["spend"],
        "tag": ["vip"],
    }


@dataclass
class World:
    client: TestClient
    db: Database

    def reset(self) -> None:
        """Every table empty and every id counting from 1 again."""
        with self.db.engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(
                    "SELECT setval(oid, 1, false) FROM pg_class WHERE relkind = 'S'"
                )
            # SQLite's rowids restart by themselves: no table is AUTOINCREMENT.


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    pg_admin_url: str | None,
) -> Iterator[World]:
    with ExitStack() as stack:
        tmp = tmp_path_factory.mktemp("fuzz")
        if request.param == "sqlite":
            shutil.copy(sqlite_template, tmp / "textdesk.db")
            url = f"sqlite:///{tmp / 'textdesk.db'}"
        elif pg_admin_url is None:
            pytest.skip(f"set {PG_ENV} to run PostgreSQL tests")
        else:
            url = stack.enter_context(pg_database(pg_admin_url))
        settings = Settings(
            env=Environment.TEST,
            database_url=url,
            secret_key="test-secret-key-0123456789",
            embedded_worker=False,
            data_dir=tmp / "data",
            _env_file=None,  # type: ignore[call-arg]
        )
        db = Database(make_engine(url, pool_size=5))
        stack.callback(db.dispose)
        client = stack.enter_context(
            TestClient(create_app(settings, db), raise_server_exceptions=False)
        )
        yield World(client, db)


@pytest.fixture
def fuzzed(world: World) -> Iterator[Fuzzed]:
    world.reset()
    org = make_org(world.db, "Acme")
    KNOWN.clear()
    KNOWN.update(_seed(world.client, org.owner.headers, org))
    yield Fuzzed(world.client, org.owner.headers, org.agent.headers)
    KNOWN.clear()


def send(fuzzed: Fuzzed, case: schemathesis.Case) -> Any:
    """The case as schemathesis would send it (encoded by ``requests``, as its own transports
    do), with an API key, through the module's client."""
    kwargs = case.as_transport_kwargs(base_url=str(fuzzed.client.base_url))
    kwargs.pop("auth", None)
    prepared = requests.Request(**kwargs).prepare()
    fuzzed.client.cookies.clear()
    return fuzzed.client.request(
        str(prepared.method),
        str(prepared.url),
        headers={**prepared.headers, **fuzzed.key_for(prepared)},
        content=prepared.body,
    )


@schema.parametrize()
@hypothesis.settings(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_api_fuzz(case: schemathesis.Case, fuzzed: Fuzzed) -> None:
    case.validate_response(send(fuzzed, case), checks=CHECKS)
