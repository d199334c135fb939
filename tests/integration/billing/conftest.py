"""Billing's integration tests: the quote and the voucher accounts against the real database, with
verified visits the tests make for themselves (:func:`add_visit`: dispatch's order and visit rows, as
verification leaves them) and policy rows written as the policy API would."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import SHANGHAI
from dispatch.models import ServiceOrder, Visit
from registry.models import Caregiver, Elder, LtcCoverage
from tests.factories import Factory
from tests.support import registry

# The real app from a client with no IP address (the per-address sign-in limit never applies).
client = registry.client


def at(day: dt.date, hour: int = 9) -> dt.datetime:
    """``hour`` o'clock on ``day`` in Xiaogan (aware)."""
    return dt.datetime.combine(day, dt.time(hour), tzinfo=SHANGHAI)


@dataclass(frozen=True, slots=True)
class Carer:
    """A caregiver and their provider, to deliver the visits a test makes."""

    caregiver: Caregiver

    @property
    def provider_id(self) -> int:
        return self.caregiver.provider_id


async def carer(make: Factory) -> Carer:
    return Carer(await make.caregiver(await make.provider()))


async def add_visit(
    db: AsyncSession,
    elder: Elder,
    by: Carer,
    service: str,
    start: dt.datetime,
    *,
    hours: float = 1,
    unit_price_fen: int,
    state: str = "verified",
    verification: str = "verified",
    checked_in: bool = True,
) -> Visit:
    """A delivered visit of ``service`` for ``elder`` from ``start`` lasting ``hours`` (the order's
    duration), at ``unit_price_fen`` snapshotted on its order; verified unless told otherwise."""
    duration_s = round(hours * 3600)
    end = start + dt.timedelta(seconds=duration_s)
    order = ServiceOrder(
        elder_id=elder.id, service_code=service, provider_id=by.provider_id, caregiver_id=by.caregiver.id,
        state=state, window_start_at=start, window_end_at=start + dt.timedelta(minutes=30),
        duration_s=duration_s, price_fen=unit_price_fen, created_by_role="family",
    )  # fmt: skip
    db.add(order)
    await db.flush()
    visit = Visit(
        order_id=order.id, service_code=service, elder_id=elder.id, caregiver_id=by.caregiver.id,
        provider_id=by.provider_id, scheduled_start_at=start, scheduled_end_at=end,
        check_in_at=start if checked_in else None, check_out_at=end if checked_in else None,
        verification=verification, verified_at=end if verification == "verified" else None,
    )  # fmt: skip
    db.add(visit)
    await db.flush()
    return visit


async def insure(db: AsyncSession, elder: Elder, since: dt.date = dt.date(2026, 1, 1)) -> None:
    """Long-term-care insurance coverage for ``elder`` from ``since``, open-ended."""
    db.add(LtcCoverage(elder_id=elder.id, policy_no=f"LTC-T-{elder.id}", valid_from=since))
    await db.flush()
