"""The quote: what one visit of a service on a day would cost each payer and the elder, counting what
the elder's month has already used (families see it before they order).

The visit is priced as the last of the month up to its day: after the elder's verified visits from the
1st of its month to its day, in :data:`billing.pricing.VISIT_ORDER`, so each payer's cap is its budget
less what those visits used. Its price is the catalogue's unit price on the day (policy
``service.price_fen``, as the order would snapshot it) × ``units``.

Who may ask (route rule in :mod:`billing.routes`): the elder, their family, provider admins,
operators and civil-affairs officers for the elders in their scope (:func:`registry.scope.sees_elder`),
admins for all; an elder outside the caller's scope is a 404, as if it did not exist.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.pricing import month_of, price_elder_visits
from billing.rules import Entitlements, PayerShare, VisitLine, VisitPricing, visit_amount_fen
from core.crud import get_or_404, not_found
from core.errors import Invalid
from core.identity.authz import Principal
from dispatch.common import price_on
from dispatch.models import Service
from registry.models import Elder
from registry.scope import sees_elder

# The key of the quoted line among the month's visits (visit ids start at 1).
QUOTED: Final = 0


@dataclass(frozen=True, slots=True)
class Quote:
    """One visit's price split. ``month_visits`` is how many of the month's verified visits came
    before it; each share's ``used_before_fen`` what its payer had paid the elder in the period."""

    elder_id: int
    service: str
    on: dt.date
    units: Fraction
    unit: str
    unit_price_fen: int
    entitlements: Entitlements
    pricing: VisitPricing
    month_visits: int

    @property
    def shares(self) -> tuple[PayerShare, ...]:
        return self.pricing.shares


async def quote_visit(
    *, session: AsyncSession, actor: Principal, elder_id: int, service: str, units: Fraction, on: dt.date
) -> Quote:
    """The quote for ``units`` of ``service`` for the elder on ``on`` (module docstring). 404
    ``elder.not_found`` (also out of scope); 422 ``billing.unknown_service`` (field ``service``),
    ``billing.units_invalid`` (whole units only for services not priced by the hour), or
    ``dispatch.invalid`` when the catalogue has no price on the day."""
    elder = await get_or_404(session, Elder, elder_id, what="elder")
    if not await sees_elder(session, actor, elder):
        raise not_found("elder", elder_id)
    unit = await session.scalar(select(Service.unit).where(Service.code == service, Service.is_active))
    if unit is None:
        raise Invalid(
            f"No service {service!r} in the catalogue.", code="billing.unknown_service", field="service"
        )
    if unit != "hour" and units.denominator != 1:
        raise Invalid(
            f"{service} is priced per {unit}: units must be a whole number.",
            code="billing.units_invalid",
            field="units",
        )
    unit_price = await price_on(session=session, service_code=service, day=on)
    amount = visit_amount_fen(unit_price, units)
    first, _ = month_of(on)
    line = VisitLine(QUOTED, on, service, amount)
    before, month = await price_elder_visits(
        session=session, elder_id=elder_id, first=first, last=on, then=[line]
    )
    quoted = month.visits[-1]
    return Quote(
        elder_id=elder_id,
        service=service,
        on=on,
        units=units,
        unit=unit,
        unit_price_fen=unit_price,
        entitlements=quoted.entitlements,
        pricing=quoted.pricing,
        month_visits=len(before),
    )
