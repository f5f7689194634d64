"""Tests for textdesk.domain.phone.

Every number used here is checked against the installed libphonenumber metadata by the
tests themselves; US/CA numbers use the fictional 555-01xx block, GB numbers Ofcom's drama
ranges and AU mobiles ACMA's fictional 0491 570 range wherever the metadata accepts them.
"""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from textdesk.domain.phone import (
    NumberType,
    PhoneError,
    PhoneNumber,
    area_code_time_zones,
    is_sms_capable_type,
    normalize,
    parse_phone,
    try_normalize,
)

# --- accepted inputs -------------------------------------------------------------------------

# (raw, default_region, expected e164)
PARSES = [
    # US: every way people write the same number
    ("(201) 555-0123", "US", "+12015550123"),
    ("201.555.0123", "US", "+12015550123"),
    ("201-555-0123", "US", "+12015550123"),
    ("2015550123", "US", "+12015550123"),
    ("+1 201 555 0123", "US", "+12015550123"),
    ("+1 201 555 0123", None, "+12015550123"),
    ("1-201-555-0123", "US", "+12015550123"),
    ("1 (201) 555-0123", "US", "+12015550123"),
    ("tel:+12015550123", "US", "+12015550123"),
    ("tel:+1-201-555-0123;ext=55", None, "+12015550123"),
    ("Phone: 201-555-0123", "US", "+12015550123"),
    ("+1 415 555 2671", "US", "+14155552671"),
    ("(415) 555-2671", "us", "+14155552671"),  # region is case-insensitive
    # extensions are dropped: SMS cannot reach an extension, the main number is still good
    ("201-555-0123 x123", "US", "+12015550123"),
    ("201-555-0123 ext. 45", "US", "+12015550123"),
    ("201-555-0123 #45", "US", "+12015550123"),
    # vanity letters
    ("1-800-FLOWERS", "US", "+18003569377"),
    ("1 800 flowers", "US", "+18003569377"),
    # Unicode: full-width digits and letters, Arabic-Indic digits, NBSP, invisible chars
    ("２０１５５５０１２３", "US", "+12015550123"),
    ("＋１ ２０１ ５５５ ０１２３", None, "+12015550123"),
    ("１-８００-ＦＬＯＷＥＲＳ", "US", "+18003569377"),
    ("٢٠١٥٥٥٠١٢٣", "US", "+12015550123"),
    ("201\u00a0555\u00a00123", "US", "+12015550123"),
    ("  \t201-555-0123\n ", "US", "+12015550123"),
    ("\ufeff\u200b201\u200b555\u200d0123\u200e", "US", "+12015550123"),
    ("201\u202a555 0123\u202c", "US", "+12015550123"),  # bidi embedding breaks the library
    # international dialling prefixes, read according to the default region
    ("011 44 20 7946 0958", "US", "+442079460958"),
    ("00 44 20 7946 0958", "GB", "+442079460958"),
    ("00 44 20 7946 0958", "DE", "+442079460958"),
    ("00 44 20 7946 0958", "FR", "+442079460958"),
    # the default region does not matter once there is a +country code
    ("+44 20 7946 0958", "US", "+442079460958"),
    ("+44 (0)20 7946 0958", "US", "+442079460958"),
    # CA
    ("(613) 555-0123", "CA", "+16135550123"),
    ("+1 604 555 0123", None, "+16045550123"),
    # GB
    ("020 7946 0958", "GB", "+442079460958"),
    ("07400 123456", "GB", "+447400123456"),
    ("0800 123 4567", "GB", "+448001234567"),
    # DE
    ("030 901820", "DE", "+4930901820"),
    ("(0)30 901820", "DE", "+4930901820"),
    ("01512 3456789", "DE", "+4915123456789"),
    # FR
    ("01 23 45 67 89", "FR", "+33123456789"),
    ("06 12 34 56 78", "FR", "+33612345678"),
    # MX, including the pre-2019 "+52 1" mobile form
    ("55 1234 5678", "MX", "+525512345678"),
    ("+52 55 1234 5678", None, "+525512345678"),
    ("+52 1 55 1234 5678", None, "+525512345678"),
    # BR
    ("(11) 91234-5678", "BR", "+5511912345678"),
    ("+55 11 3123-4567", None, "+551131234567"),
    # IN
    ("98765 43210", "IN", "+919876543210"),
    ("+91 80 2345 6789", None, "+918023456789"),
    # AU
    ("0491 570 156", "AU", "+61491570156"),
    ("(02) 9876 5432", "AU", "+61298765432"),
    # non-geographic calling code (international freephone)
    ("+800 1234 5678", None, "+80012345678"),
]


@pytest.mark.parametrize(("raw", "region", "e164"), PARSES)
def test_parses_human_written_forms(raw: str, region: str | None, e164: str) -> None:
    assert normalize(raw, region) == e164
    assert parse_phone(raw, region).e164 == e164
    assert try_normalize(raw, region) == e164


# (e164, region, country_code, national_number, type, national format, international format)
DETAILS = [
    (
        "+12015550123",
        "US",
        1,
        "2015550123",
        NumberType.FIXED_LINE_OR_MOBILE,
        "(201) 555-0123",
        "+1 201-555-0123",
    ),
    (
        "+16135550123",
        "CA",
        1,
        "6135550123",
        NumberType.FIXED_LINE_OR_MOBILE,
        "(613) 555-0123",
        "+1 613-555-0123",
    ),
    (
        "+18005550123",
        "US",
        1,
        "8005550123",
        NumberType.TOLL_FREE,
        "(800) 555-0123",
        "+1 800-555-0123",
    ),
    (
        "+19005550123",
        "US",
        1,
        "9005550123",
        NumberType.PREMIUM_RATE,
        "(900) 555-0123",
        "+1 900-555-0123",
    ),
    (
        "+442079460958",
        "GB",
        44,
        "2079460958",
        NumberType.FIXED_LINE,
        "020 7946 0958",
        "+44 20 7946 0958",
    ),
    (
        "+447400123456",
        "GB",
        44,
        "7400123456",
        NumberType.MOBILE,
        "07400 123456",
        "+44 7400 123456",
    ),
    (
        "+447012345678",
        "GB",
        44,
        "7012345678",
        NumberType.PERSONAL_NUMBER,
        "070 1234 5678",
        "+44 70 1234 5678",
    ),
    (
        "+4915123456789",
        "DE",
        49,
        "15123456789",
        NumberType.MOBILE,
        "01512 3456789",
        "+49 1512 3456789",
    ),
    (
        "+33912345678",
        "FR",
        33,
        "912345678",
        NumberType.VOIP,
        "09 12 34 56 78",
        "+33 9 12 34 56 78",
    ),
    (
        "+525512345678",
        "MX",
        52,
        "5512345678",
        NumberType.FIXED_LINE_OR_MOBILE,
        "55 1234 5678",
        "+52 55 1234 5678",
    ),
    (
        "+5511912345678",
        "BR",
        55,
        "11912345678",
        NumberType.MOBILE,
        "(11) 91234-5678",
        "+55 11 91234-5678",
    ),
    (
        "+919876543210",
        "IN",
        91,
        "9876543210",
        NumberType.MOBILE,
        "098765 43210",
        "+91 98765 43210",
    ),
    (
        "+61491570156",
        "AU",
        61,
        "491570156",
        NumberType.MOBILE,
        "0491 570 156",
        "+61 491 570 156",
    ),
    (
        "+80012345678",
        None,  # "001" in libphonenumber is not an ISO country
        800,
        "12345678",
        NumberType.TOLL_FREE,
        "1234 5678",
        "+800 1234 5678",
    ),
]


@pytest.mark.parametrize(
    ("e164", "region", "cc", "nsn", "kind", "national", "international"), DETAILS
)
def test_number_details_and_formats(
    e164: str,
    region: str | None,
    cc: int,
    nsn: str,
    kind: NumberType,
    national: str,
    international: str,
) -> None:
    p = parse_phone(e164, None)
    assert p.e164 == e164
    assert p.region == region
    assert p.country_code == cc
    assert p.national_number == nsn
    assert p.number_type is kind
    assert p.national_format() == national
    assert p.international_format() == international


def test_phone_number_is_a_hashable_value() -> None:
    a = parse_phone("(201) 555-0123")
    b = parse_phone("+1 201 555 0123", None)
    assert a == b
    assert len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.e164 = "+12015550124"  # type: ignore[misc]


# --- rejected inputs -------------------------------------------------------------------------

# (raw, default_region, reason)
ERRORS = [
    ("", "US", "empty"),
    ("   ", "US", "empty"),
    ("\u200b\ufeff \u00a0", "US", "empty"),
    ("abc", "US", "not_a_number"),
    ("n/a", "US", "not_a_number"),
    ("+", "US", "not_a_number"),
    ("1", "US", "not_a_number"),
    ("555-12", "US", "too_short"),
    ("555-0123", "US", "too_short"),  # possible only as a local number: no area code
    ("+1 201 555 012", None, "too_short"),
    ("+44 20 79", None, "too_short"),
    ("0044", "GB", "too_short"),  # nothing after the international prefix
    ("x123", "US", "too_short"),  # an extension on its own
    ("+1 201 555 01234", "US", "too_long"),
    ("+52 1 00 1234 5678", None, "too_long"),
    ("1" * 300, "US", "too_long"),
    ("+999 1234567", "US", "invalid_country_code"),
    ("+999 1234567", None, "invalid_country_code"),
    ("+1 123 456 7890", "US", "invalid_number"),  # NANP area codes never start with 1
    ("+1 201 055 0123", "US", "invalid_number"),  # …nor do exchanges
    ("07700 900123", "GB", "invalid_number"),  # drama range, but not in the metadata
    ("201 555 0123", None, "no_region"),
    ("00 44 20 7946 0958", None, "no_region"),
    ("1-800-FLOWERS", None, "no_region"),
]


@pytest.mark.parametrize(("raw", "region", "reason"), ERRORS)
def test_error_reasons(raw: str, region: str | None, reason: str) -> None:
    with pytest.raises(PhoneError) as info:
        parse_phone(raw, region)
    assert info.value.reason == reason
    assert info.value.input == raw
    assert isinstance(info.value, ValueError)
    assert try_normalize(raw, region) is None
    with pytest.raises(PhoneError):
        normalize(raw, region)


@pytest.mark.parametrize(
    ("raw", "region", "message"),
    [
        ("555-12", "US", "'555-12' is too short to be a phone number in US"),
        (
            "555-0123",
            "US",
            "'555-0123' is too short to be a phone number in US (is the area code missing?)",
        ),
        ("+44 20 79", None, "'+44 20 79' is too short to be a phone number in GB"),
        ("+1 201 555 01234", "CA", "'+1 201 555 01234' is too long to be a phone number in CA"),
        ("+1 123 456 7890", "US", "'+1 123 456 7890' is not a valid phone number in US"),
        ("+1 123 456 7890", "GB", "'+1 123 456 7890' is not a valid phone number in US"),
        ("abc", "US", "'abc' does not look like a phone number"),
        ("", "US", "phone number is empty"),
        ("+999 1234567", "US", "'+999 1234567' does not start with a known country calling code"),
        (
            "201 555 0123",
            None,
            "'201 555 0123' has no country code; write it as +<country code><number>",
        ),
    ],
)
def test_error_messages_are_sentences(raw: str, region: str | None, message: str) -> None:
    with pytest.raises(PhoneError) as info:
        parse_phone(raw, region)
    assert str(info.value) == message


def test_error_message_truncates_long_input_but_keeps_it_on_the_error() -> None:
    raw = "1" * 300
    with pytest.raises(PhoneError) as info:
        parse_phone(raw)
    assert len(str(info.value)) < 100
    assert info.value.input == raw
    assert "input=" in repr(info.value)


@pytest.mark.parametrize("region", ["XX", "ZZ", "001", "USA", ""])
def test_unknown_default_region_is_a_programming_error(region: str) -> None:
    with pytest.raises(ValueError, match="unknown default region") as info:
        parse_phone("201 555 0123", region)
    assert not isinstance(info.value, PhoneError)
    with pytest.raises(ValueError, match="unknown default region"):
        try_normalize("201 555 0123", region)


# --- time zones ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("e164", "zones"),
    [
        ("+12125550123", ("America/New_York",)),
        ("+12015550123", ("America/New_York",)),
        ("+14155552671", ("America/Los_Angeles",)),
        ("+13065550123", ("America/Regina",)),  # Saskatchewan: no DST, its own zone
        ("+19075550123", ("America/Adak", "America/Anchorage")),  # Alaska incl. Aleutians
        ("+17755550123", ("America/Boise", "America/Los_Angeles")),  # Nevada
        ("+442079460958", ("Europe/London",)),
        ("+4930901820", ("Europe/Berlin",)),
        ("+525512345678", ("America/Mexico_City",)),
    ],
)
def test_time_zones(e164: str, zones: tuple[str, ...]) -> None:
    assert parse_phone(e164, None).time_zones == zones
    assert area_code_time_zones(e164) == zones


def test_multi_zone_mobile_ranges() -> None:
    au = parse_phone("0491 570 156", "AU").time_zones
    assert {"Australia/Sydney", "Australia/Perth"} <= set(au)
    toll_free = parse_phone("+18005550123", None).time_zones
    assert {"America/New_York", "America/Los_Angeles", "Pacific/Honolulu"} <= set(toll_free)


def test_unknown_zone_placeholder_is_dropped() -> None:
    assert parse_phone("+80012345678", None).time_zones == ()
    assert area_code_time_zones("+80012345678") == ()


@pytest.mark.parametrize("raw", ["", "garbage", "2125550123", "+999 1234567", "+"])
def test_area_code_time_zones_is_lenient(raw: str) -> None:
    assert area_code_time_zones(raw) == ()


def test_area_code_time_zones_uses_the_area_code_even_for_unassigned_numbers() -> None:
    # 212-099-… is not a valid exchange, but the area code still pins the zone.
    assert try_normalize("+12120990123") is None
    assert area_code_time_zones("+12120990123") == ("America/New_York",)


# --- SMS capability --------------------------------------------------------------------------

SMS_CAPABLE = {
    NumberType.MOBILE: True,
    NumberType.FIXED_LINE_OR_MOBILE: True,
    NumberType.VOIP: True,
    NumberType.TOLL_FREE: True,
    NumberType.UNKNOWN: True,
    NumberType.FIXED_LINE: False,
    NumberType.PREMIUM_RATE: False,
    NumberType.SHARED_COST: False,
    NumberType.PERSONAL_NUMBER: False,
    NumberType.PAGER: False,
    NumberType.UAN: False,
    NumberType.VOICEMAIL: False,
}


def test_sms_capability_table_covers_every_type() -> None:
    assert set(SMS_CAPABLE) == set(NumberType)


@pytest.mark.parametrize(("kind", "capable"), SMS_CAPABLE.items())
def test_is_sms_capable_type(kind: NumberType, capable: bool) -> None:
    assert is_sms_capable_type(kind) is capable


def test_number_type_values_are_stable_strings() -> None:
    # Stored in the database and sent to the UI, so the values are part of the contract.
    assert NumberType("fixed_line_or_mobile") is NumberType.FIXED_LINE_OR_MOBILE
    assert str(NumberType.MOBILE) == "mobile"


# --- properties ------------------------------------------------------------------------------


def _example_numbers() -> list[tuple[str, str]]:
    """(region, e164) of libphonenumber's own example numbers: valid by construction."""
    out: list[tuple[str, str]] = []
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    for region in regions:
        for kind in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.TOLL_FREE,
            phonenumbers.PhoneNumberType.VOIP,
        ):
            num = phonenumbers.example_number_for_type(region, kind)
            if num is not None:
                out.append((region, phonenumbers.format_number(num, 0)))
    return out


EXAMPLES = _example_numbers()
FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
]


@st.composite
def valid_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A valid number near an example number: the tail digits are randomised."""
    region, e164 = draw(st.sampled_from(EXAMPLES))
    keep = len(e164) - draw(st.integers(min_value=1, max_value=4))
    tail = draw(
        st.text(alphabet="0123456789", min_size=len(e164) - keep, max_size=len(e164) - keep)
    )
    candidate = e164[:keep] + tail
    num = phonenumbers.parse(candidate, None)
    assume(phonenumbers.is_valid_number(num))
    return region, candidate


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(valid_numbers(), st.sampled_from(FORMATS))
def test_valid_numbers_round_trip_through_any_format(number: tuple[str, str], fmt: int) -> None:
    region, e164 = number
    written = phonenumbers.format_number(phonenumbers.parse(e164, None), fmt)
    p = parse_phone(written, region)
    assert p.e164 == e164
    assert parse_phone(p.e164, None) == p
    assert parse_phone(p.international_format(), None) == p
    assert parse_phone(p.national_format(), region) == p
    assert normalize(p.e164, None) == p.e164
    assert normalize(normalize(written, region), None) == normalize(written, region)
    assert all(z != "Etc/Unknown" for z in p.time_zones)


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.one_of(
            st.sampled_from(list("0123456789+()-. xX#tel:;ext=ABCWXYZ\u200b\u00a0０１＋")),
            st.characters(),
        ),
        max_size=40,
    ),
    st.sampled_from(["US", "GB", "DE", "IN", None]),
)
def test_arbitrary_text_either_parses_or_raises_phone_error(raw: str, region: str | None) -> None:
    try:
        p = parse_phone(raw, region)
    except PhoneError as exc:
        assert exc.input == raw
        assert try_normalize(raw, region) is None
    else:
        assert p.e164.startswith("+")
        assert p.e164[1:].isdigit()
        assert normalize(p.e164, None) == p.e164
        assert parse_phone(p.e164, None) == p
    assert isinstance(area_code_time_zones(raw), tuple)


def test_public_value_has_plain_types() -> None:
    p = parse_phone("(201) 555-0123")
    assert isinstance(p, PhoneNumber)
    assert type(p.e164) is str
    assert type(p.country_code) is int
    assert type(p.national_number) is str
    assert all(type(z) is str for z in p.time_zones)
