"""The campaign pages: list, editor with live count and preview, agents, survey, canned
responses, lifecycle buttons, the live progress page; what agents and outsiders may see."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.web.test_ui import login
from textdesk.services import campaigns, channels, contacts
from textdesk.services.contacts import ContactInput
from textdesk.store.db import Database

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SCRIPT = "Hi {first_name|there}, it's {agent_name} at Acme. Reply STOP to opt out."


def _token(client: TestClient) -> str:
    return _CSRF.search(client.get("/campaigns").text).group(1)  # type: ignore[union-attr]


def _seed(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    channels.create_channel(db, admin, name="Line", provider="simulator", phone="+12025550143")
    for i in range(3):
        contacts.create_contact(
            db, admin, ContactInput(phone=f"+1212555{i:04d}", first_name=f"P{i}", tags=["vip"])
        )


def test_admin_builds_and_starts_a_campaign(client: TestClient, db: Database, acme: Org) -> None:
    _seed(db, acme)
    login(client, acme.admin.user.email)
    csrf = _token(client)
    r = client.post(
        "/campaigns",
        data={"name": "Spring", "segment_query": "tag:vip", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    edit_url = r.headers["location"]
    cid = int(edit_url.split("/")[2])
    editor = client.get(edit_url)
    assert editor.status_code == 200
    assert 'data-insert="{first_name}"' in editor.text  # the merge-field picker
    assert "/static/js/campaign_editor.js" in editor.text and "<script>" not in editor.text

    headers = {"X-CSRF-Token": csrf}
    count = client.post(
        f"/campaigns/{cid}/audience", data={"segment_query": "tag:vip"}, headers=headers
    )
    assert 'data-testid="audience-count">3<' in count.text
    bad = client.post(f"/campaigns/{cid}/audience", data={"segment_query": "tag:"}, headers=headers)
    assert "audience-error" in bad.text and "segment_query" in bad.text
    preview = client.post(
        f"/campaigns/{cid}/preview",
        data={"script": SCRIPT, "segment_query": "tag:vip"},
        headers=headers,
    )
    assert "Hi P0, it&#39;s Acme admin at Acme. Reply STOP to opt out." in preview.text
    assert "1 SMS segment" in preview.text
    assert preview.text.count('data-testid="preview-sample"') == 3
    warn = client.post(
        f"/campaigns/{cid}/preview", data={"script": "Hi {first_name}"}, headers=headers
    )
    assert 'data-testid="preview-finding"' in warn.text  # no brand, no opt-out language

    saved = client.post(
        f"/campaigns/{cid}/edit",
        data={
            "csrf_token": csrf,
            "name": "Spring recall",
            "segment_query": "tag:vip",
            "script": SCRIPT,
            "purpose": "marketing",
            "batch_size": "20",
            "assignment_timeout_minutes": "10",
            "starts_at": "2026-12-01T09:00",
            "ends_at": "",
        },
    )
    assert saved.status_code == 200 and "Saved." in saved.text
    with db.read() as conn:
        campaign = campaigns.get_campaign(conn, acme.org.id, cid)
    assert campaign.script == SCRIPT and campaign.assignment_timeout_seconds == 600
    assert campaign.starts_at is not None and campaign.starts_at.hour == 14  # 09:00 New York
    bad_save = client.post(
        f"/campaigns/{cid}/edit",
        data={
            "csrf_token": csrf,
            "name": "x",
            "script": "Hi {nme}",
            "batch_size": "20",
            "assignment_timeout_minutes": "10",
            "purpose": "marketing",
        },
    )
    assert bad_save.status_code == 422 and "nme" in bad_save.text

    client.post(
        f"/campaigns/{cid}/agents", data={"csrf_token": csrf, "user_ids": [acme.agent.user.id]}
    )
    client.post(
        f"/campaigns/{cid}/questions",
        data={"csrf_token": csrf, "prompt": "Coming?", "options": "Yes | coming\nNo | not-coming"},
    )
    client.post(
        f"/campaigns/{cid}/canned",
        data={"csrf_token": csrf, "title": "Hours", "body": "We open at 9."},
    )
    editor = client.get(edit_url)
    assert (
        "Coming?" in editor.text and "not-coming" in editor.text and "We open at 9." in editor.text
    )
    assert f'value="{acme.agent.user.id}" checked' in editor.text

    started = client.post(f"/campaigns/{cid}/lifecycle/start", data={"csrf_token": csrf})
    assert started.status_code == 200 and 'data-testid="campaign-status">active<' in started.text
    again = client.post(f"/campaigns/{cid}/lifecycle/start", data={"csrf_token": csrf})
    assert again.status_code == 422 and "cannot start" in again.text
    progress = client.get(f"/campaigns/{cid}/progress")
    assert 'data-testid="total-pending">3<' in progress.text
    assert 'hx-trigger="every 2s"' in progress.text
    live = client.get(f"/campaigns/{cid}/progress/live")
    assert live.text.lstrip().startswith('<div id="progress"')


def test_forms_need_the_csrf_token(client: TestClient, db: Database, acme: Org) -> None:
    login(client, acme.admin.user.email)
    r = client.post("/campaigns", data={"name": "x", "csrf_token": "forged"})
    assert r.status_code == 403
    with db.read() as conn:
        assert campaigns.list_campaigns(conn, acme.org.id) == []


def test_agent_sees_assigned_campaigns_with_join(
    client: TestClient, db: Database, acme: Org
) -> None:
    _seed(db, acme)
    admin = acme.admin.principal
    mine = campaigns.create_campaign(db, admin, name="Mine", script=SCRIPT, segment_query="tag:vip")
    campaigns.create_campaign(db, admin, name="Hidden draft", script=SCRIPT)
    campaigns.set_agents(db, admin, mine.id, [acme.agent.user.id])
    campaigns.transition(db, admin, mine.id, "start")
    login(client, acme.agent.user.email)
    page = client.get("/campaigns")
    assert "Mine" in page.text and "Hidden draft" not in page.text
    assert f'href="/campaigns/{mine.id}/send">Join<' in page.text
    assert "New campaign" not in page.text
    assert client.get(f"/campaigns/{mine.id}/progress").status_code == 200
    assert client.get(f"/campaigns/{mine.id}/edit").status_code == 403


def test_outsider_gets_not_found(client: TestClient, db: Database, acme: Org, globex: Org) -> None:
    campaign = campaigns.create_campaign(db, acme.admin.principal, name="Acme only", script="Hi")
    login(client, globex.admin.user.email)
    assert "Acme only" not in client.get("/campaigns").text
    assert client.get(f"/campaigns/{campaign.id}/edit").status_code == 404
    assert client.get(f"/campaigns/{campaign.id}/progress").status_code == 404
    csrf = _token(client)
    r = client.post(f"/campaigns/{campaign.id}/lifecycle/archive", data={"csrf_token": csrf})
    assert r.status_code == 404
    with db.read() as conn:
        assert campaigns.get_campaign(conn, acme.org.id, campaign.id).status == "draft"


def test_a_campaigns_own_address_leads_admins_to_the_editor_and_agents_to_progress(
    client: TestClient, db: Database, acme: Org
) -> None:
    campaign = campaigns.create_campaign(db, acme.admin.principal, name="Fall", script=SCRIPT)
    login(client, acme.admin.user.email)
    r = client.get(f"/campaigns/{campaign.id}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/campaigns/{campaign.id}/edit"
    client.cookies.clear()
    login(client, acme.agent.user.email)
    r = client.get(f"/campaigns/{campaign.id}", follow_redirects=False)
    assert r.headers["location"] == f"/campaigns/{campaign.id}/progress"
