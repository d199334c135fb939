"""Reference and demo seeding against a real, freshly migrated PostgreSQL database of its own
(``conftest.py``: created, migrated with Alembic, seeded twice, dropped)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Integer, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.bootstrap import domain_seeds
from core.geo import haversine_m
from core.identity.models import AppUser, Role, UserDistrict
from core.identity.passwords import verify_password
from core.phone import normalise_phone
from core.policy import PolicyValue
from core.seed import seed_reference
from demo.data import DEMO_PASSWORD, Z2M_ALWAYS
from demo.seed import SeedSummary
from iot_ingest.models import Device, Gateway
from registry.assessment import ITEMS, assess
from registry.idcard import validate_id_number
from registry.models import (
    Assessment,
    Caregiver,
    Certificate,
    Community,
    District,
    Elder,
    ElderGuardian,
    Street,
)
from tests.integration.demo.conftest import TODAY

pytestmark = pytest.mark.integration


async def _scalar(db: AsyncSession, stmt: Any) -> Any:
    return (await db.execute(stmt)).scalar_one()


async def test_second_run_adds_nothing(seeded: tuple[SeedSummary, SeedSummary], db: AsyncSession) -> None:
    first, second = seeded
    assert first.created is True
    assert second.created is False
    assert first.counts == second.counts
    # seed_reference alone is idempotent too (ON CONFLICT DO NOTHING on natural keys).
    trans = await db.begin()
    try:
        again = await seed_reference(db, today=TODAY + dt.timedelta(days=400), domains=domain_seeds())
    finally:
        await trans.rollback()
    for table in ("district", "street", "community", "policy_value"):
        assert again[table] == first.counts[table]


async def test_counts_are_plausible(seeded: tuple[SeedSummary, SeedSummary], db: AsyncSession) -> None:
    c = seeded[0].counts
    assert c["district"] == 7
    assert 90 <= c["street"] <= 130
    assert 1900 <= c["elder"] <= 2100
    assert c["assessment"] == c["elder"]
    assert 1300 <= c["guardian"] <= 1700
    assert c["elder_guardian"] >= c["guardian"]
    assert c["provider"] == 20
    assert c["caregiver"] == 300
    assert c["gateway"] == 500
    assert c["device"] >= 500 * len(Z2M_ALWAYS)
    assert c["emergency_contact"] >= c["elder"]
    assert c["app_user"] == len(Role)
    assert c["user_district"] == 1
    urban = await _scalar(
        db, select(func.count()).select_from(Community).where(Community.is_village.is_(False))
    )
    villages = await _scalar(db, select(func.count()).select_from(Community).where(Community.is_village))
    assert urban == 209
    assert villages > 500
    assert (await _scalar(db, select(District.name).where(District.code == "420902"))) == "孝南区"
    names = set((await db.execute(select(Street.name))).scalars())
    assert {"书院街道", "新华街道", "广场街道", "车站街道", "孝天街道", "朱湖农场"} <= names


async def test_every_id_number_is_valid_and_matches_the_elder(db: AsyncSession) -> None:
    rows = (
        await db.execute(
            select(Elder.id_number, Elder.birth_on, Elder.gender, District.code, Elder.phone).join(
                District, Elder.district_id == District.id
            )
        )
    ).all()
    assert rows
    for id_number, birth_on, gender, district_code, phone in rows:
        n = validate_id_number(id_number, today=TODAY)
        assert (n.birth_on, n.gender, n.region_code) == (birth_on, gender, district_code)
        assert 60 <= (TODAY - birth_on).days // 365.25 <= 100
        if phone is not None:
            assert normalise_phone(phone) == phone


async def test_elders_sit_in_their_community_and_district(db: AsyncSession) -> None:
    mismatched = await _scalar(
        db,
        select(func.count())
        .select_from(Elder)
        .join(Community, Elder.community_id == Community.id)
        .join(Street, Community.street_id == Street.id)
        .where(Street.district_id != Elder.district_id),
    )
    assert mismatched == 0
    rows = (
        await db.execute(
            select(Elder.lat, Elder.lon, Community.lat, Community.lon).join(
                Community, Elder.community_id == Community.id
            )
        )
    ).all()
    assert max(haversine_m(*r) for r in rows) < 700.0
    # Weighted by population: the two largest divisions hold the most elders.
    by_district = dict(
        (
            await db.execute(
                select(District.code, func.count())
                .join(Elder, Elder.district_id == District.id)
                .group_by(District.code)
            )
        ).all()
    )
    assert len(by_district) == 7
    assert sorted(by_district, key=by_district.__getitem__)[-2:] in (
        ["420984", "420902"],
        ["420902", "420984"],
    )
    dementia = await _scalar(db, select(func.avg(cast(Elder.has_dementia, Integer))))
    assert 0.05 <= float(dementia) <= 0.12


async def test_assessments_agree_with_the_rules(db: AsyncSession) -> None:
    rows = (await db.execute(select(Assessment))).scalars().all()
    levels = dict.fromkeys(range(5), 0)
    for a in rows:
        r = assess(
            a.items,
            has_dementia_dx=a.has_dementia_dx,
            has_other_mental_dx=a.has_other_mental_dx,
            recent_incidents=a.recent_incidents,
            assessed_on=a.assessed_on,
        )
        assert (r.total, r.preliminary_level, r.final_level, r.valid_until) == (
            a.total,
            a.preliminary_level,
            a.final_level,
            a.valid_until,
        )
        assert set(a.items) == {i.key for i in ITEMS}
        levels[a.final_level] += 1
    assert all(n > 50 for n in levels.values()), levels
    elder_dementia = await _scalar(
        db,
        select(func.count())
        .select_from(Elder)
        .join(Assessment, Assessment.elder_id == Elder.id)
        .where(Elder.has_dementia != Assessment.has_dementia_dx),
    )
    assert elder_dementia == 0


async def test_one_login_per_role(seeded: tuple[SeedSummary, SeedSummary], db: AsyncSession) -> None:
    users = (await db.execute(select(AppUser))).scalars().all()
    assert sorted(u.role for u in users) == sorted(r.value for r in Role)
    assert {u.username for u in users} == {f"demo_{r.value}" for r in Role}
    assert all(verify_password(u.password_hash, DEMO_PASSWORD) for u in users)
    assert {(login.role, login.username) for login in seeded[0].logins} == {
        (u.role, u.username) for u in users
    }
    assert seeded[0].logins == seeded[1].logins
    by_role = {u.role: u for u in users}
    assert by_role["elder"].elder_id is not None
    assert by_role["family"].guardian_id is not None
    assert by_role["caregiver"].caregiver_id is not None
    assert by_role["provider_admin"].provider_id == by_role["caregiver"].provider_id
    district = await _scalar(
        db,
        select(District.code)
        .join(UserDistrict, UserDistrict.district_id == District.id)
        .where(UserDistrict.user_id == by_role["civil_affairs"].id),
    )
    assert district == "420902"
    # The demo family member is a guardian of the demo elder, who lives in the civil-affairs district.
    linked = await _scalar(
        db,
        select(func.count())
        .select_from(ElderGuardian)
        .where(
            ElderGuardian.elder_id == by_role["elder"].elder_id,
            ElderGuardian.guardian_id == by_role["family"].guardian_id,
        ),
    )
    assert linked == 1
    elder_district = await _scalar(
        db,
        select(District.code)
        .join(Elder, Elder.district_id == District.id)
        .where(Elder.id == by_role["elder"].elder_id),
    )
    assert elder_district == "420902"


async def test_caregivers_hold_the_certificates_their_skills_need(db: AsyncSession) -> None:
    caregivers = (await db.execute(select(Caregiver))).scalars().all()
    assert sum(c.gender == "F" for c in caregivers) > 0.7 * len(caregivers)
    for c in caregivers:
        kinds = {cert.kind for cert in c.certificates}
        if "MEAL" in c.skills:
            assert "health" in kinds
        if {"BATH", "CARE"} & set(c.skills):
            assert "eldercare_worker" in kinds
        assert 6 <= c.daily_capacity <= 10
        assert c.shift_start < c.shift_end
    soon = await _scalar(
        db,
        select(func.count())
        .select_from(Certificate)
        .where(Certificate.expires_on.between(TODAY, TODAY + dt.timedelta(days=30))),
    )
    assert soon > 0


async def test_every_home_gateway_has_the_standard_zigbee_devices(db: AsyncSession) -> None:
    rows = (
        await db.execute(
            select(Gateway.uid, func.array_agg(Device.friendly_name))
            .join(Device, Device.gateway_id == Gateway.id)
            .group_by(Gateway.uid)
        )
    ).all()
    assert len(rows) == 500
    for uid, names in rows:
        assert uid.startswith("gw-")
        assert set(Z2M_ALWAYS) <= set(names)
    native = await _scalar(
        db,
        select(func.count())
        .select_from(Device)
        .where(Device.gateway_id.is_(None), Device.kind == "gps_watch"),
    )
    assert native > 0
    bad_uid = await _scalar(
        db, select(func.count()).select_from(Device).where(~Device.uid.regexp_match(r"^dev-\d{6}$"))
    )
    assert bad_uid == 0


async def test_policy_defaults_are_dated_data(db: AsyncSession) -> None:
    meal = await _scalar(
        db,
        select(PolicyValue.value).where(PolicyValue.key == "service.price_fen", PolicyValue.scope == "MEAL"),
    )
    assert meal == {"fen": 1200, "unit": "meal", "min_minutes": None}
    voucher = await _scalar(db, select(PolicyValue.value).where(PolicyValue.key == "subsidy.voucher"))
    assert (voucher["rate_bp"], voucher["budget_fen"]) == (5000, 80_000)
    dated = await _scalar(
        db, select(func.count()).select_from(PolicyValue).where(PolicyValue.valid_from != dt.date(2026, 1, 1))
    )
    assert dated == 0
    empty_source = await _scalar(
        db, select(func.count()).select_from(PolicyValue).where(PolicyValue.source == "")
    )
    assert empty_source == 0


async def test_every_provider_is_contracted_for_what_its_caregivers_do(
    seeded: tuple[SeedSummary, SeedSummary], db: AsyncSession
) -> None:
    """Dispatch's demo rows (``demo.seed.DOMAIN_DEMO_ROWS``) contract each provider, open-ended
    from before the demo day, for the services its caregivers are skilled in; the second run adds none."""
    from dispatch.models import ProviderService, Service

    first, second = seeded
    assert first.counts["provider_service"] == second.counts["provider_service"] > 0
    by_skill: dict[str, set[str]] = {}
    for code, skill in (await db.execute(select(Service.code, Service.skill))).all():
        by_skill.setdefault(skill, set()).add(code)
    expected: dict[int, set[str]] = {}
    for provider_id, skills in (await db.execute(select(Caregiver.provider_id, Caregiver.skills))).all():
        expected.setdefault(provider_id, set()).update(c for s in skills for c in by_skill.get(s, ()))
    contracted: dict[int, set[str]] = {}
    for c in (await db.execute(select(ProviderService))).scalars():
        assert (c.valid_from, c.valid_to) == (dt.date(2026, 1, 1), None)
        contracted.setdefault(c.provider_id, set()).add(c.service_code)
    assert contracted == expected
    assert len(contracted) == first.counts["provider"]
