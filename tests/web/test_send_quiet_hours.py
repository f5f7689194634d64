"""The send screen when every contact left is in their quiet hours: the batch says until when
(and why), the API too, instead of an empty screen."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.services.p2p_helpers import make_campaign, setup
from tests.web.test_ui import login
from textdesk.services import auth, channels
from textdesk.store.db import Database
from textdesk.store.tables import contacts, utcnow

_DATA_CSRF = re.compile(r'data-csrf="([^"]+)"')


def night_zone(now: datetime | None = None) -> str:
    """A fixed-offset zone where it is 3 AM now (state NY: the federal 8 AM-9 PM rule only)."""
    hour = (now or utcnow()).hour
    offset = (3 - hour + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def _night_contacts(db: Database, org_id: int, n: int) -> tuple[list[int], str]:
    zone = night_zone()
    now = utcnow()
    with db.write() as conn:
        ids = [
            conn.execute(
                contacts.insert()
                .values(
                    org_id=org_id,
                    phone_e164=f"+1212555{3000 + i:04d}",
                    first_name=f"Night{i}",
                    last_name="Owl",
                    state="NY",
                    time_zone=zone,
                    fields={},
                    tags=[],
                    created_at=now,
                    updated_at=now,
                )
                .returning(contacts.c.id)
            ).scalar_one()
            for i in range(n)
        ]
    return ids, zone


def _check_hold(body: dict[str, object], n: int, zone: str) -> None:
    assert body["contacts"] == [] and body["held_back"] == n, body
    assert isinstance(body["next_allowed"], str)
    until = datetime.fromisoformat(body["next_allowed"])
    local = until.astimezone(ZoneInfo(zone))
    # 3 AM there (at set-up): the window opens at 8:00 AM their time, within five hours.
    assert (local.hour, local.minute) == (8, 0)
    assert timedelta(0) < until - utcnow() <= timedelta(hours=5)
    detail = str(body["quiet_detail"])
    assert "is before the federal 8 AM start; next allowed 8:00 AM" in detail
    assert not detail.startswith("held")


def test_batch_says_until_when_quiet_hours_hold_everyone(
    client: TestClient, db: Database, acme: Org
) -> None:
    channels.create_channel(
        db, acme.admin.principal, name="Main", provider="simulator", phone="+12015550100"
    )
    ids, zone = _night_contacts(db, acme.org.id, 3)
    campaign_id = make_campaign(db, acme, ids)
    login(client, acme.agent.user.email)
    page = client.get(f"/campaigns/{campaign_id}/send")
    token = _DATA_CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    batch = client.post(
        f"/campaigns/{campaign_id}/send/batch", json={}, headers={"X-CSRF-Token": token}
    )
    assert batch.status_code == 200, batch.text
    _check_hold(batch.json(), 3, zone)
    # Nothing was assigned: the contacts wait in the pool for their morning.
    with db.read() as conn:
        assigned = conn.execute(
            sa.text("SELECT count(*) FROM campaign_contacts WHERE status = 'assigned'")
        ).scalar_one()
    assert assigned == 0


def test_api_batch_says_until_when(client: TestClient, db: Database, acme: Org) -> None:
    channels.create_channel(
        db, acme.admin.principal, name="Main", provider="simulator", phone="+12015550100"
    )
    ids, zone = _night_contacts(db, acme.org.id, 2)
    campaign_id = make_campaign(db, acme, ids)
    _key, key = auth.create_api_key(db, acme.admin.principal, name="desk")
    r = client.post(
        f"/api/v1/campaigns/{campaign_id}/assignments",
        json={"agent_id": acme.agent.user.id},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    _check_hold(r.json(), 2, zone)


def test_no_hold_no_time(client: TestClient, db: Database, acme: Org) -> None:
    """With contacts to offer the batch carries no quiet-hours time."""
    p = setup(db, acme, 2, zone="day")
    login(client, acme.agent.user.email)
    page = client.get(f"/campaigns/{p.campaign_id}/send")
    token = _DATA_CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    body = client.post(
        f"/campaigns/{p.campaign_id}/send/batch", json={}, headers={"X-CSRF-Token": token}
    ).json()
    assert len(body["contacts"]) == 2
    assert body["held_back"] == 0 and body["next_allowed"] is None and body["quiet_detail"] is None
