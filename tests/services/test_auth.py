"""Authentication services: passwords, sessions, lockout, API keys, audit rows."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORD, Org
from textdesk.domain.roles import Role
from textdesk.services import accounts, auth
from textdesk.services.audit import RequestInfo
from textdesk.services.errors import Conflict, Forbidden, Invalid, RateLimited, Unauthenticated
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import audit_log, user_sessions, users

HERE = RequestInfo(ip="127.0.0.9", user_agent="pytest")


def test_password_is_hashed_with_argon2(db: Database, acme: Org) -> None:
    with db.read() as conn:
        stored = conn.execute(
            sa.select(users.c.password_hash).where(users.c.id == acme.owner.user.id)
        ).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_login_success_and_failure_are_audited(db: Database, settings: Settings, acme: Org) -> None:
    user = auth.authenticate(
        db, settings, email=" OWNER@acme.test ", password=PASSWORD, request=HERE
    )
    assert user.id == acme.owner.user.id
    with pytest.raises(Unauthenticated):
        auth.authenticate(
            db, settings, email=acme.owner.user.email, password="bad-password", request=HERE
        )
    with pytest.raises(Unauthenticated):
        auth.authenticate(db, settings, email="ghost@nowhere.test", password="x", request=HERE)
    with db.read() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.ip).where(audit_log.c.action.like("auth.%"))
        ).all()
    assert [r.action for r in rows] == ["auth.login", "auth.login_failed", "auth.login_failed"]
    assert all(r.ip == "127.0.0.9" for r in rows)


def test_lockout_per_ip_across_accounts(db: Database, settings: Settings, acme: Org) -> None:
    for i in range(settings.login_max_attempts):
        with pytest.raises(Unauthenticated):
            auth.authenticate(db, settings, email=f"guess{i}@acme.test", password="x", request=HERE)
    with pytest.raises(RateLimited):
        auth.authenticate(
            db, settings, email=acme.owner.user.email, password=PASSWORD, request=HERE
        )
    # Another address is not locked out of its own account.
    other = RequestInfo(ip="127.0.0.10")
    assert auth.authenticate(
        db, settings, email=acme.owner.user.email, password=PASSWORD, request=other
    )


def test_sessions_end_on_logout_deactivation_and_expiry(
    db: Database, settings: Settings, acme: Org
) -> None:
    user = acme.agent.user
    token, csrf = auth.create_session(db, settings, user, HERE)
    principal = auth.resolve_session(db, token)
    assert principal is not None and principal.user_id == user.id and principal.csrf_token == csrf
    auth.end_session(db, token, HERE)
    assert auth.resolve_session(db, token) is None

    token2, _ = auth.create_session(db, settings, user, HERE)
    accounts.set_user_active(
        db, org_id=acme.org.id, user_id=user.id, active=False, actor="test", actor_role=Role.ADMIN
    )
    assert auth.resolve_session(db, token2) is None
    accounts.set_user_active(
        db, org_id=acme.org.id, user_id=user.id, active=True, actor="test", actor_role=Role.ADMIN
    )
    assert auth.resolve_session(db, token2) is not None
    with db.write() as conn:
        conn.execute(sa.update(user_sessions).values(expires_at=user_sessions.c.created_at))
    assert auth.resolve_session(db, token2) is None
    with db.read() as conn:
        hashes = conn.execute(sa.select(user_sessions.c.token_hash)).scalars().all()
    assert token not in hashes and token2 not in hashes, "only hashes of tokens are stored"


def test_inactive_user_cannot_log_in(db: Database, settings: Settings, acme: Org) -> None:
    accounts.set_user_active(
        db,
        org_id=acme.org.id,
        user_id=acme.agent.user.id,
        active=False,
        actor="test",
        actor_role=Role.OWNER,
    )
    with pytest.raises(Unauthenticated):
        auth.authenticate(
            db, settings, email=acme.agent.user.email, password=PASSWORD, request=HERE
        )


def test_user_rules(db: Database, acme: Org) -> None:
    with pytest.raises(Conflict):
        accounts.create_user(
            db,
            org_id=acme.org.id,
            email="Owner@Acme.test",
            name="Dup",
            role=Role.AGENT,
            password=PASSWORD,
        )
    with pytest.raises(Invalid) as short:
        accounts.create_user(
            db, org_id=acme.org.id, email="a@b.test", name="A", role=Role.AGENT, password="short"
        )
    assert short.value.field == "password"
    with pytest.raises(Invalid) as bad_email:
        accounts.create_user(
            db,
            org_id=acme.org.id,
            email="not-an-email",
            name="A",
            role=Role.AGENT,
            password=PASSWORD,
        )
    assert bad_email.value.field == "email"
    with pytest.raises(Forbidden):
        accounts.create_user(
            db,
            org_id=acme.org.id,
            email="x@y.test",
            name="X",
            role=Role.ADMIN,
            password=PASSWORD,
            actor_role=Role.AGENT,
        )
    with pytest.raises(Forbidden):
        accounts.set_user_active(
            db,
            org_id=acme.org.id,
            user_id=acme.owner.user.id,
            active=False,
            actor="t",
            actor_role=Role.ADMIN,
        )


def test_api_key_last_used_is_coarse(db: Database, acme: Org) -> None:
    key, plain = auth.create_api_key(db, acme.admin.principal, name="k", role=Role.AGENT)
    assert key.last_used_at is None
    principal = auth.resolve_api_key(db, plain)
    assert principal is not None and principal.role is Role.AGENT
    first = auth.list_api_keys(db, acme.admin.principal)[0].last_used_at
    auth.resolve_api_key(db, plain)
    assert auth.list_api_keys(db, acme.admin.principal)[0].last_used_at == first
    assert first is not None and first.tzinfo is not None
    assert auth.resolve_api_key(db, plain + "x") is None
    assert auth.resolve_api_key(db, "not-a-key") is None
