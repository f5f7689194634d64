"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()


def use_fast_hashing_for_tests() -> None:
    """Cheap parameters so a test suite that creates hundreds of users stays fast.
    Only the test fixtures call this; hashes stay verifiable by the normal hasher."""
    global _hasher
    _hasher = PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


#: A valid hash of a random password, verified against when the e-mail is unknown so that a
#: failed login takes the same time whether or not the account exists.
DUMMY_HASH = PasswordHasher().hash("textdesk-no-such-user-placeholder")


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"password must be at least {MIN_PASSWORD_LENGTH} characters"
    if password.strip() != password:
        return "password must not start or end with whitespace"
    return None
