"""Continuity of care counts the visits checked in during the policy's window
(``dispatch.continuity_window``, seeded 30 days), the same in both readings of an order: the one-round-trip
facts of real-time dispatch (the window computed in SQL) and :func:`dispatch.candidates.build_request`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.identity.models import Role
from core.policy import PolicyValue
from dispatch import candidates
from dispatch.models import ServiceOrder, Visit
from dispatch.orders import create_order
from registry.models import Caregiver, Elder
from tests.conftest import TEST_NOW

pytestmark = pytest.mark.integration


async def _order_with_history(db: AsyncSession) -> tuple[ServiceOrder, dict[float, int]]:
    """A new order for an elder whose past visits were checked in 5, 12¼ and 40 days ago (two
    caregivers); returns it and the caregiver of each age in days."""
    elder = await db.scalar(select(Elder).where(Elder.status == "active").order_by(Elder.id).limit(1))
    caregivers = list(await db.scalars(select(Caregiver.id).order_by(Caregiver.id).limit(2)))
    assert elder is not None
    ages = {5.0: caregivers[0], 12.25: caregivers[1], 40.0: caregivers[0]}
    for days, cid in ages.items():
        at = TEST_NOW - dt.timedelta(days=days)
        past = await create_order(
            session=db,
            elder_id=elder.id,
            service_code="VISIT",
            window_start_at=at,
            window_end_at=at + dt.timedelta(minutes=30),
            duration_s=1800,
            actor=Role.OPERATOR,
            actor_user_id=None,
            now=at,
        )
        db.add(
            Visit(
                order_id=past.id,
                service_code="VISIT",
                elder_id=elder.id,
                caregiver_id=cid,
                scheduled_start_at=at,
                scheduled_end_at=at + dt.timedelta(minutes=30),
                check_in_at=at,
            )
        )
    order = await create_order(
        session=db,
        elder_id=elder.id,
        service_code="VISIT",
        window_start_at=TEST_NOW,
        window_end_at=TEST_NOW + dt.timedelta(minutes=30),
        duration_s=1800,
        actor=Role.OPERATOR,
        actor_user_id=None,
        now=TEST_NOW,
        asap=True,
    )
    await db.flush()
    return order, ages


async def _both_readings(db: AsyncSession, order: ServiceOrder) -> tuple[dict[int, int], dict[int, int]]:
    request = await candidates.build_request(session=db, order=order, now=TEST_NOW)
    facts = await candidates.dispatch_facts(db, order, TEST_NOW)
    return dict(request.continuity), dict(facts.request.continuity)


async def _set_window(db: AsyncSession, value: dict[str, Any]) -> None:
    await db.execute(
        update(PolicyValue).where(PolicyValue.key == "dispatch.continuity_window").values(value=value)
    )


@pytest.mark.parametrize(
    ("value", "counted_days"),
    [
        (None, (5, 12.25)),  # as seeded: 30 days
        ({"days": 60}, (5, 12.25, 40)),
        ({"days": 7}, (5,)),
        ({"days": 13}, (5, 12.25)),
        ({"days": 12.9}, (5,)),  # whole days: 12, so the visit of 12¼ days ago is out
        ({"days": 0}, ()),
        ({"days": "sixty"}, (5, 12.25)),  # not a number: the DOMAIN default, 30 days
    ],
)
async def test_the_continuity_window_is_the_policy_in_both_readings(
    db: AsyncSession, value: dict[str, Any] | None, counted_days: tuple[float, ...]
) -> None:
    order, ages = await _order_with_history(db)
    if value is not None:
        await _set_window(db, value)
    expected: dict[int, int] = {}
    for days in counted_days:
        expected[ages[days]] = expected.get(ages[days], 0) + 1
    built, facts = await _both_readings(db, order)
    assert built == expected
    assert facts == expected
