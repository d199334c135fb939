"""The database's nearest-caregiver search (GiST KNN over positions, migration 0006) agrees with the
pure matching core run over every caregiver: with equal ratings and no bookings the score falls with
distance only, so the offer must go to the nearest eligible caregiver on shift, even when more are on
shift than the KNN window holds.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import local_date
from core.identity.authz import Principal
from core.identity.models import AppUser, Role
from dispatch import candidates, common, orders
from dispatch.matching import CaregiverIndex, CaregiverProfile, match
from dispatch.models import CaregiverPosition, Offer
from registry.models import Caregiver, Elder, ElderBlockedCaregiver, ProviderDistrict
from tests.conftest import TEST_NOW

pytestmark = pytest.mark.integration

N_CAREGIVERS = 300  # more than the KNN window of 8 × 32 positions


async def test_offer_goes_to_the_nearest_eligible_caregiver(db: AsyncSession) -> None:
    rnd = random.Random(7)
    elder = await db.scalar(select(Elder).where(Elder.status == "active").order_by(Elder.id).limit(1))
    assert elder is not None
    provider_id = await db.scalar(
        select(ProviderDistrict.provider_id).where(ProviderDistrict.district_id == elder.district_id).limit(1)
    )
    assert provider_id is not None
    elders = list(
        await db.scalars(
            select(Elder)
            .where(Elder.district_id == elder.district_id, Elder.status == "active")
            .order_by(Elder.id)
            .limit(3)
        )
    )
    await db.execute(delete(CaregiverPosition))
    await db.execute(
        delete(ElderBlockedCaregiver).where(ElderBlockedCaregiver.elder_id.in_([e.id for e in elders]))
    )
    rows: list[dict[str, Any]] = []
    for i in range(N_CAREGIVERS):
        skilled = rnd.random() < 0.6
        rows.append(
            {
                "provider_id": provider_id,
                "name": f"候选{i}",
                "gender": rnd.choice("MF"),
                "phone": f"137{i:08d}",
                "skills": ["VISIT", "CLEAN"] if skilled else ["CLEAN"],
                "shift_start": dt.time(0),
                "shift_end": dt.time(23, 59),
                "work_days": [1, 2, 3, 4, 5, 6, 7],
                "home_lat": elder.lat,
                "home_lon": elder.lon,
                "daily_capacity": 8,
                "rating": 4.5,
            }
        )
    ids = list(await db.scalars(insert(Caregiver).returning(Caregiver.id), rows))
    positions = {
        cid: (elder.lat + rnd.uniform(-0.03, 0.03), elder.lon + rnd.uniform(-0.03, 0.03)) for cid in ids
    }
    await db.execute(
        insert(CaregiverPosition),
        [
            {
                "caregiver_id": c,
                "lat": la,
                "lon": lo,
                "at": TEST_NOW,
                "on_shift": True,
                "shift_started_at": TEST_NOW,
            }
            for c, (la, lo) in positions.items()
        ],
    )
    await db.flush()
    operator = await db.scalar(select(AppUser.id).where(AppUser.username == "demo_operator"))
    actor = Principal(user_id=int(operator or 0), username="demo_operator", role=Role.OPERATOR)
    policies = await common.load_policies(session=db, day=local_date(TEST_NOW))
    for e in elders:
        order = await orders.place_order(
            session=db, actor=actor, elder_id=e.id, service_code="VISIT", now=TEST_NOW, asap=True
        )
        offer = await db.scalar(select(Offer).where(Offer.order_id == order.id))
        assert offer is not None, "a caregiver is on shift a few hundred metres away"
        # The same order matched by the pure core over all caregivers, without any database search.
        request = await candidates.build_request(session=db, order=order, now=TEST_NOW)
        index = CaregiverIndex()
        profiles = {}
        for (cid, (la, lo)), row in zip(positions.items(), rows, strict=True):
            index.update(cid, la, lo, row["skills"])
            profiles[cid] = CaregiverProfile(
                id=cid,
                gender=row["gender"],
                skills=frozenset(row["skills"]),
                certificates=(),
                shift_start=dt.time(0),
                shift_end=dt.time(23, 59),
                work_days=frozenset(range(1, 8)),
                daily_capacity=8,
                rating=4.5,
            )
        best = match(request, index=index, profiles=profiles, policy=policies.match, now=TEST_NOW, limit=1)
        assert offer.caregiver_id == best.candidates[0].caregiver_id
        assert offer.eta_s == best.candidates[0].eta_s
