"""What starts runs besides customer events: a keyword the contact texts, and no reply after a
message of a campaign or automation. Both run inside the transaction of the message that starts
them (``messaging.receive_inbound`` after the opt-out handling, ``queue_outbound_many`` after
the messages are written), so a run exists exactly when its message does.

- **Keyword**: the whole inbound message, in :func:`spec.keyword_form`, is one of the trigger's
  keywords. A message the compliance classifier reads as STOP, HELP or START (in any of its
  forms) starts nothing: those are answered by ``services/optout.py`` alone.
- **No reply**: a message of the campaign (or automation) is queued: a run waits ``within``
  (``subject`` ``reply:<message id>``). Any inbound message from the contact cancels the
  contact's waiting no-reply runs (reason ``replied``); when the wait ends the worker looks
  again before the first step (see ``timers.py``), so a reply that raced the claim also counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain import keywords
from textdesk.services.automations import conditions, definitions, runs, spec
from textdesk.services.automations.definitions import Version
from textdesk.services.errors import Invalid
from textdesk.store.tables import automation_runs, utcnow

#: The subject of a no-reply run: the message it waits for a reply to.
REPLY_SUBJECT = "reply:"


@dataclass(frozen=True)
class Starter:
    """What one run starts from: an event, an inbound keyword, or an outbound message."""

    contact_id: int
    note: str
    due_at: datetime
    event_id: int | None = None
    subject: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def start_runs(
    conn: Connection, org_id: int, pending: Sequence[tuple[Starter, Version]], now: datetime
) -> list[int]:
    """Insert the runs (``waiting``, or ``skipped`` when the conditions do not hold, with the
    reason) and their first history rows; returns their ids in ``pending``'s order."""
    if not pending:
        return []
    segment_hits: dict[tuple[int, int], set[int] | str] = {}
    for _starter, version in pending:
        query = version.definition.conditions.segment
        key = (version.automation_id, version.version)
        if query and query.strip() and key not in segment_hits:
            members = [s.contact_id for s, v in pending if v is version]
            try:
                segment_hits[key] = conditions.in_segment(conn, org_id, query, members, now)
            except Invalid as exc:
                segment_hits[key] = f"the segment condition no longer works: {exc.message}"
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for starter, version in pending:
        skipped = None
        hits = segment_hits.get((version.automation_id, version.version))
        if isinstance(hits, str):
            skipped = hits
        elif hits is not None and starter.contact_id not in hits:
            segment = version.definition.conditions.segment
            skipped = f"conditions not met: the contact is not in the segment {segment!r}"
        if skipped is None:
            failed = conditions.failed_event_condition(version.definition.conditions, starter.data)
            if failed is not None:
                skipped = f"conditions not met: {conditions.describe(failed)} is false"
        rows.append(
            {
                "org_id": org_id,
                "automation_id": version.automation_id,
                "version": version.version,
                "event_id": starter.event_id,
                "contact_id": starter.contact_id,
                "subject": starter.subject,
                "state": "skipped" if skipped else "waiting",
                "cursor": 0,
                "due_at": None if skipped else starter.due_at,
                "attempts": 0,
                "reason": "conditions" if skipped else None,
                "created_at": now,
                "updated_at": now,
                "finished_at": now if skipped else None,
            }
        )
        notes.append(skipped or f"{starter.note} on version {version.version}")
    ids = list(
        conn.execute(
            automation_runs.insert().returning(automation_runs.c.id, sort_by_parameter_order=True),
            rows,
        ).scalars()
    )
    runs.add_history(
        conn,
        [
            runs.history_row(
                run_id,
                org_id,
                "skipped" if row["state"] == "skipped" else "started",
                "skipped" if row["state"] == "skipped" else "ok",
                note,
                now,
            )
            for run_id, row, note in zip(ids, rows, notes, strict=True)
        ],
    )
    return ids


# --- inbound: keywords, and replies cancelling no-reply runs ------------------------------------


def on_inbound(conn: Connection, message: Any, now: datetime | None = None) -> list[int]:
    """An inbound message: cancel the contact's waiting no-reply runs, then start the runs of
    the keyword automations it matches. Returns the started runs' ids."""
    now = now or utcnow()
    cancel_replied(conn, message.org_id, message.contact_id, message.id, now)
    form = spec.keyword_form(message.body)
    if not form or len(form) > spec.MAX_KEYWORD:
        return []
    if keywords.classify(message.body).intent is not keywords.Intent.NONE:
        return []  # STOP, HELP, START: compliance answers, and nothing else does
    matched = [
        v
        for v in definitions.active_versions(conn, message.org_id)
        if isinstance(v.definition.trigger, spec.KeywordTrigger)
        and form in v.definition.trigger.keywords
    ]
    starter = Starter(
        contact_id=message.contact_id,
        note=f"started by inbound message {message.id} (keyword {form})",
        due_at=now,
    )
    return start_runs(conn, message.org_id, [(starter, v) for v in matched], now)


def cancel_replied(
    conn: Connection, org_id: int, contact_id: int, message_id: int, now: datetime
) -> list[int]:
    # Skip a run a worker holds right now rather than wait for it (it may need the contact's
    # row this transaction holds); the worker looks for the reply itself before the first step.
    return runs.cancel_where(
        conn,
        sa.and_(
            automation_runs.c.org_id == org_id,
            automation_runs.c.contact_id == contact_id,
            automation_runs.c.subject.like(f"{REPLY_SUBJECT}%"),
        ),
        reason="replied",
        detail=f"the contact replied (message {message_id})",
        now=now,
    )


# --- outbound: messages that start no-reply waits ------------------------------------------------


def on_outbound(conn: Connection, created: Sequence[tuple[Any, Any]], now: datetime) -> list[int]:
    """Messages just queued, as (``messaging.Outbound`` item, ``Message``) pairs: start a
    no-reply run for each message of a campaign or automation a no-reply trigger follows."""
    candidates = [
        (item, message)
        for item, message in created
        if item.campaign_id is not None or item.actor.startswith("automation:")
    ]
    if not candidates:
        return []
    pending: dict[int, list[tuple[Starter, Version]]] = {}
    by_org: dict[int, list[Version]] = {}
    for item, message in candidates:
        if message.status not in ("pending", "queued"):
            continue  # refused by the gate: nothing was sent to wait for a reply to
        if message.org_id not in by_org:
            by_org[message.org_id] = [
                v
                for v in definitions.active_versions(conn, message.org_id)
                if isinstance(v.definition.trigger, spec.NoReplyTrigger)
            ]
        source_automation = _automation_of(item.actor)
        for version in by_org[message.org_id]:
            trigger = version.definition.trigger
            assert isinstance(trigger, spec.NoReplyTrigger)
            if trigger.campaign_id is not None and trigger.campaign_id == item.campaign_id:
                source = f"campaign {item.campaign_id}"
            elif trigger.automation_id is not None and trigger.automation_id == source_automation:
                source = f"automation {source_automation}"
            else:
                continue
            until = now + spec.parse_duration(trigger.within)
            pending.setdefault(message.org_id, []).append(
                (
                    Starter(
                        contact_id=message.contact_id,
                        note=f"started by message {message.id} of {source}; waiting until "
                        f"{until:%Y-%m-%d %H:%M} UTC for a reply ({trigger.within})",
                        due_at=until,
                        subject=f"{REPLY_SUBJECT}{message.id}",
                    ),
                    version,
                )
            )
    return [
        run_id
        for org_id, items in pending.items()
        for run_id in start_runs(conn, org_id, items, now)
    ]


def _automation_of(actor: str) -> int | None:
    head, _, tail = actor.partition(":")
    return int(tail) if head == "automation" and tail.isdigit() else None


def reply_message_id(subject: str | None) -> int | None:
    """The message a no-reply run waits for a reply to (its subject), else None."""
    if subject is None or not subject.startswith(REPLY_SUBJECT):
        return None
    tail = subject[len(REPLY_SUBJECT) :]
    return int(tail) if tail.isdigit() else None
