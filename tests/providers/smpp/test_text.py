"""GSM 03.38 / UCS-2 coding and the parts we submit (no peer needed)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textdesk.domain.encoding import GSM7_BASIC, GSM7_EXTENSION, analyze
from textdesk.providers.smpp import codes, text


def test_gsm_table_covers_exactly_the_domain_alphabet() -> None:
    for ch in GSM7_BASIC:
        assert len(text.gsm_encode(ch)) == 1, ch
    for ch in GSM7_EXTENSION:
        assert text.gsm_encode(ch)[0] == 0x1B and len(text.gsm_encode(ch)) == 2, ch
    decoded = {text.gsm_decode(bytes([s])) for s in range(128) if s != 0x1B}
    assert decoded == set(GSM7_BASIC)


@pytest.mark.parametrize(
    ("chars", "octets"),
    [
        ("@£$", "000102"),
        ("Ç§¿à", "095f607f"),
        ("€[]{}", "1b651b3c1b3e1b281b29"),
        ("A\nb", "410a62"),
    ],
)
def test_gsm_encoding_is_unpacked_septets(chars: str, octets: str) -> None:
    assert text.gsm_encode(chars).hex() == octets
    assert text.gsm_decode(bytes.fromhex(octets)) == chars


def test_gsm_encode_refuses_other_characters() -> None:
    with pytest.raises(ValueError, match="not in the GSM"):
        text.gsm_encode("ç")  # lowercase c-cedilla is not in the default alphabet


@pytest.mark.parametrize(
    ("data", "coding", "expected"),
    [
        (b"Hi \x1b\x65", codes.DC_DEFAULT, "Hi €"),
        ("Grüße".encode("latin-1"), codes.DC_LATIN1, "Grüße"),
        ("Grüße".encode("latin-1"), codes.DC_DEFAULT, "Grüße"),  # high bit set: not GSM
        ("Привет 👋".encode("utf-16-be"), codes.DC_UCS2, "Привет 👋"),
        (b"plain", codes.DC_IA5, "plain"),
        (b"\x48\x69", 0xF0, "Hi"),  # message class 0, GSM alphabet
    ],
)
def test_decode_by_data_coding(data: bytes, coding: int, expected: str) -> None:
    assert text.decode(data, coding) == expected


def test_single_part_has_no_udh() -> None:
    (part,) = text.build_parts("Hello {world}", reference=9)
    assert part == text.Part(codes.DC_DEFAULT, 0, text.gsm_encode("Hello {world}"))
    (part,) = text.build_parts("Hi 👋", reference=9)
    assert part == text.Part(codes.DC_UCS2, 0, "Hi 👋".encode("utf-16-be"))


def test_long_gsm_keeps_escape_pairs_whole() -> None:
    body = "a" * 152 + "€" + "b" * 150 + "c" * 10
    parts = text.build_parts(body, reference=0x2A)
    assert len(parts) == 3
    for seq, part in enumerate(parts, start=1):
        assert part.esm_class == codes.ESM_UDHI
        assert part.short_message[:6] == bytes([5, 0, 3, 0x2A, 3, seq])
        assert len(part.short_message) - 6 <= 153
    # The euro sign would straddle septets 153/154, so it opens part 2.
    assert parts[0].short_message[6:] == b"a" * 152
    assert parts[1].short_message[6:8] == b"\x1b\x65"


def test_long_ucs2_keeps_surrogate_pairs_whole() -> None:
    body = "ж" * 66 + "😀" + "ж" * 70
    parts = text.build_parts(body, reference=1)
    assert [p.data_coding for p in parts] == [codes.DC_UCS2] * 3
    assert parts[0].short_message[6:] == ("ж" * 66).encode("utf-16-be")
    assert parts[1].short_message[6:10] == "😀".encode("utf-16-be")
    assert all(len(p.short_message) <= 6 + 134 for p in parts)


def _reassemble(parts: list[text.Part]) -> str:
    data = b""
    for part in parts:
        payload = part.short_message
        if part.esm_class & codes.ESM_UDHI:
            _udh, payload = text.split_udh(payload)
        data += payload
    return text.decode(data, parts[0].data_coding)


_ALPHABET = st.sampled_from(
    [*sorted(GSM7_BASIC | GSM7_EXTENSION), "😀", "👨\u200d👩\u200d👧", "ж", "é", "🇫🇷"]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ALPHABET, min_size=1, max_size=500).map("".join))
def test_parts_match_domain_segments_and_round_trip(body: str) -> None:
    analysis = analyze(body)
    parts = text.build_parts(body, reference=7)
    assert len(parts) == analysis.segment_count
    assert _reassemble(parts) == unicodedata.normalize("NFC", body)
    for part, segment in zip(parts, analysis.segments, strict=True):
        payload = part.short_message[6:] if len(parts) > 1 else part.short_message
        assert text.decode(payload, part.data_coding) == segment


@pytest.mark.parametrize(
    ("udh", "expected"),
    [
        (bytes([5, 0, 3, 0xAB, 3, 2]), text.Concat(0xAB, 3, 2)),
        (bytes([6, 8, 4, 0x12, 0x34, 2, 1]), text.Concat(0x1234, 2, 1)),
        # A port-addressing element before the concatenation element.
        (bytes([10, 5, 4, 0, 0, 0, 0, 0, 3, 9, 2, 2]), text.Concat(9, 2, 2)),
        (bytes([4, 5, 2, 0, 0]), None),
    ],
)
def test_parse_concat(udh: bytes, expected: text.Concat | None) -> None:
    assert text.parse_concat(udh) == expected
