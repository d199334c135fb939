"""Provider contracts: which catalogue services a provider is contracted to deliver, over which dates
(``provider_service``; ``valid_to`` inclusive, open-ended when null). Dispatch offers an order only to
caregivers of providers contracted for its service on its service day (:func:`dispatch.common.contracted`).

Staff read every provider's contracts, a provider admin its own; civil affairs (for a provider serving
one of their districts) and admins replace them. A replacement is checked as a whole: known service
codes, ``valid_to`` not before ``valid_from``, no two overlapping ranges for one service.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import structlog
from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.crud import get_or_404, not_found
from core.errors import Forbidden, Invalid
from core.identity.authz import STAFF, Principal
from core.identity.models import Role
from dispatch.models import ProviderService, Service
from registry.models import Provider, ProviderDistrict

log = structlog.get_logger(__name__)

READERS = STAFF | {Role.PROVIDER_ADMIN}
WRITERS = frozenset({Role.CIVIL_AFFAIRS, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class ContractTerm:
    """One contracted service over ``valid_from``..``valid_to`` (inclusive; None: open-ended)."""

    service_code: str
    valid_from: dt.date
    valid_to: dt.date | None = None


def check_terms(terms: Sequence[ContractTerm], known_codes: frozenset[str]) -> list[ContractTerm]:
    """The terms in (service, start) order, or a 422 naming the first problem: an unknown service
    (``contract.service_unknown``), a range ending before it starts (``contract.range_invalid``), two
    ranges of one service sharing a day (``contract.overlap``)."""
    for t in terms:
        if t.service_code not in known_codes:
            raise Invalid(
                f"Unknown service {t.service_code!r}.", code="contract.service_unknown", field="service_code"
            )
        if t.valid_to is not None and t.valid_to < t.valid_from:
            raise Invalid(
                f"{t.service_code}: valid_to {t.valid_to} is before valid_from {t.valid_from}.",
                code="contract.range_invalid",
                field="valid_to",
            )
    ordered = sorted(terms, key=lambda t: (t.service_code, t.valid_from))
    for a, b in pairwise(ordered):
        if a.service_code == b.service_code and (a.valid_to is None or a.valid_to >= b.valid_from):
            raise Invalid(
                f"{a.service_code}: the contracts from {a.valid_from} and from {b.valid_from} overlap.",
                code="contract.overlap",
                service_code=a.service_code,
            )
    return ordered


async def _check_scope(session: AsyncSession, actor: Principal, provider_id: int, *, write: bool) -> None:
    """404 ``provider.not_found`` for an unknown provider, and the same for a provider admin naming
    another provider (which it may not see: its existence is not revealed); then 403 ``scope.provider``
    unless ``actor`` may replace (admin; civil affairs: a provider serving one of their districts)
    this provider's contracts (staff read every provider's)."""
    allowed = WRITERS if write else READERS
    if actor.role not in allowed:
        raise Forbidden("Your role may not do this with provider contracts.", code="auth.forbidden")
    await get_or_404(session, Provider, provider_id, what="provider")
    if actor.role == Role.PROVIDER_ADMIN and actor.provider_id != provider_id:
        raise not_found("provider", provider_id)
    if write and actor.role == Role.CIVIL_AFFAIRS:
        serves = await session.scalar(
            select(ProviderDistrict.provider_id)
            .where(
                ProviderDistrict.provider_id == provider_id,
                ProviderDistrict.district_id.in_(sorted(actor.district_ids)),
            )
            .limit(1)
        )
        if serves is None:  # a provider they can read (contracts), so 403 reveals nothing
            raise Forbidden("This provider serves none of your districts.", code="scope.provider")


async def provider_contracts(
    *, session: AsyncSession, actor: Principal, provider_id: int, on: dt.date | None = None
) -> list[ProviderService]:
    """The provider's contracts in (service, start) order; with ``on``, only those valid that day."""
    await _check_scope(session, actor, provider_id, write=False)
    stmt = select(ProviderService).where(ProviderService.provider_id == provider_id)
    if on is not None:
        stmt = stmt.where(
            ProviderService.valid_from <= on,
            or_(ProviderService.valid_to.is_(None), ProviderService.valid_to >= on),
        )
    stmt = stmt.order_by(ProviderService.service_code, ProviderService.valid_from)
    return list(await session.scalars(stmt))


async def replace_contracts(
    *, session: AsyncSession, actor: Principal, provider_id: int, terms: Sequence[ContractTerm]
) -> list[ProviderService]:
    """Replace all of the provider's contracts with ``terms`` (checked by :func:`check_terms`); audited.

    Orders already accepted keep their caregiver; the new contracts apply to the next offer or
    assignment.
    """
    await _check_scope(session, actor, provider_id, write=True)
    # One replacement at a time per provider: a concurrent one waits here, then replaces this one's.
    await session.execute(select(Provider.id).where(Provider.id == provider_id).with_for_update())
    known = frozenset(await session.scalars(select(Service.code)))
    wanted = check_terms(terms, known)
    before = [
        _term(ContractTerm(*row))
        for row in await session.execute(
            select(ProviderService.service_code, ProviderService.valid_from, ProviderService.valid_to)
            .where(ProviderService.provider_id == provider_id)
            .order_by(ProviderService.service_code, ProviderService.valid_from)
        )
    ]
    await session.execute(delete(ProviderService).where(ProviderService.provider_id == provider_id))
    rows = [
        ProviderService(
            provider_id=provider_id, service_code=t.service_code, valid_from=t.valid_from, valid_to=t.valid_to
        )
        for t in wanted
    ]
    session.add_all(rows)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="update",
        entity="provider_service",
        entity_id=provider_id,
        before={"contracts": before},
        after={"contracts": [_term(t) for t in wanted]},
    )
    log.info("dispatch.contracts.replaced", provider_id=provider_id, contracts=len(rows))
    return rows


def _term(c: ContractTerm) -> dict[str, str | None]:
    return {
        "service_code": c.service_code,
        "valid_from": c.valid_from.isoformat(),
        "valid_to": None if c.valid_to is None else c.valid_to.isoformat(),
    }
