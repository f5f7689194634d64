"""Automations as the organization writes them: create, edit (a new version), pause, archive.

Every edit stores a new ``automation_versions`` row and bumps ``automations.version``; runs keep
the version they started with. What happens to the runs in flight is the caller's choice,
``in_flight``: ``finish`` (the default: they go on with the version they started on) or
``cancel`` (they stop now, with that reason in their history). Pausing starts no new runs;
archiving (the API's DELETE) cancels the waiting ones and keeps everything for the record.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from textdesk.domain import templates
from textdesk.domain.roles import Role
from textdesk.services import audit
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.automations import runs
from textdesk.services.automations.spec import (
    Definition,
    KeywordTrigger,
    NoReplyTrigger,
    QueueForPersonStep,
    SendStep,
)
from textdesk.services.errors import Conflict, Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import automation_runs, automation_versions, automations, utcnow

InFlight = Literal["finish", "cancel"]
STATUSES = ("active", "paused", "archived")
#: Merge fields an automation's template may use besides the contact's: the event's.
EVENT_FIELDS = ("event.type", "event.key", "event.occurs_at", "event.date", "event.time")


@dataclass(frozen=True)
class Automation:
    id: int
    org_id: int
    name: str
    status: str
    version: int
    trigger: dict[str, Any]
    conditions: dict[str, Any]
    steps: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    #: Runs per state (waiting, done, cancelled, skipped, failed), all versions.
    runs: dict[str, int]


def location(loc: tuple[int | str, ...]) -> str:
    """("steps", 2, "send", "template") -> "steps[2].send.template" (as the API says it)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "automation"


def parse(raw: dict[str, Any] | Definition) -> Definition:
    """The definition, shape-checked; a ``ValidationError`` becomes ``Invalid`` naming where."""
    if isinstance(raw, Definition):
        return raw
    try:
        return Definition.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = location(tuple(first["loc"]))
        raise Invalid(f"{where}: {first['msg']}", field=where) from None


def check(
    conn: Connection, org_id: int, definition: Definition, automation_id: int | None = None
) -> Definition:
    """What needs the organization: merge fields exist, the segment query compiles, a keyword
    is no other automation's, a no-reply trigger follows a campaign or automation it has."""
    from textdesk.services import campaigns, segments

    _check_trigger(conn, org_id, definition, automation_id)
    known = {f for f in campaigns.known_fields(conn, org_id) if f != "agent_name"}
    for i, step in enumerate(definition.steps):
        if isinstance(step, SendStep | QueueForPersonStep):
            where = f"steps[{i}].template"
            try:
                parsed = templates.parse_template(step.template)
            except templates.TemplateError as exc:
                raise Invalid(f"{where}: {exc.message}", field=where) from None
            if definition.trigger.type != "event":
                used = sorted(f for f in parsed.fields if f.startswith("event."))
                if used:
                    raise Invalid(
                        f"{where}: {{{used[0]}}}: a {definition.trigger.type} trigger has no "
                        "event, so no event fields",
                        field=where,
                    )
            for name in sorted(parsed.fields):
                if name in known or name in EVENT_FIELDS or name.startswith("event.data."):
                    continue
                try:
                    templates.parse_template("{" + name + "}", [*known, *EVENT_FIELDS])
                except templates.TemplateError as exc:
                    message = exc.message.replace(" at position 0", "")
                    raise Invalid(
                        f"{where}: {message}; an automation may also use event.data.<key>",
                        field=where,
                    ) from None
    if definition.conditions.segment and definition.conditions.segment.strip():
        try:
            segments.parse_query(conn, org_id, definition.conditions.segment)
        except Invalid as exc:
            raise Invalid(
                f"conditions.segment: {exc.message}", field="conditions.segment"
            ) from None
    return definition


def _check_trigger(
    conn: Connection, org_id: int, definition: Definition, automation_id: int | None
) -> None:
    trigger = definition.trigger
    if isinstance(trigger, KeywordTrigger):
        # One automation per keyword: which answer a contact gets must not be a coin toss.
        for other in _current_versions(conn, org_id, statuses=("active", "paused")):
            if other.automation_id == automation_id:
                continue
            theirs = other.definition.trigger
            if not isinstance(theirs, KeywordTrigger):
                continue
            for i, keyword in enumerate(trigger.keywords):
                if keyword in theirs.keywords:
                    where = f"trigger.keywords[{i}]"
                    raise Conflict(
                        f"{where}: automation {other.automation_id} ({other.name}) already "
                        f"answers {keyword}",
                        field=where,
                    )
    elif isinstance(trigger, NoReplyTrigger):
        from textdesk.store.tables import campaigns

        if trigger.campaign_id is not None:
            found = conn.execute(
                sa.select(campaigns.c.id).where(
                    campaigns.c.id == trigger.campaign_id, campaigns.c.org_id == org_id
                )
            ).first()
            if found is None:
                raise Invalid(
                    f"trigger.campaign_id: campaign {trigger.campaign_id} not found",
                    field="trigger.campaign_id",
                )
        if trigger.automation_id is not None:
            if trigger.automation_id == automation_id:
                raise Invalid(
                    "trigger.automation_id: an automation cannot follow its own messages",
                    field="trigger.automation_id",
                )
            found = conn.execute(
                sa.select(automations.c.id).where(
                    automations.c.id == trigger.automation_id, automations.c.org_id == org_id
                )
            ).first()
            if found is None:
                raise Invalid(
                    f"trigger.automation_id: automation {trigger.automation_id} not found",
                    field="trigger.automation_id",
                )


def _get_row(conn: Connection, org_id: int, automation_id: int, *, lock: bool = False) -> Any:
    query = sa.select(automations).where(
        automations.c.id == automation_id, automations.c.org_id == org_id
    )
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"automation {automation_id} not found")
    return row


def _store_version(
    conn: Connection, automation_id: int, org_id: int, version: int, d: Definition, by: int | None
) -> None:
    body = d.model_dump(mode="json")
    conn.execute(
        automation_versions.insert().values(
            automation_id=automation_id,
            version=version,
            org_id=org_id,
            trigger=body["trigger"],
            conditions=body["conditions"],
            steps=body["steps"],
            created_by=by,
            created_at=utcnow(),
        )
    )


def create_automation(
    db: Database,
    principal: Principal,
    raw: dict[str, Any] | Definition,
    *,
    status: Literal["active", "paused"] = "active",
    request: RequestInfo | None = None,
) -> Automation:
    principal.require(Role.ADMIN)
    definition = parse(raw)
    now = utcnow()
    with db.write() as conn:
        check(conn, principal.org_id, definition)
        automation_id = conn.execute(
            automations.insert()
            .values(
                org_id=principal.org_id,
                name=definition.name.strip(),
                status=status,
                version=1,
                created_by=principal.user_id,
                created_at=now,
                updated_at=now,
            )
            .returning(automations.c.id)
        ).scalar_one()
        _store_version(conn, automation_id, principal.org_id, 1, definition, principal.user_id)
        _audit(conn, principal, "automation.create", automation_id, request, {"version": 1})
        return get_automation(conn, principal.org_id, automation_id)


def update_automation(
    db: Database,
    principal: Principal,
    automation_id: int,
    raw: dict[str, Any] | Definition,
    *,
    in_flight: InFlight = "finish",
    request: RequestInfo | None = None,
) -> Automation:
    """A new version; runs in flight finish on theirs (or are cancelled: ``in_flight``)."""
    principal.require(Role.ADMIN)
    definition = parse(raw)
    now = utcnow()
    with db.write() as conn:
        row = _get_row(conn, principal.org_id, automation_id, lock=True)
        if row.status == "archived":
            raise Conflict(f"automation {automation_id} is archived", field="status")
        check(conn, principal.org_id, definition, automation_id)
        version = row.version + 1
        _store_version(
            conn, automation_id, principal.org_id, version, definition, principal.user_id
        )
        conn.execute(
            sa.update(automations)
            .where(automations.c.id == automation_id)
            .values(name=definition.name.strip(), version=version, updated_at=now)
        )
        if in_flight == "cancel":
            runs.cancel_for_automation(
                conn,
                automation_id,
                reason="automation_edited",
                detail=f"the automation was edited (version {version}) with in_flight=cancel",
                now=now,
            )
        _audit(
            conn,
            principal,
            "automation.update",
            automation_id,
            request,
            {"version": version, "in_flight": in_flight},
        )
        return get_automation(conn, principal.org_id, automation_id)


def set_status(
    db: Database,
    principal: Principal,
    automation_id: int,
    status: Literal["active", "paused"],
    *,
    in_flight: InFlight = "finish",
    request: RequestInfo | None = None,
) -> Automation:
    """Pause (no new runs) or resume; ``in_flight="cancel"`` also stops the waiting runs."""
    principal.require(Role.ADMIN)
    if status not in ("active", "paused"):
        raise Invalid("status is active or paused", field="status")
    now = utcnow()
    with db.write() as conn:
        row = _get_row(conn, principal.org_id, automation_id, lock=True)
        if row.status == "archived":
            raise Conflict(f"automation {automation_id} is archived", field="status")
        conn.execute(
            sa.update(automations)
            .where(automations.c.id == automation_id)
            .values(status=status, updated_at=now)
        )
        if in_flight == "cancel":
            runs.cancel_for_automation(
                conn,
                automation_id,
                reason=f"automation_{status}",
                detail=f"the automation was set {status} with in_flight=cancel",
                now=now,
            )
        _audit(
            conn,
            principal,
            "automation.status",
            automation_id,
            request,
            {"status": status, "in_flight": in_flight},
        )
        return get_automation(conn, principal.org_id, automation_id)


def archive_automation(
    db: Database, principal: Principal, automation_id: int, request: RequestInfo | None = None
) -> None:
    """Start no more runs and cancel the waiting ones; the automation, its versions and its
    runs' history stay (the record of what was sent and why)."""
    principal.require(Role.ADMIN)
    now = utcnow()
    with db.write() as conn:
        row = _get_row(conn, principal.org_id, automation_id, lock=True)
        if row.status == "archived":
            return
        conn.execute(
            sa.update(automations)
            .where(automations.c.id == automation_id)
            .values(status="archived", updated_at=now)
        )
        runs.cancel_for_automation(
            conn,
            automation_id,
            reason="automation_archived",
            detail="the automation was archived",
            now=now,
        )
        _audit(conn, principal, "automation.archive", automation_id, request, {})


def _audit(
    conn: Connection,
    principal: Principal,
    action: str,
    automation_id: int,
    request: RequestInfo | None,
    detail: dict[str, Any],
) -> None:
    audit.record(
        conn,
        org_id=principal.org_id,
        actor=principal.actor,
        action=action,
        target=f"automation:{automation_id}",
        request=request,
        detail=detail,
    )


def _run_counts(conn: Connection, ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {i: {} for i in ids}
    if not ids:
        return counts
    rows = conn.execute(
        sa.select(automation_runs.c.automation_id, automation_runs.c.state, sa.func.count())
        .where(automation_runs.c.automation_id.in_(ids))
        .group_by(automation_runs.c.automation_id, automation_runs.c.state)
    )
    for automation_id, state, n in rows:
        counts[automation_id][state] = int(n)
    return counts


def _automations(conn: Connection, where: sa.ColumnElement[bool]) -> list[Automation]:
    rows = conn.execute(
        sa.select(
            automations,
            automation_versions.c.trigger,
            automation_versions.c.conditions,
            automation_versions.c.steps,
        )
        .join(
            automation_versions,
            sa.and_(
                automation_versions.c.automation_id == automations.c.id,
                automation_versions.c.version == automations.c.version,
            ),
        )
        .where(where)
        .order_by(automations.c.id)
    ).all()
    counts = _run_counts(conn, [r.id for r in rows])
    return [
        Automation(
            id=r.id,
            org_id=r.org_id,
            name=r.name,
            status=r.status,
            version=r.version,
            trigger=r.trigger,
            conditions=r.conditions,
            steps=r.steps,
            created_at=r.created_at,
            updated_at=r.updated_at,
            runs=counts[r.id],
        )
        for r in rows
    ]


def get_automation(conn: Connection, org_id: int, automation_id: int) -> Automation:
    found = _automations(
        conn, sa.and_(automations.c.id == automation_id, automations.c.org_id == org_id)
    )
    if not found:
        raise NotFound(f"automation {automation_id} not found")
    return found[0]


def list_automations(
    conn: Connection, org_id: int, *, include_archived: bool = False
) -> list[Automation]:
    where = automations.c.org_id == org_id
    if not include_archived:
        where = sa.and_(where, automations.c.status != "archived")
    return _automations(conn, where)


@dataclass(frozen=True)
class Version:
    automation_id: int
    version: int
    name: str
    definition: Definition


@functools.lru_cache(maxsize=1024)
def _parsed(trigger: str, conditions: str, steps: str, name: str) -> Definition:
    return Definition.model_validate_json(
        f'{{"name": {name}, "trigger": {trigger}, "conditions": {conditions}, "steps": {steps}}}',
        context={"stored": True},
    )


def definition_of(name: str, row: Any) -> Definition:
    """A stored version read back through the models (remembered: versions never change)."""
    import json

    return _parsed(
        json.dumps(row.trigger, sort_keys=True),
        json.dumps(row.conditions, sort_keys=True),
        json.dumps(row.steps, sort_keys=True),
        json.dumps(name),
    )


def active_versions(conn: Connection, org_id: int) -> list[Version]:
    """The organization's active automations, each at its current version."""
    return _current_versions(conn, org_id, statuses=("active",))


def _current_versions(conn: Connection, org_id: int, *, statuses: tuple[str, ...]) -> list[Version]:
    rows = conn.execute(
        sa.select(
            automations.c.id,
            automations.c.version,
            automations.c.name,
            automation_versions.c.trigger,
            automation_versions.c.conditions,
            automation_versions.c.steps,
        )
        .join(
            automation_versions,
            sa.and_(
                automation_versions.c.automation_id == automations.c.id,
                automation_versions.c.version == automations.c.version,
            ),
        )
        .where(automations.c.org_id == org_id, automations.c.status.in_(statuses))
        .order_by(automations.c.id)
    ).all()
    return [Version(r.id, r.version, r.name, definition_of(r.name, r)) for r in rows]


def version_of(conn: Connection, automation_id: int, version: int) -> Version:
    row = conn.execute(
        sa.select(
            automations.c.name,
            automation_versions.c.trigger,
            automation_versions.c.conditions,
            automation_versions.c.steps,
        )
        .join(automations, automations.c.id == automation_versions.c.automation_id)
        .where(
            automation_versions.c.automation_id == automation_id,
            automation_versions.c.version == version,
        )
    ).one()
    return Version(automation_id, version, row.name, definition_of(row.name, row))
