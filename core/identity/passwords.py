"""Passwords: what one may be, and hashing with Argon2id (argon2-cffi's recommended defaults)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.types import NO_NUL

# Long passphrases are welcome; Argon2 hashes any length, the cap only bounds the work per request.
Password = Annotated[str, msgspec.Meta(min_length=10, max_length=200, pattern=NO_NUL)]

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An Argon2id hash string with its own random salt and parameters."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; False for a mismatch or a malformed hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than the current defaults."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True
