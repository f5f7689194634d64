"""Roles inside an organization and what each may do.

owner > admin > agent. Owners manage the organization itself and other admins; admins manage
numbers, contacts, campaigns, API keys and agents; agents work conversations and campaigns
they are assigned to.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    AGENT = "agent"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANK = {Role.AGENT: 1, Role.ADMIN: 2, Role.OWNER: 3}


def can_assign(actor: Role, target: Role) -> bool:
    """An actor may create or change users only up to its own role; only owners make owners."""
    return actor.at_least(Role.ADMIN) and actor.rank >= target.rank
