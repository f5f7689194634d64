"""Provider webhooks: signatures, dedupe, unknown callbacks, on both engines."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.delivery.helpers import channel, people, queue, statuses
from textdesk.delivery import outbox
from textdesk.delivery.outbox import Sent
from textdesk.providers.simulator import signing
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import messages, orphan_reports

SECRET = "simulator-secret"


def post(
    client: TestClient,
    path: str,
    payload: dict[str, object],
    *,
    secret: str = SECRET,
    at: int | None = None,
) -> object:
    body = json.dumps(payload).encode()
    headers = {
        "content-type": "application/json",
        **signing.headers(secret, at or int(time.time()), body),
    }
    return client.post(path, content=body, headers=headers)


def test_forged_and_unsigned_callbacks_change_nothing(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin)
    path = f"/webhooks/simulator/{ch}/inbound"
    payload = {"id": "IN-1", "from": "+12015550999", "to": "+12015550100", "body": "hi"}
    assert post(client, path, payload, secret="wrong").status_code == 403  # type: ignore[attr-defined]
    assert client.post(path, json=payload).status_code == 403
    stale = post(client, path, payload, at=int(time.time()) - 3600)
    assert stale.status_code == 403  # type: ignore[attr-defined]
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar() == 0


def test_inbound_is_stored_once(client: TestClient, db: Database, acme: Org) -> None:
    ch = channel(db, acme.admin.principal)
    path = f"/webhooks/simulator/{ch}/inbound"
    payload = {"id": "IN-7", "from": "+12015550999", "to": "+12015550100", "body": "Yes!"}
    for _ in range(3):  # providers retry
        r = post(client, path, payload)
        assert r.status_code == 200  # type: ignore[attr-defined]
    with db.read() as conn:
        rows = conn.execute(sa.select(messages.c.body, messages.c.status)).all()
    assert rows == [("Yes!", "received")]


def test_status_callbacks(client: TestClient, db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin)
    [mid] = queue(db, settings, admin, people(db, admin, 1))
    [claimed] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    outbox.record(db, [Sent(claimed, "SM-1")], actor="w")
    path = f"/webhooks/simulator/{ch}/status"
    r = post(client, path, {"id": "SM-1", "status": "undelivered", "error_code": "30003"})
    assert r.status_code == 200  # type: ignore[attr-defined]
    with db.read() as conn:
        row = conn.execute(sa.select(messages).where(messages.c.id == mid)).one()
    assert row.status == "undelivered" and row.error_code == "simulator:30003"
    # A report for an id we never sent: 200 (so the provider stops), kept as evidence.
    assert post(client, path, {"id": "SM-unknown", "status": "delivered"}).status_code == 200  # type: ignore[attr-defined]
    with db.read() as conn:
        assert (
            conn.execute(sa.select(orphan_reports.c.provider_message_id)).scalar() == "SM-unknown"
        )
    # Garbage that verifies but is not a report: 200, nothing changes.
    assert post(client, path, {"nonsense": True}).status_code == 200  # type: ignore[attr-defined]
    assert statuses(db, [mid]) == {mid: "undelivered"}


def test_unknown_channel_or_kind(client: TestClient, db: Database, acme: Org) -> None:
    ch = channel(db, acme.admin.principal)
    assert client.post("/webhooks/simulator/9999/status", json={}).status_code == 404
    assert client.post(f"/webhooks/twilio/{ch}/status", json={}).status_code == 404
    assert client.post(f"/webhooks/simulator/{ch}/other", json={}).status_code == 404
