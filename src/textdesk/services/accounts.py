"""Organizations and their users."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from textdesk.domain.roles import Role, can_assign
from textdesk.services import audit
from textdesk.services.audit import RequestInfo
from textdesk.services.errors import Conflict, Forbidden, Invalid, NotFound
from textdesk.services.passwords import hash_password, password_problem
from textdesk.store.db import Database
from textdesk.store.tables import organizations, users, utcnow

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SLUG_CLEAN = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Organization:
    id: int
    name: str
    slug: str
    default_region: str
    time_zone: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Organization:
        m = row._mapping
        return cls(
            id=m["id"],
            name=m["name"],
            slug=m["slug"],
            default_region=m["default_region"],
            time_zone=m["time_zone"],
            created_at=m["created_at"],
        )


@dataclass(frozen=True)
class User:
    id: int
    org_id: int
    email: str
    name: str
    role: Role
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> User:
        m = row._mapping
        return cls(
            id=m["id"],
            org_id=m["org_id"],
            email=m["email"],
            name=m["name"],
            role=Role(m["role"]),
            is_active=m["is_active"],
            created_at=m["created_at"],
            last_login_at=m["last_login_at"],
        )


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise Invalid(f"{email!r} is not an e-mail address", field="email")
    return email


def slugify(name: str) -> str:
    return _SLUG_CLEAN.sub("-", name.lower()).strip("-")[:60] or "org"


def create_organization(
    db: Database,
    name: str,
    *,
    default_region: str = "US",
    time_zone: str = "America/New_York",
    actor: str = "system",
) -> Organization:
    name = name.strip()
    if not name:
        raise Invalid("organization name must not be empty", field="name")
    base = slugify(name)
    with db.write() as conn:
        slug, n = base, 1
        while conn.execute(
            sa.select(organizations.c.id).where(organizations.c.slug == slug)
        ).first():
            n += 1
            slug = f"{base}-{n}"
        org_id = conn.execute(
            organizations.insert()
            .values(
                name=name,
                slug=slug,
                default_region=default_region.upper(),
                time_zone=time_zone,
                settings={},
                created_at=utcnow(),
            )
            .returning(organizations.c.id)
        ).scalar_one()
        audit.record(conn, org_id=org_id, actor=actor, action="org.create", target=f"org:{org_id}")
        row = conn.execute(sa.select(organizations).where(organizations.c.id == org_id)).one()
    return Organization.from_row(row)


def get_organization(conn: Connection, org_id: int) -> Organization:
    row = conn.execute(sa.select(organizations).where(organizations.c.id == org_id)).first()
    if row is None:
        raise NotFound(f"organization {org_id} does not exist")
    return Organization.from_row(row)


def find_organization(conn: Connection, slug_or_id: str) -> Organization:
    cond = organizations.c.slug == slug_or_id
    if slug_or_id.isdigit():
        cond = sa.or_(cond, organizations.c.id == int(slug_or_id))
    row = conn.execute(sa.select(organizations).where(cond)).first()
    if row is None:
        raise NotFound(f"no organization {slug_or_id!r}")
    return Organization.from_row(row)


def create_user(
    db: Database,
    *,
    org_id: int,
    email: str,
    name: str,
    role: Role,
    password: str,
    actor: str = "system",
    actor_role: Role | None = Role.OWNER,
    request: RequestInfo | None = None,
) -> User:
    """Create a user. ``actor_role`` is the role of whoever asks (None: the system or CLI).

    An e-mail is unique within the organization: a second user with it here is a 409, which
    tells the admin nothing they cannot see in their own user list. The same address in
    another organization is no obstacle and is never mentioned: it becomes an account of this
    organization, with its own password (login asks which organization when one password
    opens several)."""
    if actor_role is not None and not can_assign(actor_role, role):
        raise Forbidden(f"a {actor_role.value} cannot create a user with role {role.value}")
    email = normalize_email(email)
    name = name.strip()
    if not name:
        raise Invalid("name must not be empty", field="name")
    problem = password_problem(password)
    if problem:
        raise Invalid(problem, field="password")
    password_hash = hash_password(password)
    with db.write() as conn:
        get_organization(conn, org_id)
        insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(users)
        # ON CONFLICT: two admins adding the same person at once get one user and one 409,
        # not an IntegrityError.
        user_id = conn.execute(
            insert.values(
                org_id=org_id,
                email=email,
                name=name,
                role=role.value,
                password_hash=password_hash,
                is_active=True,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=[users.c.org_id, users.c.email])
            .returning(users.c.id)
        ).scalar()
        if user_id is None:
            raise Conflict(
                f"a user with e-mail {email} already exists in this organization", field="email"
            )
        audit.record(
            conn,
            org_id=org_id,
            actor=actor,
            action="user.create",
            target=f"user:{user_id}",
            request=request,
            detail={"email": email, "role": role.value},
        )
        row = conn.execute(sa.select(users).where(users.c.id == user_id)).one()
    return User.from_row(row)


def get_user(conn: Connection, org_id: int, user_id: int) -> User:
    row = conn.execute(
        sa.select(users).where(users.c.id == user_id, users.c.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound(f"user {user_id} not found")
    return User.from_row(row)


def list_users(conn: Connection, org_id: int) -> list[User]:
    rows = conn.execute(sa.select(users).where(users.c.org_id == org_id).order_by(users.c.id))
    return [User.from_row(r) for r in rows]


def set_user_active(
    db: Database,
    *,
    org_id: int,
    user_id: int,
    active: bool,
    actor: str,
    actor_role: Role,
    request: RequestInfo | None = None,
) -> User:
    with db.write() as conn:
        user = get_user(conn, org_id, user_id)
        if not can_assign(actor_role, user.role):
            raise Forbidden(f"a {actor_role.value} cannot change a {user.role.value}")
        conn.execute(sa.update(users).where(users.c.id == user_id).values(is_active=active))
        audit.record(
            conn,
            org_id=org_id,
            actor=actor,
            action="user.activate" if active else "user.deactivate",
            target=f"user:{user_id}",
            request=request,
        )
        return get_user(conn, org_id, user_id)
