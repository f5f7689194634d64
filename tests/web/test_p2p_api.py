"""The send screen's API: batch, next, send one contact per call, survey answers."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.services.p2p_helpers import add_question, rows, setup
from textdesk.services import p2p
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import messages
from textdesk.web.app import create_app


def test_batch_next_send_and_repeat(client: TestClient, db: Database, acme: Org) -> None:
    p = setup(db, acme, 3, zone="day")
    agent = acme.agent.user.id
    base = f"/api/v1/campaigns/{p.campaign_id}"
    headers = acme.admin.headers
    batch = client.post(
        f"{base}/assignments", json={"count": 2, "agent_id": agent}, headers=headers
    )
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert [c["contact_id"] for c in body["contacts"]] == p.contact_ids[:2]
    assert body["contacts"][0]["body"].startswith("Hi Person0, this is Acme agent from Acme.")
    assert body["contacts"][0]["segments"] == 1
    nxt = client.get(f"{base}/next", params={"agent_id": agent}, headers=headers).json()
    assert nxt["contact"]["contact_id"] == p.contact_ids[0]

    first = client.post(
        f"{base}/send", json={"contact_id": p.contact_ids[0], "agent_id": agent}, headers=headers
    )
    assert first.status_code == 201, first.text
    assert first.json()["created"] is True
    assert first.json()["message"]["status"] == "queued"
    repeat = client.post(
        f"{base}/send", json={"contact_id": p.contact_ids[0], "agent_id": agent}, headers=headers
    )
    assert repeat.status_code == 200
    assert repeat.json()["message"]["id"] == first.json()["message"]["id"]
    assert repeat.json()["created"] is False
    nxt = client.get(f"{base}/next", params={"agent_id": agent}, headers=headers).json()
    assert nxt["contact"]["contact_id"] == p.contact_ids[1]
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one() == 1


def test_refusals_are_problems_with_a_reason(client: TestClient, db: Database, acme: Org) -> None:
    p = setup(db, acme, 2, zone="day")
    agent = acme.agent.user.id
    base = f"/api/v1/campaigns/{p.campaign_id}"
    headers = acme.admin.headers
    # Not handed out yet: refused, and nothing sent.
    r = client.post(
        f"{base}/send", json={"contact_id": p.contact_ids[0], "agent_id": agent}, headers=headers
    )
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["reason"] == "not_assigned"
    assert r.json()["field"] == "contact_id"
    assert "not assigned to you" in r.json()["detail"]
    # An API key must say which person it sends for.
    r = client.post(f"{base}/send", json={"contact_id": p.contact_ids[0]}, headers=headers)
    assert (r.status_code, r.json()["field"]) == (422, "agent_id")
    # Opted out after assignment: refused with the reason, the contact skipped.
    client.post(f"{base}/assignments", json={"agent_id": agent}, headers=headers)
    client.post(
        f"/api/v1/contacts/{p.contact_ids[1]}/opt-out", json={"note": "phone"}, headers=headers
    )
    r = client.post(
        f"{base}/send", json={"contact_id": p.contact_ids[1], "agent_id": agent}, headers=headers
    )
    assert (r.status_code, r.json()["reason"]) == (409, "opted_out")
    assert rows(db, p.campaign_id)[p.contact_ids[1]].status == "skipped"
    # Unknown step and bad count name their field.
    r = client.post(
        f"{base}/send",
        json={"contact_id": p.contact_ids[0], "agent_id": agent, "step": "second"},
        headers=headers,
    )
    assert (r.status_code, r.json()["field"]) == (422, "step")
    r = client.post(f"{base}/assignments", json={"count": 0, "agent_id": agent}, headers=headers)
    assert (r.status_code, r.json()["field"]) == (422, "count")


def test_paused_campaign_refuses_batches(client: TestClient, db: Database, acme: Org) -> None:
    p = setup(db, acme, 1, zone="day", status="paused")
    r = client.post(
        f"/api/v1/campaigns/{p.campaign_id}/assignments",
        json={"agent_id": acme.agent.user.id},
        headers=acme.admin.headers,
    )
    assert (r.status_code, r.json()["reason"]) == (409, "campaign_paused")


def test_no_endpoint_sends_to_several_contacts(client: TestClient) -> None:
    """The send body takes exactly one contact id; a list is refused, not fanned out."""
    spec = client.get("/api/openapi.json").json()
    schema = spec["components"]["schemas"]["SendIn"]
    assert schema["properties"]["contact_id"]["type"] == "integer"
    assert schema["required"] == ["contact_id"]
    send_paths = [p for p in spec["paths"] if p.startswith("/api/v1/campaigns") and "send" in p]
    assert send_paths == ["/api/v1/campaigns/{campaign_id}/send"]


def test_send_with_a_list_of_contacts_is_invalid(
    client: TestClient, db: Database, acme: Org
) -> None:
    p = setup(db, acme, 2, zone="day")
    r = client.post(
        f"/api/v1/campaigns/{p.campaign_id}/send",
        json={"contact_id": p.contact_ids, "agent_id": acme.agent.user.id},
        headers=acme.admin.headers,
    )
    assert (r.status_code, r.json()["field"]) == (422, "contact_id")


def test_survey_answer(client: TestClient, db: Database, acme: Org) -> None:
    p = setup(db, acme, 1, zone="day")
    question = add_question(
        db, acme.org.id, p.campaign_id, [{"label": "Yes", "tag": "yes-voter"}, {"label": "No"}]
    )
    r = client.post(
        "/api/v1/survey-answers",
        json={"question_id": question, "contact_id": p.contact_ids[0], "option": "Yes"},
        headers=acme.agent.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["yes-voter"]
    r = client.post(
        "/api/v1/survey-answers",
        json={"question_id": question, "contact_id": p.contact_ids[0], "option": "Perhaps"},
        headers=acme.agent.headers,
    )
    assert (r.status_code, r.json()["field"]) == (422, "option")


def test_sends_arriving_together_share_a_transaction_and_keep_their_answers(
    settings: Settings, db: Database, acme: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: concurrent send requests are carried out together (fewer transactions than
    requests), and each still gets its own answer: its message, a repeat, or its refusal."""
    p = setup(db, acme, 30, zone="day")
    agent = acme.agent.user.id
    base = f"/api/v1/campaigns/{p.campaign_id}"
    headers = acme.admin.headers
    groups: list[int] = []
    real = p2p.send_many

    def counted(*args: Any, **kwargs: Any) -> Any:
        groups.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(p2p, "send_many", counted)

    async def run() -> list[httpx.Response]:
        app = create_app(settings, db)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            batch = await client.post(
                f"{base}/assignments", json={"count": 25, "agent_id": agent}, headers=headers
            )
            assert batch.status_code == 200, batch.text
            ids = [c["contact_id"] for c in batch.json()["contacts"]]
            wanted = [*ids, ids[0], ids[0], p.contact_ids[-1]]  # two repeats, one not held
            return list(
                await asyncio.gather(
                    *(
                        client.post(
                            f"{base}/send",
                            json={"contact_id": c, "agent_id": agent},
                            headers=headers,
                        )
                        for c in wanted
                    )
                )
            )

    answers = asyncio.run(run())
    same = [answers[0], answers[25], answers[26]]  # three presses for the first contact
    assert sorted(a.status_code for a in same) == [200, 200, 201]
    assert len({a.json()["message"]["id"] for a in same}) == 1  # the repeats got it back
    assert [a.status_code for a in answers[1:25]] == [201] * 24
    assert answers[-1].status_code == 409 and answers[-1].json()["reason"] == "not_assigned"
    assert sum(groups) == len(answers) and len(groups) < len(answers), groups
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one() == 25


def test_the_send_fast_path_answers_exactly_like_the_route(
    settings: Settings, db: Database, acme: Org
) -> None:
    """``POST .../send`` with a recently resolved key and a valid body is served before FastAPI's
    routing; the answer is the route's, headers included. Anything else takes the route."""
    from textdesk.services import auth
    from textdesk.web import deps

    p = setup(db, acme, 4, zone="day")
    agent = acme.agent.user.id
    base = f"/api/v1/campaigns/{p.campaign_id}"
    headers = acme.admin.headers
    app = create_app(settings, db)
    routed: list[str] = []

    async def counting_principal(request: Request, db: Database = Depends(deps.get_db)) -> Any:
        routed.append(request.url.path)
        return await deps.api_principal(request, db)

    app.dependency_overrides[deps.api_principal] = counting_principal
    with TestClient(app) as client:
        client.post(f"{base}/assignments", json={"count": 4, "agent_id": agent}, headers=headers)
        auth._key_cache.clear()  # the key is not known: the route serves (and resolves it)
        routed.clear()
        slow = client.post(
            f"{base}/send",
            json={"contact_id": p.contact_ids[0], "agent_id": agent},
            headers=headers,
        )
        assert routed == [f"{base}/send"]
        fast = client.post(
            f"{base}/send",
            json={"contact_id": p.contact_ids[1], "agent_id": agent},
            headers=headers,
        )
        repeat = client.post(
            f"{base}/send",
            json={"contact_id": p.contact_ids[1], "agent_id": agent},
            headers=headers,
        )
        refused = client.post(
            f"{base}/send", json={"contact_id": 999_999, "agent_id": agent}, headers=headers
        )
        assert routed == [f"{base}/send"]  # the key was known from then on: all fast
        invalid = client.post(
            f"{base}/send", json={"contact_id": "x", "agent_id": agent}, headers=headers
        )
        unsigned = client.post(f"{base}/send", json={"contact_id": p.contact_ids[2]})
        assert routed[1:] == [f"{base}/send"] * 2  # the invalid and the unsigned took the route
    assert (slow.status_code, fast.status_code, repeat.status_code) == (201, 201, 200)
    assert set(fast.json()) == set(slow.json()) == {"message", "created", "contact_id", "status"}
    assert set(fast.json()["message"]) == set(slow.json()["message"])
    assert fast.headers["content-type"] == slow.headers["content-type"]
    assert fast.headers["x-content-type-options"] == "nosniff"
    assert repeat.json()["created"] is False
    assert repeat.json()["message"]["id"] == fast.json()["message"]["id"]
    assert refused.status_code == 404 and refused.json()["field"] == "contact_id"
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert invalid.status_code == 422 and invalid.json()["field"] == "contact_id"
    assert unsigned.status_code == 401
