"""Login lockout: atomic under concurrency, per address and per account."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORD, Org
from textdesk.services import auth, lockout
from textdesk.services.audit import RequestInfo
from textdesk.services.errors import RateLimited, Unauthenticated
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import login_throttle, utcnow

ATTACKER = RequestInfo(ip="198.51.100.7", user_agent="pytest")
USER_HOME = RequestInfo(ip="203.0.113.20", user_agent="pytest")


def _counting_verify(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace the password check with one that counts (thread-safely) how often it ran."""
    calls: list[int] = []
    lock = threading.Lock()
    real: Callable[[str, str], bool] = auth.verify_password

    def counted(password_hash: str, password: str) -> bool:
        with lock:
            calls.append(1)
        return real(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", counted)
    return calls


def _fire(n: int, attempt: Callable[[], object]) -> list[BaseException | None]:
    """Run ``attempt`` in ``n`` threads released together by a barrier."""
    barrier = threading.Barrier(n)

    def one() -> BaseException | None:
        barrier.wait(timeout=60)
        try:
            attempt()
        except (Unauthenticated, RateLimited) as exc:
            return exc
        return None

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda _i: one(), range(n)))


def test_concurrent_wrong_passwords_evaluate_at_most_the_limit(
    db: Database, settings: Settings, acme: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting_verify(monkeypatch)
    email = acme.owner.user.email
    outcomes = _fire(
        50,
        lambda: auth.authenticate(
            db, settings, email=email, password="wrong-password", request=ATTACKER
        ),
    )
    assert len(calls) <= settings.login_max_attempts, f"{len(calls)} passwords were checked"
    wrong = [o for o in outcomes if isinstance(o, Unauthenticated)]
    limited = [o for o in outcomes if isinstance(o, RateLimited)]
    assert len(wrong) == len(calls) and len(wrong) + len(limited) == 50
    # The window is spent: even the right password is not evaluated from this address.
    with pytest.raises(RateLimited):
        auth.authenticate(db, settings, email=email, password=PASSWORD, request=ATTACKER)
    assert len(calls) <= settings.login_max_attempts


def test_concurrent_guesses_across_accounts_evaluate_at_most_the_limit(
    db: Database, settings: Settings, acme: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting_verify(monkeypatch)
    counter = iter(range(1000))
    lock = threading.Lock()

    def spray() -> None:
        with lock:
            i = next(counter)
        auth.authenticate(
            db, settings, email=f"guess{i}@acme.test", password="wrong-password", request=ATTACKER
        )

    _fire(50, spray)
    assert len(calls) <= settings.login_max_attempts, f"{len(calls)} passwords were checked"


def test_concurrent_guesses_from_many_addresses_stop_at_the_account_cap(
    db: Database, settings: Settings, acme: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"login_account_max_attempts": 7})
    calls = _counting_verify(monkeypatch)
    counter = iter(range(1000))
    lock = threading.Lock()

    def distributed() -> None:
        with lock:
            i = next(counter)
        auth.authenticate(
            db,
            settings,
            email=acme.owner.user.email,
            password="wrong-password",
            request=RequestInfo(ip=f"192.0.2.{i + 1}"),
        )

    _fire(50, distributed)
    assert len(calls) <= 7, f"{len(calls)} passwords were checked"
    # The account is locked for every address now, the user's own included.
    with pytest.raises(RateLimited, match="for this account"):
        auth.authenticate(
            db, settings, email=acme.owner.user.email, password=PASSWORD, request=USER_HOME
        )


def test_a_locked_address_cannot_lock_the_user_out_from_elsewhere(
    db: Database, settings: Settings, acme: Org
) -> None:
    # One more failure on the account would reach its cap; the attacker's address is spent
    # first, and the attempts it is refused do not count against the account.
    settings = settings.model_copy(update={"login_account_max_attempts": 6})
    email = acme.owner.user.email
    for _ in range(settings.login_max_attempts):
        with pytest.raises(Unauthenticated):
            auth.authenticate(db, settings, email=email, password="wrong-pw", request=ATTACKER)
    for _ in range(20):
        with pytest.raises(RateLimited, match="from this address"):
            auth.authenticate(db, settings, email=email, password="wrong-pw", request=ATTACKER)
    with pytest.raises(RateLimited):
        auth.authenticate(db, settings, email=email, password=PASSWORD, request=ATTACKER)
    user = auth.authenticate(db, settings, email=email, password=PASSWORD, request=USER_HOME)
    assert user.id == acme.owner.user.id


def test_successful_logins_are_not_counted(db: Database, settings: Settings, acme: Org) -> None:
    email = acme.agent.user.email
    for _ in range(settings.login_max_attempts - 1):
        with pytest.raises(Unauthenticated):
            auth.authenticate(db, settings, email=email, password="typo-typo", request=USER_HOME)
    for _ in range(3):
        auth.authenticate(db, settings, email=email, password=PASSWORD, request=USER_HOME)
    with pytest.raises(Unauthenticated):
        auth.authenticate(db, settings, email=email, password="typo-typo", request=USER_HOME)
    with pytest.raises(RateLimited) as limited:
        auth.authenticate(db, settings, email=email, password=PASSWORD, request=USER_HOME)
    assert 0 < limited.value.retry_after <= settings.login_window_seconds


def test_the_window_ends_and_old_counters_are_dropped(
    db: Database, settings: Settings, acme: Org
) -> None:
    email = acme.agent.user.email
    with pytest.raises(Unauthenticated):
        auth.authenticate(
            db, settings, email="someone@else.test", password="x", request=RequestInfo("192.0.2.9")
        )
    for _ in range(settings.login_max_attempts):
        with pytest.raises(Unauthenticated):
            auth.authenticate(db, settings, email=email, password="wrong-pw", request=ATTACKER)
    with pytest.raises(RateLimited):
        auth.authenticate(db, settings, email=email, password=PASSWORD, request=ATTACKER)
    # Move the counters' windows into the past instead of waiting for them to end.
    past = utcnow() - timedelta(seconds=settings.login_window_seconds + 1)
    with db.write() as conn:
        conn.execute(sa.update(login_throttle).values(window_started_at=past))
    assert auth.authenticate(db, settings, email=email, password=PASSWORD, request=ATTACKER)
    with db.read() as conn:
        left = conn.execute(
            sa.select(login_throttle.c.scope, login_throttle.c.key, login_throttle.c.attempts)
        ).all()
    # The success started fresh windows and gave its slot back; the other ended counters went.
    assert sorted(map(tuple, left)) == [("account", email, 0), ("address", ATTACKER.ip, 0)]


def test_ipv6_clients_count_by_their_64() -> None:
    assert lockout.address_key("2001:db8:1:2:aaaa::1") == lockout.address_key("2001:db8:1:2::9")
    assert lockout.address_key("2001:db8:1:2::1") != lockout.address_key("2001:db8:1:3::1")
    assert lockout.address_key("::ffff:198.51.100.7") == "198.51.100.7"
    assert lockout.address_key(None) == "unknown"
