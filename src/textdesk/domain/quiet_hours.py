"""Quiet hours: may a business text be sent to this recipient now, and if not, when?

Pure logic, no I/O. Every window is in the **recipient's local time**, start inclusive, end
exclusive. A send is allowed only when the local time is inside the window in **every**
candidate zone at once, and the window is the intersection of all rules that apply.

Rules and sources (``../shared/reference/compliance.md`` §0 item 4 and §3; engineering research,
not legal advice; counsel must review before launch):

* Federal, 8 AM-9 PM every day: 47 CFR 64.1200(c)(1) (TCPA) and 16 CFR 310.4(c) (FTC
  Telemarketing Sales Rule). Strictly, these govern solicitations; the platform applies quiet
  hours to every business-initiated message (§3.1).
* State rules (§3.2), table ``STATE_RULES`` below, each entry with its citation: FL, OK, MD, WA
  8 AM-8 PM; TX 9 AM-9 PM Monday-Saturday and noon-9 PM Sunday; CT, AL, LA, MS, KY, MA, MI,
  MN, NM, NV, RI, PA.
* Organisation settings (a stricter window, allowed weekdays) are intersected with the legal
  rules, so they can only narrow the window, never widen it.

Decisions made here (see also ``DESIGN.md``, "the compliance gate"):

* **Unknown state** → every state rule applies at once (the strictest combination, "strictest
  candidate"): with the current table that is 10 AM (KY) to 6 PM (RI) Monday-Friday, 10 AM-5 PM
  (RI) on Saturday and no sending on Sunday (AL, LA, MS, RI).
* **Area-code state**: ``phone_state`` adds the rule of the number's area-code state on top of
  the contact's state (§3.4 "states = {state(ZIP)} ∪ {state(NPA)}"; FL and OK presume a
  resident from an in-state area code).
* **Zones** come from :func:`candidate_zones`, by precedence: the contact's stored IANA zone,
  else its ZIP (approximate ZIP3 table in :mod:`textdesk.domain.us_zones`), else its state,
  else every zone of the phone number (``textdesk.domain.phone.area_code_time_zones``), else
  all contiguous US zones.
* **DST** is exact: a wall-clock window is mapped to UTC per constant-offset stretch of the
  zone, so a window edge inside a spring-forward gap opens at the transition instant, and in a
  fall-back hour an instant is allowed exactly when its wall-clock time is inside the window.
* **Legal holidays** close the whole local day in AL, LA, MS, RI and PA
  (``StateRule.holiday_ban``). The calendars are the ``holidays`` package's US federal plus
  state holidays for that state (compliance.md §3.2 points at per-state lists but gives none;
  ``holidays`` is maintained and cites the statutes). Like every state rule, with the state
  unknown all five calendars apply at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from textdesk.domain import us_zones

__all__ = [
    "FEDERAL",
    "SEARCH_DAYS",
    "STATE_RULES",
    "DayRule",
    "QuietDecision",
    "QuietHoursPolicy",
    "StateRule",
    "Window",
    "candidate_zones",
    "check",
    "effective_state",
    "next_allowed",
]

MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY, SATURDAY, SUNDAY = range(7)
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

#: How far ahead :func:`next_allowed` looks for a common window before giving up.
SEARCH_DAYS = 14

_DAY_S = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)
_CHUNK_S = 6 * 3600  # zone-offset probe step; real zones change offset at most twice a year
_UNKNOWN_TZ = "Etc/Unknown"  # phonenumbers' marker for "no zone"

_Iv = tuple[int, int]  # [start, end) in seconds since the Unix epoch
_Weekly = tuple[tuple[int, int] | None, ...]  # per weekday: seconds after local midnight


# --------------------------------------------------------------------------- rule values


@dataclass(frozen=True, slots=True)
class Window:
    """An allowed sending window in local wall-clock time: ``start <= t < end``, same day."""

    start: time
    end: time

    def __post_init__(self) -> None:
        for t in (self.start, self.end):
            if t.tzinfo is not None:
                raise ValueError("Window times are local wall-clock times; pass naive times")
            if t.microsecond:
                raise ValueError("Window times must be whole seconds")
        if not self.start < self.end:
            raise ValueError(f"Window start {self.start} must be before its end {self.end}")

    def contains(self, t: time) -> bool:
        return self.start <= t.replace(tzinfo=None) < self.end

    def _seconds(self) -> tuple[int, int]:
        return _secs(self.start), _secs(self.end)


@dataclass(frozen=True, slots=True)
class DayRule:
    """One window (or ``None``: no sending) per weekday; index 0 = Monday … 6 = Sunday."""

    windows: tuple[Window | None, ...]

    def __post_init__(self) -> None:
        if len(self.windows) != 7:
            raise ValueError("DayRule needs exactly 7 entries, Monday first")

    @classmethod
    def every_day(cls, window: Window) -> DayRule:
        return cls((window,) * 7)

    @classmethod
    def by_weekday(cls, windows: Mapping[int, Window | None], default: Window | None) -> DayRule:
        """``windows[weekday]`` where given, else ``default``."""
        if any(d not in range(7) for d in windows):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return cls(tuple(windows.get(d, default) for d in range(7)))

    def window(self, weekday: int) -> Window | None:
        return self.windows[weekday]


@dataclass(frozen=True, slots=True)
class StateRule:
    """A state's calling-hours rule, with where it comes from."""

    code: str  # USPS code
    name: str
    days: DayRule
    source: str  # citation, as in compliance.md §3.2
    holiday_ban: bool = False  # the state also bans sending on its legal holidays


def _w(start: float, end: float) -> Window:
    """Window from decimal hours, e.g. ``_w(13.5, 21)`` = 1:30 PM-9 PM."""
    return Window(_hours(start), _hours(end))


def _hours(h: float) -> time:
    minutes = round(h * 60)
    return time(minutes // 60, minutes % 60)


def _rule(
    code: str,
    days: DayRule,
    source: str,
    *,
    holiday_ban: bool = False,
) -> StateRule:
    return StateRule(code, us_zones.STATE_NAMES[code], days, source, holiday_ban)


_NO_SUNDAY_8_20 = DayRule.by_weekday({SUNDAY: None}, _w(8, 20))

#: 47 CFR 64.1200(c)(1); 16 CFR 310.4(c): 8 AM-9 PM local time, every day.
FEDERAL = DayRule.every_day(_w(8, 21))

STATE_RULES: Mapping[str, StateRule] = MappingProxyType(
    {
        r.code: r
        for r in (
            # FTSA Fla. Stat. § 501.059 and Fla. Telemarketing Act § 501.616 (SB 1120, 2021);
            # clickpoint [V], flsenate.gov SB 1120 [V]. Area-code presumption of residence.
            _rule("FL", DayRule.every_day(_w(8, 20)), "Fla. Stat. § 501.616(6)(b); SB 1120"),
            # OTSA, HB 3168, eff. Nov 1, 2022; 15 O.S. § 775C.4; clickpoint [V], dinsmore [S].
            _rule("OK", DayRule.every_day(_w(8, 20)), "15 O.S. § 775C.4 (HB 3168, 2022)"),
            # Stop the Spam Calls Act of 2023, SB 90, eff. Jan 1, 2024; wmar2news [V], dnc.com [V].
            _rule("MD", DayRule.every_day(_w(8, 20)), "Md. Stop the Spam Calls Act (SB 90, 2023)"),
            # HB 1497, eff. June 9, 2022; RCW 80.36.390 / 19.158; dinsmore [V], manatt [V].
            _rule("WA", DayRule.every_day(_w(8, 20)), "RCW 80.36.390 (HB 1497, 2022)"),
            # Tex. Bus. & Com. Code ch. 301-305; SB 140 (texts covered since Sept 1, 2025);
            # cloudcommunications [V], foster.com [V].
            _rule(
                "TX",
                DayRule.by_weekday({SUNDAY: _w(12, 21)}, _w(9, 21)),
                "Tex. Bus. & Com. Code § 301.051 (SB 140, 2025)",
            ),
            # SB 1058 (2023); dropcowboy (updated Nov 1, 2025) [V]. Clickpoint's 9-9 is older.
            _rule("CT", DayRule.every_day(_w(9, 20)), "Conn. Gen. Stat. § 42-288a (SB 1058, 2023)"),
            # dropcowboy, clickpoint [S]: no Sundays, no holidays.
            _rule("AL", _NO_SUNDAY_8_20, "dropcowboy; clickpoint [S]", holiday_ban=True),
            # dropcowboy, clickpoint [S]; La. PSC Gen. Order R-29617: no Sundays, no PSC holidays.
            _rule("LA", _NO_SUNDAY_8_20, "La. PSC Gen. Order R-29617 [S]", holiday_ban=True),
            # dropcowboy [S]: 8 AM-8 PM ("CST"; MS lies wholly in Central time), no Sundays.
            _rule("MS", _NO_SUNDAY_8_20, "dropcowboy [S]", holiday_ban=True),
            # dropcowboy, clickpoint [S]: 10 AM-9 PM.
            _rule("KY", DayRule.every_day(_w(10, 21)), "dropcowboy; clickpoint [S]"),
            # dropcowboy [S].
            _rule("MA", DayRule.every_day(_w(8, 20)), "dropcowboy [S]"),
            # dropcowboy [S]: MI, MN, NM 9 AM-9 PM.
            _rule("MI", DayRule.every_day(_w(9, 21)), "dropcowboy [S]"),
            _rule("MN", DayRule.every_day(_w(9, 21)), "dropcowboy [S]"),
            _rule("NM", DayRule.every_day(_w(9, 21)), "dropcowboy [S]"),
            # dropcowboy [S]: 9 AM-8 PM.
            _rule("NV", DayRule.every_day(_w(9, 20)), "dropcowboy [S]"),
            # R.I. Gen. Laws § 5-61-3.6 [V], hours in § 5-61-2(9): 9 AM-6 PM Mon-Fri,
            # 10 AM-5 PM Saturday, no Sundays or holidays (the hours themselves are [M]).
            _rule(
                "RI",
                DayRule.by_weekday({SATURDAY: _w(10, 17), SUNDAY: None}, _w(9, 18)),
                "R.I. Gen. Laws §§ 5-61-3.6, 5-61-2(9)",
                holiday_ban=True,
            ),
            # 8 AM-9 PM with Sunday/holiday restrictions; sources disagree (compliance.md §3.2).
            # Sunday 1:30 PM-9 PM is from memory [M], chosen as the stricter reading: VERIFY.
            _rule(
                "PA",
                DayRule.by_weekday({SUNDAY: _w(13.5, 21)}, _w(8, 21)),
                "73 P.S. § 2245 [M]; dropcowboy (garbled)",
                holiday_ban=True,
            ),
        )
    }
)


# --------------------------------------------------------------------------- zones and state


def candidate_zones(
    *,
    contact_tz: str | None,
    zip_code: str | None,
    state: str | None,
    phone_zones: Sequence[str] | Callable[[], Sequence[str]],
) -> tuple[str, ...]:
    """Every IANA zone the recipient may be in; never empty.

    Precedence: the contact's stored zone; else the zones of its ZIP prefix; else every zone of
    its state; else every zone of the phone number (from phonenumbers); else all contiguous US
    zones (the strictest choice). Invalid zone names are skipped, not trusted.

    ``phone_zones`` may be a function giving them, called only when the number decides (the
    phone metadata look-up costs more than the whole rest of a quiet-hours check).
    """
    if contact_tz is not None and _valid_zone(contact_tz.strip()):
        return (contact_tz.strip(),)
    by_zip = us_zones.zip_zones(zip_code)
    if by_zip:
        return by_zip
    code = us_zones.normalize_state(state)
    if code is not None and us_zones.STATE_ZONES.get(code):
        return us_zones.STATE_ZONES[code]
    found = phone_zones() if callable(phone_zones) else phone_zones
    by_phone = _dedupe(z for z in found if z != _UNKNOWN_TZ and _valid_zone(z))
    if by_phone:
        return by_phone
    return us_zones.CONTIGUOUS_US_ZONES


def effective_state(*, state: str | None, zip_code: str | None) -> str | None:
    """USPS code of the state whose rule applies: the contact's, else its ZIP's; None = unknown.

    ``None`` makes :func:`check` apply every state rule at once (strictest combination).
    An unrecognised state string counts as unknown, not as "no state rule".
    """
    return us_zones.normalize_state(state) or us_zones.zip_state(zip_code)


def _valid_zone(name: str) -> bool:
    if not name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class QuietDecision:
    """Outcome of a quiet-hours check.

    ``rule`` is a machine code: ``quiet_hours.ok`` when allowed; otherwise the binding rule:
    ``quiet_hours.federal``, ``quiet_hours.state.<USPS>``, ``quiet_hours.state.unknown`` (state
    unknown, strictest of all), ``quiet_hours.holiday.<USPS>`` (a legal holiday of that state),
    ``quiet_hours.org``, or ``quiet_hours.no_common_window`` (no
    instant in the next ``SEARCH_DAYS`` days fits every zone; ``next_allowed`` is then None).
    ``allowed_until`` (allowed only) is when the current window closes, e.g. for a provider
    validity period.
    """

    allowed: bool
    next_allowed: datetime | None
    zones: tuple[str, ...]
    rule: str
    explanation: str
    allowed_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Constraint:
    code: str
    who: str  # "Florida", "the federal rule", "your organization"
    whose: str  # "Florida's", "the federal", "your organization's"
    legal: bool
    windows: tuple[tuple[int, int] | None, ...]  # seconds after local midnight
    varies: bool  # different windows on different days (name the day in explanations)
    note: str = ""


@dataclass(frozen=True, slots=True)
class _Plan:
    constraints: tuple[_Constraint, ...]
    weekly: tuple[tuple[int, int] | None, ...]  # intersection of all constraints
    holiday_states: tuple[str, ...] = ()  # states whose legal holidays close the whole day


_STATE_UNKNOWN_NOTE = " (state unknown, so every state's rule applies)"


@dataclass(frozen=True)
class QuietHoursPolicy:
    """Federal rule ∩ applicable state rules ∩ organisation settings.

    ``org_window`` and ``org_days`` (weekdays 0=Monday..6=Sunday on which the organisation
    sends) can only narrow the legal window. ``federal`` and ``state_rules`` default to
    :data:`FEDERAL` and :data:`STATE_RULES`; they are code-level overrides (tests, a change in
    the law), never organisation settings. A ``check`` costs roughly 20-100 µs.
    """

    federal: DayRule = FEDERAL
    org_window: Window | None = None
    org_days: frozenset[int] | None = None
    state_rules: Mapping[str, StateRule] = field(
        default_factory=lambda: STATE_RULES, compare=False, repr=False
    )
    _plans: dict[tuple[str | None, str | None], _Plan] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.org_days is not None and any(d not in range(7) for d in self.org_days):
            raise ValueError("org_days are weekdays 0 (Monday) to 6 (Sunday)")

    # ----------------------------------------------------------------- public

    def check(
        self,
        now_utc: datetime,
        *,
        zones: Sequence[str],
        state: str | None,
        phone_state: str | None = None,
    ) -> QuietDecision:
        """Is a send allowed at ``now_utc`` in every zone; if not, why and when next."""
        now, t_s = _instant(now_utc)
        tzs = _zones(zones)
        plan = self._plan(state, phone_state)
        names = tuple(z.key for z in tzs)

        hol = plan.holiday_states
        locals_ = [now.astimezone(z) for z in tzs]
        blocked = [
            (z, local)
            for z, local in zip(tzs, locals_, strict=True)
            if not _inside(plan.weekly[local.weekday()], local)
            or (hol and holiday_on(hol, local.date()) is not None)
        ]

        if not blocked:
            end = _current_end(tzs, plan.weekly, t_s, hol)
            until = _from_s(end)
            where = ", ".join(
                f"{_clock(loc)} in {z.key}" for z, loc in zip(tzs, locals_, strict=True)
            )
            verb = "is" if len(tzs) == 1 else "are"
            text = f"{where} {verb} inside the sending window; allowed until " + _when(
                until.astimezone(tzs[0])
            )
            return QuietDecision(True, None, names, "quiet_hours.ok", text, until)

        # Blame a legal rule in any zone before an organisation setting; else the first zone.
        blames = [(z, *_blame_day(plan, local, z.key)) for z, local in blocked]
        zone, code, reason, _legal = next((b for b in blames if b[3]), blames[0])
        start = _next_start(tzs, plan.weekly, t_s, hol)
        if start is None:
            text = (
                f"{reason}; no time in the next {SEARCH_DAYS} days is inside the sending window "
                f"in all of {', '.join(names)}"
            )
            return QuietDecision(False, None, names, "quiet_hours.no_common_window", text)
        nxt = _from_s(start)
        text = f"{reason}; next allowed {_when(nxt.astimezone(zone))}"
        return QuietDecision(False, nxt, names, code, text)

    def next_allowed(
        self,
        now_utc: datetime,
        *,
        zones: Sequence[str],
        state: str | None,
        phone_state: str | None = None,
    ) -> datetime:
        """Earliest instant ``>= now_utc`` (UTC) inside the window in every zone at once.

        Returns ``now_utc`` itself (in UTC) when sending is allowed now. Raises ValueError
        when no such instant exists within ``SEARCH_DAYS`` days (e.g. zones too far apart).
        """
        now, t_s = _instant(now_utc)
        tzs = _zones(zones)
        plan = self._plan(state, phone_state)
        start = _next_start(tzs, plan.weekly, t_s, plan.holiday_states)
        if start is None:
            raise ValueError(
                f"no common sending window within {SEARCH_DAYS} days of {now.isoformat()} "
                f"for zones {', '.join(z.key for z in tzs)} (state {state!r}): the zones are "
                "too far apart for the window, or no sending day is configured"
            )
        return now if start <= t_s else _from_s(start)

    # ----------------------------------------------------------------- rules

    def _plan(self, state: str | None, phone_state: str | None) -> _Plan:
        key = (us_zones.normalize_state(state), us_zones.normalize_state(phone_state))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._build_plan(*key)
            self._plans[key] = plan
        return plan

    def _build_plan(self, state: str | None, phone_state: str | None) -> _Plan:
        cons = [_constraint("quiet_hours.federal", "the federal rule", "the federal", self.federal)]
        holiday_states: list[str] = []
        if state is None:
            holiday_states = [r.code for r in self.state_rules.values() if r.holiday_ban]
            for r in self.state_rules.values():
                cons.append(
                    _constraint(
                        "quiet_hours.state.unknown",
                        r.name,
                        f"{r.name}'s",
                        r.days,
                        note=_STATE_UNKNOWN_NOTE,
                    )
                )
        else:
            for code in _dedupe(c for c in (state, phone_state) if c is not None):
                rule = self.state_rules.get(code)
                if rule is not None and rule.holiday_ban:
                    holiday_states.append(code)
                if rule is not None:
                    cons.append(
                        _constraint(
                            f"quiet_hours.state.{code}", rule.name, f"{rule.name}'s", rule.days
                        )
                    )
        if self.org_window is not None or self.org_days is not None:
            org = self.org_window._seconds() if self.org_window else (0, _DAY_S)
            days = self.org_days if self.org_days is not None else frozenset(range(7))
            windows = tuple(org if d in days else None for d in range(7))
            cons.append(
                _Constraint(
                    "quiet_hours.org",
                    "your organization",
                    "your organization's",
                    legal=False,
                    windows=windows,
                    varies=len({w for w in windows if w is not None}) > 1,
                )
            )
        weekly = tuple(_intersect_day(c.windows[d] for c in cons) for d in range(7))
        return _Plan(tuple(cons), weekly, tuple(holiday_states))


def check(
    now_utc: datetime,
    *,
    zones: Sequence[str],
    state: str | None,
    phone_state: str | None = None,
    org_window: Window | None = None,
    org_days: frozenset[int] | None = None,
) -> QuietDecision:
    """Quiet-hours decision at ``now_utc``; see :meth:`QuietHoursPolicy.check`."""
    return _policy(org_window, org_days).check(
        now_utc, zones=zones, state=state, phone_state=phone_state
    )


def next_allowed(
    now_utc: datetime,
    *,
    zones: Sequence[str],
    state: str | None,
    phone_state: str | None = None,
    org_window: Window | None = None,
    org_days: frozenset[int] | None = None,
) -> datetime:
    """Earliest allowed instant ``>= now_utc``; see :meth:`QuietHoursPolicy.next_allowed`."""
    return _policy(org_window, org_days).next_allowed(
        now_utc, zones=zones, state=state, phone_state=phone_state
    )


_DEFAULT_POLICY = QuietHoursPolicy()


def _policy(org_window: Window | None, org_days: frozenset[int] | None) -> QuietHoursPolicy:
    if org_window is None and org_days is None:
        return _DEFAULT_POLICY
    return QuietHoursPolicy(org_window=org_window, org_days=org_days)


# --------------------------------------------------------------------------- rule helpers


def _constraint(code: str, who: str, whose: str, days: DayRule, note: str = "") -> _Constraint:
    windows = tuple(w._seconds() if w is not None else None for w in days.windows)
    varies = len({w for w in windows if w is not None}) > 1
    return _Constraint(code, who, whose, True, windows, varies, note)


def _intersect_day(windows: Iterable[tuple[int, int] | None]) -> tuple[int, int] | None:
    lo, hi = 0, _DAY_S
    for w in windows:
        if w is None:
            return None
        lo, hi = max(lo, w[0]), min(hi, w[1])
    return (lo, hi) if lo < hi else None


def _inside(window: tuple[int, int] | None, local: datetime) -> bool:
    # Window edges are whole seconds, so comparing the whole-second part is exact.
    return window is not None and window[0] <= _secs(local) < window[1]


def _blame_day(plan: _Plan, local: datetime, zone: str) -> tuple[str, str, bool]:
    """Like :func:`_blame`, but a legal holiday (it closes the whole day) is named first."""
    found = holiday_on(plan.holiday_states, local.date()) if plan.holiday_states else None
    if found is not None:
        code, name = found
        state = us_zones.STATE_NAMES.get(code, code)
        note = _STATE_UNKNOWN_NOTE if len(plan.holiday_states) > 1 else ""
        return (
            f"quiet_hours.holiday.{code}",
            f"{local:%a %b} {local.day} in {zone} is {name}, a legal holiday on which "
            f"{state} allows no sending{note}",
            True,
        )
    return _blame(plan.constraints, local, zone)


def _blame(constraints: Sequence[_Constraint], local: datetime, zone: str) -> tuple[str, str, bool]:
    """(rule code, sentence, is a legal rule) for the binding rule at a blocked local time.

    Legal rules are blamed before the organisation's. Among them: a closed day first, then the
    latest start (before the window) or the earliest end (after it); ties go to the first
    listed rule, i.e. federal before state.
    """
    day = local.weekday()
    s = _secs(local)
    for legal in (True, False):
        closed: _Constraint | None = None
        before: tuple[int, _Constraint] | None = None
        after: tuple[int, _Constraint] | None = None
        for c in constraints:
            if c.legal is not legal:
                continue
            w = c.windows[day]
            if w is None:
                closed = closed or c
            elif s < w[0]:
                if before is None or w[0] > before[0]:
                    before = (w[0], c)
            elif s >= w[1] and (after is None or w[1] < after[0]):
                after = (w[1], c)
        name = _DAY_NAMES[day]
        if closed is not None:
            return (
                closed.code,
                f"{_clock(local)} {name[:3]} in {zone}: {closed.who} allows no sending on "
                f"{name}s{closed.note}",
                legal,
            )
        if before is not None:
            limit, c = before
            qual = f"{name} " if c.varies else ""
            return (
                c.code,
                f"{_clock(local)} {name[:3]} in {zone} is before {c.whose} {qual}"
                f"{_limit(limit)} start{c.note}",
                legal,
            )
        if after is not None:
            limit, c = after
            qual = f"{name} " if c.varies else ""
            return (
                c.code,
                f"{_clock(local)} {name[:3]} in {zone} is after {c.whose} {qual}"
                f"{_limit(limit)} limit{c.note}",
                legal,
            )
    raise AssertionError("blocked time with no failing rule")  # pragma: no cover


# --------------------------------------------------------------------------- intervals
#
# Times are integer seconds since the Unix epoch (UTC). For each zone the search range is cut
# into stretches of constant UTC offset; inside a stretch, local wall time = UTC + offset, so
# each local day's window maps to a UTC interval exactly. That handles DST gaps (a window
# edge that does not exist locally opens at the transition) and folds (the repeated hour is
# allowed only where its wall-clock time is in the window). The allowed sets of all zones are
# then intersected as sorted interval lists.


def _next_start(
    zones: Sequence[ZoneInfo], weekly: _Weekly, t_s: int, hol: tuple[str, ...] = ()
) -> int | None:
    limit = t_s + SEARCH_DAYS * _DAY_S
    for horizon in (3 * _DAY_S, (SEARCH_DAYS + 1) * _DAY_S):
        ivs = _common(zones, weekly, t_s, t_s + horizon, hol)
        if ivs:
            return ivs[0][0] if ivs[0][0] <= limit else None
    return None


def _current_end(
    zones: Sequence[ZoneInfo], weekly: _Weekly, t_s: int, hol: tuple[str, ...] = ()
) -> int:
    """End of the common interval containing ``t_s`` (which must be allowed)."""
    end = t_s
    for horizon in (2 * _DAY_S, (SEARCH_DAYS + 1) * _DAY_S):
        end = t_s + horizon
        ivs = _common(zones, weekly, t_s, end, hol)
        if ivs and ivs[0][0] == t_s and ivs[0][1] < end:
            return ivs[0][1]
    return end


def _common(
    zones: Sequence[ZoneInfo], weekly: _Weekly, start: int, end: int, hol: tuple[str, ...] = ()
) -> list[_Iv]:
    result: list[_Iv] | None = None
    for z in zones:
        ivs = _zone_intervals(z, weekly, start, end, hol)
        result = ivs if result is None else _intersect(result, ivs)
        if not result:
            return []
    return result or []


def _zone_intervals(
    zone: ZoneInfo, weekly: _Weekly, start: int, end: int, hol: tuple[str, ...] = ()
) -> list[_Iv]:
    out: list[_Iv] = []
    for u0, u1, off in _stretches(zone, start, end):
        l0, l1 = u0 + off, u1 + off  # local wall-clock seconds, as if UTC
        day = l0 // _DAY_S
        while day * _DAY_S < l1:
            w = weekly[(day + 3) % 7]  # 1970-01-01 was a Thursday (3)
            if w is not None and hol and holiday_on(hol, _EPOCH_DATE + timedelta(days=day)):
                w = None
            if w is not None:
                a = max(l0, day * _DAY_S + w[0]) - off
                b = min(l1, day * _DAY_S + w[1]) - off
                if a < b:
                    if out and out[-1][1] == a:
                        out[-1] = (out[-1][0], b)
                    else:
                        out.append((a, b))
            day += 1
    return out


def _stretches(zone: ZoneInfo, start: int, end: int) -> list[tuple[int, int, int]]:
    """``(from, to, utc_offset)`` pieces of ``[start, end)`` with a constant offset."""
    out: list[tuple[int, int, int]] = []
    seg = cur = start
    off = _offset(zone, start)
    while cur < end:
        nxt = min(cur + _CHUNK_S, end)
        if _offset(zone, nxt) == off:
            cur = nxt
            continue
        lo, hi = cur, nxt  # offset(lo) == off != offset(hi): find the change to the second
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _offset(zone, mid) == off:
                lo = mid
            else:
                hi = mid
        if seg < hi:
            out.append((seg, min(hi, end), off))
        seg = cur = hi
        off = _offset(zone, hi)
    if seg < end:
        out.append((seg, end, off))
    return out


def _offset(zone: ZoneInfo, ts: int) -> int:
    off = datetime.fromtimestamp(ts, zone).utcoffset()
    if off is None:  # pragma: no cover - ZoneInfo always answers
        raise ValueError(f"zone {zone.key} has no UTC offset")
    return off.days * _DAY_S + off.seconds


def _intersect(a: list[_Iv], b: list[_Iv]) -> list[_Iv]:
    out: list[_Iv] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


# --------------------------------------------------------------------------- holidays

_EPOCH_DATE = date(1970, 1, 1)


@lru_cache(maxsize=256)
def _state_calendar(code: str, year: int) -> Mapping[date, str]:
    import holidays  # imported on first use: building calendars costs a few milliseconds

    return MappingProxyType(dict(holidays.country_holidays("US", subdiv=code, years=year)))


def holiday_on(states: Sequence[str], day: date) -> tuple[str, str] | None:
    """``(state, holiday name)`` when ``day`` is a legal holiday in any of ``states``."""
    for code in states:
        name = _state_calendar(code, day.year).get(day)
        if name is not None:
            return code, name
    return None


# --------------------------------------------------------------------------- small helpers


def _instant(now_utc: datetime) -> tuple[datetime, int]:
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        raise ValueError("now_utc must be timezone-aware")
    now = now_utc.astimezone(UTC)
    return now, (now - _EPOCH) // _ONE_SECOND


def _from_s(ts: int) -> datetime:
    return _EPOCH + timedelta(seconds=ts)


def _zones(zones: Sequence[str]) -> tuple[ZoneInfo, ...]:
    if isinstance(zones, str):
        raise TypeError("zones must be a sequence of zone names, not one string")
    names = _dedupe(zones)
    if not names:
        raise ValueError("zones must not be empty; use candidate_zones() for a fallback")
    out = []
    for name in names:
        try:
            out.append(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {name!r}") from exc
    return tuple(out)


def _secs(t: time | datetime) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _clock(t: time | datetime) -> str:
    """``8:42 PM``."""
    return f"{t.hour % 12 or 12}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"


def _limit(seconds: int) -> str:
    """``8 PM`` / ``1:30 PM`` for a window edge given in seconds after midnight."""
    h, m = divmod(seconds // 60, 60)
    h %= 24
    return f"{h % 12 or 12}{f':{m:02d}' if m else ''} {'AM' if h < 12 else 'PM'}"


def _when(local: datetime) -> str:
    """``8:00 AM Tue Mar 10``."""
    return f"{_clock(local)} {local:%a %b} {local.day}"
