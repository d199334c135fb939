"""The web pages' tests: the real app over the shared ``client`` (from 127.0.0.1, so audit rows carry
an address), its sign-in form with CSRF and the session cookie, and an admin who signs in through
that form with a real password (``web_user``).
"""

from __future__ import annotations

import functools

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.identity.models import AppUser
from core.identity.passwords import hash_password

PASSWORD = "Web-test-password-1"


@functools.cache
def _password_hash() -> str:
    """One Argon2 hash of :data:`PASSWORD` for the whole run (hashing costs a sixth of a second)."""
    return hash_password(PASSWORD)


@pytest.fixture
async def web_user(db: AsyncSession) -> AppUser:
    """An admin whose password is :data:`PASSWORD` (an Argon2 hash, as a real account's)."""
    user = AppUser(
        username="web_test_admin",
        display_name="网页测试",
        password_hash=_password_hash(),
        role="admin",
    )
    db.add(user)
    await db.commit()
    return user
