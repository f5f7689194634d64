"""An e-mail is unique per organization: adding a user never tells whether another
organization has the address, and login tells the accounts apart by password."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORD, Org
from textdesk.domain.roles import Role
from textdesk.services import accounts, auth
from textdesk.services.audit import RequestInfo
from textdesk.services.errors import Conflict, ServiceError, Unauthenticated
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import audit_log

HERE = RequestInfo(ip="198.51.100.30", user_agent="pytest")
GLOBEX_PASSWORD = "globex-own-password"


def _add(db: Database, org: Org, email: str, password: str = GLOBEX_PASSWORD) -> accounts.User:
    return accounts.create_user(
        db,
        org_id=org.org.id,
        email=email,
        name="Same Address",
        role=Role.AGENT,
        password=password,
        actor=org.admin.principal.actor,
        actor_role=Role.ADMIN,
    )


def test_an_address_another_org_has_is_added_like_any_other(
    db: Database, acme: Org, globex: Org
) -> None:
    taken_elsewhere = _add(db, globex, acme.owner.user.email)
    fresh = _add(db, globex, "nobody-has-this@x.test")
    assert taken_elsewhere.org_id == fresh.org_id == globex.org.id
    assert taken_elsewhere.email == acme.owner.user.email and taken_elsewhere.is_active
    # Acme's user is untouched and still Acme's.
    with db.read() as conn:
        assert accounts.get_user(conn, acme.org.id, acme.owner.user.id) == acme.owner.user
        assert [u.email for u in accounts.list_users(conn, globex.org.id)].count(
            acme.owner.user.email
        ) == 1


def test_the_same_address_twice_in_one_org_is_a_clear_conflict(db: Database, acme: Org) -> None:
    with pytest.raises(Conflict) as dup:
        _add(db, acme, " Owner@ACME.test ")
    assert dup.value.field == "email" and "this organization" in dup.value.message


def test_concurrent_adds_of_one_address_give_one_user_and_conflicts(
    db: Database, globex: Org
) -> None:
    barrier = threading.Barrier(8)

    def add() -> str:
        barrier.wait(timeout=60)
        try:
            _add(db, globex, "race@x.test")
        except ServiceError as exc:
            return type(exc).__name__
        return "created"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = sorted(pool.map(lambda _i: add(), range(8)))
    assert outcomes == ["Conflict"] * 7 + ["created"]


def test_login_opens_the_account_whose_password_it_is(
    db: Database, settings: Settings, acme: Org, globex: Org
) -> None:
    email = acme.owner.user.email
    copy = _add(db, globex, email)
    assert auth.authenticate(db, settings, email=email, password=PASSWORD, request=HERE).id == (
        acme.owner.user.id
    )
    assert auth.authenticate(db, settings, email=email, password=GLOBEX_PASSWORD, request=HERE) == (
        copy
    )
    with pytest.raises(Unauthenticated):
        auth.authenticate(db, settings, email=email, password="neither-one", request=HERE)
    with pytest.raises(Unauthenticated):  # the right password, but for the other organization
        auth.authenticate(
            db, settings, email=email, password=PASSWORD, request=HERE, org=globex.org.slug
        )
    with db.read() as conn:
        failed = conn.execute(
            sa.select(audit_log.c.org_id, audit_log.c.target)
            .where(audit_log.c.action == "auth.login_failed")
            .order_by(audit_log.c.id)
        ).all()
    # Each organization sees the failures against its own account, and only those.
    assert [tuple(r) for r in failed] == [
        (acme.org.id, f"user:{acme.owner.user.id}"),
        (globex.org.id, f"user:{copy.id}"),
        (globex.org.id, f"user:{copy.id}"),
    ]


def test_one_password_for_two_orgs_asks_which(
    db: Database, settings: Settings, acme: Org, globex: Org
) -> None:
    email = acme.owner.user.email
    copy = _add(db, globex, email, password=PASSWORD)
    with pytest.raises(auth.ChooseOrganization) as choice:
        auth.authenticate(db, settings, email=email, password=PASSWORD, request=HERE)
    assert choice.value.organizations == [("acme", "Acme"), ("globex", "Globex")]
    user = auth.authenticate(
        db, settings, email=email, password=PASSWORD, request=HERE, org="globex"
    )
    assert user.id == copy.id
