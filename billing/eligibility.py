"""Who is entitled to which payer on a day (DOMAIN §4): pure rules over an elder's dated facts, and
the set-based loader of those facts from the registry's tables.

**The rules** (:func:`entitlements_on`, for one elder, one Asia/Shanghai date and the day's
:class:`~billing.rules.RulePack`):

- *Status.* After the date of a death or a move out (``elder.status_on``), nothing. The day itself
  still counts: a visit on the morning of that day was delivered. A hospital stay changes nothing here
  (the settlement's review signals look at visits during one).
- *Ability level.* The final level of the latest assessment (by ``assessed_on``, then id) that is
  valid on the day (``assessed_on ≤ day ≤ valid_until``); none when no assessment is valid (expired).
- *Long-term-care insurance* (长护险): a coverage period includes the day, and the day's level has an
  LTC rule (``subsidy.ltc[level]``: by default levels 2–4).
- *Voucher* (养老服务消费补贴): the day's level is at least the voucher rule's ``min_level`` (2:
  moderate, severe or complete loss of ability).
- *Local category* (政府购买居家养老服务): of the categories held on the day (``valid_from ≤ day ≤
  valid_to``, ``valid_to`` inclusive) that have a rule, those whose ``min_age`` the elder has reached on
  the day (completed years) and, for 80+ living alone or in an empty nest (高龄独居/空巢), whose living
  situation is alone or empty-nest; then the single most generous one (highest rate, then highest
  budget: :func:`billing.rules.most_generous`).

So a category that starts or ends mid-month, an expired assessment, a death or a move are each decided
by the visit's date. (The living situation is recorded without dates: today's applies to every day.)

**The loader** (:func:`load_elder_facts`) reads the facts of many elders at once, four set-based
queries whatever their number (the settlement closes a month for 100,000 elders), optionally only the
rows that touch a period.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from billing.rules import Entitlements, PayerRule, RulePack, most_generous
from registry.models import ElderStatus, LivingSituation, SubsidyCategory

# Statuses after whose date an elder has no entitlement.
ENDING_STATUSES: Final = frozenset({ElderStatus.DECEASED.value, ElderStatus.MOVED.value})
# The category that is defined by living alone (高龄独居/空巢), and the situations that qualify.
LIVING_ALONE_CATEGORIES: Final = frozenset({SubsidyCategory.ELDERLY_ALONE.value})
LIVING_ALONE: Final = frozenset({LivingSituation.ALONE.value, LivingSituation.EMPTY_NEST.value})


@dataclass(frozen=True, slots=True)
class DatedCategory:
    """A subsidy category held from ``valid_from`` to ``valid_to`` (inclusive; ``None``: open)."""

    category: str
    valid_from: dt.date
    valid_to: dt.date | None = None

    def holds_on(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True, slots=True)
class AssessmentFact:
    """An ability assessment's outcome: its final level, valid from ``assessed_on`` to ``valid_until``
    (inclusive)."""

    assessment_id: int
    final_level: int
    assessed_on: dt.date
    valid_until: dt.date

    def valid_on(self, day: dt.date) -> bool:
        return self.assessed_on <= day <= self.valid_until


@dataclass(frozen=True, slots=True)
class Coverage:
    """A long-term-care insurance coverage period (``valid_to`` inclusive; ``None``: open)."""

    valid_from: dt.date
    valid_to: dt.date | None = None

    def covers(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True, slots=True)
class ElderFacts:
    """What eligibility reads about one elder."""

    elder_id: int
    birth_on: dt.date
    living_situation: str
    status: str = ElderStatus.ACTIVE.value
    status_on: dt.date | None = None
    categories: tuple[DatedCategory, ...] = ()
    assessments: tuple[AssessmentFact, ...] = ()
    ltc: tuple[Coverage, ...] = ()


def age_on(birth_on: dt.date, day: dt.date) -> int:
    """Completed years on ``day`` (born on 29 February: a year older on 1 March in other years)."""
    return day.year - birth_on.year - ((day.month, day.day) < (birth_on.month, birth_on.day))


def level_on(facts: ElderFacts, day: dt.date) -> int | None:
    """The final level of the latest assessment valid on ``day``, or ``None`` (none valid)."""
    valid = [a for a in facts.assessments if a.valid_on(day)]
    if not valid:
        return None
    return max(valid, key=lambda a: (a.assessed_on, a.assessment_id)).final_level


def ended_on(facts: ElderFacts, day: dt.date) -> str | None:
    """``deceased`` or ``moved`` when ``day`` is after the date of that status, else ``None``."""
    if facts.status in ENDING_STATUSES and facts.status_on is not None and day > facts.status_on:
        return facts.status
    return None


def local_rule(facts: ElderFacts, day: dt.date, local: Mapping[str, PayerRule]) -> PayerRule | None:
    """The single most generous local category the elder qualifies for on ``day``, or ``None``."""
    qualifying: list[PayerRule] = []
    for held in facts.categories:
        rule = local.get(held.category)
        if rule is None or not held.holds_on(day):
            continue
        if rule.min_age is not None and age_on(facts.birth_on, day) < rule.min_age:
            continue
        if held.category in LIVING_ALONE_CATEGORIES and facts.living_situation not in LIVING_ALONE:
            continue
        qualifying.append(rule)
    return most_generous(qualifying)


def entitlements_on(facts: ElderFacts, day: dt.date, pack: RulePack) -> Entitlements:
    """What ``facts``' elder is entitled to on ``day`` under the rules of ``pack`` (module docstring)."""
    ended = ended_on(facts, day)
    if ended is not None:
        return Entitlements(ended=ended)
    level = level_on(facts, day)
    ltc_level = None
    if level is not None and level in pack.ltc and any(c.covers(day) for c in facts.ltc):
        ltc_level = level
    voucher_level = None
    if level is not None and pack.voucher is not None and level >= (pack.voucher.min_level or 0):
        voucher_level = level
    local = local_rule(facts, day, pack.local)
    return Entitlements(
        ltc_level=ltc_level,
        voucher_level=voucher_level,
        local_category=None if local is None else local.scope,
    )


def entitlements_by_day(
    facts: ElderFacts, days: Iterable[dt.date], packs: Mapping[dt.date, RulePack]
) -> dict[dt.date, Entitlements]:
    """:func:`entitlements_on` for each of ``days`` with that day's pack (what
    :func:`billing.rules.price_month` takes)."""
    return {d: entitlements_on(facts, d, packs[d]) for d in set(days)}


# --- Loading the facts ------------------------------------------------------------------------------


class _Fetcher(Protocol):
    """An asyncpg connection (or anything with its ``fetch``)."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


# Each of the facts' queries: $1 the elder ids (NULL: every elder); $2, $3 the period (NULL: no bound),
# so that only rows that can decide a day in it are read.
ELDERS_SQL: Final = """SELECT id, birth_on, living_situation, status, status_on FROM elder
 WHERE ($1::bigint[] IS NULL OR id = ANY($1::bigint[])) ORDER BY id"""
CATEGORIES_SQL: Final = """SELECT elder_id, category, valid_from, valid_to FROM elder_category
 WHERE ($1::bigint[] IS NULL OR elder_id = ANY($1::bigint[]))
   AND ($3::date IS NULL OR valid_from <= $3) AND ($2::date IS NULL OR valid_to IS NULL OR valid_to >= $2)
 ORDER BY elder_id, valid_from, id"""
COVERAGES_SQL: Final = """SELECT elder_id, valid_from, valid_to FROM ltc_coverage
 WHERE ($1::bigint[] IS NULL OR elder_id = ANY($1::bigint[]))
   AND ($3::date IS NULL OR valid_from <= $3) AND ($2::date IS NULL OR valid_to IS NULL OR valid_to >= $2)
 ORDER BY elder_id, valid_from, id"""
# An assessment made after the period cannot decide a day in it; one that expired before it neither.
ASSESSMENTS_SQL: Final = """SELECT elder_id, id, final_level, assessed_on, valid_until FROM assessment
 WHERE ($1::bigint[] IS NULL OR elder_id = ANY($1::bigint[]))
   AND ($3::date IS NULL OR assessed_on <= $3) AND ($2::date IS NULL OR valid_until >= $2)
 ORDER BY elder_id, assessed_on, id"""


async def _driver(db: AsyncSession | AsyncConnection | _Fetcher) -> _Fetcher:
    """The asyncpg connection under a SQLAlchemy session or connection (inside its transaction), or
    ``db`` itself when it is one."""
    if isinstance(db, AsyncSession):
        db = await db.connection()
    if isinstance(db, AsyncConnection):
        raw = await db.get_raw_connection()
        driver: _Fetcher = raw.driver_connection  # type: ignore[assignment]
        return driver
    return db


async def load_elder_facts(
    db: AsyncSession | AsyncConnection | _Fetcher,
    elder_ids: Sequence[int] | None,
    *,
    first: dt.date | None = None,
    last: dt.date | None = None,
) -> dict[int, ElderFacts]:
    """The facts of ``elder_ids`` (``None``: every elder), by elder id, in four queries whatever
    their number. With ``first``/``last``, only the categories, coverages and assessments that can
    decide a day in ``[first, last]`` are read. Elders that do not exist are absent.

    ``db`` is a SQLAlchemy ``AsyncSession`` or ``AsyncConnection`` (read inside its transaction) or an
    asyncpg connection."""
    conn = await _driver(db)
    ids = None if elder_ids is None else sorted(set(elder_ids))
    args = (ids, first, last)
    elders = await conn.fetch(ELDERS_SQL, ids)
    categories: dict[int, list[DatedCategory]] = {}
    for r in await conn.fetch(CATEGORIES_SQL, *args):
        categories.setdefault(r[0], []).append(DatedCategory(r[1], r[2], r[3]))
    coverages: dict[int, list[Coverage]] = {}
    for r in await conn.fetch(COVERAGES_SQL, *args):
        coverages.setdefault(r[0], []).append(Coverage(r[1], r[2]))
    assessments: dict[int, list[AssessmentFact]] = {}
    for r in await conn.fetch(ASSESSMENTS_SQL, *args):
        assessments.setdefault(r[0], []).append(AssessmentFact(r[1], r[2], r[3], r[4]))
    return {
        r[0]: ElderFacts(
            elder_id=r[0],
            birth_on=r[1],
            living_situation=r[2],
            status=r[3],
            status_on=r[4],
            categories=tuple(categories.get(r[0], ())),
            assessments=tuple(assessments.get(r[0], ())),
            ltc=tuple(coverages.get(r[0], ())),
        )
        for r in elders
    }
