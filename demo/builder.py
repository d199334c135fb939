"""The demo data set's generator: elders in households with assessments, subsidy categories, long-term
care coverage, guardians and emergency contacts; providers, their caregivers and certificates; the homes
that get devices. Everything is built in memory from one ``random.Random``, so a seed gives the same rows
every time; ``demo.seed`` inserts them.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.geo import LatLon, ring_point
from demo import data as sd
from dispatch.seed import SERVICE_CODES
from registry.assessment import INCIDENT_KINDS, ITEMS, assess
from registry.idcard import make_id_number
from registry.models import ElderStatus, LivingSituation, SubsidyCategory
from registry.seed import DISTRICTS

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


def add_years(day: dt.date, years: int) -> dt.date:
    """The same calendar day ``years`` later (or earlier); 29 February becomes 28 February."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


@dataclass(slots=True)
class Place:
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
class Person:
    """An elder being generated; ``row`` is what goes into the table."""

    row: dict[str, Any]
    age: int
    household: int
    family_name: str
    level: int = 0
    final_level: int = 0
    assessment_valid: bool = True


@dataclass(slots=True)
class Household:
    place: Place
    members: list[int]
    no_children: bool
    guardians: list[int] = field(default_factory=list)  # indexes into guardian rows
    guardian_relations: list[str] = field(default_factory=list)


class DemoBuilder:
    """Generates every demo row in memory from one ``random.Random``; the caller inserts them."""

    def __init__(self, rng: random.Random, today: dt.date, places: Sequence[Place]) -> None:
        self.rng = rng
        self.today = today
        self.phones: set[str] = set()
        self.id_numbers: set[str] = set()
        self.serials: set[str] = set()
        ranks = range(len(sd.FAMILY_NAMES))
        self.family_weights = [1.0 / (r + 4) for r in ranks]
        self.by_district: dict[str, tuple[list[Place], list[Place]]] = {}
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
        latest = add_years(self.today, -age)
        earliest = add_years(self.today, -(age + 1)) + dt.timedelta(days=1)
        return earliest + dt.timedelta(days=self.rng.randrange((latest - earliest).days + 1))

    def past_day(self, lo_days: int, hi_days: int) -> dt.date:
        return self.today - dt.timedelta(days=self.rng.randint(lo_days, hi_days))

    def place(self, district_code: str, urban: bool) -> Place:
        urban_pool, rural_pool = self.by_district[district_code]
        pool = urban_pool if (urban and urban_pool) or not rural_pool else rural_pool
        return self.rng.choice(pool)

    def address(self, place: Place) -> str:
        rng = self.rng
        if place.is_village:
            detail = f"{rng.randint(1, 12)}组{rng.randint(1, 60)}号"
        else:
            detail = (
                f"{rng.randint(1, 30)}栋{rng.randint(1, 4)}单元{rng.randint(1, 7)}{rng.randint(1, 4):02d}室"
            )
        return f"湖北省孝感市{place.district_name}{place.street_name}{place.community_name}{detail}"

    # -- elders and households

    def households(self, n_elders: int) -> tuple[list[Person], list[Household]]:
        rng = self.rng
        district_weights = [d.population for d in DISTRICTS]
        people: list[Person] = []
        homes: list[Household] = []
        while len(people) < n_elders:
            d = rng.choices(DISTRICTS, weights=district_weights)[0]
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
            home = Household(place=place, members=[], no_children=no_children)
            base = ring_point(rng, LatLon(place.lat, place.lon), 600.0 if place.is_village else 250.0)
            address = self.address(place)
            husband_family = self.family_name()
            for gender, member_age in members:
                family = husband_family if gender == "M" else self.family_name()
                birth_on = self.birth_for_age(member_age)
                people.append(
                    Person(
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
        place: Place,
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
        p = ring_point(rng, base, 5.0)
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

    def assessment(self, person: Person) -> dict[str, Any]:
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

    def categories(self, person: Person, home: Household) -> list[dict[str, Any]]:
        rng = self.rng
        row = person.row
        birth_on: dt.date = row["birth_on"]
        turned_60 = add_years(birth_on, 60)
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
            turned_80 = add_years(birth_on, 80)
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
        self, people: list[Person], homes: list[Household]
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
        self, people: list[Person], homes: list[Household], guardians: list[dict[str, Any]]
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

    def ltc(self, person: Person, district_code: str, n: int) -> dict[str, Any] | None:
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
                skills = [s for s in SERVICE_CODES if rng.random() < skill_p[s]]
                while len(skills) < 2:
                    extra = rng.choice(SERVICE_CODES)
                    if extra not in skills:
                        skills.append(extra)
                skills.sort(key=SERVICE_CODES.index)
                start, end, _ = rng.choices(shifts, weights=[w for *_, w in shifts])[0]
                days = rng.choices([p for p, _ in week_patterns], weights=[w for _, w in week_patterns])[0]
                near = self.place(code, rng.random() < 0.7)
                home = ring_point(rng, LatLon(near.lat, near.lon), 500.0)
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
                    "expires_on": add_years(issued, 1) - dt.timedelta(days=1),
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
                    "expires_on": add_years(issued, 5) - dt.timedelta(days=1),
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
                    "expires_on": add_years(issued, 5) - dt.timedelta(days=1),
                }
            )
        return out

    # -- devices

    def device_homes(self, people: list[Person], homes: list[Household], n: int) -> list[int]:
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
