"""Login lockout: a login reserves its attempt on two counters before its password is checked.

Counting failures and then checking the password lets every one of a burst of concurrent
guesses read "under the limit"; here the decision "may this attempt be evaluated" is the same
atomic statement that records it (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, on a row
that PostgreSQL locks until commit and SQLite's single writer serialises). So N concurrent
guesses evaluate at most the limit, and the rest get 429 without a password check.

Two counters, each a fixed window of ``TEXTDESK_LOGIN_WINDOW_SECONDS`` from its first attempt:

- **per client address** (an IPv6 client counts by its /64, which one host usually holds):
  ``TEXTDESK_LOGIN_MAX_ATTEMPTS`` across all e-mails. At the limit that address gets 429 for
  the rest of its window, even with a right password; other addresses are not affected.
- **per e-mail**, all addresses together: ``TEXTDESK_LOGIN_ACCOUNT_MAX_ATTEMPTS``. It is what
  slows a guesser that spreads over many addresses; at the cap the e-mail is locked for
  everyone for the rest of the window. It is larger than the address limit, so one address
  alone can never lock a user out: its own limit stops it first, and an attempt its address
  limit refuses never reaches the e-mail's counter.

A refused attempt is rolled back, so it counts nowhere; a successful login gives its
reservation back (successes are not failures). Unknown e-mails are counted like known ones.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from textdesk.services.errors import RateLimited
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import UTCDateTime, login_throttle, utcnow

ADDRESS = "address"
ACCOUNT = "account"


@dataclass(frozen=True)
class Reservation:
    """The counters one login attempt holds a slot on, with the window each slot is in."""

    slots: tuple[tuple[str, str, datetime], ...]  # (scope, key, window_started_at)


def address_key(ip: str | None) -> str:
    """The counter key of a client address: IPv4 as is, IPv6 by its /64 network."""
    if not ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:320]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _bump(conn: Connection, scope: str, key: str, now: datetime, cutoff: datetime) -> Any:
    """Count one attempt and return the counter as it now is, in one statement."""
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(login_throttle)
    c = login_throttle.c
    expired = c.window_started_at <= cutoff
    stamp = sa.literal(now, UTCDateTime())
    stmt = (
        insert.values(scope=scope, key=key, window_started_at=now, attempts=1)
        .on_conflict_do_update(
            index_elements=[c.scope, c.key],
            set_={
                "attempts": sa.case((expired, 1), else_=c.attempts + 1),
                "window_started_at": sa.case((expired, stamp), else_=c.window_started_at),
            },
        )
        .returning(c.attempts, c.window_started_at)
    )
    return conn.execute(stmt).one()


def reserve(db: Database, settings: Settings, *, ip: str | None, email: str) -> Reservation:
    """Take this attempt's slot on the address and e-mail counters, or raise ``RateLimited``."""
    now = utcnow()
    window = timedelta(seconds=settings.login_window_seconds)
    slots = []
    with db.write() as conn:
        for scope, key, limit, whose in (
            (ADDRESS, address_key(ip), settings.login_max_attempts, "from this address"),
            (ACCOUNT, email, settings.login_account_max_attempts, "for this account"),
        ):
            row = _bump(conn, scope, key, now, now - window)
            if row.attempts > limit:
                # Raising here rolls the transaction back: a refused attempt counts nowhere.
                left = max(1, math.ceil((row.window_started_at + window - now).total_seconds()))
                raise RateLimited(
                    f"too many failed logins {whose}; try again in {left} seconds",
                    retry_after=left,
                )
            slots.append((scope, key, row.window_started_at))
    return Reservation(tuple(slots))


def release(conn: Connection, settings: Settings, reservation: Reservation) -> None:
    """Give a successful login's slots back, and drop counters whose window has ended."""
    c = login_throttle.c
    for scope, key, started in reservation.slots:
        conn.execute(
            sa.update(login_throttle)
            .where(
                c.scope == scope,
                c.key == key,
                c.window_started_at == started,  # not a later window's count
                c.attempts > 0,
            )
            .values(attempts=c.attempts - 1)
        )
    cutoff = utcnow() - timedelta(seconds=settings.login_window_seconds)
    conn.execute(sa.delete(login_throttle).where(c.window_started_at <= cutoff))
