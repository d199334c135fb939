"""With no policy row valid, a statement that reads its policy in SQL falls back to dispatch's seeded
default (``dispatch.policies.policy_number_sql``), never to a number of its own."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Invalid
from core.identity.authz import Principal
from core.identity.models import AppUser, Role
from core.policy import PolicyValue
from dispatch import orders
from registry.models import Elder
from tests.conftest import TEST_NOW

pytestmark = pytest.mark.integration


async def test_without_a_horizon_row_the_seeded_180_days_still_apply(db: AsyncSession) -> None:
    await db.execute(delete(PolicyValue).where(PolicyValue.key == "dispatch.order_horizon"))
    elder = await db.scalar(select(Elder.id).where(Elder.status == "active").order_by(Elder.id).limit(1))
    operator = await db.scalar(select(AppUser.id).where(AppUser.username == "demo_operator"))
    assert elder is not None
    actor = Principal(user_id=int(operator or 0), username="demo_operator", role=Role.OPERATOR)
    far = TEST_NOW + dt.timedelta(days=200)
    with pytest.raises(Invalid) as refused:
        await orders.place_order(
            session=db, actor=actor, elder_id=elder, service_code="VISIT", now=TEST_NOW, window_start_at=far
        )
    assert refused.value.code == "dispatch.window_too_far"
    # The call centre's undertaking, too, is the seeded one when its rows are gone.
    await db.execute(delete(PolicyValue).where(PolicyValue.key == "dispatch.operator_pickup"))
    assert await orders.operator_pickup_s(db, TEST_NOW.date()) == 15 * 60
