"""What an automation and an event may say, checked before anything is stored.

The step, trigger and condition models are pydantic: the API takes them as its body (so the
OpenAPI schema and the error locations, ``steps[2].send.template``, come from here) and the
service validates a plain dictionary with the same models, so the CLI, the demo seeder and the
tests meet the same rules. An automation's definition is stored as the models' JSON and read back
through them.

Every string refuses NUL (PostgreSQL text and jsonb cannot hold it) and every number is bounded,
so nothing a client sends can reach the database as a value it cannot store.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic import (
    Tag as Case,
)

from textdesk.domain import keywords as compliance_keywords
from textdesk.services.compliance import Purpose

#: Ids and integers are bounded to what a 64-bit signed column holds.
MAX_ID = 2**63 - 1
MAX_BATCH = 1000
MAX_STEPS = 50
MAX_TEMPLATE = 1600
#: An event's ``data``: its JSON at most this many bytes and this deep.
MAX_DATA_BYTES = 16_384
MAX_DATA_DEPTH = 8
#: occurs_at between these (a wait computed from it never leaves the calendar).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MAX_WAIT = timedelta(days=400)

#: The event types the issue names; any other ``namespace.name`` is the organization's own.
KNOWN_EVENT_TYPES = (
    "appointment.booked",
    "appointment.rescheduled",
    "appointment.cancelled",
    "order.created",
    "order.shipped",
    "order.delivered",
)
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,48}(\.[a-z][a-z0-9_]{0,48}){1,3}")
#: The last part of an event type that cancels (or replaces) the pending runs of its subject.
CANCELLING = frozenset({"cancelled", "canceled"})
REPLACING = frozenset({"rescheduled"})


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def event_type(value: str) -> str:
    if not EVENT_TYPE.fullmatch(value):
        raise ValueError(
            f"{value[:60]!r} is not an event type: write namespace.name in lower case, "
            "e.g. appointment.booked or loyalty.points_added"
        )
    return value


def aware_in_range(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("give a time zone, e.g. 2026-03-10T15:00:00-04:00 or ...Z")
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y} and {LATEST:%Y}")
    return value


def check_data(value: dict[str, Any]) -> dict[str, Any]:
    """An event's free data: a JSON object of bounded size and depth, no NUL, finite numbers,
    integers within 64 bits. Raises ValueError naming the path."""
    _check_json(value, "data", 0)
    import json

    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > MAX_DATA_BYTES:
        raise ValueError(f"is {size} bytes of JSON; the limit is {MAX_DATA_BYTES}")
    return value


def _check_json(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DATA_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_DATA_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or "\x00" in key or len(key) > 100:
                raise ValueError(f"{path}: keys are strings of at most 100 characters, no NUL")
            _check_json(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", depth + 1)
    elif isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{path}: must not contain NUL characters")
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not -(2**63) <= value <= MAX_ID:
            raise ValueError(f"{path}: integers must fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: numbers must be finite")
    else:
        raise ValueError(f"{path}: not a JSON value")


_DURATION = re.compile(r"(?:(\d{1,3})d)?(?:(\d{1,4})h)?(?:(\d{1,6})m)?")


def parse_duration(value: str) -> timedelta:
    """``30m``, ``24h``, ``2d``, ``1d12h``: a day is 24 hours (a wait of a duration is exact;
    "the same time on another day" is ``at`` with ``days``)."""
    match = _DURATION.fullmatch(value.strip())
    if not value.strip() or match is None:
        raise ValueError(f"{value[:40]!r} is not a duration: write e.g. 30m, 24h, 2d or 1d12h")
    days, hours, minutes = (int(g or 0) for g in match.groups())
    span = timedelta(days=days, hours=hours, minutes=minutes)
    if span > MAX_WAIT:
        raise ValueError(f"a wait is at most {MAX_WAIT.days} days")
    return span


def _duration(value: str) -> str:
    parse_duration(value)
    return value.strip()


def _clock(value: str) -> str:
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value[:20]!r} is not a time of day: write HH:MM, e.g. 09:00") from None
    if parsed.tzinfo is not None or parsed.second or parsed.microsecond:
        raise ValueError("write a local time of day as HH:MM, e.g. 09:00")
    return parsed.strftime("%H:%M")


Text = Annotated[str, AfterValidator(no_nul)]
# The patterns are for the OpenAPI schema (clients and fuzzers); the validators give the errors.
Duration = Annotated[
    str,
    Field(max_length=20, json_schema_extra={"pattern": r"^(\d{1,3}d)?(\d{1,4}h)?(\d{1,6}m)?$"}),
    AfterValidator(_duration),
]
Clock = Annotated[
    str,
    Field(max_length=8, json_schema_extra={"pattern": r"^([01]\d|2[0-3]):[0-5]\d$"}),
    AfterValidator(_clock),
]
EventType = Annotated[
    str,
    Field(
        min_length=3, max_length=100, json_schema_extra={"pattern": "^" + EVENT_TYPE.pattern + "$"}
    ),
    AfterValidator(event_type),
]
Tag = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(no_nul)]
TemplateText = Annotated[str, Field(min_length=1, max_length=MAX_TEMPLATE), AfterValidator(no_nul)]

#: What an automated message is for. The gate knows no transactional class of its own: a
#: transactional message is gated as informational (quiet hours, caps, opt-out), the stricter
#: reading; marketing never goes out automatically (see SendStep).
StepPurpose = Literal["transactional", "informational", "marketing"]
GATE_PURPOSE: dict[str, Purpose] = {
    "transactional": Purpose.INFORMATIONAL,
    "informational": Purpose.INFORMATIONAL,
    "marketing": Purpose.MARKETING,
}


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WaitStep(_Step):
    """Wait for a duration, or until a time relative to the event's ``occurs_at``: ``before``
    or ``after`` it by a duration, or ``at`` a local time of day on the day of ``occurs_at``
    (shifted by ``days``) in the recipient's time zone, else the organization's."""

    type: Literal["wait"]
    duration: Duration | None = Field(default=None, description="e.g. 30m, 24h, 2d")
    before: Duration | None = Field(default=None, description="this long before occurs_at")
    after: Duration | None = Field(default=None, description="this long after occurs_at")
    at: Clock | None = Field(default=None, description="HH:MM local time, on occurs_at's day")
    days: int = Field(default=0, ge=-366, le=366, description="with `at`: -1 is the day before")
    if_past: Literal["continue", "stop"] = Field(
        default="continue",
        description="when the time has already passed as the wait begins: go on, or end the run",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> WaitStep:
        given = [k for k in ("duration", "before", "after", "at") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of duration, before, after and at")
        if self.days and self.at is None:
            raise ValueError("days goes with at (e.g. at 09:00, days -1: the day before)")
        return self


class SendStep(_Step):
    """Send a template to the contact through the outbox and the compliance gate."""

    type: Literal["send"]
    template: TemplateText
    purpose: StepPurpose = "transactional"

    @model_validator(mode="after")
    def _not_marketing(self) -> SendStep:
        if self.purpose == "marketing":
            raise ValueError(
                "marketing is never sent automatically: use a queue_for_person step, so a "
                "person sends each message with one action (P2P)"
            )
        return self


class QueueForPersonStep(_Step):
    """Put the message in the contact's conversation as a draft a person sends with one
    action."""

    type: Literal["queue_for_person"]
    template: TemplateText
    purpose: StepPurpose = "marketing"


class TagStep(_Step):
    type: Literal["tag"]
    tags: list[Tag] = Field(min_length=1, max_length=20)


class UntagStep(_Step):
    type: Literal["untag"]
    tags: list[Tag] = Field(min_length=1, max_length=20)


class StopStep(_Step):
    type: Literal["stop"]


Step = Annotated[
    WaitStep | SendStep | QueueForPersonStep | TagStep | UntagStep | StopStep,
    Field(discriminator="type"),
]


class EventTrigger(BaseModel):
    """Start a run for every event of one of these types."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["event"] = "event"
    event_types: list[EventType] = Field(min_length=1, max_length=20)


MAX_KEYWORD = 40


def keyword_form(text: str) -> str:
    """What a keyword and an inbound message are compared as: the message as the STOP matcher
    normalizes it (NFKC, case folded, the punctuation, emoji and spaces around it dropped),
    accents folded, and only its letters and digits kept: "Hours?", " h.o.u.r.s " and
    "HOURS!!" are all HOURS."""
    folded = unicodedata.normalize("NFKD", compliance_keywords.normalize_body(text))
    return "".join(ch for ch in folded if ch.isalnum() and not unicodedata.combining(ch))


def _keyword(value: str, info: ValidationInfo) -> str:
    no_nul(value)
    if isinstance(info.context, dict) and info.context.get("stored"):
        # A stored version is read back as it was saved: were a later classifier to read one
        # of its keywords as STOP, the automation must still load (the match refuses it).
        return value
    form = keyword_form(value)
    if not form:
        raise ValueError("a keyword needs letters or digits, e.g. HOURS")
    if len(form) > MAX_KEYWORD:
        raise ValueError(f"a keyword is at most {MAX_KEYWORD} letters and digits")
    # STOP, HELP, START and every form the classifier reads as one of them (S.T.O.P, UNSUB,
    # "stop texting", ARRET...) answer first: an organization cannot take them over.
    for text in (value, form):
        verdict = compliance_keywords.classify(text)
        if verdict.intent is not compliance_keywords.Intent.NONE:
            raise ValueError(
                f"{form} is a compliance keyword ({verdict.intent.value}): STOP, HELP, START "
                "and their forms are always answered by the compliance handling; choose another"
            )
    return form


Keyword = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_keyword)]


class KeywordTrigger(BaseModel):
    """Start a run when a contact's whole message is one of these keywords (compared as
    :func:`keyword_form` says), unless it is a compliance keyword."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["keyword"]
    keywords: list[Keyword] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _distinct(self) -> KeywordTrigger:
        if len(set(self.keywords)) != len(self.keywords):
            raise ValueError("each keyword once")
        return self


class NoReplyTrigger(BaseModel):
    """Start a run when a message of this campaign or automation is queued; it waits
    ``within`` and goes on only if the contact has not replied meanwhile."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["no_reply"]
    within: Duration = Field(description="e.g. 48h or 2d")
    campaign_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    automation_id: int | None = Field(default=None, ge=1, le=MAX_ID)

    @model_validator(mode="after")
    def _one_source(self) -> NoReplyTrigger:
        if (self.campaign_id is None) == (self.automation_id is None):
            raise ValueError("give exactly one of campaign_id and automation_id")
        if parse_duration(self.within) <= timedelta(0):
            raise ValueError("within must be longer than 0")
        return self


def _trigger_kind(value: Any) -> str:
    # A trigger without a type is an event trigger (it was the only kind at first).
    kind = value.get("type", "event") if isinstance(value, dict) else getattr(value, "type", "")
    return kind if isinstance(kind, str) else ""


Trigger = Annotated[
    Annotated[EventTrigger, Case("event")]
    | Annotated[KeywordTrigger, Case("keyword")]
    | Annotated[NoReplyTrigger, Case("no_reply")],
    Discriminator(_trigger_kind),
]


Scalar = (
    Annotated[str, Field(max_length=200), AfterValidator(no_nul)]
    | bool
    | Annotated[int, Field(ge=-(2**63), le=MAX_ID)]
    | float
    | None
)


class EventCondition(BaseModel):
    """A comparison on the event's data: ``event.data.total > 100``. A value of another type
    than the one compared with, or a missing one, is false (except for ``!=``)."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(
        max_length=200,
        pattern=r"^event\.data\.[A-Za-z0-9_]{1,100}(\.[A-Za-z0-9_]{1,100}){0,7}$",
        description="event.data.<key>[.<key>...]",
    )
    op: Literal["=", "!=", ">", ">=", "<", "<=", "exists"]
    value: Scalar = None

    @model_validator(mode="after")
    def _value_fits(self) -> EventCondition:
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise ValueError("value must be a finite number")
        if self.op == "exists" and self.value is not None:
            raise ValueError("exists takes no value")
        if self.op in (">", ">=", "<", "<=") and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float | str)
        ):
            raise ValueError(f"{self.op} compares with a number or a string")
        return self


class Conditions(BaseModel):
    """Both must hold when the event arrives, or the run is recorded as skipped."""

    model_config = ConfigDict(extra="forbid")

    segment: Annotated[str, AfterValidator(no_nul)] | None = Field(
        default=None,
        max_length=4000,
        description="the segment language over the contact, e.g. tag:vip AND NOT opted_out",
    )
    event: list[EventCondition] = Field(default_factory=list, max_length=20)


class Definition(BaseModel):
    """An automation as written: what starts it, when it applies, what it does."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=200)
    trigger: Trigger
    conditions: Conditions = Field(default_factory=Conditions)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _named(self) -> Definition:
        if not self.name.strip():
            raise ValueError("name must not be blank")
        if self.trigger.type != "event" and self.conditions.event:
            raise ValueError(
                f"conditions.event: a {self.trigger.type} trigger has no event to compare"
            )
        return self
