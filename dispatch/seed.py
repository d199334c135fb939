"""Dispatch's part of the demo data set, called by :func:`core.seed.seed_demo` after the kernel's own
(listed in ``core.seed.DOMAIN_SEED_MODULES``): without contracts no order could be dispatched.

Every provider without any contract yet is contracted, open-ended from :data:`CONTRACTS_FROM`, for
each catalogue service some caregiver of it is skilled in. Idempotent: a provider that holds any
contract (seeded before, or set through the API) is left alone.
"""

from __future__ import annotations

import datetime as dt

import structlog
from sqlalchemy import any_, exists, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.seed_data import POLICY_EPOCH
from dispatch.models import ProviderService, Service
from registry.models import Caregiver

log = structlog.get_logger(__name__)

CONTRACTS_FROM = POLICY_EPOCH  # fixed, before any demo day, like the dated catalogue prices


async def seed(session: AsyncSession, *, today: dt.date) -> dict[str, int]:
    """Contract the providers that have none; returns the row count of ``provider_service``."""
    uncontracted = ~exists().where(ProviderService.provider_id == Caregiver.provider_id)
    skilled = (
        select(Caregiver.provider_id, Service.code, literal(CONTRACTS_FROM).label("valid_from"))
        .join(Service, Service.skill == any_(Caregiver.skills))
        .where(uncontracted)
        .distinct()
    )
    added = await session.execute(
        pg_insert(ProviderService)
        .from_select(["provider_id", "service_code", "valid_from"], skilled)  # valid_to: null, open-ended
        .on_conflict_do_nothing()
        .returning(ProviderService.provider_id)
    )
    providers = len(set(added.scalars()))
    total = int(await session.scalar(select(func.count()).select_from(ProviderService)) or 0)
    log.info("seed.dispatch.contracts", today=today.isoformat(), providers_contracted=providers, total=total)
    return {"provider_service": total}
