"""``sender_e164``: how an inbound message's sender address becomes a contact's number."""

from __future__ import annotations

import pytest

from textdesk.domain.phone import PhoneError, sender_e164


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+12015550999", "US", "+12015550999"),
        (" +12015550999\n", "US", "+12015550999"),
        ("12015550999", "US", "+12015550999"),  # SMPP, TON unknown
        ("2015550999", "US", "+12015550999"),  # SMPP, national
        ("+15557654321", "US", "+15557654321"),  # possible, though no area code 555 exists
        ("+447700900123", "US", "+447700900123"),
        ("07700900123", "GB", "+447700900123"),
    ],
)
def test_phone_senders(raw: str, region: str, e164: str) -> None:
    assert sender_e164(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("ACME", "not_a_number"),
        ("<script>", "not_a_number"),
        ("+1 (555) abc", "not_a_number"),
        ("+1 201 555 0999", "not_a_number"),
        ("1-800-FLOWERS", "not_a_number"),  # a vanity spelling normalize() would accept
        ("١٢٠١٥٥٥٠٩٩٩", "not_a_number"),
        ("＋１２０１５５５０９９９", "not_a_number"),
        ("+12015550999\x00", "not_a_number"),
        ("12345", "too_short"),
        ("5550999", "too_short"),  # local only
        ("+99912345678", "invalid_country_code"),
        ("+1201555099912", "too_long"),
        ("9" * 19, "not_a_number"),
    ],
)
def test_other_senders_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(PhoneError) as caught:
        sender_e164(raw, "US")
    assert caught.value.reason == reason
