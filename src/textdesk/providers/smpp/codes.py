"""SMPP 3.4 numbers, translated to ours: command ids, command_status codes, receipt states.

Sources: the SMPP v3.4 specification, section 5.1.2.1 (command ids), 5.1.3 (command_status),
5.2.12 (esm_class), 5.2.19 (data_coding), 5.3.2.35 (message_state) and Appendix B (the
delivery receipt text). Our error codes are namespaced ``smpp:0xNN`` (the command_status in hex)
or ``smpp:<reason>`` for failures that never reached the SMSC, so they never collide with another
provider's.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from textdesk.domain.states import MessageStatus
from textdesk.providers.base import (
    AuthFailure,
    InvalidNumber,
    PermanentFailure,
    ProviderError,
    TemporaryFailure,
    Throttled,
)

# --- command ids (5.1.2.1) -------------------------------------------------------------------

GENERIC_NACK: Final = 0x80000000
SUBMIT_SM: Final = 0x00000004
SUBMIT_SM_RESP: Final = 0x80000004
DELIVER_SM: Final = 0x00000005
DELIVER_SM_RESP: Final = 0x80000005
UNBIND: Final = 0x00000006
UNBIND_RESP: Final = 0x80000006
BIND_TRANSCEIVER: Final = 0x00000009
BIND_TRANSCEIVER_RESP: Final = 0x80000009
ENQUIRE_LINK: Final = 0x00000015
ENQUIRE_LINK_RESP: Final = 0x80000015
ALERT_NOTIFICATION: Final = 0x00000102  # a request that has no response

RESPONSE_BIT: Final = 0x80000000

# --- command_status (5.1.3) ------------------------------------------------------------------

ESME_ROK: Final = 0x00
ESME_RINVCMDID: Final = 0x03
ESME_RSYSERR: Final = 0x08
ESME_RINVDSTADR: Final = 0x0B
ESME_RBINDFAIL: Final = 0x0D
ESME_RINVPASWD: Final = 0x0E
ESME_RINVSYSID: Final = 0x0F
ESME_RMSGQFUL: Final = 0x14
ESME_RTHROTTLED: Final = 0x58
#: "ESME Receiver Temporary App Error": what we answer a deliver_sm we could not hand to the
#: core, so that the SMSC delivers it again later.
ESME_RX_T_APPN: Final = 0x64
#: "ESME Receiver Permanent App Error": a deliver_sm we cannot parse; a retry would not help.
ESME_RX_P_APPN: Final = 0x65


class Kind(Enum):
    """Which ``ProviderError`` a command_status becomes."""

    INVALID_NUMBER = "invalid_number"
    AUTH = "auth"
    THROTTLED = "throttled"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


#: command_status values whose class is not a plain permanent failure. Anything else an SMSC
#: answers to a submit_sm is ``PermanentFailure("smpp:0xNN")``: the SMSC looked at the message
#: and refused it, and sending the same PDU again would be refused again.
STATUS_KINDS: dict[int, Kind] = {
    ESME_RTHROTTLED: Kind.THROTTLED,  # the ESME exceeded its allowed message rate
    ESME_RMSGQFUL: Kind.THROTTLED,  # the SMSC's queue for us is full: slowing down clears it
    ESME_RINVDSTADR: Kind.INVALID_NUMBER,
    ESME_RSYSERR: Kind.TEMPORARY,  # the SMSC's own failure, typically transient
    ESME_RBINDFAIL: Kind.AUTH,
    ESME_RINVPASWD: Kind.AUTH,
    ESME_RINVSYSID: Kind.AUTH,
}

DESCRIPTIONS: dict[int, str] = {
    0x01: "message length is invalid",
    0x02: "command length is invalid",
    0x03: "invalid command id",
    0x04: "incorrect bind status for the command",
    0x05: "already bound",
    0x08: "SMSC system error",
    0x0A: "invalid source address",
    0x0B: "invalid destination address",
    0x0C: "invalid message id",
    0x0D: "bind failed",
    0x0E: "invalid password",
    0x0F: "invalid system id",
    0x14: "message queue full",
    0x15: "invalid service type",
    0x43: "invalid esm_class",
    0x45: "submit_sm failed",
    0x48: "invalid source address TON",
    0x49: "invalid source address NPI",
    0x50: "invalid destination address TON",
    0x51: "invalid destination address NPI",
    0x58: "throttled (message rate exceeded)",
    0x61: "invalid scheduled delivery time",
    0x62: "invalid validity period",
    0xC0: "error in the optional part of the PDU",
    0xC1: "optional parameter not allowed",
    0xC2: "invalid parameter length",
    0xC3: "expected optional parameter missing",
    0xC4: "invalid optional parameter value",
    0xFF: "unknown error",
}

_KIND_TO_ERROR: dict[Kind, type[ProviderError]] = {
    Kind.INVALID_NUMBER: InvalidNumber,
    Kind.AUTH: AuthFailure,
    Kind.THROTTLED: Throttled,
    Kind.TEMPORARY: TemporaryFailure,
    Kind.PERMANENT: PermanentFailure,
}


def status_code(status: int) -> str:
    """Our error code for an SMPP command_status: ``smpp:0x58``."""
    return f"smpp:0x{status:02X}"


def describe(status: int) -> str:
    return DESCRIPTIONS.get(status, f"command_status 0x{status:08X}")


def kind_for_status(status: int) -> Kind:
    return STATUS_KINDS.get(status, Kind.PERMANENT)


def error_for_status(status: int, *, suffix: str = "") -> ProviderError:
    """The ``ProviderError`` for a non-zero command_status answered to a submit_sm."""
    cls = _KIND_TO_ERROR[kind_for_status(status)]
    return cls(status_code(status), f"submit_sm refused: {describe(status)}{suffix}")


def bind_error(status: int) -> ProviderError:
    """A bind_transceiver refused. Credentials errors are ``AuthFailure``; the rest (e.g. the
    SMSC's own system error, "already bound") clear up on their own, so they are temporary."""
    if kind_for_status(status) is Kind.AUTH:
        return AuthFailure(status_code(status), f"bind refused: {describe(status)}")
    return TemporaryFailure(status_code(status), f"bind refused: {describe(status)}")


# --- esm_class (5.2.12) and data_coding (5.2.19) ---------------------------------------------

ESM_UDHI: Final = 0x40  # the short_message starts with a User Data Header
ESM_TYPE_MASK: Final = 0x3C  # bits 5-2: the message type
ESM_TYPE_RECEIPT: Final = 0x04  # SMSC delivery receipt
ESM_TYPE_INTERMEDIATE: Final = 0x20  # intermediate delivery notification

DC_DEFAULT: Final = 0x00  # SMSC default alphabet; we send (and read) GSM 03.38, unpacked
DC_IA5: Final = 0x01
DC_BINARY: Final = 0x02
DC_LATIN1: Final = 0x03
DC_BINARY2: Final = 0x04
DC_UCS2: Final = 0x08

#: registered_delivery = 1: "SMSC delivery receipt requested where the final delivery outcome
#: is delivery success or failure".
REGISTERED_DELIVERY_FINAL: Final = 0x01

# --- delivery receipts -----------------------------------------------------------------------

#: ``stat:`` in a receipt's text (Appendix B). ``None``: not final, no news for the state
#: machine. ACCEPTD is final in the specification ("read on behalf of the subscriber by
#: customer service"), but in practice SMSCs send it as "taken over by the network", so it is
#: ignored like ENROUTE. EXPIRED, DELETED, REJECTD and UNKNOWN all mean the message will not be
#: delivered for a reason other than the handset refusing it: ``failed``. UNDELIV (the network
#: or handset said no) is ``undelivered``.
RECEIPT_STATS: dict[str, MessageStatus | None] = {
    "DELIVRD": MessageStatus.DELIVERED,
    "UNDELIV": MessageStatus.UNDELIVERED,
    "EXPIRED": MessageStatus.FAILED,
    "DELETED": MessageStatus.FAILED,
    "REJECTD": MessageStatus.FAILED,
    "UNKNOWN": MessageStatus.FAILED,
    "ACCEPTD": None,
    "ENROUTE": None,
}

#: The ``message_state`` TLV (0x0427) values, with the receipt ``stat:`` word each stands for.
MESSAGE_STATES: dict[int, str] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}

STAT_DESCRIPTIONS: dict[str, str] = {
    "UNDELIV": "undeliverable",
    "EXPIRED": "validity period expired before delivery",
    "DELETED": "deleted at the SMSC",
    "REJECTD": "rejected by the SMSC",
    "UNKNOWN": "final state unknown",
}
