"""The send screen page and its JSON calls on a UI session (CSRF header)."""

from __future__ import annotations

import re

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.services.p2p_helpers import rows, setup
from tests.web.test_ui import login
from textdesk.store.db import Database
from textdesk.store.tables import messages

_DATA_CSRF = re.compile(r'data-csrf="([^"]+)"')


def test_send_screen_flow(client: TestClient, db: Database, acme: Org) -> None:
    p = setup(db, acme, 3, zone="day")
    login(client, acme.agent.user.email)
    page = client.get(f"/campaigns/{p.campaign_id}/send")
    assert page.status_code == 200
    assert 'data-testid="sent-count">0<' in page.text
    assert f'href="/inbox?campaign_id={p.campaign_id}"' in page.text
    assert '<script src="/static/js/send.js" defer></script>' in page.text
    token = _DATA_CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    base = f"/campaigns/{p.campaign_id}/send"
    # Without the CSRF header nothing happens.
    assert client.post(f"{base}/batch", json={}).status_code == 403
    headers = {"X-CSRF-Token": token}
    batch = client.post(f"{base}/batch", json={}, headers=headers)
    assert batch.status_code == 200, batch.text
    offers = batch.json()["contacts"]
    assert [o["contact_id"] for o in offers] == p.contact_ids
    first = client.post(
        f"{base}/contact", json={"contact_id": offers[0]["contact_id"]}, headers=headers
    )
    assert first.status_code == 201 and first.json()["status"] == "sent"
    again = client.post(
        f"{base}/contact", json={"contact_id": offers[0]["contact_id"]}, headers=headers
    )
    assert again.status_code == 200
    assert again.json()["message_id"] == first.json()["message_id"]
    skipped = client.post(
        f"{base}/skip", json={"contact_id": offers[1]["contact_id"]}, headers=headers
    )
    assert skipped.status_code == 200
    assert rows(db, p.campaign_id)[offers[1]["contact_id"]].reason == "skipped_by_agent"
    refused = client.post(
        f"{base}/contact", json={"contact_id": offers[1]["contact_id"]}, headers=headers
    )
    assert refused.status_code == 409 and refused.json()["reason"] == "skipped_by_agent"
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one() == 1
    assert 'data-testid="sent-count">1<' in client.get(f"/campaigns/{p.campaign_id}/send").text


def test_send_screen_of_another_org_is_not_found(
    client: TestClient, db: Database, acme: Org, globex: Org
) -> None:
    p = setup(db, acme, 1, zone="day")
    login(client, globex.agent.user.email)
    assert client.get(f"/campaigns/{p.campaign_id}/send").status_code == 404
