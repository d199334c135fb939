"""What the settlement tests share: a provider world in a district (contracted for every service, one
caregiver), and visits of it in a given state — an order and its visit, checked in and out on
time, verified before October's cut-off unless told otherwise — inserted straight into the test's
rolled-back transaction (dispatch's own flow is tested in tests/integration/dispatch).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import SHANGHAI
from dispatch.models import ServiceOrder, Visit, VisitExceptionRecord
from dispatch.seed import SERVICES
from registry.models import Caregiver, Elder, ElderCategory, LtcCoverage, Provider
from tests.factories import XIAONAN, Account, Factory, add_assessment, add_signed_agreement

OCTOBER: Final = dt.date(2026, 10, 1)
NOVEMBER: Final = dt.date(2026, 11, 1)
# Before October's cut-off (5 November 00:00 Asia/Shanghai), and after it.
VERIFIED: Final = dt.datetime(2026, 11, 1, 2, 0, tzinfo=dt.UTC)
LATE: Final = dt.datetime(2026, 11, 8, 2, 0, tzinfo=dt.UTC)
PRICE: Final = {s.code: s.price_fen for s in SERVICES}
UNIT: Final = {s.code: s.unit for s in SERVICES}


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), SHANGHAI).astimezone(dt.UTC)


@dataclass
class World:
    provider: Provider
    caregiver: Caregiver
    admin: Account
    officer: Account
    provider_admin: Account


async def world(make: Factory, district: str = XIAONAN, *, capacity: int = 8) -> World:
    """A provider of ``district`` contracted for every service, one caregiver, and the accounts that
    settle with it (an admin, the district's officer, the provider's admin)."""
    provider = await make.provider(district)
    await make.contract(provider, *PRICE)
    caregiver = await make.caregiver(provider, daily_capacity=capacity)
    from core.identity.models import Role

    return World(
        provider=provider,
        caregiver=caregiver,
        admin=await make.admin(),
        officer=await make.civil_affairs(district),
        provider_admin=await make.account(Role.PROVIDER_ADMIN, provider=provider),
    )


async def elder(
    make: Factory,
    w: World,
    *,
    district: str = XIAONAN,
    level: int | None = None,
    ltc: bool = False,
    categories: tuple[str, ...] = (),
    services: tuple[str, ...] = tuple(PRICE),
    agreement: bool = True,
    **columns: Any,
) -> Elder:
    """An elder with, optionally, an assessment at ``level`` (valid all year), LTC coverage, subsidy
    categories and a signed agreement with the world's provider for ``services``."""
    e = await make.elder(district, categories=categories, **columns)
    if level is not None:
        await add_assessment(make.db, e.id, level=level, assessed_on=dt.date(2026, 1, 2))
    if ltc:
        make.db.add(LtcCoverage(elder_id=e.id, policy_no=f"LTC-{e.id}", valid_from=dt.date(2026, 1, 1)))
    if agreement:
        await add_signed_agreement(
            make.db,
            elder_id=e.id,
            provider_id=w.provider.id,
            services=services,
            valid_from=dt.date(2026, 1, 1),
            valid_to=dt.date(2026, 12, 31),
            signed_at=dt.datetime(2026, 1, 1, 1, tzinfo=dt.UTC),
        )
    await make.db.flush()
    return e


async def category(
    db: AsyncSession, elder_id: int, name: str, valid_from: dt.date, valid_to: dt.date | None
) -> None:
    db.add(ElderCategory(elder_id=elder_id, category=name, valid_from=valid_from, valid_to=valid_to))
    await db.flush()


async def visit(
    db: AsyncSession,
    w: World,
    e: Elder,
    *,
    service: str = "CLEAN",
    day: dt.date = dt.date(2026, 10, 10),
    hour: int = 9,
    minute: int = 0,
    duration_s: int = 3600,
    on_site_s: int | None = None,
    verification: str = "verified",
    verified_at: dt.datetime | None = VERIFIED,
    open_exception: bool = True,
    caregiver: Caregiver | None = None,
    lat: float | None = None,
    lon: float | None = None,
) -> Visit:
    """An order of ``service`` and its visit on ``day`` at ``hour``:``minute`` (Asia/Shanghai), on site
    ``on_site_s`` (default the ordered duration), verified at ``verified_at`` (or pending, or an
    exception, which ``open_exception`` leaves open)."""
    cg = caregiver or w.caregiver
    start = local(day, hour, minute)
    state = {"verified": "verified", "pending": "checked_out", "exception": "exception"}[verification]
    order = ServiceOrder(
        elder_id=e.id,
        service_code=service,
        provider_id=cg.provider_id,
        caregiver_id=cg.id,
        state=state,
        window_start_at=start,
        window_end_at=start + dt.timedelta(minutes=30),
        duration_s=duration_s,
        price_fen=PRICE[service],
        created_by_role="operator",
    )
    db.add(order)
    await db.flush()
    on_site = duration_s if on_site_s is None else on_site_s
    v = Visit(
        order_id=order.id,
        service_code=service,
        elder_id=e.id,
        caregiver_id=cg.id,
        provider_id=cg.provider_id,
        scheduled_start_at=start,
        scheduled_end_at=start + dt.timedelta(seconds=duration_s),
        check_in_at=start,
        check_in_lat=e.lat if lat is None else lat,
        check_in_lon=e.lon if lon is None else lon,
        check_in_method="gps",
        check_out_at=start + dt.timedelta(seconds=on_site),
        check_out_lat=e.lat if lat is None else lat,
        check_out_lon=e.lon if lon is None else lon,
        check_out_method="gps",
        signed_off_at=start + dt.timedelta(seconds=on_site),
        sign_off_method="pin",
        verification=verification,
        verified_at=verified_at if verification == "verified" else None,
    )
    db.add(v)
    await db.flush()
    if verification == "exception":
        resolved = (
            {}
            if open_exception
            else {
                "reason_code": "other",
                "resolution_code": "rejected",
                "resolved_at": VERIFIED,
                "resolved_by_user_id": w.admin.user_id,
            }
        )
        db.add(
            VisitExceptionRecord(
                visit_id=v.id, code="no_sign_off", detected_at=start + dt.timedelta(days=1), **resolved
            )
        )
        await db.flush()
    return v
