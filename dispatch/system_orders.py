"""Orders the platform places by itself (another domain's scheduled work, e.g. the call centre's
welfare visits): the same creation as a customer's one-off order — priced on its service day, the
prerequisites checked, same-day orders offered at once — with the actor ``system`` and no user.

Callers flush only; the job that calls this owns the transaction.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import local_date
from dispatch.common import price_select
from dispatch.models import ServiceOrder
from dispatch.offers import dispatch_order
from dispatch.orders import create_order
from dispatch.policies import min_on_site_minutes
from dispatch.states import SYSTEM


async def place_system_order(
    *,
    session: AsyncSession,
    elder_id: int,
    service_code: str,
    window_start_at: dt.datetime,
    window_end_at: dt.datetime,
    now: dt.datetime,
    requirements: str = "",
) -> ServiceOrder:
    """Create a ``created`` order for ``elder_id`` as the system (duration: the service's minimum time
    on site of the service day, at least 30 min) and, when it starts today (local), dispatch it at once
    (an offer to the best caregiver, or the operator queue), as :func:`dispatch.orders.place_order`
    does for a person. Raises :class:`dispatch.common.DispatchError` (unknown elder or service, no
    price) and the prerequisites' conflicts, like ``create_order``."""
    day = local_date(window_start_at)
    price = await session.scalar(price_select(service_code, day))
    order = await create_order(
        session=session,
        elder_id=elder_id,
        service_code=service_code,
        window_start_at=window_start_at,
        window_end_at=window_end_at,
        duration_s=max(min_on_site_minutes(service_code, price), 30) * 60,
        actor=SYSTEM,
        actor_user_id=None,
        now=now,
        requirements=requirements,
    )
    if day == local_date(now):
        await dispatch_order(session=session, order_id=order.id, now=now)
    return order
