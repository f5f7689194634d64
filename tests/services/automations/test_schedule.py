"""When a wait ends: exact durations, and wall-clock times that hold across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from textdesk.services.automations import schedule
from textdesk.services.automations.spec import WaitStep, parse_duration

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _until(occurs_at: datetime, **step: object) -> datetime:
    return schedule.wait_until(
        WaitStep.model_validate({"type": "wait", **step}), now=NOW, occurs_at=occurs_at, tz=NY
    )


@pytest.mark.parametrize(
    ("appointment", "reminder_utc"),
    [
        # March: the clocks go forward on Sunday 8 March 2026 at 02:00.
        (datetime(2026, 3, 8, 15, 0, tzinfo=NY), datetime(2026, 3, 7, 14, 0, tzinfo=UTC)),
        (datetime(2026, 3, 9, 15, 0, tzinfo=NY), datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
        # November: back on Sunday 1 November 2026 at 02:00.
        (datetime(2026, 11, 1, 15, 0, tzinfo=NY), datetime(2026, 10, 31, 13, 0, tzinfo=UTC)),
        (datetime(2026, 11, 2, 15, 0, tzinfo=NY), datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
    ],
)
def test_nine_the_day_before_is_nine_local_across_dst(
    appointment: datetime, reminder_utc: datetime
) -> None:
    until = _until(appointment.astimezone(UTC), at="09:00", days=-1)
    assert until == reminder_utc
    local = until.astimezone(NY)
    assert (local.hour, local.minute) == (9, 0)
    assert local.date() == appointment.date() - timedelta(days=1)


def test_hours_before_are_elapsed_hours_not_wall_clock() -> None:
    # 24 hours before 15:00 on the day after the spring change is 14:00 the day before, local.
    appointment = datetime(2026, 3, 8, 15, 0, tzinfo=NY).astimezone(UTC)
    until = _until(appointment, before="24h")
    assert appointment - until == timedelta(hours=24)
    assert until.astimezone(NY).hour == 14


def test_a_wall_time_in_the_spring_gap_lands_after_it_and_a_doubled_one_is_the_first() -> None:
    gap = _until(datetime(2026, 3, 8, 12, 0, tzinfo=NY), at="02:30")
    assert gap.astimezone(NY).strftime("%H:%M %Z") == "03:30 EDT"
    doubled = _until(datetime(2026, 11, 1, 12, 0, tzinfo=NY), at="01:30")
    assert doubled == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, not EST


def test_the_zone_is_the_recipients_else_the_organizations() -> None:
    assert schedule.zone("America/Los_Angeles", "America/New_York").key == "America/Los_Angeles"
    assert schedule.zone(None, "America/Chicago").key == "America/Chicago"
    assert schedule.zone("Not/AZone", None).key == "UTC"


def test_durations() -> None:
    assert parse_duration("1d12h") == timedelta(hours=36)
    assert parse_duration("90m") == timedelta(minutes=90)
    for bad in ("", "1 day", "-2h", "401d", "h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_a_wait_says_exactly_one_kind() -> None:
    for bad in (
        {"type": "wait"},
        {"type": "wait", "duration": "1h", "before": "2h"},
        {"type": "wait", "duration": "1h", "days": -1},
        {"type": "wait", "at": "9am"},
        {"type": "wait", "at": "09:00:30"},
    ):
        with pytest.raises(ValidationError):
            WaitStep.model_validate(bad)
