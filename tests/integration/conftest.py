"""What every integration test package may use besides the database fixtures of ``tests/conftest.py``:
the factories (:mod:`tests.factories`), bound to the test's rolled-back session."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import Factory


@pytest.fixture
def make(db: AsyncSession) -> Factory:
    """``await make.elder(...)``, ``await make.account(Role.FAMILY)``: rows of this test only."""
    return Factory(db)
