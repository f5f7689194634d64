"""The audit log: one row for every security-relevant action (logins, keys, roles, consent
overrides). Written in the same transaction as the action it records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.store.tables import audit_log, utcnow


@dataclass(frozen=True)
class RequestInfo:
    """Where an action came from; the web layer fills it, the CLI uses ``CLI``."""

    ip: str | None = None
    user_agent: str | None = None


CLI = RequestInfo(ip="cli", user_agent=None)


def record(
    conn: Connection,
    *,
    org_id: int | None,
    actor: str,
    action: str,
    target: str | None = None,
    request: RequestInfo | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    req = request or RequestInfo()
    conn.execute(
        audit_log.insert().values(
            org_id=org_id,
            actor=actor,
            action=action,
            target=target,
            ip=req.ip,
            user_agent=(req.user_agent or "")[:400] or None,
            detail=detail or {},
            created_at=utcnow(),
        )
    )


def list_for_org(conn: Connection, org_id: int, *, limit: int = 100) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(audit_log)
        .where(audit_log.c.org_id == org_id)
        .order_by(audit_log.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]
