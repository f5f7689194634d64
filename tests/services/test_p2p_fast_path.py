"""The send action's fast path: few statements per send, the key look-up skipped only while the
pool row proves there is no message, short SQLite write transactions for batch requests, and a
busy database answered with 503 + Retry-After instead of a 500."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.services.p2p_helpers import NINE_ET, extra_agent, rows, setup
from textdesk.services import messaging, p2p
from textdesk.settings import Settings
from textdesk.store import db as store_db
from textdesk.store.db import Database, make_engine
from textdesk.store.tables import campaign_contacts, conversations, messages
from textdesk.web.app import create_app


@contextmanager
def counting(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)


def test_a_send_is_a_handful_of_statements(db: Database, acme: Org, settings: Settings) -> None:
    p = setup(db, acme, 3)
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id, 3, now=NINE_ET)
    p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)  # warm caches
    with counting(db) as seen:
        sent = p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[1], now=NINE_ET)
    assert sent.created and sent.message.status == "queued"
    # SQLite: BEGIN, the locked row, the channel pool, the history, the conversation upsert,
    # the message, its events, the pool row (8). PostgreSQL has no BEGIN statement but the
    # worker wake-up NOTIFY; its live events go out in one NOTIFY from the commit hook, on the
    # driver's cursor (not counted here). It was 22 and 25 before.
    # 9: one is the look-up of the no-reply automations a campaign message may start
    # (services/automations/triggers.py), once per send or group.
    assert len(seen) <= 9, "\n".join(seen)
    assert not any("idempotency_key =" in s for s in seen)  # the row lock proved it is new


def test_a_key_taken_outside_the_campaign_is_found_on_the_retry(
    db: Database, acme: Org, settings: Settings
) -> None:
    """The look-up is skipped while the pool row has no message; if the key is taken anyway (an
    API caller chose it), the unique key refuses the insert and the retry looks it up."""
    p = setup(db, acme, 2)
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id, 2, now=NINE_ET)
    key = p2p.idempotency_key(p.campaign_id, p.contact_ids[0])
    earlier = messaging.send_message(
        db,
        settings,
        acme.admin.principal,
        contact_id=p.contact_ids[0],
        body="Hello from Acme. Reply STOP to opt out.",
        idempotency_key=key,
    )
    sent = p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)
    assert not sent.created
    assert sent.message.id == earlier.message.id
    with db.read() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).where(messages.c.idempotency_key == key)
            ).scalar_one()
            == 1
        )


def test_the_conversation_is_created_once_and_keeps_its_assignee(
    db: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 2)
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id, 2, now=NINE_ET)
    first = p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)
    # A later reply by an admin touches the same conversation and leaves the agent on it.
    reply = messaging.send_message(
        db, settings, acme.admin.principal, contact_id=p.contact_ids[0], body="Thanks!"
    )
    assert reply.message.conversation_id == first.message.conversation_id
    with db.read() as conn:
        convo = conn.execute(
            sa.select(conversations).where(conversations.c.contact_id == p.contact_ids[0])
        ).one()
    assert convo.assignee_id == acme.agent.user.id
    assert convo.campaign_id == p.campaign_id
    assert convo.channel_id == first.message.channel_id == p.channel_id


def test_a_row_taken_between_scan_and_claim_is_not_handed_out_twice(
    db: Database, acme: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite scans the pool in a read transaction and claims in a short write transaction;
    a row another request claimed meanwhile stays theirs and the scan goes on."""
    if not db.is_sqlite:
        pytest.skip("PostgreSQL takes the pool with FOR UPDATE SKIP LOCKED in one transaction")
    p = setup(db, acme, 6)
    other = extra_agent(db, acme, p.campaign_id, "Other")
    scan_chunk = p2p._scan_chunk
    stolen: list[int] = []

    def racing(*args: Any, **kwargs: Any) -> bool:
        found = scan_chunk(*args, **kwargs)
        scan = args[5]
        if not stolen and scan.chosen:
            # Another request claims two of the rows this one chose, and commits first.
            stolen.extend(scan.chosen[:2])
            with db.write() as conn:
                conn.execute(
                    sa.update(campaign_contacts)
                    .where(campaign_contacts.c.id.in_(stolen))
                    .values(status="assigned", assignee_id=other.user_id, assigned_until=NINE_ET)
                )
        return found

    monkeypatch.setattr(p2p, "_scan_chunk", racing)
    batch = p2p.request_batch(db, acme.agent.principal, p.campaign_id, 3, now=NINE_ET)
    state = rows(db, p.campaign_id)
    mine = [o.contact_id for o in batch.offers]
    assert len(mine) == 3
    theirs = [c for c in p.contact_ids if state[c].assignee_id == other.user_id]
    assert len(theirs) == 2 and not set(theirs) & set(mine)
    assert {state[c].assignee_id for c in mine} == {acme.agent.user.id}


@pytest.fixture
def impatient(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The same database with a 100 ms busy timeout (SQLite only)."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the write lock that can time out is SQLite's")
    monkeypatch.setattr(store_db, "SQLITE_BUSY_TIMEOUT_MS", 100)
    database = Database(make_engine(db_url))
    yield database
    database.dispose()


@contextmanager
def write_lock_held(db_url: str) -> Iterator[None]:
    holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_busy_database_is_a_retryable_refusal(
    db: Database, db_url: str, impatient: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 2)
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id, 2, now=NINE_ET)
    with write_lock_held(db_url), pytest.raises(p2p.Busy) as exc:
        p2p.send(impatient, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)
    assert exc.value.status == 503 and "retry" in exc.value.message
    with write_lock_held(db_url), pytest.raises(p2p.Busy):
        p2p.request_batch(impatient, agent, p.campaign_id, 2, now=NINE_ET)
    # Nothing happened; the same request goes through once the lock is free.
    assert rows(db, p.campaign_id)[p.contact_ids[0]].status == "assigned"
    sent = p2p.send(impatient, settings, agent, p.campaign_id, p.contact_ids[0], now=NINE_ET)
    assert sent.created


def test_the_api_answers_503_with_retry_after(
    db: Database, db_url: str, impatient: Database, acme: Org, settings: Settings
) -> None:
    p = setup(db, acme, 2, zone="day")
    with TestClient(create_app(settings, impatient)) as client:
        url = f"/api/v1/campaigns/{p.campaign_id}"
        body = {"agent_id": acme.agent.user.id}
        assert client.post(f"{url}/assignments", json=body, headers=acme.admin.headers).is_success
        with write_lock_held(db_url):
            r = client.post(
                f"{url}/send",
                json={**body, "contact_id": p.contact_ids[0]},
                headers=acme.admin.headers,
            )
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] == "1"
            assert r.headers["content-type"].startswith("application/problem+json")
            assert "busy" in r.json()["detail"]
            r = client.post(f"{url}/assignments", json=body, headers=acme.admin.headers)
            assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        r = client.post(
            f"{url}/send", json={**body, "contact_id": p.contact_ids[0]}, headers=acme.admin.headers
        )
        assert r.status_code == 201, r.text
