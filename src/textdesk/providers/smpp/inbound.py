"""Inbound messages (deliver_sm that is not a receipt): decoding and reassembly of parts.

A long message from a phone arrives as several deliver_sm, each marked either with a UDH
concatenation element (8-bit reference, IEI 00, or 16-bit, IEI 08) or with the sar_msg_ref_num /
sar_total_segments / sar_segment_seqnum TLVs. Parts may come in any order and interleaved with
other messages; we collect them per (sender, recipient, reference, total) and join the raw user
data before decoding, so an escape or surrogate pair split by the sender's phone still decodes.

A set that stays incomplete for ``timeout`` seconds is delivered with the parts that did arrive
(``raw["missing_parts"]`` lists the others): a customer's partial reply is more useful to an
agent than nothing. Every part was already acknowledged to the SMSC, so parts held here are lost
if the process stops before the set completes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from textdesk.providers.base import InboundSms
from textdesk.providers.smpp import codes, text
from textdesk.providers.smpp.pdu import DeliverSm

#: TON 1 (international): the address is a number in E.164 without its "+".
TON_INTERNATIONAL = 1


def address_to_e164(address: str, ton: int) -> str:
    """An SMPP address as we store numbers: ``+`` and digits for international numbers; other
    addresses (national numbers, short codes, alphanumeric senders) as they came."""
    address = address.strip()
    if ton == TON_INTERNATIONAL and address.isdigit():
        return "+" + address
    return address


@dataclass
class _PartSet:
    sender: str
    recipient: str
    total: int
    data_coding: int
    started: float
    parts: dict[int, bytes] = field(default_factory=dict)


class Reassembler:
    def __init__(
        self,
        timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_sets: int = 10_000,
    ) -> None:
        self._timeout = timeout
        self._clock = clock
        self._now = now
        self._max_sets = max_sets
        self._sets: dict[tuple[str, str, int, int], _PartSet] = {}

    @property
    def pending(self) -> int:
        return len(self._sets)

    def add(self, pdu: DeliverSm) -> InboundSms | None:
        """The message ``pdu`` completes, or ``None`` while parts are missing."""
        sender = address_to_e164(pdu.source_addr, pdu.source_addr_ton)
        recipient = address_to_e164(pdu.destination_addr, pdu.dest_addr_ton)
        data = pdu.payload
        concat: text.Concat | None = None
        if pdu.esm_class & codes.ESM_UDHI:
            try:
                udh, data = text.split_udh(data)
            except ValueError:
                udh = b""
            concat = text.parse_concat(udh)
        elif pdu.sar_msg_ref_num is not None and pdu.sar_total_segments is not None:
            concat = text.Concat(
                reference=pdu.sar_msg_ref_num,
                total=pdu.sar_total_segments,
                sequence=pdu.sar_segment_seqnum or 0,
            )
        if concat is None or concat.total <= 1 or not 1 <= concat.sequence <= concat.total:
            return self._message(sender, recipient, pdu.data_coding, [data], parts=1)

        key = (sender, recipient, concat.reference, concat.total)
        part_set = self._sets.get(key)
        if part_set is None:
            if len(self._sets) >= self._max_sets:
                # A flood of never-completed sets must not grow memory without bound.
                oldest = min(self._sets, key=lambda k: self._sets[k].started)
                del self._sets[oldest]
            part_set = _PartSet(sender, recipient, concat.total, pdu.data_coding, self._clock())
            self._sets[key] = part_set
        part_set.parts[concat.sequence] = data
        if len(part_set.parts) < part_set.total:
            return None
        del self._sets[key]
        ordered = [part_set.parts[i] for i in range(1, part_set.total + 1)]
        return self._message(sender, recipient, part_set.data_coding, ordered, parts=part_set.total)

    def expire(self) -> list[InboundSms]:
        """Sets older than the timeout, delivered with the parts that arrived."""
        deadline = self._clock() - self._timeout
        expired = [key for key, s in self._sets.items() if s.started <= deadline]
        messages: list[InboundSms] = []
        for key in expired:
            part_set = self._sets.pop(key)
            numbers = sorted(part_set.parts)
            missing = [i for i in range(1, part_set.total + 1) if i not in part_set.parts]
            messages.append(
                self._message(
                    part_set.sender,
                    part_set.recipient,
                    part_set.data_coding,
                    [part_set.parts[i] for i in numbers],
                    parts=part_set.total,
                    missing=missing,
                )
            )
        return messages

    def _message(
        self,
        sender: str,
        recipient: str,
        data_coding: int,
        chunks: list[bytes],
        *,
        parts: int,
        missing: list[int] | None = None,
    ) -> InboundSms:
        raw: dict[str, object] = {"data_coding": data_coding, "parts": parts}
        if missing:
            raw["missing_parts"] = missing
        return InboundSms(
            # deliver_sm carries no message id of its own; ours only has to be unique.
            provider_message_id=f"smpp-mo-{uuid.uuid4().hex}",
            sender=sender,
            recipient=recipient,
            body=text.decode(b"".join(chunks), data_coding),
            received_at=self._now(),
            raw=raw,
        )
