"""Offers and accepts against real PostgreSQL: 200 concurrent accepts → exactly one winner; decline,
expiry and escalation; every transition recorded. These tests commit (concurrency needs separate
connections), so they build their own small world and delete it afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core.identity.models import Role
from dispatch.common import DispatchError, OfferNotOpen, OfferPolicy, StateConflict, change_state
from dispatch.matching import CaregiverIndex, CaregiverProfile, OrderRequest
from dispatch.models import Offer, OrderTransition, ServiceOrder, Visit
from dispatch.offers import accept_offer, decline_offer, expire_offers, make_offer, offer_next
from dispatch.orders import create_order
from dispatch.policies import policies_on
from dispatch.states import InvalidTransition, OrderState
from registry.models import Caregiver
from tests.support import dispatch as support

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.UTC)  # Wednesday 10:00 in Xiaogan
POLICY = OfferPolicy(offer_seconds=60, max_attempts=3)


@pytest.fixture
async def world(engine: AsyncEngine, seeded: dict[str, object]) -> AsyncIterator[dict[str, object]]:
    # ``seeded`` brings the dated catalogue prices (policy ``service.price_fen``).
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as s, s.begin():
        place = await support.add_place(s, n=1, id_number="42090219400501999X", birth_on=dt.date(1940, 5, 1))
        d, st, c, e, p = place.district, place.street, place.community, place.elder, place.provider
        cgs = [
            Caregiver(
                provider_id=p.id,
                name=f"护理员{i}",
                gender="F",
                phone=f"1390000{i:04d}",
                skills=["CLEAN", "VISIT"],
                shift_start=dt.time(8),
                shift_end=dt.time(18),
                home_lat=30.92,
                home_lon=113.91,
            )
            for i in range(4)
        ]
        s.add_all(cgs)
        await s.flush()
        ids: dict[str, object] = {
            "district": d.id,
            "street": st.id,
            "community": c.id,
            "elder": e.id,
            "provider": p.id,
        }
        ids["caregivers"] = [cg.id for cg in cgs]
    yield ids
    async with factory() as s, s.begin():
        await support.remove_place(s, place)


async def _new_order(factory: async_sessionmaker[AsyncSession], elder_id: int) -> int:
    async with factory() as s, s.begin():
        order = await create_order(
            session=s,
            elder_id=elder_id,
            service_code="CLEAN",
            window_start_at=NOW + dt.timedelta(hours=2),
            window_end_at=NOW + dt.timedelta(hours=3),
            duration_s=3600,
            actor=Role.FAMILY,
            actor_user_id=None,
            now=NOW,
        )
        assert order.price_fen == 4000  # 40 yuan per hour, dated catalogue price
        return order.id


async def test_200_concurrent_accepts_have_exactly_one_winner(
    engine: AsyncEngine, world: dict[str, object]
) -> None:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    order_id = await _new_order(factory, world["elder"])  # type: ignore[arg-type]
    caregiver = world["caregivers"][0]  # type: ignore[index]
    async with factory() as s, s.begin():
        offer = await make_offer(
            session=s, order_id=order_id, caregiver_id=caregiver, score=0.9, eta_s=300, now=NOW, policy=POLICY
        )
    # A separate pool so 40 accepts really run at once on their own connections.
    racing = create_async_engine(engine.url, pool_size=20, max_overflow=20)
    racing_factory = async_sessionmaker(racing, expire_on_commit=False)
    start = asyncio.Event()

    async def attempt() -> str:
        await start.wait()
        try:
            async with racing_factory() as s, s.begin():
                await accept_offer(session=s, offer_id=offer.id, caregiver_id=caregiver, now=NOW)
            return "won"
        except (OfferNotOpen, StateConflict):
            return "lost"

    tasks = [asyncio.create_task(attempt()) for _ in range(200)]
    start.set()
    results = await asyncio.gather(*tasks)
    await racing.dispose()
    assert results.count("won") == 1
    assert results.count("lost") == 199
    async with factory() as s:
        order = await s.get(ServiceOrder, order_id)
        assert order is not None
        assert (order.state, order.caregiver_id) == ("accepted", caregiver)
        assert await s.scalar(select(func.count()).select_from(Visit).where(Visit.order_id == order_id)) == 1
        moves = (
            await s.execute(
                select(OrderTransition.from_state, OrderTransition.to_state)
                .where(OrderTransition.order_id == order_id)
                .order_by(OrderTransition.id)
            )
        ).all()
        assert [tuple(m) for m in moves] == [
            ("none", "created"),
            ("created", "offered"),
            ("offered", "accepted"),
        ]


async def test_offer_deadline_decline_and_escalation(engine: AsyncEngine, world: dict[str, object]) -> None:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    order_id = await _new_order(factory, world["elder"])  # type: ignore[arg-type]
    cg_ids: list[int] = world["caregivers"]  # type: ignore[assignment]
    seeded = policies_on(NOW.date())  # dispatch's seeded policy
    rule = seeded.service("CLEAN", "CLEAN")
    profiles = {
        cid: CaregiverProfile(
            id=cid,
            gender="F",
            skills=frozenset({"CLEAN"}),
            certificates=(),
            shift_start=dt.time(8),
            shift_end=dt.time(18),
            work_days=frozenset({1, 2, 3, 4, 5}),
            daily_capacity=8,
            rating=4.0 + i / 10,
        )
        for i, cid in enumerate(cg_ids)
    }
    index = CaregiverIndex()
    for i, cid in enumerate(cg_ids):
        index.update(cid, 30.92 + 0.001 * i, 113.91, {"CLEAN"})
    request = OrderRequest(
        elder_id=world["elder"],  # type: ignore[arg-type]
        elder_gender="F",
        elder_allows_any_gender=False,
        lat=30.92,
        lon=113.91,
        rural=False,
        service=rule,
        start=NOW + dt.timedelta(hours=2),
        duration_s=3600,
    )
    kw = {"request": request, "index": index, "profiles": profiles, "match_policy": seeded.match}
    offered: list[int] = []
    async with factory() as s, s.begin():
        first = await offer_next(session=s, order_id=order_id, offer_policy=POLICY, now=NOW, **kw)  # type: ignore[arg-type]
        assert first is not None
        offered.append(first.caregiver_id)
        assert first.deadline_at == NOW + dt.timedelta(seconds=60)
    # The first caregiver declines; a second offer goes to someone else.
    async with factory() as s, s.begin():
        await decline_offer(session=s, offer_id=first.id, caregiver_id=first.caregiver_id, now=NOW)
        second = await offer_next(session=s, order_id=order_id, offer_policy=POLICY, now=NOW, **kw)  # type: ignore[arg-type]
        assert second is not None
        offered.append(second.caregiver_id)
    # Accepting after the deadline fails and changes nothing.
    late = NOW + dt.timedelta(seconds=61)
    with pytest.raises(OfferNotOpen):
        async with factory() as s, s.begin():
            await accept_offer(session=s, offer_id=second.id, caregiver_id=second.caregiver_id, now=late)
    async with factory() as s, s.begin():
        assert await expire_offers(session=s, now=late) == [order_id]
        third = await offer_next(session=s, order_id=order_id, offer_policy=POLICY, now=late, **kw)  # type: ignore[arg-type]
        assert third is not None
        offered.append(third.caregiver_id)
        await decline_offer(session=s, offer_id=third.id, caregiver_id=third.caregiver_id, now=late)
        # Three offers failed: the fourth attempt goes to the operator queue instead.
        assert await offer_next(session=s, order_id=order_id, offer_policy=POLICY, now=late, **kw) is None  # type: ignore[arg-type]
    assert len(set(offered)) == 3
    async with factory() as s:
        order = await s.get(ServiceOrder, order_id)
        assert order is not None
        assert (order.state, order.offer_attempts) == ("escalated", 3)
        states = [
            (o.caregiver_id, o.state)
            for o in await s.scalars(select(Offer).where(Offer.order_id == order_id).order_by(Offer.id))
        ]
        assert [st for _, st in states] == ["declined", "expired", "declined"]


async def test_one_open_offer_per_order_and_invalid_moves(
    engine: AsyncEngine, world: dict[str, object]
) -> None:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    order_id = await _new_order(factory, world["elder"])  # type: ignore[arg-type]
    cg_ids: list[int] = world["caregivers"]  # type: ignore[assignment]
    async with factory() as s, s.begin():
        await make_offer(
            session=s, order_id=order_id, caregiver_id=cg_ids[0], score=1, eta_s=1, now=NOW, policy=POLICY
        )
    with pytest.raises(IntegrityError):
        async with factory() as s, s.begin():
            s.add(
                Offer(
                    order_id=order_id,
                    caregiver_id=cg_ids[1],
                    rank=2,
                    score=1,
                    eta_s=1,
                    state="pending",
                    offered_at=NOW,
                    deadline_at=NOW + dt.timedelta(seconds=60),
                )
            )
    # A wrong caregiver cannot accept someone else's offer.
    async with factory() as s:
        offer_id = await s.scalar(select(Offer.id).where(Offer.order_id == order_id))
    assert offer_id is not None
    with pytest.raises(OfferNotOpen):
        async with factory() as s, s.begin():
            await accept_offer(session=s, offer_id=offer_id, caregiver_id=cg_ids[1], now=NOW)
    # The state machine refuses skipping ahead, and nothing is recorded.
    with pytest.raises(InvalidTransition):
        async with factory() as s, s.begin():
            await change_state(
                session=s,
                order_id=order_id,
                expected=OrderState.OFFERED,
                target=OrderState.CHECKED_OUT,
                actor=Role.CAREGIVER,
                actor_user_id=None,
                now=NOW,
            )
    async with factory() as s:
        n = await s.scalar(
            select(func.count()).select_from(OrderTransition).where(OrderTransition.order_id == order_id)
        )
        assert n == 2


async def test_bad_orders_get_clear_errors(engine: AsyncEngine, world: dict[str, object]) -> None:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"service_code": "NOPE"}, "unknown or inactive service"),
        ({"elder_id": -1}, "elder -1 is unknown"),
        ({"window_end_at": NOW}, "window end is before its start"),
        (
            {
                "window_start_at": dt.datetime(2025, 6, 1, 2, tzinfo=dt.UTC),
                "window_end_at": dt.datetime(2025, 6, 1, 3, tzinfo=dt.UTC),
            },
            "no price valid on 2025-06-01",
        ),
    ]
    for override, message in cases:
        args: dict[str, Any] = {
            "elder_id": world["elder"],
            "service_code": "CLEAN",
            "window_start_at": NOW + dt.timedelta(hours=1),
            "window_end_at": NOW + dt.timedelta(hours=2),
            "duration_s": 3600,
            "actor": Role.ELDER,
            "actor_user_id": None,
            "now": NOW,
        }
        args.update(override)
        with pytest.raises(DispatchError, match=message):
            async with factory() as s, s.begin():
                await create_order(session=s, **args)
