"""Who is asking: UI login sessions, API keys, and login rate limiting.

Sessions are server-side rows; the cookie holds a random token whose sha256 is stored, so
logging out or deactivating a user ends the session at once. API keys are shown once, stored
as a sha256 hash, scoped to one organization and revocable.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from textdesk.domain.roles import Role
from textdesk.services import audit, lockout
from textdesk.services.accounts import User, normalize_email
from textdesk.services.audit import RequestInfo
from textdesk.services.errors import Forbidden, Invalid, NotFound, Unauthenticated
from textdesk.services.passwords import DUMMY_HASH, verify_password
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import api_keys, organizations, user_sessions, users, utcnow

API_KEY_PREFIX = "td_"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a logged-in user or an API key, always inside one org."""

    org_id: int
    role: Role
    user_id: int | None = None
    api_key_id: int | None = None
    name: str = ""
    csrf_token: str | None = None

    @property
    def actor(self) -> str:
        if self.user_id is not None:
            return f"user:{self.user_id}"
        return f"api_key:{self.api_key_id}"

    def require(self, role: Role) -> None:
        if not self.role.at_least(role):
            raise Forbidden(f"this needs the {role.value} role; you are {self.role.value}")


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- login ---------------------------------------------------------------------------------


class ChooseOrganization(Exception):
    """The password is right for this e-mail in several organizations: log in again naming
    one (``org``). Only someone who knows the password learns these organizations."""

    def __init__(self, organizations: list[tuple[str, str]]) -> None:
        super().__init__("choose an organization")
        self.organizations = organizations  # (slug, name)


def authenticate(
    db: Database,
    settings: Settings,
    *,
    email: str,
    password: str,
    request: RequestInfo,
    org: str | None = None,
) -> User:
    """Check a password login; raises ``Unauthenticated``, ``RateLimited`` (see ``lockout``:
    the attempt is counted before any password is checked) or ``ChooseOrganization``.

    An e-mail may have an account in several organizations (``org``, a slug, picks one). The
    password is checked against each, usually one; an unknown e-mail costs the same one check
    (of a dummy hash), so neither the answer nor its time tells whether the address has an
    account. (Each further account costs one more check: docs/architecture.md says so.)"""
    try:
        email = normalize_email(email)
    except Invalid:
        raise Unauthenticated("wrong e-mail or password") from None
    reservation = lockout.reserve(db, settings, ip=request.ip, email=email)
    query = (
        sa.select(users, organizations.c.slug, organizations.c.name.label("org_name"))
        .join(organizations, organizations.c.id == users.c.org_id)
        .where(users.c.email == email)
        .order_by(users.c.id)
    )
    if org:
        query = query.where(organizations.c.slug == org.strip().lower())
    with db.read() as conn:
        accounts = conn.execute(query).all()
    if not accounts:
        verify_password(DUMMY_HASH, password)
    opened = [
        row for row in accounts if verify_password(row.password_hash, password) and row.is_active
    ]
    with db.write() as conn:
        now = utcnow()
        if not opened:
            # Each organization that has the address sees the failure in its audit log.
            failed: list[Any] = list(accounts) or [None]
            for row in failed:
                audit.record(
                    conn,
                    org_id=row.org_id if row else None,
                    actor=f"user:{row.id}" if row else "anonymous",
                    action="auth.login_failed",
                    target=f"user:{row.id}" if row else None,
                    request=request,
                    detail={"email": email},
                )
        else:
            lockout.release(conn, settings, reservation)
        if len(opened) == 1:
            row = opened[0]
            audit.record(
                conn,
                org_id=row.org_id,
                actor=f"user:{row.id}",
                action="auth.login",
                target=f"user:{row.id}",
                request=request,
            )
            conn.execute(sa.update(users).where(users.c.id == row.id).values(last_login_at=now))
    if not opened:
        raise Unauthenticated("wrong e-mail or password")
    if len(opened) > 1:
        raise ChooseOrganization([(row.slug, row.org_name) for row in opened])
    return User.from_row(opened[0])


def create_session(
    db: Database, settings: Settings, user: User, request: RequestInfo
) -> tuple[str, str]:
    """Start a UI session; returns (cookie token, CSRF token)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = utcnow()
    with db.write() as conn:
        conn.execute(
            user_sessions.insert().values(
                org_id=user.org_id,
                user_id=user.id,
                token_hash=_sha256(token),
                csrf_token=csrf,
                ip=request.ip,
                user_agent=(request.user_agent or "")[:400] or None,
                created_at=now,
                expires_at=now + timedelta(seconds=settings.session_max_age),
            )
        )
    return token, csrf


def resolve_session(db: Database, token: str) -> Principal | None:
    with db.read() as conn:
        row = conn.execute(
            sa.select(
                user_sessions.c.csrf_token,
                user_sessions.c.expires_at,
                user_sessions.c.revoked_at,
                users.c.id,
                users.c.org_id,
                users.c.role,
                users.c.name,
                users.c.is_active,
            )
            .join(users, users.c.id == user_sessions.c.user_id)
            .where(user_sessions.c.token_hash == _sha256(token))
        ).first()
    if row is None or row.revoked_at is not None or not row.is_active:
        return None
    if row.expires_at <= utcnow():
        return None
    return Principal(
        org_id=row.org_id,
        role=Role(row.role),
        user_id=row.id,
        name=row.name,
        csrf_token=row.csrf_token,
    )


def end_session(db: Database, token: str, request: RequestInfo) -> None:
    with db.write() as conn:
        row = conn.execute(
            sa.select(user_sessions.c.id, user_sessions.c.org_id, user_sessions.c.user_id).where(
                user_sessions.c.token_hash == _sha256(token),
                user_sessions.c.revoked_at.is_(None),
            )
        ).first()
        if row is None:
            return
        conn.execute(
            sa.update(user_sessions).where(user_sessions.c.id == row.id).values(revoked_at=utcnow())
        )
        audit.record(
            conn,
            org_id=row.org_id,
            actor=f"user:{row.user_id}",
            action="auth.logout",
            target=f"user:{row.user_id}",
            request=request,
        )


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected and given and hmac.compare_digest(expected, given))


# --- API keys --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> ApiKey:
        m = row._mapping
        return cls(
            id=m["id"],
            name=m["name"],
            prefix=m["prefix"],
            role=Role(m["role"]),
            created_at=m["created_at"],
            last_used_at=m["last_used_at"],
            revoked_at=m["revoked_at"],
        )


def create_api_key(
    db: Database,
    principal: Principal,
    *,
    name: str,
    role: Role = Role.ADMIN,
    request: RequestInfo | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; the plain key is returned this once and never stored."""
    principal.require(Role.ADMIN)
    name = name.strip()
    if not name:
        raise Invalid("an API key needs a name", field="name")
    if role is Role.OWNER or not principal.role.at_least(role):
        raise Forbidden(f"cannot create an API key with role {role.value}", field="role")
    plain = API_KEY_PREFIX + secrets.token_urlsafe(32)
    with db.write() as conn:
        key_id = conn.execute(
            api_keys.insert()
            .values(
                org_id=principal.org_id,
                name=name,
                prefix=plain[:10],
                key_hash=_sha256(plain),
                role=role.value,
                created_by=principal.user_id,
                created_at=utcnow(),
            )
            .returning(api_keys.c.id)
        ).scalar_one()
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="api_key.create",
            target=f"api_key:{key_id}",
            request=request,
            detail={"name": name, "role": role.value},
        )
        row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).one()
    return ApiKey.from_row(row), plain


def list_api_keys(db: Database, principal: Principal) -> list[ApiKey]:
    principal.require(Role.ADMIN)
    with db.read() as conn:
        rows = conn.execute(
            sa.select(api_keys)
            .where(api_keys.c.org_id == principal.org_id)
            .order_by(api_keys.c.id.desc())
        )
        return [ApiKey.from_row(r) for r in rows]


def revoke_api_key(
    db: Database, principal: Principal, key_id: int, request: RequestInfo | None = None
) -> ApiKey:
    principal.require(Role.ADMIN)
    with db.write() as conn:
        row = conn.execute(
            sa.select(api_keys).where(
                api_keys.c.id == key_id, api_keys.c.org_id == principal.org_id
            )
        ).first()
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        if row.revoked_at is None:
            conn.execute(
                sa.update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=utcnow())
            )
            audit.record(
                conn,
                org_id=principal.org_id,
                actor=principal.actor,
                action="api_key.revoke",
                target=f"api_key:{key_id}",
                request=request,
            )
        row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).one()
    _forget_api_key(key_id)
    return ApiKey.from_row(row)


#: A resolved API key is remembered this long, so an API call costs no database round trip for
#: its key. Revoking a key takes effect at once in the process that revoked it and within this
#: many seconds in the others (docs/api.md says so).
API_KEY_CACHE_SECONDS = 5.0
_KEY_CACHE_MAX = 10_000
_key_cache: dict[tuple[int, str], tuple[float, Principal]] = {}


def cached_api_key(db: Database, plain: str) -> Principal | None:
    """The key's principal if it was resolved within ``API_KEY_CACHE_SECONDS`` (no database
    work); None means "not known here", not "invalid": then call ``resolve_api_key``."""
    if not plain.startswith(API_KEY_PREFIX):
        return None
    hit = _key_cache.get((id(db), _sha256(plain)))
    if hit is not None and time.monotonic() - hit[0] < API_KEY_CACHE_SECONDS:
        return hit[1]
    return None


def resolve_api_key(db: Database, plain: str) -> Principal | None:
    if not plain.startswith(API_KEY_PREFIX):
        return None
    cached = cached_api_key(db, plain)
    if cached is not None:
        return cached
    digest = _sha256(plain)
    slot = (id(db), digest)
    with db.read() as conn:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == digest)).first()
    if row is None or row.revoked_at is not None:
        _key_cache.pop(slot, None)
        return None
    now = utcnow()
    # Coarse last-used stamp: at most one write per key per minute, not one per request.
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        with db.write() as conn:
            conn.execute(
                sa.update(api_keys).where(api_keys.c.id == row.id).values(last_used_at=now)
            )
    principal = Principal(org_id=row.org_id, role=Role(row.role), api_key_id=row.id, name=row.name)
    if len(_key_cache) >= _KEY_CACHE_MAX:
        _key_cache.clear()
    _key_cache[slot] = (time.monotonic(), principal)
    return principal


def _forget_api_key(key_id: int) -> None:
    for slot, (_at, principal) in list(_key_cache.items()):
        if principal.api_key_id == key_id:
            _key_cache.pop(slot, None)
