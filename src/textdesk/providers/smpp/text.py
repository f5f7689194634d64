"""Message text on the wire: GSM 03.38 and UCS-2 coding, User Data Headers, parts.

Outbound text is cut with ``domain.encoding.analyze`` so the parts we submit are exactly the
segments the UI counted and billed: 153 septets or 67 UTF-16 units per part, escape pairs,
surrogate pairs and grapheme clusters kept whole.

GSM text goes out *unpacked*: one septet per octet with data_coding 0, which is what SMSCs
expect over SMPP (they pack to 7 bits for the air interface themselves). A part is then its
6-octet UDH plus up to 153 octets, within short_message's 254.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from textdesk.domain.encoding import Encoding, analyze
from textdesk.providers.smpp import codes

# The 3GPP TS 23.038 default alphabet in septet order; position 0x1B is the escape to the
# extension table, never a character of its own.
_GSM_DEFAULT: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
_ESC: Final = 0x1B
# The extension table entries of the default (non-national) configuration: ESC + septet.
_GSM_EXTENSION: Final = {
    0x0A: "\x0c",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

_ENCODE: Final[dict[str, bytes]] = {
    ch: bytes([i]) for i, ch in enumerate(_GSM_DEFAULT) if i != _ESC
} | {ch: bytes([_ESC, septet]) for septet, ch in _GSM_EXTENSION.items()}

#: IEI of the concatenation information elements (3GPP TS 23.040 9.2.3.24.1 and .8).
IEI_CONCAT_8: Final = 0x00
IEI_CONCAT_16: Final = 0x08


def gsm_encode(text: str) -> bytes:
    """Unpacked GSM 03.38 septets. Raises ``ValueError`` for a character outside GSM-7."""
    try:
        return b"".join(_ENCODE[ch] for ch in text)
    except KeyError as exc:
        raise ValueError(f"{exc.args[0]!r} is not in the GSM 03.38 alphabet") from None


def gsm_decode(data: bytes) -> str:
    """Unpacked GSM 03.38 septets to text. An escape followed by a septet the extension table
    does not define shows the base character, as the specification asks of receivers."""
    out: list[str] = []
    i = 0
    while i < len(data):
        septet = data[i] & 0x7F
        i += 1
        if septet == _ESC:
            if i == len(data):
                break
            nxt = data[i] & 0x7F
            i += 1
            out.append(_GSM_EXTENSION.get(nxt, _GSM_DEFAULT[nxt] if nxt != _ESC else " "))
        else:
            out.append(_GSM_DEFAULT[septet])
    return "".join(out)


def decode(data: bytes, data_coding: int) -> str:
    """User data (without its UDH) to text, by the deliver_sm's data_coding.

    0 is the SMSC default alphabet, which we take as unpacked GSM 03.38 unless an octet has its
    high bit set (then the SMSC evidently sent Latin-1). 1 is IA5/ASCII, 3 Latin-1, 8 UCS-2
    (read as UTF-16, since phones send emoji as surrogate pairs). The GSM message-class group
    (0xF0-0xFF) carries GSM or 8-bit data by its bit 2. Binary and unknown codings are read as
    Latin-1 so no octet is lost.
    """
    if data_coding & 0xF0 == 0xF0:
        data_coding = codes.DC_BINARY if data_coding & 0x04 else codes.DC_DEFAULT
    if data_coding == codes.DC_DEFAULT:
        if any(octet > 0x7F for octet in data):
            return data.decode("latin-1")
        return gsm_decode(data)
    if data_coding == codes.DC_UCS2:
        return data.decode("utf-16-be", errors="replace")
    return data.decode("latin-1")


# --- user data headers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Concat:
    """Where one part sits in a concatenated message."""

    reference: int
    total: int
    sequence: int


def concat_udh(reference: int, total: int, sequence: int) -> bytes:
    """The 6-octet UDH of one part: UDHL 05, IEI 00 (8-bit reference), IEDL 03, ref, total, seq."""
    return bytes([0x05, IEI_CONCAT_8, 0x03, reference & 0xFF, total, sequence])


def split_udh(data: bytes) -> tuple[bytes, bytes]:
    """``(udh, rest)`` of user data whose UDHI bit is set; ``udh`` includes its length octet."""
    if not data:
        return b"", b""
    end = 1 + data[0]
    if end > len(data):
        raise ValueError("UDH length exceeds the user data")
    return data[:end], data[end:]


def parse_concat(udh: bytes) -> Concat | None:
    """The concatenation element (8- or 16-bit reference) of a UDH, if it has one."""
    i = 1
    while i + 2 <= len(udh):
        iei, length = udh[i], udh[i + 1]
        value = udh[i + 2 : i + 2 + length]
        if len(value) < length:
            return None
        if iei == IEI_CONCAT_8 and length == 3:
            return Concat(reference=value[0], total=value[1], sequence=value[2])
        if iei == IEI_CONCAT_16 and length == 4:
            (reference,) = struct.unpack(">H", value[:2])
            return Concat(reference=reference, total=value[2], sequence=value[3])
        i += 2 + length
    return None


# --- outbound parts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    data_coding: int
    esm_class: int
    short_message: bytes


def _encode_segment(segment: str, encoding: Encoding) -> bytes:
    if encoding is Encoding.GSM7:
        return gsm_encode(segment)
    return segment.encode("utf-16-be")


def build_parts(body: str, reference: int) -> list[Part]:
    """The short_messages to submit for ``body``: one without a UDH, or several each starting
    with a concatenation UDH carrying ``reference`` (one octet)."""
    analysis = analyze(body)
    segments = analysis.segments or ("",)
    data_coding = codes.DC_DEFAULT if analysis.encoding is Encoding.GSM7 else codes.DC_UCS2
    if len(segments) == 1:
        return [Part(data_coding, 0, _encode_segment(segments[0], analysis.encoding))]
    if len(segments) > 255:
        raise ValueError("a concatenated message has at most 255 parts")
    total = len(segments)
    return [
        Part(
            data_coding,
            codes.ESM_UDHI,
            concat_udh(reference, total, seq) + _encode_segment(segment, analysis.encoding),
        )
        for seq, segment in enumerate(segments, start=1)
    ]
