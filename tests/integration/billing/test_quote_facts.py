"""The eligibility facts loader against the real database: many elders at once, only the rows that can
decide a day of the period, through a session, a SQLAlchemy connection or a bare asyncpg connection."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from billing.eligibility import AssessmentFact, Coverage, DatedCategory, load_elder_facts
from registry.models import Elder, ElderCategory
from tests.factories import Factory
from tests.integration.billing.conftest import insure

pytestmark = pytest.mark.integration

NOV1, NOV30 = dt.date(2026, 11, 1), dt.date(2026, 11, 30)


async def test_the_facts_of_many_elders_at_once(db: AsyncSession, make: Factory) -> None:
    a = await make.elder(categories=["subsistence"], living_situation="empty_nest")
    b = await make.elder(status="moved", status_on=dt.date(2026, 11, 12))
    c = await make.elder()
    # a: an assessment in force, another expired before November; a category that ended in October.
    current = await make.assessment(a, level=3, assessed_on=dt.date(2026, 6, 1))
    await make.assessment(a, level=2, assessed_on=dt.date(2025, 6, 1))  # valid until 2026-05-31
    db.add(ElderCategory(elder_id=a.id, category="veteran", valid_from=dt.date(2026, 1, 1),
                         valid_to=dt.date(2026, 10, 31)))  # fmt: skip
    await insure(db, a)
    # b: an assessment made after November.
    await make.assessment(b, level=4, assessed_on=dt.date(2026, 12, 2))
    await db.flush()

    facts = await load_elder_facts(db, [a.id, b.id, c.id, 2**62], first=NOV1, last=NOV30)
    assert set(facts) == {a.id, b.id, c.id}  # an id that does not exist is absent
    fa = facts[a.id]
    assert (fa.birth_on, fa.living_situation, fa.status, fa.status_on) == (
        a.birth_on,
        "empty_nest",
        "active",
        None,
    )
    assert fa.categories == (DatedCategory("subsistence", dt.date(2026, 1, 1), None),)
    assert fa.assessments == (AssessmentFact(current.id, 3, dt.date(2026, 6, 1), current.valid_until),)
    assert fa.ltc == (Coverage(dt.date(2026, 1, 1), None),)
    fb = facts[b.id]
    assert (fb.status, fb.status_on, fb.assessments) == ("moved", dt.date(2026, 11, 12), ())
    fc = facts[c.id]
    assert (fc.categories, fc.assessments, fc.ltc) == ((), (), ())

    # Without a period, every row.
    everything = await load_elder_facts(db, [a.id, b.id])
    assert len(everything[a.id].assessments) == 2
    assert [x.category for x in everything[a.id].categories] == ["subsistence", "veteran"]
    assert len(everything[b.id].assessments) == 1


async def test_every_elder_through_any_connection(
    db: AsyncSession, connection: AsyncConnection, make: Factory
) -> None:
    elder = await make.elder(categories=["low_income"])
    await db.flush()
    total = await db.scalar(select(func.count()).select_from(Elder))
    every = await load_elder_facts(db, None, first=NOV1, last=NOV30)
    assert len(every) == total
    assert every[elder.id].categories[0].category == "low_income"
    # The same through the test's SQLAlchemy connection and its asyncpg driver connection.
    via_connection = await load_elder_facts(connection, [elder.id])
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    via_driver = await load_elder_facts(raw, [elder.id])
    assert via_connection == via_driver == {elder.id: every[elder.id]}
