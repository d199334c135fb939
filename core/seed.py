"""Seeding: reference data every install needs, and a deterministic demo data set.

Both functions only add rows and flush; the caller owns the transaction. Both are idempotent:
reference rows are inserted with ``ON CONFLICT DO NOTHING`` on their natural keys (division codes,
``(key, scope, valid_from)`` for policy values); the demo set is skipped when its marker, the
``demo_admin`` login, already exists.

Domains add their own demo rows through a hook: a module listed in :data:`DOMAIN_SEED_MODULES` with
``async def seed(session, *, today) -> dict[str, int]`` (its table row counts), run after the kernel's
demo data on every ``seed_demo`` call, so it must be idempotent itself. The kernel may not import
domains, so the modules are loaded by name (like ``core.scheduler.DOMAIN_JOB_MODULES``).
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core import seed_data as sd
from core.db import Base
from core.geo import LatLon, offset
from core.identity.models import AppUser, Role, UserDistrict
from core.identity.passwords import hash_password
from core.policy import PolicyValue
from iot_ingest.models import Device, Gateway
from registry.assessment import INCIDENT_KINDS, ITEMS, assess
from registry.idcard import make_id_number
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
    LivingSituation,
    LtcCoverage,
    Provider,
    ProviderDistrict,
    Street,
    SubsidyCategory,
)

log = structlog.get_logger(__name__)

DEFAULT_SEED = 20261129
DEMO_ELDERS = 2000
DEMO_CAREGIVERS = 300
DEMO_HOMES_WITH_DEVICES = 500
DEMO_MARKER_USERNAME = "demo_admin"
CIVIL_AFFAIRS_DISTRICT = "420902"  # the demo civil-affairs officer covers 孝南区
_LAYOUT_SEED = "eldercare-reference-layout-v1"  # reference geometry never depends on the demo seed

# Modules whose ``seed(session, today=...)`` adds a domain's demo rows. Add yours here (explicit).
DOMAIN_SEED_MODULES: tuple[str, ...] = ("dispatch.seed",)
DomainSeed = Callable[..., Awaitable[dict[str, int]]]

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


# --- Reference data ------------------------------------------------------------------------------


def _street_block(spec: sd.StreetSpec) -> int:
    """First code of a street's block in GB/T 10114 style: 街道 001-099, 镇 1xx, 乡 2xx, 农场 4xx."""
    if not spec.is_township:
        return 0
    if spec.name.endswith("镇"):
        return 100
    if spec.name.endswith("乡"):
        return 200
    return 400


def _disk(rng: random.Random, centre: LatLon, radius_m: float, min_m: float = 0.0) -> LatLon:
    """A uniformly random point in the ring ``min_m``..``radius_m`` metres around ``centre``."""
    r = math.sqrt(rng.uniform((min_m / radius_m) ** 2, 1.0)) * radius_m if radius_m > 0 else 0.0
    bearing = rng.uniform(0.0, 2 * math.pi)
    p = offset(centre, north_m=r * math.cos(bearing), east_m=r * math.sin(bearing))
    return LatLon(round(p.lat, 6), round(p.lon, 6))


def reference_geography() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows for districts, streets (with ``district_code``) and communities (with ``street_code``).

    Deterministic: positions come from a fixed layout seed, so every install gets the same places.
    """
    districts: list[dict[str, Any]] = []
    streets: list[dict[str, Any]] = []
    communities: list[dict[str, Any]] = []
    for d in sd.DISTRICTS:
        rng = random.Random(f"{_LAYOUT_SEED}:{d.code}")
        centre = LatLon(d.lat, d.lon)
        districts.append(
            {"code": d.code, "name": d.name, "name_en": d.name_en, "kind": d.kind, "lat": d.lat, "lon": d.lon}
        )
        per_block: dict[int, int] = {}
        for spec in d.streets:
            block = _street_block(spec)
            per_block[block] = per_block.get(block, 0) + 1
            code = f"{d.code}{block + per_block[block]:03d}000"  # 12-digit statistical code
            streets.append(
                {"district_code": d.code, "code": code, "name": spec.name, "is_township": spec.is_township}
            )
            # Urban streets ring the centre; a county seat (a town with several communities) sits at it.
            if not spec.is_township:
                street_centre = _disk(rng, centre, 3500.0, 500.0)
            elif spec.communities >= 5:
                street_centre = _disk(rng, centre, 1000.0)
            else:
                street_centre = _disk(rng, centre, d.town_radius_km * 1000.0, d.town_radius_km * 350.0)
            stems = rng.sample(sd.COMMUNITY_STEMS, spec.communities)
            for i, stem in enumerate(stems):
                p = _disk(rng, street_centre, 1200.0)
                communities.append(
                    {
                        "street_code": code,
                        "code": f"{code[:9]}{i + 1:03d}",
                        "name": f"{stem}社区",
                        "is_village": False,
                        "lat": p.lat,
                        "lon": p.lon,
                    }
                )
            village_names = rng.sample(
                [f + (rng.choice(("", "家")) + g) for f in sd.VILLAGE_FAMILIES for g in sd.VILLAGE_LANDFORMS],
                spec.villages,
            )
            for j, vname in enumerate(village_names):
                p = _disk(rng, street_centre, 4000.0 if spec.is_township else 2500.0, 300.0)
                communities.append(
                    {
                        "street_code": code,
                        "code": f"{code[:9]}{200 + j:03d}",
                        "name": f"{vname}村",
                        "is_village": True,
                        "lat": p.lat,
                        "lon": p.lon,
                    }
                )
    return districts, streets, communities


async def _code_ids(session: AsyncSession, model: type[District] | type[Street]) -> dict[str, int]:
    rows = (await session.execute(select(model.code, model.id))).all()
    return {code: id_ for code, id_ in rows}


async def seed_reference(session: AsyncSession, *, today: dt.date) -> dict[str, int]:
    """Insert the 7 Xiaogan divisions, their streets and communities, and the policy defaults.

    Policy values are dated from :data:`core.seed_data.POLICY_EPOCH` (2026-01-01) whatever ``today``
    is, so re-running on a later day adds nothing. Returns table row counts after seeding.
    """
    districts, streets, communities = reference_geography()
    await session.execute(pg_insert(District).on_conflict_do_nothing(index_elements=["code"]), districts)
    district_ids = await _code_ids(session, District)
    await session.execute(
        pg_insert(Street).on_conflict_do_nothing(index_elements=["code"]),
        [
            {
                "district_id": district_ids[s["district_code"]],
                **{k: v for k, v in s.items() if k != "district_code"},
            }
            for s in streets
        ],
    )
    street_ids = await _code_ids(session, Street)
    await session.execute(
        pg_insert(Community).on_conflict_do_nothing(index_elements=["code"]),
        [
            {"street_id": street_ids[c["street_code"]], **{k: v for k, v in c.items() if k != "street_code"}}
            for c in communities
        ],
    )
    await session.execute(
        pg_insert(PolicyValue).on_conflict_do_nothing(constraint="uq_policy_value_key_scope_from"),
        [
            {
                "key": p.key,
                "scope": p.scope,
                "value": p.value,
                "valid_from": sd.POLICY_EPOCH,
                "valid_to": None,
                "source": p.source,
            }
            for p in sd.POLICY_DEFAULTS
        ],
    )
    counts = await _counts(session, (District, Street, Community, PolicyValue))
    log.info("seed.reference.done", today=today.isoformat(), **counts)
    return counts


# --- Demo data -----------------------------------------------------------------------------------

_AGE_BANDS: tuple[tuple[int, int, float], ...] = (
    (60, 64, 0.30),
    (65, 69, 0.25),
    (70, 74, 0.18),
    (75, 79, 0.12),
    (80, 84, 0.09),
    (85, 89, 0.04),
    (90, 94, 0.015),
    (95, 100, 0.005),
)
# Share of a division's elders who live in an urban community rather than a village [E].
_URBAN_SHARE = {"urban": 0.65, "mixed": 0.4, "rural": 0.3}
# Preliminary level distribution by age (levels 0..4) [E], and for elders with dementia.
_LEVEL_WEIGHTS: tuple[tuple[int, tuple[float, ...]], ...] = (
    (70, (0.50, 0.32, 0.10, 0.05, 0.03)),
    (80, (0.30, 0.38, 0.17, 0.09, 0.06)),
    (90, (0.12, 0.35, 0.25, 0.16, 0.12)),
    (999, (0.05, 0.25, 0.28, 0.22, 0.20)),
)
_DEMENTIA_LEVEL_WEIGHTS = (0.0, 0.25, 0.35, 0.25, 0.15)
_LEVEL_TOTAL_RANGE = {0: (90, 90), 1: (66, 89), 2: (46, 65), 3: (30, 45), 4: (4, 29)}
# How readily each item loses points as ability declines (bathing and stairs go first) [E].
_ITEM_DECLINE_WEIGHT = {
    "eating": 1.0, "grooming": 1.5, "bathing": 3.0, "dressing_upper": 1.5, "dressing_lower": 2.0,
    "bladder": 1.5, "bowel": 1.0, "toileting": 1.5, "bed_mobility": 1.0, "transfer": 1.5, "walking": 2.0,
    "stairs": 3.0, "orientation_time": 1.0, "orientation_place": 0.7, "orientation_people": 0.5,
    "memory": 1.5, "comprehension": 0.7, "expression": 0.7, "aggression": 0.2, "depression": 0.5,
    "consciousness": 0.15, "vision": 1.0, "hearing": 1.0, "daily_tasks": 2.5, "transport": 3.0,
    "social": 1.5,
}  # fmt: skip
_MENTAL_KEYS = frozenset(
    {"orientation_time", "orientation_place", "orientation_people", "memory", "comprehension", "expression"}
)


def _add_years(day: dt.date, years: int) -> dt.date:
    """The same calendar day ``years`` later (or earlier); 29 February becomes 28 February."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


@dataclass(slots=True)
class _Place:
    community_id: int
    community_name: str
    is_village: bool
    lat: float
    lon: float
    street_name: str
    district_id: int
    district_code: str
    district_name: str


@dataclass(slots=True)
class _Person:
    """An elder being generated; ``row`` is what goes into the table."""

    row: dict[str, Any]
    age: int
    household: int
    family_name: str
    level: int = 0
    final_level: int = 0
    assessment_valid: bool = True


@dataclass(slots=True)
class _Household:
    place: _Place
    members: list[int]
    no_children: bool
    guardians: list[int] = field(default_factory=list)  # indexes into guardian rows
    guardian_relations: list[str] = field(default_factory=list)


class _DemoBuilder:
    """Generates every demo row in memory from one ``random.Random``; the caller inserts them."""

    def __init__(self, rng: random.Random, today: dt.date, places: Sequence[_Place]) -> None:
        self.rng = rng
        self.today = today
        self.phones: set[str] = set()
        self.id_numbers: set[str] = set()
        self.serials: set[str] = set()
        ranks = range(len(sd.FAMILY_NAMES))
        self.family_weights = [1.0 / (r + 4) for r in ranks]
        self.by_district: dict[str, tuple[list[_Place], list[_Place]]] = {}
        for p in places:
            urban, rural = self.by_district.setdefault(p.district_code, ([], []))
            (rural if p.is_village else urban).append(p)

    # -- small generators

    def family_name(self) -> str:
        return self.rng.choices(sd.FAMILY_NAMES, weights=self.family_weights)[0]

    def elder_given(self, gender: str) -> str:
        return self.rng.choice(sd.ELDER_MALE_GIVEN if gender == "M" else sd.ELDER_FEMALE_GIVEN)

    def young_name(self, gender: str, family: str | None = None) -> str:
        given = self.rng.choice(sd.YOUNG_MALE_GIVEN if gender == "M" else sd.YOUNG_FEMALE_GIVEN)
        return (family or self.family_name()) + given

    def phone(self) -> str:
        while True:
            p = self.rng.choice(sd.MOBILE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"
            if p not in self.phones:
                self.phones.add(p)
                return p

    def serial(self, prefix: str, bits: int = 32) -> str:
        while True:
            s = f"{prefix}{self.rng.getrandbits(bits):0{bits // 4}x}"
            if s not in self.serials:
                self.serials.add(s)
                return s

    def id_number(self, region: str, birth_on: dt.date, gender: str) -> str:
        while True:
            seq = self.rng.randrange(500) * 2 + (1 if gender == "M" else 0)
            n = make_id_number(region, birth_on, seq)
            if n not in self.id_numbers:
                self.id_numbers.add(n)
                return n

    def age(self) -> int:
        lo, hi, _ = self.rng.choices(_AGE_BANDS, weights=[w for _, _, w in _AGE_BANDS])[0]
        return self.rng.randint(lo, hi)

    def birth_for_age(self, age: int) -> dt.date:
        latest = _add_years(self.today, -age)
        earliest = _add_years(self.today, -(age + 1)) + dt.timedelta(days=1)
        return earliest + dt.timedelta(days=self.rng.randrange((latest - earliest).days + 1))

    def past_day(self, lo_days: int, hi_days: int) -> dt.date:
        return self.today - dt.timedelta(days=self.rng.randint(lo_days, hi_days))

    def place(self, district_code: str, urban: bool) -> _Place:
        urban_pool, rural_pool = self.by_district[district_code]
        pool = urban_pool if (urban and urban_pool) or not rural_pool else rural_pool
        return self.rng.choice(pool)

    def address(self, place: _Place) -> str:
        rng = self.rng
        if place.is_village:
            detail = f"{rng.randint(1, 12)}组{rng.randint(1, 60)}号"
        else:
            detail = (
                f"{rng.randint(1, 30)}栋{rng.randint(1, 4)}单元{rng.randint(1, 7)}{rng.randint(1, 4):02d}室"
            )
        return f"湖北省孝感市{place.district_name}{place.street_name}{place.community_name}{detail}"

    # -- elders and households

    def households(self, n_elders: int) -> tuple[list[_Person], list[_Household]]:
        rng = self.rng
        district_weights = [d.population for d in sd.DISTRICTS]
        people: list[_Person] = []
        homes: list[_Household] = []
        while len(people) < n_elders:
            d = rng.choices(sd.DISTRICTS, weights=district_weights)[0]
            place = self.place(d.code, rng.random() < _URBAN_SHARE[d.kind])
            couple = rng.random() < 0.18 and len(people) + 2 <= n_elders
            age = self.age()
            if couple:
                husband_age = min(100, max(60, age + rng.randint(0, 4)))
                wife_age = min(100, max(60, age - rng.randint(0, 4)))
                members = [("M", husband_age), ("F", wife_age)]
                situation = LivingSituation.EMPTY_NEST if rng.random() < 0.65 else LivingSituation.WITH_FAMILY
                no_children = rng.random() < 0.02
            else:
                female_share = min(0.85, 0.5 + (age - 60) * 0.008)
                members = [("F" if rng.random() < female_share else "M", age)]
                no_children = rng.random() < 0.05
                alone = no_children or rng.random() < 0.40
                situation = LivingSituation.ALONE if alone else LivingSituation.WITH_FAMILY
            home = _Household(place=place, members=[], no_children=no_children)
            base = _disk(rng, LatLon(place.lat, place.lon), 600.0 if place.is_village else 250.0)
            address = self.address(place)
            husband_family = self.family_name()
            for gender, member_age in members:
                family = husband_family if gender == "M" else self.family_name()
                birth_on = self.birth_for_age(member_age)
                people.append(
                    _Person(
                        row=self.elder_row(
                            place, gender, birth_on, member_age, family, address, base, situation
                        ),
                        age=member_age,
                        household=len(homes),
                        family_name=husband_family,
                    )
                )
                home.members.append(len(people) - 1)
            homes.append(home)
        return people, homes

    def elder_row(
        self,
        place: _Place,
        gender: str,
        birth_on: dt.date,
        age: int,
        family: str,
        address: str,
        base: LatLon,
        situation: LivingSituation,
    ) -> dict[str, Any]:
        rng = self.rng
        dementia_p = 0.045 if age < 70 else 0.10 if age < 80 else 0.22 if age < 90 else 0.38
        phone_p = 0.9 if age < 75 else 0.7 if age < 85 else 0.4
        roll = rng.random()
        if roll < 0.01:
            status, status_on = ElderStatus.HOSPITALISED, self.past_day(1, 20)
        elif roll < 0.015:
            status, status_on = ElderStatus.DECEASED, self.past_day(5, 90)
        elif roll < 0.02:
            status, status_on = ElderStatus.MOVED, self.past_day(5, 120)
        else:
            status, status_on = ElderStatus.ACTIVE, None
        conditions = rng.sample(sd.MEDICAL_CONDITIONS, rng.choice((0, 1, 1, 2, 2, 3)))
        # Members of one household share the address; each stands a few metres apart only on paper.
        p = _disk(rng, base, 5.0)
        return {
            "name": family + self.elder_given(gender),
            "gender": gender,
            "birth_on": birth_on,
            "id_number": self.id_number(place.district_code, birth_on, gender),
            "phone": self.phone() if rng.random() < phone_p else None,
            "address": address,
            "lat": p.lat,
            "lon": p.lon,
            "community_id": place.community_id,
            "district_id": place.district_id,
            "living_situation": situation.value,
            "has_dementia": rng.random() < dementia_p,
            "allows_any_gender_bathing": rng.random() < 0.3,
            "medical_notes": "；".join(conditions),
            "status": status.value,
            "status_on": status_on,
        }

    def item_scores(self, target_total: int, dementia: bool) -> dict[str, int]:
        scores = {i.key: i.max_score for i in ITEMS}
        weights = {
            k: w * (4.0 if dementia and k in _MENTAL_KEYS else 1.0) for k, w in _ITEM_DECLINE_WEIGHT.items()
        }
        deficit = sum(scores.values()) - target_total
        while deficit > 0:
            keys = [k for k, v in scores.items() if v > 0]
            k = self.rng.choices(keys, weights=[weights[k] for k in keys])[0]
            scores[k] -= 1
            deficit -= 1
        return scores

    def assessment(self, person: _Person) -> dict[str, Any]:
        rng = self.rng
        dementia = bool(person.row["has_dementia"])
        if dementia:
            weights: Sequence[float] = _DEMENTIA_LEVEL_WEIGHTS
        else:
            weights = next(w for limit, w in _LEVEL_WEIGHTS if person.age < limit)
        level = rng.choices(range(5), weights=weights)[0]
        lo, hi = _LEVEL_TOTAL_RANGE[level]
        items = self.item_scores(rng.randint(lo, hi), dementia)
        incidents: list[str] = []
        if level >= 2:
            roll = rng.random()
            kinds = sorted(INCIDENT_KINDS)
            if roll < 0.12:
                incidents = [rng.choice(kinds), rng.choice(kinds)]
            elif roll < 0.27:
                incidents = ["wandering" if dementia else "fall"]
        other_mental = rng.random() < 0.03
        expired = rng.random() < 0.07
        assessed_on = self.past_day(366, 520) if expired else self.past_day(3, 330)
        result = assess(
            items,
            has_dementia_dx=dementia,
            has_other_mental_dx=other_mental,
            recent_incidents=incidents,
            assessed_on=assessed_on,
        )
        person.level = result.preliminary_level
        person.final_level = result.final_level
        person.assessment_valid = result.is_valid_on(self.today)
        assessor = self.young_name(rng.choice("MF"))
        return {
            "items": dict(result.items),
            "has_dementia_dx": dementia,
            "has_other_mental_dx": other_mental,
            "recent_incidents": incidents,
            "total": result.total,
            "preliminary_level": result.preliminary_level,
            "final_level": result.final_level,
            "assessor": f"{assessor}（孝感市老年人能力评估中心）",
            "assessed_on": assessed_on,
            "valid_until": result.valid_until,
        }

    def categories(self, person: _Person, home: _Household) -> list[dict[str, Any]]:
        rng = self.rng
        row = person.row
        birth_on: dt.date = row["birth_on"]
        turned_60 = _add_years(birth_on, 60)
        out: list[dict[str, Any]] = []

        def held(category: SubsidyCategory, may_end: bool = False) -> None:
            valid_from = max(turned_60, self.past_day(30, 2200))
            valid_to = None
            if may_end and rng.random() < 0.08:
                valid_to = self.past_day(10, 200)
                valid_from = min(valid_from, valid_to - dt.timedelta(days=rng.randint(90, 900)))
            out.append({"category": category.value, "valid_from": valid_from, "valid_to": valid_to})

        if home.no_children and len(home.members) == 1 and rng.random() < 0.6:
            held(SubsidyCategory.DESTITUTE)  # 特困: no children, no income
        elif home.no_children:
            held(SubsidyCategory.FAMILY_PLANNING)  # 失独 families
        else:
            roll = rng.random()
            if roll < 0.08:
                held(SubsidyCategory.SUBSISTENCE, may_end=True)
            elif roll < 0.15:
                held(SubsidyCategory.LOW_INCOME, may_end=True)
        if row["gender"] == "M" and rng.random() < 0.03:
            held(SubsidyCategory.VETERAN)
        if person.age >= 80 and row["living_situation"] in (
            LivingSituation.ALONE,
            LivingSituation.EMPTY_NEST,
        ):
            turned_80 = _add_years(birth_on, 80)
            first_of_next = (turned_80.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
            out.append(
                {
                    "category": SubsidyCategory.ELDERLY_ALONE.value,
                    "valid_from": min(self.today, max(first_of_next, dt.date(2024, 1, 1))),
                    "valid_to": None,
                }
            )
        return out

    def guardians(
        self, people: list[_Person], homes: list[_Household]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rng = self.rng
        guardians: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        for home in homes:
            if home.no_children:
                continue
            n = rng.choices((0, 1, 2), weights=(0.22, 0.62, 0.16))[0]
            family = people[home.members[0]].family_name
            for k in range(n):
                gender = rng.choice("MF")
                relation = rng.choice(sd.CHILD_RELATIONS_M if gender == "M" else sd.CHILD_RELATIONS_F)
                # Children take the father's family name; daughters-in-law and sons-in-law do not.
                same_family = relation not in ("儿媳", "女婿")
                guardians.append(
                    {"name": self.young_name(gender, family if same_family else None), "phone": self.phone()}
                )
                home.guardians.append(len(guardians) - 1)
                home.guardian_relations.append(relation)
                for m in home.members:
                    links.append(
                        {
                            "elder": m,
                            "guardian": len(guardians) - 1,
                            "relation": relation,
                            "is_primary": k == 0,
                        }
                    )
        return guardians, links

    def contacts(
        self, people: list[_Person], homes: list[_Household], guardians: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        rng = self.rng
        out: list[dict[str, Any]] = []
        for i, person in enumerate(people):
            home = homes[person.household]
            wanted = rng.choice((1, 2, 2, 3))
            candidates: list[tuple[str, str, str]] = [
                (guardians[g]["name"], rel, guardians[g]["phone"])
                for g, rel in zip(home.guardians, home.guardian_relations, strict=True)
            ]
            for m in home.members:
                spouse = people[m].row
                if m != i and spouse["phone"]:
                    candidates.append((spouse["name"], "配偶", spouse["phone"]))
            others = sd.VILLAGE_CONTACT_RELATIONS if home.place.is_village else sd.OTHER_CONTACT_RELATIONS
            while len(candidates) < wanted:
                candidates.append((self.young_name(rng.choice("MF")), rng.choice(others), self.phone()))
            for pos, (name, relation, phone) in enumerate(candidates[:wanted], start=1):
                out.append({"elder": i, "position": pos, "name": name, "relation": relation, "phone": phone})
        return out

    def ltc(self, person: _Person, district_code: str, n: int) -> dict[str, Any] | None:
        p = 0.4 if person.final_level >= 3 else 0.08 if person.final_level == 2 else 0.0
        if person.row["status"] != ElderStatus.ACTIVE.value or self.rng.random() >= p:
            return None
        return {
            "policy_no": f"CQX{district_code}{n:07d}",
            "valid_from": self.past_day(20, 700),
            "valid_to": None,
        }

    # -- providers and caregivers

    def providers(self, district_ids: dict[str, int]) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
        rng = self.rng
        rows: list[dict[str, Any]] = []
        served: list[tuple[int, int]] = []
        for i, (name, code) in enumerate(sd.PROVIDERS, start=1):
            place = self.place(code, urban=True)
            rows.append(
                {
                    "name": name,
                    "licence_no": f"孝民养备〔{rng.randint(2016, 2024)}〕{i:03d}号",
                    "contract_no": f"XGMZ-JJYL-{self.today.year}-{i:03d}",
                    "contract_from": dt.date(self.today.year, 1, 1),
                    "contract_to": dt.date(self.today.year, 12, 31),
                    "phone": self.phone(),
                    "address": f"湖北省孝感市{place.district_name}{place.street_name}{place.community_name}"
                    f"{rng.randint(1, 200)}号",
                    "is_active": True,
                }
            )
            served.append((i - 1, district_ids[code]))
            for other in sd.NEIGHBOURS[code]:
                if rng.random() < 0.25:
                    served.append((i - 1, district_ids[other]))
        return rows, served

    def caregivers(self, n: int) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
        rng = self.rng
        weights = [rng.uniform(0.6, 1.4) for _ in sd.PROVIDERS]
        exact = [n * w / sum(weights) for w in weights]
        sizes = [int(x) for x in exact]
        for i in sorted(range(len(exact)), key=lambda i: exact[i] - sizes[i], reverse=True)[: n - sum(sizes)]:
            sizes[i] += 1
        shifts = (
            ((8, 0), (17, 0), 0.55),
            ((7, 0), (15, 0), 0.15),
            ((9, 0), (18, 0), 0.15),
            ((12, 0), (20, 0), 0.10),
            ((6, 30), (14, 30), 0.05),
        )
        week_patterns = (
            ([1, 2, 3, 4, 5], 0.55),
            ([1, 2, 3, 4, 5, 6], 0.25),
            ([2, 3, 4, 5, 6, 7], 0.1),
            ([1, 2, 3, 4, 5, 6, 7], 0.1),
        )
        skill_p = {
            "VISIT": 0.8,
            "CLEAN": 0.75,
            "ERRAND": 0.7,
            "ESCORT": 0.55,
            "MEAL": 0.5,
            "MEDESC": 0.4,
            "CARE": 0.4,
            "BATH": 0.35,
        }
        rows: list[dict[str, Any]] = []
        certs: list[list[dict[str, Any]]] = []
        for provider_index, size in enumerate(sizes):
            code = sd.PROVIDERS[provider_index][1]
            for _ in range(size):
                gender = "F" if rng.random() < 0.85 else "M"
                skills = [s for s in sd.SERVICE_CODES if rng.random() < skill_p[s]]
                while len(skills) < 2:
                    extra = rng.choice(sd.SERVICE_CODES)
                    if extra not in skills:
                        skills.append(extra)
                skills.sort(key=sd.SERVICE_CODES.index)
                start, end, _ = rng.choices(shifts, weights=[w for *_, w in shifts])[0]
                days = rng.choices([p for p, _ in week_patterns], weights=[w for _, w in week_patterns])[0]
                near = self.place(code, rng.random() < 0.7)
                home = _disk(rng, LatLon(near.lat, near.lon), 500.0)
                rows.append(
                    {
                        "provider_id": provider_index,  # replaced by the real id at insert time
                        "name": self.family_name()
                        + self.rng.choice(sd.YOUNG_FEMALE_GIVEN if gender == "F" else sd.YOUNG_MALE_GIVEN),
                        "gender": gender,
                        "phone": self.phone(),
                        "skills": skills,
                        "shift_start": dt.time(*start),
                        "shift_end": dt.time(*end),
                        "work_days": list(days),
                        "home_lat": home.lat,
                        "home_lon": home.lon,
                        "daily_capacity": rng.randint(6, 10),
                        "rating": round(rng.uniform(3.8, 5.0), 1),
                        "is_active": rng.random() < 0.97,
                    }
                )
                certs.append(self.certificates(skills, code))
        return rows, certs

    def certificates(self, skills: list[str], district_code: str) -> list[dict[str, Any]]:
        rng = self.rng
        out: list[dict[str, Any]] = []
        if "MEAL" in skills or rng.random() < 0.3:
            # 健康证 is valid one year; some expire within a month, a few already have.
            roll = rng.random()
            if roll < 0.05:
                issued = self.past_day(366, 420)
            elif roll < 0.15:
                issued = self.past_day(336, 365)
            else:
                issued = self.past_day(5, 335)
            out.append(
                {
                    "kind": "health",
                    "level": None,
                    "number": f"JKZ{district_code}{issued:%Y}{rng.randrange(10**6):06d}",
                    "issued_on": issued,
                    "expires_on": _add_years(issued, 1) - dt.timedelta(days=1),
                }
            )
        if "BATH" in skills or "CARE" in skills:
            level = rng.choices((5, 4, 3), weights=(0.25, 0.45, 0.30))[0]
            roll = rng.random()
            issued = self.past_day(1700, 1825) if roll < 0.1 else self.past_day(60, 1600)
            out.append(
                {
                    "kind": "eldercare_worker",
                    "level": level,
                    "number": f"YLHL{level}-{issued:%Y}-{rng.randrange(10**8):08d}",
                    "issued_on": issued,
                    "expires_on": _add_years(issued, 5) - dt.timedelta(days=1),
                }
            )
        if rng.random() < 0.05:
            issued = self.past_day(100, 1500)
            out.append(
                {
                    "kind": "nurse",
                    "level": None,
                    "number": f"HS{rng.randrange(10**10):010d}",
                    "issued_on": issued,
                    "expires_on": _add_years(issued, 5) - dt.timedelta(days=1),
                }
            )
        return out

    # -- devices

    def device_homes(self, people: list[_Person], homes: list[_Household], n: int) -> list[int]:
        """Pick ``n`` households, favouring those who live alone, have dementia or lower ability."""
        rng = self.rng
        keyed: list[tuple[float, int]] = []
        for h, home in enumerate(homes):
            members = [people[m] for m in home.members if people[m].row["status"] == ElderStatus.ACTIVE.value]
            if not members:
                continue
            w = 1.0
            w += 3.0 if any(m.row["living_situation"] == LivingSituation.ALONE for m in members) else 0.0
            w += 3.0 if any(m.row["has_dementia"] for m in members) else 0.0
            w += 2.0 if any(m.final_level >= 2 for m in members) else 0.0
            w += 1.0 if any(m.age >= 80 for m in members) else 0.0
            keyed.append((rng.random() ** (1.0 / w), h))  # weighted sampling without replacement
        keyed.sort(reverse=True)
        return sorted(h for _, h in keyed[:n])


async def _counts(session: AsyncSession, models: Sequence[type[Base]] = COUNTED_TABLES) -> dict[str, int]:
    out: dict[str, int] = {}
    for model in models:
        out[model.__tablename__] = (
            await session.execute(select(func.count()).select_from(model))
        ).scalar_one()
    return out


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


async def _load_places(session: AsyncSession) -> list[_Place]:
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
    return [_Place(*row) for row in (await session.execute(stmt)).all()]


async def seed_domains(
    session: AsyncSession, *, today: dt.date, modules: Sequence[str] = DOMAIN_SEED_MODULES
) -> dict[str, int]:
    """Run each domain's demo seed hook in order; returns the row counts they report."""
    counts: dict[str, int] = {}
    for name in modules:
        hook: DomainSeed = importlib.import_module(name).seed
        counts.update(await hook(session, today=today))
    return counts


async def seed_demo(session: AsyncSession, *, today: dt.date, seed: int = DEFAULT_SEED) -> SeedSummary:
    """Reference data plus a deterministic demo data set for ``today``; skipped if already present.

    About 2,000 elders over the 7 divisions (weighted by population) with assessments, guardians,
    contacts, subsidy categories and long-term-care coverage; 20 providers with 300 caregivers and
    their certificates; 500 homes with a Zigbee gateway and devices; one login per role
    (``demo_<role>``, password :data:`core.seed_data.DEMO_PASSWORD`); then the domains' demo rows
    (:func:`seed_domains`, also when the kernel's set already existed). Only flushes.
    """
    started = time.perf_counter()
    await seed_reference(session, today=today)
    marker = await session.execute(select(AppUser.id).where(AppUser.username == DEMO_MARKER_USERNAME))
    if marker.first() is not None:
        log.info("seed.demo.skipped", reason="already_seeded")
        domains = await seed_domains(session, today=today)
        return SeedSummary(
            created=False,
            counts=await _counts(session) | domains,
            logins=await _existing_logins(session),
        )

    rng = random.Random(seed)
    places = await _load_places(session)
    district_ids = await _code_ids(session, District)
    b = _DemoBuilder(rng, today, places)

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

    counts = await _counts(session) | await seed_domains(session, today=today)
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
    b: _DemoBuilder,
    people: list[_Person],
    homes: list[_Household],
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
