"""The demo data set: reference data plus a deterministic set of elders, providers, caregivers, homes
with devices and one login per role, then each domain's demo rows.

Only adds rows and flushes; the caller owns the transaction. Idempotent: the demo set is skipped when
its marker, the ``demo_admin`` login, already exists; reference rows and the domains' demo hooks are
idempotent themselves and run on every call. The caller (the composition root) passes the domains'
seeds; this module names only the domains whose demo rows it builds.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Base
from core.identity.models import AppUser, Role, UserDistrict
from core.identity.passwords import hash_password
from core.policy import PolicyValue
from core.seed import DomainSeed, SeedHook, seed_reference, table_counts
from demo import data as sd
from demo.builder import DemoBuilder, Household, Person, Place
from dispatch.seed import seed_agreements, seed_contracts
from iot_ingest.models import Device, Gateway
from registry.models import (
    Assessment,
    Caregiver,
    Certificate,
    Community,
    District,
    Elder,
    ElderCategory,
    ElderGuardian,
    ElderStatus,
    EmergencyContact,
    Guardian,
    LtcCoverage,
    Provider,
    ProviderDistrict,
    Street,
)
from registry.seed import code_ids

log = structlog.get_logger(__name__)

DEFAULT_SEED = 20261129
DEMO_ELDERS = 2000
DEMO_CAREGIVERS = 300
DEMO_HOMES_WITH_DEVICES = 500
DEMO_MARKER_USERNAME = "demo_admin"
CIVIL_AFFAIRS_DISTRICT = "420902"  # the demo civil-affairs officer covers 孝南区

# The domains' parts of the demo data set, run after the demo's own rows on every call (idempotent).
DOMAIN_DEMO_ROWS: tuple[SeedHook, ...] = (seed_contracts, seed_agreements)

COUNTED_TABLES: tuple[type[Base], ...] = (
    District,
    Street,
    Community,
    PolicyValue,
    Elder,
    EmergencyContact,
    ElderCategory,
    LtcCoverage,
    Assessment,
    Guardian,
    ElderGuardian,
    Provider,
    ProviderDistrict,
    Caregiver,
    Certificate,
    Gateway,
    Device,
    AppUser,
    UserDistrict,
)


@dataclass(frozen=True, slots=True)
class DemoLogin:
    role: str
    username: str
    password: str
    display_name: str


@dataclass(frozen=True, slots=True)
class SeedSummary:
    """What the database holds after seeding. ``created`` is False when the demo set already existed."""

    created: bool
    counts: dict[str, int]
    logins: tuple[DemoLogin, ...]


async def _insert_returning_ids(
    session: AsyncSession, model: type[Base], rows: list[dict[str, Any]]
) -> list[int]:
    if not rows:
        return []
    pk = model.__table__.primary_key.columns.values()[0]  # type: ignore[attr-defined]
    result = await session.execute(insert(model).returning(pk, sort_by_parameter_order=True), rows)
    return list(result.scalars().all())


async def _existing_logins(session: AsyncSession) -> tuple[DemoLogin, ...]:
    rows = (
        await session.execute(
            select(AppUser.role, AppUser.username, AppUser.display_name)
            .where(AppUser.username.in_([f"demo_{r.value}" for r in Role]))
            .order_by(AppUser.id)
        )
    ).all()
    return tuple(DemoLogin(role, username, sd.DEMO_PASSWORD, name) for role, username, name in rows)


async def _load_places(session: AsyncSession) -> list[Place]:
    stmt = (
        select(
            Community.id,
            Community.name,
            Community.is_village,
            Community.lat,
            Community.lon,
            Street.name,
            District.id,
            District.code,
            District.name,
        )
        .join(Street, Community.street_id == Street.id)
        .join(District, Street.district_id == District.id)
        .order_by(Community.code)
    )
    return [Place(*row) for row in (await session.execute(stmt)).all()]


async def _domain_demo_rows(session: AsyncSession, *, today: dt.date) -> dict[str, int]:
    counts: dict[str, int] = {}
    for hook in DOMAIN_DEMO_ROWS:
        counts.update(await hook(session, today=today))
    return counts


async def seed_demo(  # noqa: C901 - a linear script of optional seeding steps; each branch is one flag
    session: AsyncSession, *, today: dt.date, domains: Sequence[DomainSeed], seed: int = DEFAULT_SEED
) -> SeedSummary:
    """Reference data plus a deterministic demo data set for ``today``; skipped if already present.

    ``domains`` are the domains' seeds, from the composition root (``api.bootstrap``): their reference
    data and policy defaults come first (:func:`core.seed.seed_reference`).

    About 2,000 elders over the 7 divisions (weighted by population) with assessments, guardians,
    contacts, subsidy categories and long-term-care coverage; 20 providers with 300 caregivers and
    their certificates; 500 homes with a Zigbee gateway and devices; one login per role
    (``demo_<role>``, password :data:`demo.data.DEMO_PASSWORD`); then the domains' demo rows
    (:data:`DOMAIN_DEMO_ROWS`, also when the demo set already existed). Only flushes.
    """
    started = time.perf_counter()
    await seed_reference(session, today=today, domains=domains)
    marker = await session.execute(select(AppUser.id).where(AppUser.username == DEMO_MARKER_USERNAME))
    if marker.first() is not None:
        log.info("seed.demo.skipped", reason="already_seeded")
        hooks = await _domain_demo_rows(session, today=today)
        return SeedSummary(
            created=False,
            counts=await table_counts(session, COUNTED_TABLES) | hooks,
            logins=await _existing_logins(session),
        )

    rng = random.Random(seed)
    places = await _load_places(session)
    district_ids = await code_ids(session, District)
    b = DemoBuilder(rng, today, places)

    # Elders, their assessments, categories, coverage, guardians and contacts.
    people, homes = b.households(DEMO_ELDERS)
    assessments = [b.assessment(p) for p in people]
    categories = [b.categories(p, homes[p.household]) for p in people]
    ltc = [b.ltc(p, homes[p.household].place.district_code, i + 1) for i, p in enumerate(people)]
    guardian_rows, guardian_links = b.guardians(people, homes)
    contacts = b.contacts(people, homes, guardian_rows)

    elder_ids = await _insert_returning_ids(session, Elder, [p.row for p in people])
    await session.execute(
        insert(Assessment), [{"elder_id": elder_ids[i], **a} for i, a in enumerate(assessments)]
    )
    await session.execute(
        insert(ElderCategory),
        [{"elder_id": elder_ids[i], **c} for i, cs in enumerate(categories) for c in cs],
    )
    await session.execute(
        insert(LtcCoverage), [{"elder_id": elder_ids[i], **c} for i, c in enumerate(ltc) if c is not None]
    )
    guardian_ids = await _insert_returning_ids(session, Guardian, guardian_rows)
    await session.execute(
        insert(ElderGuardian),
        [
            {
                "elder_id": elder_ids[link["elder"]],
                "guardian_id": guardian_ids[link["guardian"]],
                "relation": link["relation"],
                "is_primary": link["is_primary"],
            }
            for link in guardian_links
        ],
    )
    await session.execute(
        insert(EmergencyContact),
        [
            {**{k: v for k, v in c.items() if k != "elder"}, "elder_id": elder_ids[c["elder"]]}
            for c in contacts
        ],
    )

    # Providers, the districts they serve, caregivers and certificates.
    provider_rows, served = b.providers(district_ids)
    provider_ids = await _insert_returning_ids(session, Provider, provider_rows)
    await session.execute(
        insert(ProviderDistrict),
        [{"provider_id": provider_ids[p], "district_id": d} for p, d in served],
    )
    caregiver_rows, caregiver_certs = b.caregivers(DEMO_CAREGIVERS)
    demo_caregiver = _demo_caregiver_index(caregiver_rows, caregiver_certs, today)
    for row in caregiver_rows:
        row["provider_id"] = provider_ids[row["provider_id"]]
    caregiver_ids = await _insert_returning_ids(session, Caregiver, caregiver_rows)
    await session.execute(
        insert(Certificate),
        [{"caregiver_id": caregiver_ids[i], **c} for i, cs in enumerate(caregiver_certs) for c in cs],
    )

    # Homes with a gateway and devices.
    device_homes = b.device_homes(people, homes, DEMO_HOMES_WITH_DEVICES)
    gateway_rows: list[dict[str, Any]] = []
    device_rows: list[dict[str, Any]] = []
    home_gateway: dict[int, int] = {}
    for h in device_homes:
        home = homes[h]
        active = [m for m in home.members if people[m].row["status"] == ElderStatus.ACTIVE.value]
        owner = active[0]
        home_gateway[h] = len(gateway_rows)
        gateway_rows.append(
            {
                "uid": f"gw-{len(gateway_rows) + 1:06d}",
                "elder_id": elder_ids[owner],
                "model": sd.GATEWAY_MODEL,
                "serial": b.serial("SLZB06-", 32),
                "status": "active",
            }
        )
        names = list(sd.Z2M_ALWAYS)
        if rng.random() < 0.4:
            names.append("gas")
        if rng.random() < 0.3:
            names.append("motion_bedroom")
        for friendly in names:
            spec = sd.Z2M_DEVICES[friendly]
            device_rows.append(
                {
                    "kind": spec.kind,
                    "model": spec.model,
                    "serial": b.serial("0x00158d00", 32),
                    "elder_id": elder_ids[owner],
                    "gateway": len(gateway_rows) - 1,
                    "friendly_name": friendly,
                    "power": spec.power,
                }
            )
        for m in active:
            person = people[m]
            natives: list[str] = []
            if rng.random() < (0.5 if person.final_level >= 2 else 0.2):
                natives.append("fall_sensor")
            if rng.random() < 0.2:
                natives.append("vitals_band")
            if rng.random() < (0.9 if person.row["has_dementia"] else 0.08):
                natives.append("gps_watch")
            for kind in natives:
                spec = sd.NATIVE_DEVICES[kind]
                device_rows.append(
                    {
                        "kind": spec.kind,
                        "model": spec.model,
                        "serial": b.serial(f"{kind[:2].upper()}-", 40),
                        "elder_id": elder_ids[m],
                        "gateway": None,
                        "friendly_name": None,
                        "power": spec.power,
                    }
                )
    gateway_ids = await _insert_returning_ids(session, Gateway, gateway_rows)
    for n, row in enumerate(device_rows, start=1):
        gw = row.pop("gateway")
        row["gateway_id"] = None if gw is None else gateway_ids[gw]
        row["uid"] = f"dev-{n:06d}"
        row["status"] = "active"
    await session.execute(insert(Device), device_rows)

    # One login per role, pointing at a meaningful demo elder / family / caregiver / provider.
    logins, user_rows = _demo_users(b, people, homes, home_gateway, elder_ids, guardian_rows, guardian_ids)
    for row in user_rows:
        if row["role"] == Role.CAREGIVER.value:
            row["caregiver_id"] = caregiver_ids[demo_caregiver]
            row["display_name"] = caregiver_rows[demo_caregiver]["name"]
        if row["role"] in (Role.CAREGIVER.value, Role.PROVIDER_ADMIN.value):
            row["provider_id"] = caregiver_rows[demo_caregiver]["provider_id"]
    user_ids = await _insert_returning_ids(session, AppUser, user_rows)
    civil = next(i for i, r in zip(user_ids, user_rows, strict=True) if r["role"] == Role.CIVIL_AFFAIRS.value)
    await session.execute(
        insert(UserDistrict), [{"user_id": civil, "district_id": district_ids[CIVIL_AFFAIRS_DISTRICT]}]
    )
    await session.flush()

    counts = await table_counts(session, COUNTED_TABLES) | await _domain_demo_rows(session, today=today)
    log.info(
        "seed.demo.created",
        seed=seed,
        today=today.isoformat(),
        seconds=round(time.perf_counter() - started, 2),
    )
    display = {r["username"]: r["display_name"] for r in user_rows}
    return SeedSummary(
        created=True,
        counts=counts,
        logins=tuple(DemoLogin(x.role, x.username, x.password, display[x.username]) for x in logins),
    )


def _demo_users(
    b: DemoBuilder,
    people: list[Person],
    homes: list[Household],
    home_gateway: dict[int, int],
    elder_ids: list[int],
    guardian_rows: list[dict[str, Any]],
    guardian_ids: list[int],
) -> tuple[list[DemoLogin], list[dict[str, Any]]]:
    """Rows for ``demo_<role>``; the elder is a 孝南区 resident with devices, a guardian and level 2-3."""

    def score(i: int) -> int:
        p, home = people[i], homes[people[i].household]
        return sum(
            (
                4 * (home.place.district_code == CIVIL_AFFAIRS_DISTRICT),
                4 * (p.row["status"] == ElderStatus.ACTIVE.value),
                2 * (p.household in home_gateway),
                2 * bool(home.guardians),
                2 * (p.row["phone"] is not None),
                1 * (p.final_level in (2, 3) and p.assessment_valid),
            )
        )

    elder = max(range(len(people)), key=lambda i: (score(i), -i))
    home = homes[people[elder].household]
    guardian = home.guardians[0] if home.guardians else None
    # One hash for all eight: they share the published demo password, and Argon2 costs ~0.1-0.5 s each.
    password_hash = hash_password(sd.DEMO_PASSWORD)
    staff = {
        role: b.young_name(b.rng.choice("MF"))
        for role in (Role.OPERATOR, Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.ADMIN, Role.PROVIDER_ADMIN)
    }
    rows: list[dict[str, Any]] = []
    logins: list[DemoLogin] = []
    for role in Role:
        if role is Role.FAMILY and guardian is None:
            continue
        username = f"demo_{role.value}"
        row: dict[str, Any] = {
            "username": username,
            "phone": None,
            "display_name": staff.get(role, ""),
            "password_hash": password_hash,
            "role": role.value,
            "provider_id": None,
            "caregiver_id": None,
            "elder_id": None,
            "guardian_id": None,
            "locale": "zh-CN",
            "is_active": True,
        }
        if role is Role.ELDER:
            row.update(
                elder_id=elder_ids[elder],
                display_name=people[elder].row["name"],
                phone=people[elder].row["phone"],
            )
        elif role is Role.FAMILY and guardian is not None:
            g = guardian_rows[guardian]
            row.update(guardian_id=guardian_ids[guardian], display_name=g["name"], phone=g["phone"])
        rows.append(row)
        logins.append(DemoLogin(role.value, username, sd.DEMO_PASSWORD, row["display_name"]))
    return logins, rows


def _demo_caregiver_index(
    rows: list[dict[str, Any]], certs: list[list[dict[str, Any]]], today: dt.date
) -> int:
    """A 孝南区 caregiver who can do everything, certificates valid today (else the best available)."""
    xiaonan_providers = {i for i, (_, code) in enumerate(sd.PROVIDERS) if code == CIVIL_AFFAIRS_DISTRICT}

    def score(i: int) -> tuple[int, int]:
        r = rows[i]
        valid = [c for c in certs[i] if c["issued_on"] <= today <= c["expires_on"]]
        worker_ok = any(c["kind"] == "eldercare_worker" and c["level"] <= 4 for c in valid)
        health_ok = any(c["kind"] == "health" for c in valid)
        return (
            8 * (r["provider_id"] in xiaonan_providers)
            + (r["gender"] == "F")
            + 2 * r["is_active"]
            + 2 * worker_ok
            + health_ok
            + len(r["skills"]) // 4,
            -i,
        )

    return max(range(len(rows)), key=score)
