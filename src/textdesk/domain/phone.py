"""Phone number parsing and normalisation.

Everything that stores, dedupes or sends to a phone number goes through :func:`normalize`,
so a contact typed as "(201) 555-0123" in a CSV and "+1 201 555 0123" in the inbox is the
same row. The heavy lifting is Google's libphonenumber metadata (the ``phonenumbers``
package); this module adds:

* input cleaning the library does not do on its own (invisible Unicode format characters,
  full-width vanity letters),
* one exception type, :class:`PhoneError`, with a stable machine ``reason`` and a sentence a
  campaign manager can act on,
* a small immutable :class:`PhoneNumber` value with no ``phonenumbers`` types leaking out.

Decisions worth knowing:

* **Extensions are ignored.** "201-555-0123 x123" parses to +12015550123. An SMS cannot be
  delivered to an extension, and rejecting the row would lose a perfectly textable number.
* **Validity is strict.** A number must be *valid* per libphonenumber's metadata (right
  length *and* an assigned-looking prefix), not merely *possible*. Sending to numbers that
  cannot exist wastes segments and hurts carrier reputation.
* **Legacy Mexican mobiles** written "+52 1 55 …" (the pre-2019 form, which current
  metadata rejects as too long) are accepted and normalised without the "1".
* **An unknown ``default_region`` is a programming/configuration error**, so it raises a
  plain :class:`ValueError`, not :class:`PhoneError`; ``try_normalize`` does not swallow it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType, ValidationResult
from phonenumbers import timezone as pn_timezone

__all__ = [
    "NumberType",
    "PhoneError",
    "PhoneErrorReason",
    "PhoneNumber",
    "area_code_time_zones",
    "is_sms_capable_type",
    "normalize",
    "parse_phone",
    "sender_e164",
    "try_normalize",
]

PhoneErrorReason = Literal[
    "empty",
    "not_a_number",
    "too_short",
    "too_long",
    "invalid_country_code",
    "invalid_number",
    "no_region",
]

# libphonenumber reports this placeholder rather than an empty result; callers should never
# have to know about it.
_UNKNOWN_TZ = pn_timezone.UNKNOWN_TIMEZONE

# region_code_for_number() returns "001" for non-geographic calling codes such as +800
# (international freephone); that is not an ISO country, so we expose it as None.
_NON_GEO_REGION = "001"

# Long inputs (a whole pasted paragraph) would make error messages unreadable.
_MAX_ECHO = 40

# How providers and SMSCs write a phone number: digits, "+" for an international one. E.164
# allows 15 digits; a few more leave room for an international prefix (00, 011).
_SENDER = re.compile(r"\+?[0-9]{1,18}")


class PhoneError(ValueError):
    """A string that cannot be used as a phone number.

    ``reason`` is stable and meant for code (metrics, import reports, i18n lookups);
    ``str(error)`` is an English sentence meant for people.
    """

    reason: PhoneErrorReason
    input: str

    def __init__(self, reason: PhoneErrorReason, raw: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.input = raw

    def __repr__(self) -> str:
        return f"PhoneError(reason={self.reason!r}, input={self.input!r})"


class NumberType(StrEnum):
    """What kind of line a number is, per libphonenumber's numbering-plan metadata."""

    MOBILE = "mobile"
    FIXED_LINE = "fixed_line"
    # Used where the numbering plan does not distinguish landlines from mobiles (US, CA…).
    FIXED_LINE_OR_MOBILE = "fixed_line_or_mobile"
    TOLL_FREE = "toll_free"
    PREMIUM_RATE = "premium_rate"
    SHARED_COST = "shared_cost"
    VOIP = "voip"
    PERSONAL_NUMBER = "personal_number"
    PAGER = "pager"
    UAN = "uan"
    VOICEMAIL = "voicemail"
    UNKNOWN = "unknown"


_TYPE_MAP: dict[int, NumberType] = {
    PhoneNumberType.MOBILE: NumberType.MOBILE,
    PhoneNumberType.FIXED_LINE: NumberType.FIXED_LINE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE: NumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE: NumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE: NumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST: NumberType.SHARED_COST,
    PhoneNumberType.VOIP: NumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER: NumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER: NumberType.PAGER,
    PhoneNumberType.UAN: NumberType.UAN,
    PhoneNumberType.VOICEMAIL: NumberType.VOICEMAIL,
    PhoneNumberType.UNKNOWN: NumberType.UNKNOWN,
}

# Types we let through to a send. Landlines are "probably not" textable (some US landlines
# are text-enabled, but most carriers drop or voice-call the message), so FIXED_LINE is out.
# FIXED_LINE_OR_MOBILE must be in: every US/CA number is reported that way. UNKNOWN is in
# because metadata lags real allocations and blocking on our ignorance loses real contacts.
# Toll-free and VoIP numbers are routinely SMS-enabled in North America. Premium-rate,
# shared-cost, UAN, personal (call-forwarding), pager and voicemail numbers are not
# subscriber handsets, and texting premium-rate ranges can even cost the sender.
_SMS_CAPABLE: frozenset[NumberType] = frozenset(
    {
        NumberType.MOBILE,
        NumberType.FIXED_LINE_OR_MOBILE,
        NumberType.VOIP,
        NumberType.TOLL_FREE,
        NumberType.UNKNOWN,
    }
)


@dataclass(frozen=True)
class PhoneNumber:
    """A valid phone number. Equality is by all fields; ``e164`` alone identifies it."""

    e164: str
    region: str | None
    country_code: int
    national_number: str
    number_type: NumberType
    time_zones: tuple[str, ...]

    def national_format(self) -> str:
        """How someone in the number's own country would write it, e.g. "(201) 555-0123"."""
        return phonenumbers.format_number(_reparse(self.e164), PhoneNumberFormat.NATIONAL)

    def international_format(self) -> str:
        """Readable form with country code, e.g. "+1 201-555-0123"."""
        return phonenumbers.format_number(_reparse(self.e164), PhoneNumberFormat.INTERNATIONAL)


def parse_phone(raw: str, default_region: str | None = "US") -> PhoneNumber:
    """Parse any human-written phone number into a validated :class:`PhoneNumber`.

    ``default_region`` (ISO 3166 alpha-2, any case) says how to read numbers written without
    a "+country code" prefix, including the international dialling prefix ("00 44 …" with a
    European default, "011 44 …" with "US"). With ``None`` only "+"-prefixed numbers parse.

    Raises :class:`PhoneError` for anything not usable as a phone number, and
    :class:`ValueError` if ``default_region`` is not a region libphonenumber knows.
    """
    region = _check_region(default_region)
    text = _clean(raw)
    if not text:
        raise PhoneError("empty", raw, "phone number is empty")

    try:
        num = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise _from_parse_exception(exc, raw, text, region) from None

    num = _drop_legacy_mexican_mobile_prefix(num)
    # parse() always sets it; the stub just models the unset protobuf-style field.
    cc = num.country_code or 0
    # Checked before validity because "too short" tells the user what to fix, whereas
    # "not valid" does not.
    possible = phonenumbers.is_possible_number_with_reason(num)
    if possible == ValidationResult.INVALID_COUNTRY_CODE:
        raise PhoneError(
            "invalid_country_code",
            raw,
            f"{_echo(raw)} does not start with a known country calling code",
        )
    if possible in (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        message = f"{_echo(raw)} is too short to be a phone number{_place(cc, region)}"
        # "Local only" is typically a US number typed without its area code (diallable from
        # a desk phone in the same area, never by an SMS gateway). Once the writer gave a
        # "+country code" the hint would be noise.
        if possible == ValidationResult.IS_POSSIBLE_LOCAL_ONLY and "+" not in text:
            message += " (is the area code missing?)"
        raise PhoneError("too_short", raw, message)
    if possible == ValidationResult.TOO_LONG:
        raise PhoneError(
            "too_long", raw, f"{_echo(raw)} is too long to be a phone number{_place(cc, region)}"
        )
    if possible == ValidationResult.INVALID_LENGTH or not phonenumbers.is_valid_number(num):
        raise PhoneError(
            "invalid_number",
            raw,
            f"{_echo(raw)} is not a valid phone number{_place(cc, region)}",
        )
    return _to_value(num)


def normalize(raw: str, default_region: str | None = "US") -> str:
    """Return the E.164 form ("+12015550123") of ``raw``; raises :class:`PhoneError`."""
    return parse_phone(raw, default_region).e164


def try_normalize(raw: str, default_region: str | None = "US") -> str | None:
    """Like :func:`normalize` but returns ``None`` for unusable input (for bulk imports)."""
    try:
        return normalize(raw, default_region)
    except PhoneError:
        return None


def sender_e164(raw: str, default_region: str | None = "US") -> str:
    """The E.164 form of the sender of an inbound message, as a provider or SMSC reports it.

    Stricter than :func:`normalize` about the form: a provider writes a sender as ASCII digits
    with an optional "+", so anything else (a name, markup, spaces, letters: "ACME",
    "+1 (555) abc") is refused rather than read the way a person's typing would be. More
    lenient about validity: a number of a possible length whose prefix the metadata does not
    know yet is someone who did write to us, and refusing it could lose a STOP. Short codes
    and other too-short addresses are refused. Raises :class:`PhoneError`.
    """
    region = _check_region(default_region)
    text = raw.strip()
    if not text:
        raise PhoneError("empty", raw, "the sender is empty")
    if not _SENDER.fullmatch(text):
        raise PhoneError(
            "not_a_number", raw, f"the sender {_echo(raw)} is not a phone number (+ and digits)"
        )
    try:
        num = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise _from_parse_exception(exc, raw, text, region) from None
    possible = phonenumbers.is_possible_number_with_reason(num)
    if possible == ValidationResult.INVALID_COUNTRY_CODE:
        raise PhoneError(
            "invalid_country_code",
            raw,
            f"{_echo(raw)} does not start with a known country calling code",
        )
    if possible == ValidationResult.TOO_LONG:
        raise PhoneError("too_long", raw, f"{_echo(raw)} is too long to be a phone number")
    if possible != ValidationResult.IS_POSSIBLE:  # too short, local only, invalid length
        raise PhoneError("too_short", raw, f"{_echo(raw)} is not a full phone number")
    return phonenumbers.format_number(num, PhoneNumberFormat.E164)


def area_code_time_zones(e164: str) -> tuple[str, ...]:
    """IANA time-zone candidates for a stored E.164 number (for quiet-hours checks).

    Deliberately lenient: never raises, and returns ``()`` when the zone is unknown or the
    input is not an international number, since callers need a fallback zone for the
    unknown case anyway. Numbers that fail strict validation still get a prefix (area code)
    lookup, because metadata lags newly opened exchanges and the area code alone is what
    decides the zone.
    """
    try:
        num = phonenumbers.parse(_clean(e164), None)
    except NumberParseException:
        return ()
    if phonenumbers.is_valid_number(num):
        # Handles non-geographic types (toll-free, mobile in some plans) at country level.
        zones = pn_timezone.time_zones_for_number(num)
    else:
        zones = pn_timezone.time_zones_for_geographical_number(num)
    return _known_zones(zones)


def is_sms_capable_type(t: NumberType) -> bool:
    """Whether a number of this type is worth sending SMS to.

    A heuristic, erring towards True where the metadata cannot tell (see ``_SMS_CAPABLE``
    for the per-type reasoning): FIXED_LINE and the service-number types are False;
    MOBILE, FIXED_LINE_OR_MOBILE, VOIP, TOLL_FREE and UNKNOWN are True.
    """
    return t in _SMS_CAPABLE


# --- internals -----------------------------------------------------------------------------


def _check_region(default_region: str | None) -> str | None:
    if default_region is None:
        return None
    region = default_region.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown default region {default_region!r}")
    return region


def _clean(raw: str) -> str:
    # NFKC folds full-width digits, letters and "＋" to ASCII; libphonenumber copes with
    # full-width digits itself but not with full-width vanity letters ("１-８００-ＦＬＯＷＥＲＳ").
    text = unicodedata.normalize("NFKC", raw)
    # Format characters (zero-width spaces, BOMs, bidi marks from copy-pasting out of chat
    # apps and RTL text) carry no digits, but some of them make the library give up.
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return text.strip()


def _from_parse_exception(
    exc: NumberParseException, raw: str, text: str, region: str | None
) -> PhoneError:
    kind = exc.error_type
    if kind == NumberParseException.INVALID_COUNTRY_CODE:
        # The library raises the same code for "+999…" and for "no + and no default
        # region"; the presence of a plus sign is what tells them apart.
        if region is None and "+" not in text:
            return PhoneError(
                "no_region",
                raw,
                f"{_echo(raw)} has no country code; write it as +<country code><number>",
            )
        return PhoneError(
            "invalid_country_code",
            raw,
            f"{_echo(raw)} does not start with a known country calling code",
        )
    if kind in (NumberParseException.TOO_SHORT_AFTER_IDD, NumberParseException.TOO_SHORT_NSN):
        return PhoneError(
            "too_short", raw, f"{_echo(raw)} is too short to be a phone number{_place(0, region)}"
        )
    if kind == NumberParseException.TOO_LONG:
        return PhoneError(
            "too_long", raw, f"{_echo(raw)} is too long to be a phone number{_place(0, region)}"
        )
    return PhoneError("not_a_number", raw, f"{_echo(raw)} does not look like a phone number")


def _place(country_code: int, default_region: str | None) -> str:
    """Where we tried to interpret the number: ' in US', ' for country code +800' or ''."""
    if country_code == 0:
        return f" in {default_region}" if default_region else ""
    # Prefer the caller's region when it shares the calling code (a CA org sees "in CA" for
    # a bad +1 number, not "in US", which is merely +1's main region).
    if default_region and phonenumbers.country_code_for_region(default_region) == country_code:
        return f" in {default_region}"
    main = phonenumbers.region_code_for_country_code(country_code)
    if main in phonenumbers.SUPPORTED_REGIONS:
        return f" in {main}"
    return f" for country code +{country_code}"


def _echo(raw: str) -> str:
    shown = raw if len(raw) <= _MAX_ECHO else raw[: _MAX_ECHO - 1] + "…"
    return repr(shown)


def _known_zones(zones: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(z for z in zones if z != _UNKNOWN_TZ)


def _to_value(num: phonenumbers.PhoneNumber) -> PhoneNumber:
    region = phonenumbers.region_code_for_number(num)
    return PhoneNumber(
        e164=phonenumbers.format_number(num, PhoneNumberFormat.E164),
        region=None if region in (None, _NON_GEO_REGION) else region,
        country_code=num.country_code or 0,
        # national_significant_number keeps Italian-style leading zeros that the integer
        # national_number field drops.
        national_number=phonenumbers.national_significant_number(num),
        number_type=_TYPE_MAP.get(phonenumbers.number_type(num), NumberType.UNKNOWN),
        time_zones=_known_zones(pn_timezone.time_zones_for_number(num)),
    )


def _drop_legacy_mexican_mobile_prefix(num: phonenumbers.PhoneNumber) -> phonenumbers.PhoneNumber:
    # Until 2019 Mexican mobiles were dialled from abroad as +52 1 <10 digits>; contact
    # lists still hold that form but current metadata calls it too long. The extra "1" has
    # no other meaning, so removing it recovers exactly the number the writer intended.
    nsn = phonenumbers.national_significant_number(num)
    if num.country_code != 52 or len(nsn) != 11 or not nsn.startswith("1"):
        return num
    candidate = phonenumbers.PhoneNumber(country_code=52, national_number=int(nsn[1:]))
    return candidate if phonenumbers.is_valid_number(candidate) else num


def _reparse(e164: str) -> phonenumbers.PhoneNumber:
    # Re-parsing keeps PhoneNumber a plain value (constructible from database columns)
    # instead of carrying a mutable library object around.
    return phonenumbers.parse(e164, None)
