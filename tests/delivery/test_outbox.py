"""The outbox on both engines: claims, leases, throttling, outcomes, housekeeping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel, lock_waiters, people, queue, statuses, trail, until
from textdesk.delivery import outbox
from textdesk.delivery.outbox import Failed, Retry, Sent, Unknown, gcra_budget
from textdesk.domain.states import MessageStatus as S
from textdesk.providers.base import StatusReport
from textdesk.services import consent, messaging
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import (
    channel_throttle,
    channels,
    contacts,
    messages,
    organizations,
    orphan_reports,
    utcnow,
)


def test_claim_leases_and_never_twice(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    ids = queue(db, settings, admin, people(db, admin, 5))
    first = outbox.claim(db, settings, worker_id="w1", limit=3)
    assert [c.id for c in first.claimed] == ids[:3]
    second = outbox.claim(db, settings, worker_id="w2", limit=10)
    assert [c.id for c in second.claimed] == ids[3:]
    assert outbox.claim(db, settings, worker_id="w3", limit=10).claimed == []
    with db.read() as conn:
        row = conn.execute(sa.select(messages).where(messages.c.id == ids[0])).one()
    assert row.status == S.SENDING and row.leased_by == "w1" and row.attempts == 1
    assert row.lease_until > datetime.now(UTC)
    assert trail(db, ids[0]) == [
        (None, "pending", "created"),
        ("pending", "queued", "ok"),
        ("queued", "sending", "claimed"),
    ]


def test_replies_go_before_bulk(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    who = people(db, admin, 4)
    bulk = queue(db, settings, admin, who[:3], priority=messaging.PRIORITY_BULK)
    reply = queue(db, settings, admin, who[3:], priority=messaging.PRIORITY_REPLY)
    claimed = outbox.claim(db, settings, worker_id="w", limit=2).claimed
    assert [c.id for c in claimed] == [reply[0], bulk[0]]


def test_concurrent_claims_share_without_overlap(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    channel(db, admin, rate=10_000)
    ids = set(queue(db, settings, admin, people(db, admin, 300)))
    got: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        while True:
            claimed = outbox.claim(db, settings, worker_id=f"w{n}", limit=7).claimed
            if not claimed:
                with db.read() as conn:
                    left = conn.execute(
                        sa.select(sa.func.count())
                        .select_from(messages)
                        .where(messages.c.status == S.QUEUED)
                    ).scalar()
                if not left:
                    return
                continue
            with lock:
                got.extend(c.id for c in claimed)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == len(ids) and set(got) == ids


def test_gcra_budget() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert gcra_budget(now, now, rate=1, burst=1) == 1
    assert gcra_budget(now, now, rate=10, burst=10) == 10
    assert gcra_budget(now + timedelta(seconds=0.5), now, rate=10, burst=10) == 5
    assert gcra_budget(now + timedelta(seconds=1), now, rate=10, burst=10) == 0
    assert gcra_budget(now - timedelta(hours=1), now, rate=3, burst=3) == 3


def test_channel_rate_holds(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin, rate=2)
    queue(db, settings, admin, people(db, admin, 6))
    first = outbox.claim(db, settings, worker_id="w", limit=100)
    assert len(first.claimed) == 2, "a 2/s channel sends its one-second burst, no more"
    second = outbox.claim(db, settings, worker_id="w", limit=100)
    assert second.claimed == [] and second.next_in is not None and 0 < second.next_in <= 1.0


def test_busy_channel_is_tried_again_soon(db: Database, settings: Settings, acme: Org) -> None:
    """A claim that finds the channel's throttle row held by another worker's claim (PostgreSQL
    skips it) says when to look again: soon, not after the idle poll."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite's BEGIN IMMEDIATE serializes claims: a claim never finds it held")
    admin = acme.admin.principal
    channel_id = channel(db, admin)
    queue(db, settings, admin, people(db, admin, 2))
    with db.write() as conn:
        conn.execute(channel_throttle.insert().values(channel_id=channel_id, tat=utcnow()))
    with db.write() as other:
        other.execute(
            sa.select(channel_throttle.c.tat)
            .where(channel_throttle.c.channel_id == channel_id)
            .with_for_update()
        )
        busy = outbox.claim(db, settings, worker_id="w1", limit=10)
        assert busy.claimed == []
        assert busy.next_in is not None and busy.next_in < settings.delivery_poll_seconds
    assert len(outbox.claim(db, settings, worker_id="w1", limit=10).claimed) == 2


def test_multi_segment_messages_cost_their_segments(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    channel(db, admin, rate=3)
    queue(db, settings, admin, people(db, admin, 3), body="x" * 300)  # 2 segments each
    assert len(outbox.claim(db, settings, worker_id="w", limit=100).claimed) == 3
    assert outbox.claim(db, settings, worker_id="w", limit=100).next_in is not None


def test_outcomes_and_events(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    ids = queue(db, settings, admin, people(db, admin, 4))
    c = outbox.claim(db, settings, worker_id="w", limit=4).claimed
    later = datetime.now(UTC) + timedelta(seconds=30)
    outbox.record(
        db,
        [
            Sent(c[0], "P-1", segments=1),
            Retry(c[1], "sim:500", "boom", later),
            Failed(c[2], "sim:400", "invalid number"),
            Unknown(c[3], "timeout", "no answer"),
        ],
        actor="worker:w",
    )
    assert statuses(db, ids) == {
        ids[0]: "sent",
        ids[1]: "queued",
        ids[2]: "failed",
        ids[3]: "unknown",
    }
    with db.read() as conn:
        retry = conn.execute(sa.select(messages).where(messages.c.id == ids[1])).one()
    assert retry.send_after == later.replace(microsecond=retry.send_after.microsecond)
    assert retry.error_code == "sim:500"
    assert outbox.claim(db, settings, worker_id="w", limit=4).claimed == [], "backing off"
    assert trail(db, ids[2])[-1] == ("sending", "failed", "provider_error")


def test_report_before_send_result_is_not_lost(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin)
    [mid] = queue(db, settings, admin, people(db, admin, 1))
    [claimed] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    # The delivery report overtakes the submit response (SMPP does this).
    assert not messaging.apply_status(db, ch, StatusReport("EARLY-1", S.DELIVERED), actor="p")
    outbox.record(db, [Sent(claimed, "EARLY-1")], actor="worker:w")
    assert statuses(db, [mid]) == {mid: "delivered"}
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(orphan_reports)).scalar() == 0


def test_late_reports_never_move_backwards(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin)
    [mid] = queue(db, settings, admin, people(db, admin, 1))
    [claimed] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    outbox.record(db, [Sent(claimed, "X1")], actor="w")
    messaging.apply_status(db, ch, StatusReport("X1", S.DELIVERED), actor="p")
    messaging.apply_status(db, ch, StatusReport("X1", S.SENT), actor="p")
    messaging.apply_status(db, ch, StatusReport("X1", S.FAILED, "30008"), actor="p")
    messaging.apply_status(db, ch, StatusReport("X1", S.DELIVERED), actor="p")
    assert statuses(db, [mid]) == {mid: "delivered"}
    assert [t[1] for t in trail(db, mid)].count("delivered") == 1


def test_reaper(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    sim = channel(db, admin, provider="simulator", phone="+12015550100")
    twi = channel(
        db,
        admin,
        provider="twilio",
        phone="+12015550101",
        config={"account_sid": "AC" + "0" * 32, "auth_token": "t"},
    )
    who = people(db, admin, 2)
    [a] = queue(db, settings, admin, who[:1], channel_id=sim)
    [b] = queue(db, settings, admin, who[1:], channel_id=twi)
    outbox.claim(db, settings, worker_id="dead", limit=10)
    with db.write() as conn:
        conn.execute(sa.update(messages).values(lease_until=datetime.now(UTC) - timedelta(1)))
    assert outbox.reap(db, resend_providers=["simulator"], actor="worker:w") == (1, 1)
    assert statuses(db) == {a: "queued", b: "unknown"}
    assert trail(db, b)[-1] == ("sending", "unknown", "lease_expired")


def _opt_out(db: Database, admin: Any, contact_id: int) -> None:
    with db.write() as conn:
        phone = conn.execute(
            sa.select(contacts.c.phone_e164).where(contacts.c.id == contact_id)
        ).scalar_one()
        consent.record(
            conn,
            org_id=admin.org_id,
            phone=phone,
            kind=consent.ConsentKind.OPT_OUT,
            source=consent.ConsentSource.KEYWORD,
            actor="test",
            now=datetime.now(UTC),
        )


def test_a_resend_the_gate_now_blocks_is_unknown_not_blocked(
    db: Database, settings: Settings, acme: Org
) -> None:
    """A worker died while sending (the carrier may have the message); the contact opted out
    meanwhile (often by answering it). The re-send must not go out, and "blocked" would say it
    never did: it becomes unknown, with the gate's code. A message never attempted is blocked."""
    admin = acme.admin.principal
    channel(db, admin, provider="simulator")
    who = people(db, admin, 2)
    resent, fresh = queue(db, settings, admin, who)
    outbox.claim(db, settings, worker_id="dead", limit=1)
    with db.write() as conn:
        conn.execute(sa.update(messages).values(lease_until=datetime.now(UTC) - timedelta(1)))
    assert outbox.reap(db, resend_providers=["simulator"], actor="worker:w") == (1, 0)
    _opt_out(db, admin, who[0])
    _opt_out(db, admin, who[1])
    assert outbox.claim(db, settings, worker_id="w", limit=10).claimed == []
    assert statuses(db) == {resent: "unknown", fresh: "blocked"}
    with db.read() as conn:
        row = conn.execute(sa.select(messages).where(messages.c.id == resent)).one()
    assert row.gate_code == "opted_out"
    assert row.error_code == "gate_after_ambiguous_attempt"
    assert "may have reached the provider" in row.error_detail
    assert trail(db, resent)[-2:] == [
        ("sending", "queued", "lease_expired_resend"),
        ("queued", "unknown", "opted_out"),
    ]


def test_an_ambiguous_retry_past_its_validity_is_unknown_not_expired(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    channel(db, admin, provider="simulator")
    who = people(db, admin, 2)
    ambiguous, definite = queue(db, settings, admin, who)
    claimed = outbox.claim(db, settings, worker_id="w", limit=10).claimed
    by_id = {c.id: c for c in claimed}
    later = utcnow() + timedelta(seconds=1)
    outbox.record(
        db,
        [
            Retry(by_id[ambiguous], "simulator:timeout", "read timed out", later, ambiguous=True),
            Retry(by_id[definite], "simulator:unavailable", "HTTP 503", later),
        ],
        actor="worker:w",
    )
    assert trail(db, ambiguous)[-1] == ("sending", "queued", "retry_ambiguous")
    assert trail(db, definite)[-1] == ("sending", "queued", "retry")
    with db.write() as conn:
        conn.execute(sa.update(messages).values(send_after=None))
    again = outbox.claim(db, settings, worker_id="w", limit=10).claimed
    assert {c.id: c.maybe_sent for c in again} == {ambiguous: True, definite: False}
    outbox.record(
        db,
        [Retry(c, "simulator:unavailable", "HTTP 503", later) for c in again],
        actor="worker:w",
    )
    with db.write() as conn:
        conn.execute(sa.update(messages).values(valid_until=utcnow() - timedelta(seconds=1)))
    assert outbox.promote_and_expire(db, actor="worker:w") == 2
    assert statuses(db) == {ambiguous: "unknown", definite: "expired"}


def test_gate_runs_again_at_dispatch(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    who = people(db, admin, 2)
    ids = queue(db, settings, admin, who)
    _opt_out(db, admin, who[0])
    claimed = outbox.claim(db, settings, worker_id="w", limit=10).claimed
    assert [c.id for c in claimed] == [ids[1]]
    assert statuses(db, ids)[ids[0]] == "blocked"
    with db.read() as conn:
        row = conn.execute(sa.select(messages).where(messages.c.id == ids[0])).one()
    assert row.gate_code == "opted_out" and "opted out" in row.gate_detail


def test_opted_out_contact_is_blocked_at_creation(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    [cid] = people(db, admin, 1)
    with db.write() as conn:
        conn.execute(sa.update(contacts).values(opted_out=True))
    [mid] = queue(db, settings, admin, [cid])
    assert statuses(db, [mid]) == {mid: "blocked"}


def test_validity_window_expires(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    ids = queue(db, settings, admin, people(db, admin, 2))
    with db.write() as conn:
        conn.execute(
            sa.update(messages)
            .where(messages.c.id == ids[0])
            .values(valid_until=datetime.now(UTC) - timedelta(minutes=1))
        )
    assert outbox.promote_and_expire(db, actor="w") == 1
    assert statuses(db, ids) == {ids[0]: "expired", ids[1]: "queued"}


def test_daily_cap(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    channel(db, admin)
    with db.write() as conn:
        conn.execute(
            sa.update(organizations)
            .where(organizations.c.id == admin.org_id)
            .values(settings={"daily_cap": 3})
        )
    ids = queue(db, settings, admin, people(db, admin, 5))
    assert len(outbox.claim(db, settings, worker_id="w", limit=10).claimed) == 3
    assert outbox.claim(db, settings, worker_id="w", limit=10).claimed == []
    with db.read() as conn:
        held = conn.execute(sa.select(messages.c.gate_code).where(messages.c.id == ids[4])).scalar()
    assert held == "daily_cap"


def test_paused_channel_is_skipped(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin)
    queue(db, settings, admin, people(db, admin, 2))
    with db.write() as conn:
        conn.execute(
            sa.update(channels)
            .where(channels.c.id == ch)
            .values(paused_until=datetime.now(UTC) + timedelta(minutes=1))
        )
    assert outbox.claim(db, settings, worker_id="w", limit=10).claimed == []


def test_batched_reports(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin)
    ids = queue(db, settings, admin, people(db, admin, 3))
    claimed = outbox.claim(db, settings, worker_id="w", limit=3).claimed
    outbox.record(db, [Sent(c, f"P{c.id}") for c in claimed], actor="w")
    found = messaging.apply_statuses(
        db,
        [
            (ch, StatusReport(f"P{ids[0]}", S.DELIVERED), "p"),
            (ch, StatusReport(f"P{ids[0]}", S.SENT), "p"),  # late: ignored
            (ch, StatusReport(f"P{ids[1]}", S.UNDELIVERED, "sim:30003", "unreachable"), "p"),
            (ch, StatusReport("nobody", S.DELIVERED), "p"),
        ],
    )
    assert found == [True, True, True, False]
    assert statuses(db, ids) == {ids[0]: "delivered", ids[1]: "undelivered", ids[2]: "sent"}
    with db.read() as conn:
        row = conn.execute(sa.select(messages).where(messages.c.id == ids[1])).one()
        assert row.error_code == "sim:30003" and row.error_detail == "unreachable"
        assert conn.execute(sa.select(orphan_reports.c.provider_message_id)).scalar() == "nobody"
    assert [t[1] for t in trail(db, ids[0])].count("delivered") == 1


def _advisory_locks_taken(db: Database) -> list[str]:
    """Record the statements that take advisory locks on this engine (PostgreSQL)."""
    seen: list[str] = []

    @sa.event.listens_for(db.engine, "before_cursor_execute")
    def _spy(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "pg_advisory_xact_lock" in statement:
            seen.append(statement)

    return seen


def test_reports_that_find_their_messages_take_no_locks(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin)
    queue(db, settings, admin, people(db, admin, 2))
    claimed = outbox.claim(db, settings, worker_id="w", limit=2).claimed
    outbox.record(db, [Sent(c, f"L{c.id}") for c in claimed], actor="w")
    locks = _advisory_locks_taken(db)
    found = messaging.apply_statuses(
        db, [(ch, StatusReport(f"L{c.id}", S.DELIVERED), "p") for c in claimed]
    )
    assert found == [True, True]
    assert locks == [], "every message was found: nothing to serialize with"
    assert not messaging.apply_statuses(db, [(ch, StatusReport("nobody", S.DELIVERED), "p")])[0]
    assert len(locks) == (1 if db.dialect == "postgresql" else 0)


def test_report_racing_the_stored_provider_id_waits_and_finds_it(
    db: Database, settings: Settings, acme: Org
) -> None:
    """A report arrives while the transaction storing its provider id is still open: it must
    not park itself as an orphan the storing transaction has already looked for. (On SQLite
    the write lock makes the report wait outright; the outcome must be the same.)"""
    admin = acme.admin.principal
    ch = channel(db, admin)
    [mid] = queue(db, settings, admin, people(db, admin, 1))
    assert len(outbox.claim(db, settings, worker_id="w", limit=1).claimed) == 1
    result: list[list[bool]] = []
    with db.write() as sender:
        # What outbox.record does, stopped before its commit: store the id, take its lock,
        # look for parked reports (none yet).
        sender.execute(
            sa.update(messages)
            .where(messages.c.id == mid)
            .values(status=S.SENT, provider_message_id="RACE-1")
        )
        messaging.lock_provider_ids(sender, ch, ["RACE-1"])
        assert messaging.orphaned_ids(sender, [(ch, "RACE-1")]) == set()
        report = threading.Thread(
            target=lambda: result.append(
                messaging.apply_statuses(db, [(ch, StatusReport("RACE-1", S.DELIVERED), "p")])
            )
        )
        with lock_waiters(db) as waiting:
            report.start()
            until(lambda: waiting() or not report.is_alive(), what="the report to wait or end")
        assert report.is_alive(), "the report waits for the storing transaction"
    report.join(60)
    assert result == [[True]]
    assert statuses(db, [mid]) == {mid: "delivered"}
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(orphan_reports)).scalar() == 0


def test_report_parked_first_is_found_by_the_storing_transaction(
    db: Database, settings: Settings, acme: Org
) -> None:
    """The other order: the report's transaction holds the id's lock and parks it; the storing
    transaction, already past its UPDATE, waits for that lock and then applies the report.
    (On SQLite the write lock makes the storing transaction wait outright.)"""
    admin = acme.admin.principal
    ch = channel(db, admin)
    [mid] = queue(db, settings, admin, people(db, admin, 1))
    [claimed] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    done = threading.Event()
    with db.write() as reporter:
        messaging.lock_provider_ids(reporter, ch, ["RACE-2"])
        sender = threading.Thread(
            target=lambda: (
                outbox.record(db, [Sent(claimed, "RACE-2")], actor="w"),
                done.set(),
            )
        )
        with lock_waiters(db) as waiting:
            sender.start()
            until(lambda: waiting() or done.is_set(), what="the sender to wait or end")
        assert not done.is_set(), "the storing transaction waits for the report's lock"
        reporter.execute(
            orphan_reports.insert().values(
                channel_id=ch,
                provider_message_id="RACE-2",
                status=S.DELIVERED,
                created_at=utcnow(),
            )
        )
    sender.join(60)
    assert statuses(db, [mid]) == {mid: "delivered"}


def test_two_batches_with_the_same_reports_take_turns_and_write_one_event_each(
    db: Database, settings: Settings, acme: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batches carry reports for the same messages, in opposite orders (a provider's
    retries reaching two web processes): the second waits for the first, then finds the new
    status, so each transition has one event row, and neither batch deadlocks. (On SQLite the
    write lock makes the second wait outright; the outcome must be the same.)"""
    admin = acme.admin.principal
    ch = channel(db, admin)
    ids = queue(db, settings, admin, people(db, admin, 2))
    claimed = outbox.claim(db, settings, worker_id="w", limit=2).claimed
    outbox.record(db, [Sent(c, f"T{c.id}") for c in claimed], actor="w")
    reports = [(ch, StatusReport(f"T{i}", S.DELIVERED), "p") for i in ids]
    real = messaging._update_statuses
    first_holds = threading.Event()
    release = threading.Event()

    def held_first(conn: Any, rows: Any, now: Any) -> None:
        if not first_holds.is_set():
            first_holds.set()
            assert release.wait(120)
        real(conn, rows, now)

    monkeypatch.setattr(messaging, "_update_statuses", held_first)
    errors: list[BaseException] = []

    def apply(batch: Any) -> None:
        try:
            messaging.apply_statuses(db, batch)
        except BaseException as exc:  # reported below
            errors.append(exc)

    first = threading.Thread(target=apply, args=(reports,))
    first.start()
    assert first_holds.wait(120)  # the first batch has read both messages
    second = threading.Thread(target=apply, args=(list(reversed(reports)),))
    with lock_waiters(db) as waiting:
        second.start()
        until(lambda: waiting() or not second.is_alive(), what="the second batch to wait")
    release.set()
    first.join(60)
    second.join(60)
    assert errors == []
    assert statuses(db, ids) == {i: "delivered" for i in ids}
    for i in ids:
        assert [t[1] for t in trail(db, i)].count("delivered") == 1, trail(db, i)
