"""Tests for textdesk.domain.quiet_hours (and the us_zones table it uses)."""

from __future__ import annotations

import time as clock
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as pn_timezone

from textdesk.domain import us_zones
from textdesk.domain.quiet_hours import (
    FEDERAL,
    SEARCH_DAYS,
    STATE_RULES,
    DayRule,
    QuietDecision,
    QuietHoursPolicy,
    Window,
    candidate_zones,
    check,
    effective_state,
    next_allowed,
)

NY = "America/New_York"
CHI = "America/Chicago"
LA = "America/Los_Angeles"
HNL = "Pacific/Honolulu"
GUAM = "Pacific/Guam"


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def local(zone: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """The UTC instant of a wall-clock time in ``zone``."""
    return datetime(y, mo, d, h, mi, s, tzinfo=ZoneInfo(zone)).astimezone(UTC)


# --------------------------------------------------------------------------- values


def test_window_validation() -> None:
    with pytest.raises(ValueError):
        Window(time(20), time(8))
    with pytest.raises(ValueError):
        Window(time(8), time(8))
    with pytest.raises(ValueError):
        Window(time(8, tzinfo=UTC), time(9))
    with pytest.raises(ValueError):
        Window(time(8, 0, 0, 5), time(9))
    w = Window(time(8), time(20))
    assert w.contains(time(8)) and w.contains(time(19, 59, 59, 999_999))
    assert not w.contains(time(20)) and not w.contains(time(7, 59, 59))


def test_day_rule_shape() -> None:
    with pytest.raises(ValueError):
        DayRule((None,) * 6)
    with pytest.raises(ValueError):
        DayRule.by_weekday({7: None}, None)
    tx = STATE_RULES["TX"].days
    assert tx.window(6) == Window(time(12), time(21))
    assert all(tx.window(d) == Window(time(9), time(21)) for d in range(6))
    assert DayRule.every_day(Window(time(8), time(21))) == FEDERAL


def test_state_table() -> None:
    eight_pm = DayRule.every_day(Window(time(8), time(20)))
    for code in ("FL", "OK", "MD", "WA"):
        assert STATE_RULES[code].days == eight_pm
    for code in ("AL", "LA", "MS", "RI"):
        assert STATE_RULES[code].days.window(6) is None, code
    assert set(STATE_RULES) == {
        *("FL", "OK", "MD", "WA", "TX", "CT", "AL", "LA", "MS", "KY", "MA"),
        *("MI", "MN", "NM", "NV", "RI", "PA"),
    }
    for code, rule in STATE_RULES.items():
        assert rule.code == code and code in us_zones.STATE_CODES and rule.source


# --------------------------------------------------------------------------- table cases


def test_new_york_federal_edges() -> None:
    before = check(local(NY, 2026, 3, 9, 20, 59), zones=[NY], state="NY")
    assert before.allowed and before.rule == "quiet_hours.ok" and before.next_allowed is None
    assert before.allowed_until == local(NY, 2026, 3, 9, 21)
    at = check(local(NY, 2026, 3, 9, 21), zones=[NY], state="NY")
    assert not at.allowed and at.rule == "quiet_hours.federal"
    assert at.next_allowed == local(NY, 2026, 3, 10, 8)
    early = check(local(NY, 2026, 3, 10, 7, 59, 59), zones=[NY], state="NY")
    assert not early.allowed and early.next_allowed == local(NY, 2026, 3, 10, 8)
    assert check(local(NY, 2026, 3, 10, 8), zones=[NY], state="NY").allowed


def test_florida_8pm() -> None:
    assert check(local(NY, 2026, 3, 9, 19, 59, 59), zones=[NY], state="FL").allowed
    d = check(local(NY, 2026, 3, 9, 20), zones=[NY], state="FL")
    assert not d.allowed and d.rule == "quiet_hours.state.FL"
    d = check(local(NY, 2026, 3, 9, 20, 42), zones=[NY], state="FL")
    assert d.explanation == (
        "8:42 PM Mon in America/New_York is after Florida's 8 PM limit; "
        "next allowed 8:00 AM Tue Mar 10"
    )
    assert d.next_allowed == local(NY, 2026, 3, 10, 8)
    assert d.next_allowed is not None and d.next_allowed.tzinfo is UTC


def test_texas_sunday_noon() -> None:
    # 2026-03-15 is a Sunday.
    d = check(local(CHI, 2026, 3, 15, 11), zones=[CHI], state="TX")
    assert not d.allowed and d.rule == "quiet_hours.state.TX"
    assert d.next_allowed == local(CHI, 2026, 3, 15, 12)
    assert "Texas's Sunday 12 PM start" in d.explanation
    assert check(local(CHI, 2026, 3, 15, 12), zones=[CHI], state="TX").allowed
    saturday = check(local(CHI, 2026, 3, 14, 8, 30), zones=[CHI], state="TX")
    assert not saturday.allowed and saturday.next_allowed == local(CHI, 2026, 3, 14, 9)


def test_no_sunday_states() -> None:
    d = check(local(CHI, 2026, 3, 15, 14), zones=[CHI], state="AL")
    assert not d.allowed and d.rule == "quiet_hours.state.AL"
    assert d.next_allowed == local(CHI, 2026, 3, 16, 8)
    assert "Alabama allows no sending on Sundays" in d.explanation


def test_unknown_state_is_the_strictest_combination() -> None:
    # Monday: 10 AM (KY) to 6 PM (RI); Saturday: RI 10-5; Sunday: closed (AL, LA, MS, RI).
    z = [NY]
    assert not check(local(NY, 2026, 3, 9, 9, 59), zones=z, state=None).allowed
    assert check(local(NY, 2026, 3, 9, 10), zones=z, state=None).allowed
    d = check(local(NY, 2026, 3, 9, 18), zones=z, state=None)
    assert not d.allowed and d.rule == "quiet_hours.state.unknown"
    assert "Rhode Island" in d.explanation and "state unknown" in d.explanation
    assert d.next_allowed == local(NY, 2026, 3, 10, 10)
    assert check(local(NY, 2026, 3, 14, 16, 59), zones=z, state=None).allowed
    sat = check(local(NY, 2026, 3, 14, 17), zones=z, state=None)
    assert sat.next_allowed == local(NY, 2026, 3, 16, 10)  # skips Sunday
    # An unrecognised state string is unknown too (strict), not "no state rule".
    assert not check(local(NY, 2026, 3, 9, 19), zones=z, state="Atlantis").allowed
    # A recognised state without its own rule gets the federal window only.
    assert check(local(NY, 2026, 3, 9, 20, 30), zones=z, state="New York").allowed


def test_phone_state_adds_its_rule() -> None:
    at = local(LA, 2026, 3, 9, 20, 30)
    assert check(at, zones=[LA], state="CA").allowed
    d = check(at, zones=[LA], state="CA", phone_state="FL")
    assert not d.allowed and d.rule == "quiet_hours.state.FL"


# --------------------------------------------------------------------------- DST


def test_spring_forward_chicago() -> None:
    # 2026-03-08 (Sunday) 2:00 CST -> 3:00 CDT. Saturday 10 PM CST = 04:00Z.
    sat_night = local(CHI, 2026, 3, 7, 22)
    assert sat_night == utc(2026, 3, 8, 4)
    # 8:00 CDT = 13:00Z (a fixed CST offset would say 14:00Z).
    assert next_allowed(sat_night, zones=[CHI], state="IL") == utc(2026, 3, 8, 13)
    assert not check(utc(2026, 3, 8, 12, 59, 59), zones=[CHI], state="IL").allowed
    d = check(utc(2026, 3, 8, 13), zones=[CHI], state="IL")
    assert d.allowed and d.allowed_until == utc(2026, 3, 9, 2)  # 9 PM CDT


def test_fall_back_los_angeles() -> None:
    # 2026-11-01 (Sunday) 2:00 PDT -> 1:00 PST. Saturday 9:30 PM PDT = 04:30Z.
    sat_night = local(LA, 2026, 10, 31, 21, 30)
    assert sat_night == utc(2026, 11, 1, 4, 30)
    assert next_allowed(sat_night, zones=[LA], state="CA") == utc(2026, 11, 1, 16)  # 8 AM PST
    d = check(utc(2026, 10, 31, 19), zones=[LA], state="CA")  # noon PDT Saturday
    assert d.allowed and d.allowed_until == utc(2026, 11, 1, 4)  # 9 PM PDT
    d = check(utc(2026, 11, 1, 20), zones=[LA], state="CA")  # noon PST Sunday
    assert d.allowed and d.allowed_until == utc(2026, 11, 2, 5)  # 9 PM PST


def test_window_edge_inside_spring_forward_gap() -> None:
    # A window starting at 2:30 (which does not exist on 2026-03-08 in Chicago) opens at the
    # transition instant, 3:00 CDT = 08:00Z; it closes at 4:00 CDT = 09:00Z.
    policy = QuietHoursPolicy(federal=DayRule.every_day(Window(time(2, 30), time(4))))
    assert policy.next_allowed(utc(2026, 3, 8, 4), zones=[CHI], state="IL") == utc(2026, 3, 8, 8)
    assert not policy.check(utc(2026, 3, 8, 7, 59, 59), zones=[CHI], state="IL").allowed
    d = policy.check(utc(2026, 3, 8, 8), zones=[CHI], state="IL")
    assert d.allowed and d.allowed_until == utc(2026, 3, 8, 9)
    # The day before, 2:30 CST = 08:30Z.
    assert policy.next_allowed(utc(2026, 3, 7, 4), zones=[CHI], state="IL") == utc(
        2026, 3, 7, 8, 30
    )


def test_window_across_fall_back_fold() -> None:
    # Window 1:30-3:00 on 2026-11-01 in Los Angeles: 1:30-2:00 PDT (08:30-09:00Z), then the
    # repeated 1:00-1:30 PST is outside the window, then 1:30-3:00 PST (09:30-11:00Z).
    policy = QuietHoursPolicy(federal=DayRule.every_day(Window(time(1, 30), time(3))))
    z = [LA]
    assert policy.next_allowed(utc(2026, 11, 1, 4, 30), zones=z, state="CA") == utc(
        2026, 11, 1, 8, 30
    )
    first = policy.check(utc(2026, 11, 1, 8, 30), zones=z, state="CA")
    assert first.allowed and first.allowed_until == utc(2026, 11, 1, 9)
    repeated = policy.check(utc(2026, 11, 1, 9, 10), zones=z, state="CA")
    assert not repeated.allowed and repeated.next_allowed == utc(2026, 11, 1, 9, 30)
    second = policy.check(utc(2026, 11, 1, 9, 30), zones=z, state="CA")
    assert second.allowed and second.allowed_until == utc(2026, 11, 1, 11)


# --------------------------------------------------------------------------- several zones


def test_new_york_and_chicago_intersection() -> None:
    z = [NY, CHI]
    # Monday 8:30 AM ET = 7:30 AM CT: Chicago is not open yet; opens 8 AM CT = 9 AM ET.
    d = check(local(NY, 2026, 3, 9, 8, 30), zones=z, state="NY")
    assert not d.allowed and d.rule == "quiet_hours.federal" and "America/Chicago" in d.explanation
    assert d.next_allowed == local(NY, 2026, 3, 9, 9) == local(CHI, 2026, 3, 9, 8)
    assert d.zones == (NY, CHI)
    # Closes at 9 PM ET (8 PM CT).
    ok = check(local(NY, 2026, 3, 9, 20, 59), zones=z, state="NY")
    assert ok.allowed and ok.allowed_until == local(NY, 2026, 3, 9, 21)
    late = check(local(NY, 2026, 3, 9, 21), zones=z, state="NY")
    assert not late.allowed and late.next_allowed == local(CHI, 2026, 3, 10, 8)


def test_honolulu_and_new_york_overlap() -> None:
    # 8 AM HST = 2 PM EDT; the common window is 2 PM-9 PM EDT.
    got = next_allowed(local(NY, 2026, 6, 1, 9), zones=[HNL, NY], state="NY")
    assert got == local(HNL, 2026, 6, 1, 8) == local(NY, 2026, 6, 1, 14)


def test_guam_and_new_york() -> None:
    # Federal 8-9 works: 8 AM ChST Tuesday = 6 PM EDT Monday.
    assert next_allowed(local(NY, 2026, 6, 1, 9), zones=[GUAM, NY], state="NY") == local(
        NY, 2026, 6, 1, 18
    )
    # Unknown state (10-6, no Sunday) leaves no common instant at all.
    with pytest.raises(ValueError, match="no common sending window"):
        next_allowed(local(NY, 2026, 6, 1, 9), zones=[GUAM, NY], state=None)
    d = check(local(NY, 2026, 6, 1, 9), zones=[GUAM, NY], state=None)
    assert not d.allowed and d.next_allowed is None
    assert d.rule == "quiet_hours.no_common_window"
    # So does a 9 AM-5 PM org window.
    with pytest.raises(ValueError):
        next_allowed(
            local(NY, 2026, 6, 1, 9),
            zones=[GUAM, NY],
            state="NY",
            org_window=Window(time(9), time(17)),
        )


# --------------------------------------------------------------------------- organisation


def test_org_window_only_narrows() -> None:
    narrow = Window(time(10), time(16))
    d = check(local(NY, 2026, 3, 9, 9, 30), zones=[NY], state="FL", org_window=narrow)
    assert not d.allowed and d.rule == "quiet_hours.org"
    assert d.next_allowed == local(NY, 2026, 3, 9, 10)
    assert not check(local(NY, 2026, 3, 9, 16), zones=[NY], state="FL", org_window=narrow).allowed
    # Legal rules are blamed first when both apply.
    d = check(local(NY, 2026, 3, 9, 7), zones=[NY], state="FL", org_window=narrow)
    assert d.rule == "quiet_hours.federal"
    # A wider org window never widens the legal one.
    wide = Window(time(0), time(23, 59))
    assert not check(local(NY, 2026, 3, 9, 7), zones=[NY], state="NY", org_window=wide).allowed
    d = check(local(NY, 2026, 3, 9, 20, 30), zones=[NY], state="FL", org_window=wide)
    assert not d.allowed and d.rule == "quiet_hours.state.FL"


def test_org_legal_blame_across_zones() -> None:
    # 8 AM ET fails only the org window in New York but the federal rule in Chicago.
    d = check(
        local(NY, 2026, 3, 9, 8),
        zones=[NY, CHI],
        state="NY",
        org_window=Window(time(9), time(17)),
    )
    assert d.rule == "quiet_hours.federal" and "America/Chicago" in d.explanation
    assert d.next_allowed == local(NY, 2026, 3, 9, 10)  # 9 AM in Chicago


def test_org_days_no_weekends() -> None:
    weekdays = frozenset(range(5))
    # Friday 2026-03-13, 9 PM ET -> Monday 8 AM.
    fri = local(NY, 2026, 3, 13, 21)
    assert next_allowed(fri, zones=[NY], state="NY", org_days=weekdays) == local(NY, 2026, 3, 16, 8)
    sat = check(local(NY, 2026, 3, 14, 12), zones=[NY], state="NY", org_days=weekdays)
    assert not sat.allowed and sat.rule == "quiet_hours.org"
    assert "no sending on Saturdays" in sat.explanation
    assert sat.next_allowed == local(NY, 2026, 3, 16, 8)
    with pytest.raises(ValueError):
        QuietHoursPolicy(org_days=frozenset({7}))
    with pytest.raises(ValueError):
        next_allowed(fri, zones=[NY], state="NY", org_days=frozenset())


# --------------------------------------------------------------------------- input checks


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="aware"):
        check(datetime(2026, 3, 9, 12), zones=[NY], state="NY")
    with pytest.raises(ValueError):
        check(utc(2026, 3, 9, 12), zones=[], state="NY")
    with pytest.raises(ValueError, match="unknown time zone"):
        check(utc(2026, 3, 9, 12), zones=["Mars/Olympus"], state="NY")
    with pytest.raises(TypeError):
        check(utc(2026, 3, 9, 12), zones=NY, state="NY")


def test_non_utc_input_and_microseconds() -> None:
    at = datetime(2026, 3, 9, 20, 59, 59, 999_999, tzinfo=ZoneInfo(NY))
    d = check(at, zones=[NY], state="NY")
    assert d.allowed
    assert next_allowed(at, zones=[NY], state="NY") == at.astimezone(UTC)
    assert next_allowed(at + timedelta(microseconds=1), zones=[NY], state="NY") == local(
        NY, 2026, 3, 10, 8
    )


# --------------------------------------------------------------------------- zones, state


def test_candidate_zone_precedence() -> None:
    kw: dict[str, object] = {"zip_code": "33101", "state": "TX", "phone_zones": (LA,)}
    assert candidate_zones(contact_tz="Europe/Paris", **kw) == ("Europe/Paris",)  # type: ignore[arg-type]
    assert candidate_zones(contact_tz="Not/AZone", **kw) == (NY,)  # type: ignore[arg-type]
    assert candidate_zones(contact_tz=None, zip_code="79901", state="FL", phone_zones=()) == (
        "America/Denver",
    )
    assert candidate_zones(contact_tz=None, zip_code="junk", state="TX", phone_zones=()) == (
        CHI,
        "America/Denver",
    )
    assert candidate_zones(contact_tz=None, zip_code=None, state=None, phone_zones=(LA,)) == (LA,)
    assert (
        candidate_zones(contact_tz=None, zip_code=None, state=None, phone_zones=("Etc/Unknown",))
        == us_zones.CONTIGUOUS_US_ZONES
    )
    # A military ZIP has no zone: fall through to the phone.
    assert candidate_zones(contact_tz=None, zip_code="09001", state=None, phone_zones=(CHI,)) == (
        CHI,
    )


def test_the_phone_zones_are_looked_up_only_when_the_number_decides() -> None:
    asked: list[str] = []

    def from_phone() -> tuple[str, ...]:
        asked.append("phone")
        return (LA,)

    assert candidate_zones(contact_tz=NY, zip_code=None, state=None, phone_zones=from_phone) == (
        NY,
    )
    assert candidate_zones(contact_tz=None, zip_code="33101", state=None, phone_zones=from_phone)
    assert candidate_zones(contact_tz=None, zip_code=None, state="TX", phone_zones=from_phone)
    assert asked == []
    assert candidate_zones(contact_tz=None, zip_code=None, state=None, phone_zones=from_phone) == (
        LA,
    )
    assert asked == ["phone"]


def test_candidate_zones_from_phonenumbers() -> None:
    num = phonenumbers.parse("+17752345678")
    zones = pn_timezone.time_zones_for_number(num)
    assert set(zones) == {"America/Boise", LA}
    got = candidate_zones(contact_tz=None, zip_code=None, state=None, phone_zones=zones)
    assert set(got) == {"America/Boise", LA}
    # Both must be open: 8 AM Pacific = 9 AM Mountain.
    assert next_allowed(local(LA, 2026, 3, 9, 6), zones=got, state="NV") == local(LA, 2026, 3, 9, 9)


@pytest.mark.parametrize(
    ("zip_code", "expected"),
    [
        ("10001", (NY,)),
        ("10001-1234", (NY,)),
        ("100011234", (NY,)),
        ("2139", (NY,)),  # leading zero lost in a spreadsheet
        ("32501", (CHI,)),  # Pensacola
        ("32301", (NY, CHI)),  # Tallahassee area spans the boundary
        ("85001", ("America/Phoenix",)),
        ("86515", ("America/Phoenix", "America/Denver")),  # Navajo Nation
        ("96813", (HNL,)),
        ("99546", ("America/Adak",)),
        ("96799", ("Pacific/Pago_Pago",)),
        ("1234", (NY,)),  # read as 01234 (Massachusetts)
        ("00100", ()),  # unassigned prefix
        ("123", ()),
        ("abcde", ()),
    ],
)
def test_zip_zones(zip_code: str, expected: tuple[str, ...]) -> None:
    assert us_zones.zip_zones(zip_code) == expected


def test_multi_zone_states_list_every_zone() -> None:
    spans = {
        "TN": {NY, CHI},
        "KY": {NY, CHI},
        "IN": {NY, CHI},
        "FL": {NY, CHI},
        "MI": {NY, CHI},
        "TX": {CHI, "America/Denver"},
        "ND": {CHI, "America/Denver"},
        "SD": {CHI, "America/Denver"},
        "NE": {CHI, "America/Denver"},
        "KS": {CHI, "America/Denver"},
        "ID": {"America/Boise", LA},
        "OR": {"America/Boise", LA},
        "AZ": {"America/Phoenix", "America/Denver"},
        "AK": {"America/Anchorage", "America/Adak"},
    }
    for state, zones in spans.items():
        assert set(us_zones.STATE_ZONES[state]) == zones, state


def test_zone_table_is_valid() -> None:
    every = {z for zs in us_zones.STATE_ZONES.values() for z in zs}
    for z in every | set(us_zones.CONTIGUOUS_US_ZONES):
        ZoneInfo(z)
    for code in us_zones.STATE_NAMES:
        if code not in {"AA", "AE", "AP"}:
            assert us_zones.STATE_ZONES[code], code


def test_effective_state() -> None:
    assert effective_state(state="fl", zip_code="10001") == "FL"
    assert effective_state(state=" Rhode  island ", zip_code=None) == "RI"
    assert effective_state(state=None, zip_code="73301") == "TX"  # Austin IRS prefix 733
    assert effective_state(state=None, zip_code="73101") == "OK"
    assert effective_state(state="??", zip_code="02903") == "RI"
    assert effective_state(state=None, zip_code=None) is None
    assert effective_state(state=None, zip_code="00100") is None


def test_check_is_fast() -> None:
    zones = [NY, CHI, "America/Denver", LA]
    # CPU time, not wall time: on a loaded machine the wall clock also counts other processes.
    start = clock.process_time()
    for i in range(200):
        check(utc(2026, 3, 9, 0) + timedelta(minutes=37 * i), zones=zones, state=None)
    assert (clock.process_time() - start) / 200 < 0.005  # measured ~0.1 ms


# --------------------------------------------------------------------------- properties

US_ZONES = [
    NY,
    CHI,
    "America/Denver",
    "America/Phoenix",
    LA,
    "America/Anchorage",
    "America/Adak",
    HNL,
    "America/Boise",
    "America/Detroit",
    "America/Indiana/Indianapolis",
    "America/Puerto_Rico",
    GUAM,
]
STATES = [None, "NY", "CA", "FL", "TX", "AL", "RI", "PA", "KY", "CT"]
_GRID = timedelta(minutes=30)  # every window edge and zone offset here is a multiple of 30 min


def _oracle_allowed(
    instant: datetime,
    zones: Sequence[str],
    state: str | None,
    org_window: Window | None,
    org_days: frozenset[int] | None,
) -> bool:
    """Independent, direct reading of the rules at one instant."""
    if state is None:
        rules = [FEDERAL, *(r.days for r in STATE_RULES.values())]
        holiday_states = [r.code for r in STATE_RULES.values() if r.holiday_ban]
    else:
        rules = [FEDERAL, *([STATE_RULES[state].days] if state in STATE_RULES else [])]
        holiday_states = [state] if state in STATE_RULES and STATE_RULES[state].holiday_ban else []
    for name in zones:
        loc = instant.astimezone(ZoneInfo(name))
        day, t = loc.weekday(), loc.time()
        # Independent calendar source: the holidays package queried directly.
        for code in holiday_states:
            if loc.date() in holidays.country_holidays("US", subdiv=code, years=loc.year):
                return False
        for rule in rules:
            w = rule.window(day)
            if w is None or not w.contains(t):
                return False
        if org_days is not None and day not in org_days:
            return False
        if org_window is not None and not org_window.contains(t):
            return False
    return True


def _grid_after(t: datetime) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    steps = -((epoch - t) // _GRID)  # ceiling
    return epoch + steps * _GRID


@st.composite
def org_windows(draw: st.DrawFn) -> Window | None:
    if draw(st.booleans()):
        return None
    start = draw(st.integers(0, 22))
    end = draw(st.integers(start + 1, 23))
    return Window(time(start), time(end))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    t=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
    ),
    zones=st.lists(st.sampled_from(US_ZONES), min_size=1, max_size=4, unique=True),
    state=st.sampled_from(STATES),
    org_window=org_windows(),
    org_days=st.none() | st.frozensets(st.integers(0, 6), min_size=1),
)
def test_next_allowed_properties(
    t: datetime,
    zones: list[str],
    state: str | None,
    org_window: Window | None,
    org_days: frozenset[int] | None,
) -> None:
    policy = QuietHoursPolicy(org_window=org_window, org_days=org_days)

    def run_check(at: datetime) -> QuietDecision:
        return policy.check(at, zones=zones, state=state)

    def run_next(at: datetime) -> datetime:
        return policy.next_allowed(at, zones=zones, state=state)

    def oracle(at: datetime) -> bool:
        return _oracle_allowed(at, zones, state, org_window, org_days)

    decision = run_check(t)
    assert decision.allowed == oracle(t)

    try:
        nxt = run_next(t)
    except ValueError:
        # No common window: no grid instant in the next SEARCH_DAYS days is allowed.
        assert not decision.allowed and decision.rule == "quiet_hours.no_common_window"
        g = _grid_after(t)
        while g <= t + timedelta(days=SEARCH_DAYS):
            assert not oracle(g), g
            g += _GRID
        return

    assert nxt >= t and nxt.tzinfo is UTC
    assert run_check(nxt).allowed and oracle(nxt)
    assert run_next(nxt) == nxt  # idempotent
    assert (nxt == t) == decision.allowed

    if decision.allowed:
        until = decision.allowed_until
        assert until is not None and until > t
        assert oracle(until - timedelta(seconds=1)) and not oracle(until)
        return

    assert decision.next_allowed == nxt
    # Nothing allowed strictly between t and nxt: evenly spaced samples and the instants
    # just before nxt, checked with check() ...
    span = nxt - t
    samples = [t + span * k / 13 for k in range(1, 13)]
    samples += [nxt - timedelta(microseconds=1), nxt - timedelta(seconds=1)]
    for s in samples:
        if t <= s < nxt:
            assert not run_check(s).allowed, s
    # ... and, since every window edge and zone offset here lies on a 30-minute UTC grid,
    # nxt is a grid point and no earlier grid point (within 3 days) passes the oracle.
    assert nxt.second == nxt.microsecond == 0 and nxt.minute in (0, 30)
    g = _grid_after(t)
    while g < min(nxt, t + timedelta(days=3)):
        assert not oracle(g), g
        g += _GRID


# --- legal holidays ------------------------------------------------------------------------------


def test_alabama_holiday_closes_the_day() -> None:
    # Thanksgiving 2026 is Thursday Nov 26: noon in Birmingham is inside every window but it is
    # a legal holiday in Alabama.
    noon = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
    decision = QuietHoursPolicy().check(noon, zones=["America/Chicago"], state="AL")
    assert not decision.allowed
    assert decision.rule == "quiet_hours.holiday.AL"
    assert "Thanksgiving" in decision.explanation and "Alabama" in decision.explanation
    # Next allowed: Friday 8 AM Central.
    assert decision.next_allowed == datetime(2026, 11, 27, 14, 0, tzinfo=UTC)


def test_holiday_of_another_state_does_not_apply() -> None:
    # Mardi Gras 2026 (Feb 17) is a Louisiana holiday, not a Texas one.
    noon = datetime(2026, 2, 17, 18, 0, tzinfo=UTC)
    assert not QuietHoursPolicy().check(noon, zones=["America/Chicago"], state="LA").allowed
    assert QuietHoursPolicy().check(noon, zones=["America/Chicago"], state="TX").allowed


def test_unknown_state_takes_every_holiday_ban() -> None:
    noon = datetime(2026, 2, 17, 18, 0, tzinfo=UTC)  # Tuesday, Mardi Gras
    decision = QuietHoursPolicy().check(noon, zones=["America/Chicago"], state=None)
    assert not decision.allowed and decision.rule == "quiet_hours.holiday.LA"
    assert "state unknown" in decision.explanation
