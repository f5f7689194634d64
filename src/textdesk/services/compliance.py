"""The compliance gate: one function decides for every outbound message, when it is created
and again when a worker is about to hand it to a provider.

The decision is ``allow``, ``defer(until)`` or ``block``, each with a machine-readable code and
a sentence for the person who sent. Checks, in order:

1. ``opted_out``: the contact revoked consent (the ledger in ``consent_events`` is the truth;
   ``contacts.opted_out`` is its derived flag).
0. ``compliance`` purpose (the platform's STOP/HELP/START answers) is always allowed.
2. ``quiet_hours.*``: for marketing and informational messages, the federal and state windows
   in every time zone the recipient may be in (``domain.quiet_hours``). Replies inside a
   conversation (purpose ``conversational``) are not solicitations and are not held.
3. ``expired``: deferring past the message's validity window expires it instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from textdesk.domain import content, quiet_hours
from textdesk.domain.phone import area_code_time_zones


class Verdict(StrEnum):
    ALLOW = "allow"
    DEFER = "defer"
    BLOCK = "block"


class Purpose(StrEnum):
    MARKETING = "marketing"
    INFORMATIONAL = "informational"
    CONVERSATIONAL = "conversational"
    #: The platform's own answers to STOP, HELP and START (see ``services/keywords.py``).
    COMPLIANCE = "compliance"


#: Purposes a person or an API key may choose; COMPLIANCE is the platform's alone.
USER_PURPOSES = (Purpose.MARKETING, Purpose.INFORMATIONAL, Purpose.CONVERSATIONAL)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    code: str
    detail: str
    until: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


ALLOW = Decision(Verdict.ALLOW, "ok", "allowed")

#: Purposes subject to frequency caps and quiet hours (replies in a conversation are not).
CAPPED = (Purpose.MARKETING, Purpose.INFORMATIONAL)

#: States whose law allows at most 3 marketing messages per 24 hours on the same subject
#: (FL 501.059(8)(b), OK 15 O.S. 775C.3, MD Stop the Spam Calls Act; compliance.md §3). We
#: count all marketing messages, which is stricter than "same subject".
STATE_MARKETING_CAP = {"FL": 3, "OK": 3, "MD": 3}


@dataclass(frozen=True)
class RecentSends:
    """Outbound messages of capped purposes to one contact in the last 24 hours."""

    total: int = 0
    marketing: int = 0
    #: When the oldest of them went; a slot frees 24 hours after it.
    oldest: datetime | None = None
    oldest_marketing: datetime | None = None


@dataclass(frozen=True)
class Recipient:
    """What the gate needs to know about a contact (a row of ``contacts``)."""

    phone_e164: str
    opted_out: bool
    time_zone: str | None = None
    zip: str | None = None
    state: str | None = None

    @classmethod
    def from_mapping(cls, m: Any) -> Recipient:
        return cls(
            phone_e164=m["phone_e164"],
            opted_out=bool(m["opted_out"]),
            time_zone=m["time_zone"],
            zip=m["zip"],
            state=m["state"],
        )


def evaluate(
    recipient: Recipient,
    *,
    purpose: str,
    now: datetime,
    valid_until: datetime | None,
    recent: RecentSends | None = None,
    daily_cap: int | None = None,
    org_window: quiet_hours.Window | None = None,
    org_days: frozenset[int] | None = None,
) -> Decision:
    """``recent`` and ``daily_cap`` (the org's per-contact cap per rolling 24 hours) are given
    by callers for capped purposes; without them the caps are not checked."""
    if purpose == Purpose.COMPLIANCE:
        # The one opt-out confirmation, a HELP answer, a re-subscription notice: required
        # replies to what the contact just sent, so neither the opt-out nor quiet hours hold
        # them (47 CFR 64.1200(a)(12): the confirmation goes within five minutes).
        return ALLOW
    if recipient.opted_out:
        return Decision(
            Verdict.BLOCK,
            "opted_out",
            f"not sent: {recipient.phone_e164} opted out of messages from this organization",
        )
    if purpose != Purpose.CONVERSATIONAL:
        decision = _quiet_hours(recipient, now, org_window, org_days)
        if decision is None and recent is not None:
            decision = _frequency(recipient, purpose, recent, daily_cap)
        if decision is not None:
            if valid_until is not None and (decision.until is None or decision.until > valid_until):
                return Decision(
                    Verdict.BLOCK,
                    "expired",
                    f"not sent: {decision.detail}, which is past the message's validity window",
                )
            return decision
    return ALLOW


def _quiet_hours(
    recipient: Recipient,
    now: datetime,
    org_window: quiet_hours.Window | None,
    org_days: frozenset[int] | None,
) -> Decision | None:
    zones = quiet_hours.candidate_zones(
        contact_tz=recipient.time_zone,
        zip_code=recipient.zip,
        state=recipient.state,
        phone_zones=lambda: area_code_time_zones(recipient.phone_e164),
    )
    state = quiet_hours.effective_state(state=recipient.state, zip_code=recipient.zip)
    result = _check(now, zones, state, org_window, org_days)
    if result.allowed:
        return None
    if result.next_allowed is None:
        return Decision(Verdict.BLOCK, result.rule, f"not sent: {result.explanation}")
    return Decision(Verdict.DEFER, result.rule, f"held: {result.explanation}", result.next_allowed)


@functools.lru_cache(maxsize=4096)
def _check(
    now: datetime,
    zones: tuple[str, ...],
    state: str | None,
    org_window: quiet_hours.Window | None,
    org_days: frozenset[int] | None,
) -> quiet_hours.QuietDecision:
    """``quiet_hours.check``, remembered: a pure function of its arguments, and a batch of
    sends or a scan of the pool asks it about many recipients in the same zones at the same
    ``now``."""
    return quiet_hours.check(
        now, zones=zones, state=state, org_window=org_window, org_days=org_days
    )


def _frequency(
    recipient: Recipient, purpose: str, recent: RecentSends, daily_cap: int | None
) -> Decision | None:
    day = timedelta(hours=24)
    if daily_cap is not None and recent.total >= daily_cap and recent.oldest is not None:
        return Decision(
            Verdict.DEFER,
            "frequency.contact_daily",
            f"held: {recipient.phone_e164} already got {recent.total} messages in 24 hours "
            f"(the organization's cap is {daily_cap})",
            recent.oldest + day,
        )
    state = quiet_hours.effective_state(state=recipient.state, zip_code=recipient.zip)
    cap = STATE_MARKETING_CAP.get(state or "")
    if (
        purpose == Purpose.MARKETING
        and cap is not None
        and recent.marketing >= cap
        and recent.oldest_marketing is not None
    ):
        return Decision(
            Verdict.DEFER,
            f"frequency.state.{state}",
            f"held: {state} allows {cap} marketing messages per 24 hours and "
            f"{recipient.phone_e164} already got {recent.marketing}",
            recent.oldest_marketing + day,
        )
    return None


def content_policy(
    org_name: str, org_settings: Any, *, first_message: bool
) -> content.ContentPolicy:
    """The org's content rules. ``content_blocks`` (codes or prefixes such as
    ``content.shaft``) escalates warnings to blocks; the carrier-level blocks always stay."""
    settings = org_settings or {}
    extra = frozenset(str(code) for code in settings.get("content_blocks", ()))
    names = tuple(str(n) for n in settings.get("brand_names", ())) or (org_name,)
    return content.ContentPolicy(
        brand_names=names,
        require_brand=first_message,
        require_opt_out_language=first_message,
        blocked=content.DEFAULT_BLOCKED | extra,
    )


def content_decision(
    body: str, policy: content.ContentPolicy
) -> tuple[Decision | None, list[dict[str, str]]]:
    """A block for the first blocking finding (if any) and the warnings to show."""
    findings = content.check(body, policy)
    blocking = [f for f in findings if f.severity is content.Severity.BLOCK]
    warnings = [
        {"code": f.code, "message": f.message}
        for f in findings
        if f.severity is content.Severity.WARNING
    ]
    if blocking:
        first = blocking[0]
        return Decision(Verdict.BLOCK, first.code, f"not sent: {first.message}"), warnings
    return None, warnings
