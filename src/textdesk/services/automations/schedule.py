"""When a wait step ends: pure arithmetic on aware datetimes, no I/O.

"24 hours before occurs_at" is exact (24 hours of elapsed time, whatever the clocks do);
"at 09:00 the day before" is a wall-clock time: the local date of ``occurs_at`` in the zone,
moved by ``days``, at 09:00 there, converted with ``zoneinfo`` so it is 09:00 on both sides of a
daylight-saving change. A wall time that does not exist (02:30 on the spring-forward night) is
read with the offset before the change, which lands an hour later on the new clock (03:30); a
wall time that happens twice (01:30 on the fall-back night) is the first of the two.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from textdesk.services.automations.spec import WaitStep, parse_duration


def zone(contact_zone: str | None, org_zone: str | None) -> ZoneInfo:
    """The recipient's time zone, else the organization's, else UTC."""
    for name in (contact_zone, org_zone):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def wait_until(step: WaitStep, *, now: datetime, occurs_at: datetime, tz: ZoneInfo) -> datetime:
    """The instant (UTC) a wait step ends."""
    if step.duration is not None:
        return now + parse_duration(step.duration)
    if step.before is not None:
        return occurs_at - parse_duration(step.before)
    if step.after is not None:
        return occurs_at + parse_duration(step.after)
    assert step.at is not None  # the model requires exactly one kind
    day = occurs_at.astimezone(tz).date() + timedelta(days=step.days)
    local = datetime.combine(day, time.fromisoformat(step.at), tzinfo=tz)
    return local.astimezone(UTC)


def describe(step: WaitStep) -> str:
    """The wait in words, for the run's history."""
    if step.duration is not None:
        return f"{step.duration}"
    if step.before is not None:
        return f"{step.before} before occurs_at"
    if step.after is not None:
        return f"{step.after} after occurs_at"
    if step.days == 0:
        return f"{step.at} on the day of occurs_at"
    if step.days == -1:
        return f"{step.at} the day before occurs_at"
    if step.days == 1:
        return f"{step.at} the day after occurs_at"
    return f"{step.at}, {abs(step.days)} days {'before' if step.days < 0 else 'after'} occurs_at"
