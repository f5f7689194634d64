"""No organization can see or touch another's data, over every API endpoint that exists.

``CASES`` names every route; a new route without a case here fails ``test_every_route_has_a_case``.
Each case is exercised by an outsider (Globex's admin key) against Acme's objects: the answer is
404 for anything addressed by id (no existence leak) and, for collections, a list that holds
nothing of Acme's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Org
from textdesk.services import (
    accounts,
    auth,
    campaign_survey,
    campaigns,
    channels,
    contacts,
    custom_fields,
    messaging,
    org_settings,
    segments,
)
from textdesk.services.automations import definitions, timers
from textdesk.services.automations import drafts as automation_drafts
from textdesk.services.automations import events as automation_events
from textdesk.services.automations.events import EventInput
from textdesk.services.contacts import ContactInput
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import import_rejects, utcnow
from textdesk.store.tables import imports as imports_table


@dataclass
class Objects:
    user_id: int
    key_id: int
    channel_id: int
    contact_id: int
    campaign_id: int
    message_id: int
    field_key: str = "acme_only"
    question_id: int = 0
    response_id: int = 0
    tag: str = "secret-tag"
    conversation_id: int = 0
    canned_id: int = 0
    import_id: int = 0
    segment_id: int = 0
    automation_id: int = 0
    event_id: int = 0
    run_id: int = 0
    draft_id: int = 0


def _acme_objects(db: Database, acme: Org, settings: Settings) -> Objects:
    admin = acme.admin.principal
    channel = channels.create_channel(
        db, admin, name="Main", provider="simulator", phone="+12015550100"
    )
    contact = contacts.create_contact(
        db, admin, ContactInput(phone="+12015550123", first_name="Secret", tags=["secret-tag"])
    )
    campaign = campaigns.create_campaign(db, admin, name="Acme spring", script="Hi {first_name}")
    key_id = auth.list_api_keys(db, admin)[0].id
    custom_fields.create_field(db, admin, key="acme_only", label="Secret", type_="text")
    message = messaging.send_message(
        db, settings, admin, contact_id=contact.id, body="Secret message"
    ).message
    objs = Objects(acme.agent.user.id, key_id, channel.id, contact.id, campaign.id, message.id)
    objs.question_id = campaign_survey.add_question(
        db, admin, campaign.id, prompt="Secret?", options=[{"label": "Yes"}, {"label": "No"}]
    ).id
    objs.response_id = campaign_survey.add_canned(
        db, admin, campaign.id, title="Secret", body="Secret answer"
    ).id
    assert message.conversation_id is not None
    objs.conversation_id = message.conversation_id
    objs.canned_id = objs.response_id
    with db.write() as conn:  # an import row is enough: the file plays no part in tenancy
        objs.import_id = conn.execute(
            imports_table.insert()
            .values(
                org_id=acme.org.id,
                filename="secret.csv",
                path="/nonexistent/secret.csv",
                status="uploaded",
                options={"header": ["phone"], "preview": [["+12015550123"]]},
                mapping={"phone": "phone"},
                created_at=utcnow(),
            )
            .returning(imports_table.c.id)
        ).scalar_one()
        conn.execute(
            import_rejects.insert().values(
                import_id=objs.import_id, line=2, reason="Secret", raw="+12015550123"
            )
        )
    objs.segment_id = segments.create_segment(
        db, admin, name="Secret segment", query="tag:secret-tag"
    ).id
    objs.automation_id = definitions.create_automation(db, admin, SECRET_AUTOMATION).id
    recorded = automation_events.record_events(
        db,
        admin,
        [EventInput(type="order.delivered", contact_id=contact.id, data={"note": "Secret"})],
    )[0]
    objs.event_id, objs.run_id = recorded.event.id, recorded.run_ids[0]
    timers.run_due(db, settings)  # its queue_for_person step leaves a draft
    with db.read() as conn:
        (draft,) = automation_drafts.pending_drafts(conn, acme.org.id, objs.conversation_id)
    objs.draft_id = draft.id
    return objs


SECRET_AUTOMATION = {
    "name": "Secret automation",
    "trigger": {"event_types": ["order.delivered"]},
    "steps": [{"type": "queue_for_person", "template": "Secret offer"}],
}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: Callable[[Objects], dict[str, Any]] | None = None
    # For collection endpoints: Acme strings that must never appear in Globex's answer.
    collection: bool = False
    # Query parameters (a search for Acme's words must find nothing of Acme's).
    params: dict[str, str] | None = None
    # Multipart uploads: sent instead of a JSON body.
    files: dict[str, Any] | None = None


CONTACT_BODY = {"phone": "+12015550177", "first_name": "X"}

CASES: dict[tuple[str, str], Case] = {
    c.method + " " + c.path: c  # type: ignore[misc]
    for c in [
        Case("GET", "/api/v1/me", collection=True),
        Case("GET", "/api/v1/users", collection=True),
        Case(
            "POST",
            "/api/v1/users",
            collection=True,
            body=lambda o: {"email": "new@x.test", "name": "N", "password": "long-password-1"},
        ),
        Case("GET", "/api/v1/users/{user_id}"),
        Case("PATCH", "/api/v1/users/{user_id}", body=lambda o: {"is_active": False}),
        Case("GET", "/api/v1/api-keys", collection=True),
        Case("POST", "/api/v1/api-keys", collection=True, body=lambda o: {"name": "k"}),
        Case("DELETE", "/api/v1/api-keys/{key_id}"),
        Case("GET", "/api/v1/audit-log", collection=True),
        Case("GET", "/api/v1/organization/settings", collection=True),
        Case(
            "PATCH",
            "/api/v1/organization/settings",
            collection=True,
            body=lambda o: {"help_text": "Globex help"},
        ),
        Case("GET", "/api/v1/channels", collection=True),
        Case(
            "POST",
            "/api/v1/channels",
            collection=True,
            body=lambda o: {"provider": "simulator", "phone": "+12015550100"},
        ),
        Case("GET", "/api/v1/channels/{channel_id}"),
        Case("GET", "/api/v1/contacts", collection=True),
        Case("POST", "/api/v1/contacts", collection=True, body=lambda o: dict(CONTACT_BODY)),
        Case("GET", "/api/v1/contacts/{contact_id}"),
        Case("PUT", "/api/v1/contacts/{contact_id}", body=lambda o: dict(CONTACT_BODY)),
        Case("DELETE", "/api/v1/contacts/{contact_id}"),
        Case("GET", "/api/v1/contacts/{contact_id}/consent"),
        Case("PATCH", "/api/v1/contacts/{contact_id}", body=lambda o: {"first_name": "X"}),
        Case("POST", "/api/v1/contacts/{contact_id}/tags", body=lambda o: {"tags": ["x"]}),
        Case("DELETE", "/api/v1/contacts/{contact_id}/tags/{tag}"),
        Case("GET", "/api/v1/search/contacts", collection=True, params={"q": "Secret"}),
        Case("GET", "/api/v1/search/messages", collection=True, params={"q": "Secret"}),
        Case("GET", "/api/v1/exports/contacts.csv", collection=True),
        Case("GET", "/api/v1/imports", collection=True),
        Case(
            "POST",
            "/api/v1/imports",
            collection=True,
            files={"file": ("globex.csv", b"phone,first\n2015550199,Gus\n", "text/csv")},
        ),
        Case("GET", "/api/v1/imports/{import_id}"),
        Case("POST", "/api/v1/imports/{import_id}/start", body=lambda o: {"policy": "fill"}),
        Case("POST", "/api/v1/imports/{import_id}/cancel"),
        Case("GET", "/api/v1/imports/{import_id}/rejects.csv"),
        Case("GET", "/api/v1/exports/messages.csv", collection=True),
        Case("GET", "/api/v1/custom-fields", collection=True),
        Case("GET", "/api/v1/segments", collection=True),
        Case(
            "POST",
            "/api/v1/segments",
            collection=True,
            body=lambda o: {"name": "Globex VIPs", "query": "tag:secret-tag"},
        ),
        Case(
            "POST",
            "/api/v1/segments/preview",
            collection=True,
            body=lambda o: {"query": "tag:secret-tag OR has first_name"},
        ),
        Case("GET", "/api/v1/segments/{segment_id}"),
        Case("PATCH", "/api/v1/segments/{segment_id}", body=lambda o: {"name": "Stolen"}),
        Case("DELETE", "/api/v1/segments/{segment_id}"),
        Case("GET", "/api/v1/segments/{segment_id}/contacts"),
        Case(
            "POST",
            "/api/v1/custom-fields",
            collection=True,
            body=lambda o: {"key": "globex_score", "type": "number"},
        ),
        Case("DELETE", "/api/v1/custom-fields/{field_key}"),
        Case("POST", "/api/v1/contacts/{contact_id}/opt-out", body=lambda o: {"note": "x"}),
        Case(
            "POST",
            "/api/v1/contacts/{contact_id}/opt-in",
            body=lambda o: {"reason": "signed a paper form today"},
        ),
        Case("GET", "/api/v1/consent-events.csv", collection=True),
        Case("GET", "/api/v1/messages", collection=True),
        Case("POST", "/api/v1/messages", body=lambda o: {"contact_id": o.contact_id, "body": "x"}),
        Case("GET", "/api/v1/conversations", collection=True),
        Case("GET", "/api/v1/conversations/{conversation_id}"),
        Case(
            "POST", "/api/v1/conversations/{conversation_id}/messages", body=lambda o: {"body": "x"}
        ),
        Case(
            "POST",
            "/api/v1/conversations/{conversation_id}/assign",
            body=lambda o: {"assignee_id": None},
        ),
        Case("POST", "/api/v1/conversations/{conversation_id}/close"),
        Case("POST", "/api/v1/conversations/{conversation_id}/reopen"),
        Case("POST", "/api/v1/conversations/{conversation_id}/read"),
        Case("POST", "/api/v1/conversations/{conversation_id}/notes", body=lambda o: {"body": "x"}),
        Case(
            "POST",
            "/api/v1/conversations/{conversation_id}/review",
            body=lambda o: {"action": "confirm"},
        ),
        Case("GET", "/api/v1/canned-responses", collection=True),
        Case(
            "POST",
            "/api/v1/canned-responses",
            collection=True,
            body=lambda o: {"title": "Globex hours", "body": "9 to 5"},
        ),
        Case("GET", "/api/v1/canned-responses/{canned_id}"),
        Case(
            "PUT",
            "/api/v1/canned-responses/{canned_id}",
            body=lambda o: {"title": "Hijacked", "body": "x"},
        ),
        Case("DELETE", "/api/v1/canned-responses/{canned_id}"),
        Case("GET", "/api/v1/messages/{message_id}"),
        Case("GET", "/api/v1/campaigns", collection=True),
        Case(
            "POST",
            "/api/v1/campaigns",
            collection=True,
            body=lambda o: {"name": "c", "script": "Hello"},
        ),
        Case("GET", "/api/v1/campaigns/{campaign_id}"),
        Case("PATCH", "/api/v1/campaigns/{campaign_id}", body=lambda o: {"name": "hijacked"}),
        Case("DELETE", "/api/v1/campaigns/{campaign_id}"),
        Case("POST", "/api/v1/campaigns/{campaign_id}/start"),
        Case("POST", "/api/v1/campaigns/{campaign_id}/pause"),
        Case("POST", "/api/v1/campaigns/{campaign_id}/resume"),
        Case("POST", "/api/v1/campaigns/{campaign_id}/archive"),
        Case("GET", "/api/v1/campaigns/{campaign_id}/agents"),
        Case("PUT", "/api/v1/campaigns/{campaign_id}/agents", body=lambda o: {"user_ids": []}),
        Case("GET", "/api/v1/campaigns/{campaign_id}/questions"),
        Case(
            "POST",
            "/api/v1/campaigns/{campaign_id}/questions",
            body=lambda o: {"prompt": "?", "options": [{"label": "a"}, {"label": "b"}]},
        ),
        Case(
            "PATCH",
            "/api/v1/campaigns/{campaign_id}/questions/{question_id}",
            body=lambda o: {"prompt": "x"},
        ),
        Case("DELETE", "/api/v1/campaigns/{campaign_id}/questions/{question_id}"),
        Case("GET", "/api/v1/campaigns/{campaign_id}/canned-responses"),
        Case(
            "POST",
            "/api/v1/campaigns/{campaign_id}/canned-responses",
            body=lambda o: {"title": "t", "body": "b"},
        ),
        Case(
            "PATCH",
            "/api/v1/campaigns/{campaign_id}/canned-responses/{response_id}",
            body=lambda o: {"title": "x"},
        ),
        Case("DELETE", "/api/v1/campaigns/{campaign_id}/canned-responses/{response_id}"),
        Case("POST", "/api/v1/campaigns/{campaign_id}/preview", body=lambda o: {}),
        Case("GET", "/api/v1/campaigns/{campaign_id}/progress"),
        Case(
            "POST",
            "/api/v1/campaigns/{campaign_id}/assignments",
            body=lambda o: {"count": 5, "agent_id": o.user_id},
        ),
        Case("GET", "/api/v1/campaigns/{campaign_id}/next", params={"agent_id": "1"}),
        Case(
            "POST",
            "/api/v1/campaigns/{campaign_id}/send",
            body=lambda o: {"contact_id": o.contact_id, "agent_id": o.user_id},
        ),
        Case(
            "POST",
            "/api/v1/survey-answers",
            body=lambda o: {
                "question_id": o.question_id,
                "contact_id": o.contact_id,
                "option": "Yes",
            },
        ),
        Case(
            "POST",
            "/api/v1/templates/preview",
            body=lambda o: {"template": "Hi {first_name}", "contact_id": o.contact_id},
        ),
        Case("GET", "/api/v1/events", collection=True),
        Case(
            "POST",
            "/api/v1/events",
            body=lambda o: {"type": "order.delivered", "contact_id": o.contact_id},
        ),
        Case("GET", "/api/v1/events/{event_id}"),
        Case("GET", "/api/v1/automations", collection=True),
        Case(
            "POST",
            "/api/v1/automations",
            collection=True,
            body=lambda o: {
                **SECRET_AUTOMATION,
                "name": "Globex automation",
                "steps": [{"type": "tag", "tags": ["globex"]}],
            },
        ),
        Case("GET", "/api/v1/automations/{automation_id}"),
        Case(
            "PUT",
            "/api/v1/automations/{automation_id}",
            body=lambda o: {**SECRET_AUTOMATION, "name": "Hijacked"},
        ),
        Case("PATCH", "/api/v1/automations/{automation_id}", body=lambda o: {"status": "paused"}),
        Case("DELETE", "/api/v1/automations/{automation_id}"),
        Case("GET", "/api/v1/automations/{automation_id}/runs"),
        Case("GET", "/api/v1/runs", collection=True),
        Case("GET", "/api/v1/runs/{run_id}"),
        Case("GET", "/api/v1/conversations/{conversation_id}/drafts"),
        Case("POST", "/api/v1/drafts/{draft_id}/send"),
        Case("POST", "/api/v1/drafts/{draft_id}/discard", body=lambda o: {}),
        Case("GET", "/api/v1/conversations/{conversation_id}/scheduled"),
        Case("POST", "/api/v1/messages/{message_id}/cancel"),
    ]
}


def _api_routes(client: TestClient) -> set[str]:
    spec = client.get("/api/openapi.json").json()
    return {
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        if path.startswith("/api/v1")
        for method in operations
    }


def test_every_route_has_a_case(client: TestClient) -> None:
    missing = _api_routes(client) - set(CASES)
    assert not missing, f"add tenancy cases for: {sorted(missing)}"
    stale = set(CASES) - _api_routes(client)
    assert not stale, f"cases for routes that no longer exist: {sorted(stale)}"


@pytest.mark.parametrize("key", sorted(CASES))
def test_outsider_cannot_reach_acme(
    key: str, client: TestClient, db: Database, settings: Settings, acme: Org, globex: Org
) -> None:
    case = CASES[key]
    objs = _acme_objects(db, acme, settings)
    path = case.path.format(**vars(objs))
    body = case.body(objs) if case.body else None
    response = client.request(
        case.method,
        path,
        json=body if case.files is None else None,
        files=case.files,
        params=case.params,
        headers=globex.admin.headers,
    )
    if case.collection:
        assert response.status_code < 400 or response.status_code == 409, response.text
        text = response.text
        for secret in (
            "Secret",
            "+12015550123",
            "Acme spring",
            acme.org.name,
            acme.agent.user.email,
        ):
            assert secret not in text, f"{key} leaked {secret!r} to another organization"
    else:
        assert response.status_code == 404, f"{key}: {response.status_code} {response.text}"
        assert response.headers["content-type"].startswith("application/problem+json")
    # And nothing of Acme's changed.
    with db.read() as conn:
        assert contacts.get_contact(conn, acme.org.id, objs.contact_id).first_name == "Secret"
        assert not contacts.get_contact(conn, acme.org.id, objs.contact_id).opted_out
        assert contacts.get_contact(conn, acme.org.id, objs.contact_id).tags == ["secret-tag"]
        assert channels.get_channel(conn, acme.org.id, objs.channel_id).is_active
    with db.read() as conn:
        assert accounts.get_user(conn, acme.org.id, objs.user_id).is_active
    assert all(k.revoked_at is None for k in auth.list_api_keys(db, acme.admin.principal))
    with db.read() as conn:
        assert org_settings.load(conn, acme.org.id).help_text is None
        assert "acme_only" in custom_fields.field_types(conn, acme.org.id)
        assert segments.get_segment(conn, acme.org.id, objs.segment_id).name == "Secret segment"
        automation = definitions.get_automation(conn, acme.org.id, objs.automation_id)
        assert (automation.name, automation.status) == ("Secret automation", "active")
        assert automation_drafts.get_draft(conn, acme.org.id, objs.draft_id).status == "pending"


@pytest.mark.parametrize("source", ["campaign_id", "automation_id"])
def test_outsider_cannot_follow_acme_messages(
    source: str, client: TestClient, db: Database, settings: Settings, acme: Org, globex: Org
) -> None:
    """A no-reply trigger names a campaign or an automation: another organization's is not
    found (422 on the field), and keywords are each organization's own."""
    objs = _acme_objects(db, acme, settings)
    response = client.post(
        "/api/v1/automations",
        json={
            "name": "Globex follow-up",
            "trigger": {"type": "no_reply", "within": "2d", source: getattr(objs, source)},
            "steps": [{"type": "stop"}],
        },
        headers=globex.admin.headers,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == f"trigger.{source}"
    assert "Secret" not in response.text and "Acme" not in response.text
    keyword = {
        "name": "Hours",
        "trigger": {"type": "keyword", "keywords": ["HOURS"]},
        "steps": [{"type": "stop"}],
    }
    for org in (acme, globex):
        made = client.post("/api/v1/automations", json=keyword, headers=org.admin.headers)
        assert made.status_code == 201, made.text
