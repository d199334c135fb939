"""Pricing an elder's month from the database: the edge of :mod:`billing.rules` and
:mod:`billing.eligibility`, shared by the quote, the voucher accounts and whoever else prices visits.

**Which visits.** Dispatch's visits that are *verified* (``visit.verification = 'verified'``; a visit
with an unresolved exception is never priced), of orders not cancelled, on the elder's service days in
the period. A visit's **service day** is the Asia/Shanghai date of its check-in (of its scheduled start
when it has none); its **price** is the unit price snapshotted on its order (``service_order.price_fen``)
× its units (:func:`billing.rules.visit_units`: the ordered hours for services priced by the hour, else
one), rounded half-up (:func:`billing.rules.visit_amount_fen`).

**In which order** (:data:`VISIT_ORDER`): by service day, then check-in (or scheduled start), then visit
id: the order in which a month's visits use up its budgets. Everyone who prices a month uses it, so the
quote, the voucher accounts and the settlement agree on every share.

**Which rules.** The ``subsidy.*`` policy rows that touch the period, read once, give each day its
:class:`~billing.rules.RulePack` (:func:`load_rule_packs`): a change applies from its date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.eligibility import entitlements_by_day, load_elder_facts
from billing.rules import (
    MonthPricing,
    RulePack,
    VisitLine,
    price_month,
    rule_packs,
    visit_amount_fen,
    visit_units,
)
from billing.seed import POLICY_DEFAULTS
from core.clock import SHANGHAI
from core.policy import PolicyDefault, PolicyValue
from dispatch.models import Service, ServiceOrder, Visit
from dispatch.states import OrderState

SUBSIDY_PREFIX: Final = "subsidy."
SUBSIDY_DEFAULTS: Final[tuple[PolicyDefault, ...]] = tuple(
    p for p in POLICY_DEFAULTS if p.key.startswith(SUBSIDY_PREFIX)
)
# The order in which a month's visits use its budgets (see the module docstring).
VISIT_ORDER: Final = "service day, then check-in (or scheduled start), then visit id"
# Orders whose verified visit is not priced.
_UNPRICED_ORDERS: Final = (OrderState.CANCELLED.value, OrderState.NO_SHOW.value)


def month_of(day: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last day of ``day``'s calendar month."""
    first = day.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return first, following - dt.timedelta(days=1)


def local_start(day: dt.date) -> dt.datetime:
    """The instant ``day`` starts in Asia/Shanghai (aware)."""
    return dt.datetime.combine(day, dt.time(), tzinfo=SHANGHAI)


async def load_rule_packs(*, session: AsyncSession, first: dt.date, last: dt.date) -> dict[dt.date, RulePack]:
    """The rule pack of every day in ``[first, last]`` (one query for the rows that touch them)."""
    stmt = select(
        PolicyValue.key, PolicyValue.scope, PolicyValue.value, PolicyValue.valid_from, PolicyValue.valid_to
    ).where(
        PolicyValue.key.startswith(SUBSIDY_PREFIX, autoescape=True),
        PolicyValue.valid_from <= last,
        PolicyValue.valid_to.is_(None) | (PolicyValue.valid_to >= first),
    )
    rows = [(r[0], r[1], r[2], r[3], r[4]) for r in (await session.execute(stmt)).all()]
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    return rule_packs(rows, days, SUBSIDY_DEFAULTS)


@dataclass(frozen=True, slots=True)
class MonthVisit:
    """A priced visit's facts besides its :class:`~billing.rules.VisitLine` (for statements and reads)."""

    line: VisitLine
    provider_id: int | None
    started_at: dt.datetime


async def load_month_visits(
    *, session: AsyncSession, elder_id: int, first: dt.date, last: dt.date
) -> list[MonthVisit]:
    """The elder's verified visits with a service day in ``[first, last]``, in :data:`VISIT_ORDER`."""
    started = func.coalesce(Visit.check_in_at, Visit.scheduled_start_at)
    day = cast(func.timezone(SHANGHAI.key, started), Date)
    stmt = (
        select(
            Visit.id,
            day,
            Visit.service_code,
            ServiceOrder.price_fen,
            ServiceOrder.duration_s,
            Service.unit,
            Visit.provider_id,
            started,
        )
        .join(ServiceOrder, ServiceOrder.id == Visit.order_id)
        .join(Service, Service.code == Visit.service_code)
        .where(
            Visit.elder_id == elder_id,
            Visit.verification == "verified",
            ServiceOrder.state.not_in(_UNPRICED_ORDERS),
            started >= local_start(first),
            started < local_start(last + dt.timedelta(days=1)),
        )
        .order_by(day, started, Visit.id)
    )
    out: list[MonthVisit] = []
    for vid, vday, code, unit_price, duration_s, unit, provider_id, at in (await session.execute(stmt)).all():
        amount = visit_amount_fen(unit_price, visit_units(unit, duration_s))
        out.append(MonthVisit(VisitLine(vid, vday, code, amount), provider_id, at))
    return out


async def price_elder_visits(
    *,
    session: AsyncSession,
    elder_id: int,
    first: dt.date,
    last: dt.date,
    then: Sequence[VisitLine] = (),
) -> tuple[list[MonthVisit], MonthPricing]:
    """The elder's verified visits in ``[first, last]`` and, after them, the lines ``then`` (a visit
    being quoted), priced in that order with each day's entitlements and rules. ``then``'s days must
    lie in ``[first, last]``. Budgets start afresh at ``first``: pass the 1st of a month."""
    visits = await load_month_visits(session=session, elder_id=elder_id, first=first, last=last)
    lines = [v.line for v in visits] + list(then)
    packs = await load_rule_packs(session=session, first=first, last=last)
    facts = (await load_elder_facts(session, [elder_id], first=first, last=last))[elder_id]
    entitlements = entitlements_by_day(facts, (line.day for line in lines), packs)
    return visits, price_month(lines, entitlements, packs)
