"""Callbacks, provider quality and the catalogue: call-centre staff work the phone callbacks sampled by
:func:`dispatch.visits.sample_callbacks`; a provider's quality score
(:func:`dispatch.verification.provider_quality`) is read over a range of Asia/Shanghai days; the
catalogue lists the active services with the unit price valid on a day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import ColumnElement, exists, false, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import local_date
from core.crud import Paged, Window, get_or_404, not_found, page_of
from core.errors import Conflict, Forbidden, Invalid
from core.identity.authz import Principal
from core.identity.models import Role
from dispatch.common import day_start, in_scope, scope_clause
from dispatch.matching import ServiceRule
from dispatch.models import CallbackTask, Complaint, Service, Visit, VisitExceptionRecord, VisitRating
from dispatch.policies import PRICE, load_policies
from dispatch.verification import ProviderStats, QualityWeights, provider_quality
from registry.models import Provider, ProviderDistrict

log = structlog.get_logger(__name__)

CALLBACK_WORKERS = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.ADMIN})
QUALITY_READERS = frozenset({Role.PROVIDER_ADMIN, Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.ADMIN})
QUALITY_MAX_DAYS = 366


def _callback_clause(p: Principal) -> ColumnElement[bool]:
    """Callbacks whose visit ``p`` may see (civil affairs: their districts' elders)."""
    if p.role not in CALLBACK_WORKERS:
        return false()
    return scope_clause(
        p, elder_col=Visit.elder_id, provider_col=Visit.provider_id, caregiver_col=Visit.caregiver_id
    )


async def list_callbacks(
    *, session: AsyncSession, actor: Principal, window: Window, state: str | None
) -> Paged[CallbackTask]:
    """Callback tasks in ``actor``'s scope, earliest due first; ``state`` ``open`` or ``done`` (which
    includes callbacks that reached nobody)."""
    if actor.role not in CALLBACK_WORKERS:
        raise Forbidden("Your role may not work callbacks.", code="auth.forbidden")
    stmt: Any = (
        select(CallbackTask)
        .join(Visit, Visit.id == CallbackTask.visit_id)
        .where(_callback_clause(actor))
        .order_by(CallbackTask.due_on, CallbackTask.id)
    )
    if state == "open":
        stmt = stmt.where(CallbackTask.status == "open")
    elif state == "done":
        stmt = stmt.where(CallbackTask.status != "open")
    return await page_of(session, stmt, window)


async def complete_callback(
    *,
    session: AsyncSession,
    actor: Principal,
    callback_id: int,
    satisfaction: int | None,
    reached: bool,
    note: str,
    now: dt.datetime,
) -> CallbackTask:
    """Record a callback's outcome once, with who and when: reached → ``done`` with a satisfaction
    1–5; not reached → ``unreachable`` without one. A second completion is 409 ``callback.already_done``
    (a conditional update, so of two concurrent completions exactly one wins)."""
    if actor.role not in CALLBACK_WORKERS:
        raise Forbidden("Your role may not work callbacks.", code="auth.forbidden")
    task = await get_or_404(session, CallbackTask, callback_id, what="callback")
    visit = await session.get(Visit, task.visit_id)
    if visit is None or not await in_scope(session, actor, visit):
        raise not_found("callback", callback_id)
    if reached and satisfaction is None:
        raise Invalid("A reached callback needs a satisfaction 1-5.", code="callback.satisfaction_required")
    if not reached and satisfaction is not None:
        raise Invalid("A callback that reached nobody has no satisfaction.", code="callback.unreached_score")
    done = await session.scalar(
        update(CallbackTask)
        .where(CallbackTask.id == task.id, CallbackTask.status == "open")
        .values(
            status="done" if reached else "unreachable",
            satisfaction=satisfaction,
            done_by_user_id=actor.user_id,
            done_at=now,
            note=note,
        )
        .returning(CallbackTask.id)
        .execution_options(synchronize_session=False)
    )
    if done is None:
        raise Conflict("This callback is already completed.", code="callback.already_done")
    await session.refresh(task)
    log.info("dispatch.callback.completed", callback_id=task.id, status=task.status)
    return task


@dataclass(frozen=True, slots=True)
class QualityReport:
    """A provider's quality score (0..100, None without visits) over ``start``..``end`` (inclusive
    Asia/Shanghai days) and the figures it was computed from."""

    provider_id: int
    start: dt.date
    end: dt.date
    score: float | None
    stats: ProviderStats
    weights: QualityWeights


async def provider_quality_report(
    *,
    session: AsyncSession,
    actor: Principal,
    provider_id: int,
    start: dt.date | None,
    end: dt.date | None,
    now: dt.datetime,
) -> QualityReport:
    """The quality score of a provider over its visits scheduled in the range (default: the 30 days
    to today). A visit counts as an exception visit when it had any verification exception (even one
    resolved later), as clean when it was verified without one; ratings and callback satisfaction are
    of those visits; complaints are those filed against the provider in the range."""
    if actor.role not in QUALITY_READERS:
        raise Forbidden("Your role may not read provider quality.", code="auth.forbidden")
    # A provider outside the actor's scope is answered like a missing one (existence not revealed).
    await get_or_404(session, Provider, provider_id, what="provider")
    if actor.role == Role.PROVIDER_ADMIN and actor.provider_id != provider_id:
        raise not_found("provider", provider_id)
    if actor.role == Role.CIVIL_AFFAIRS:
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
    end = end or local_date(now)
    start = start or end - dt.timedelta(days=29)
    if start > end:
        raise Invalid("'from' is after 'to'.", code="quality.range_invalid")
    if (end - start).days >= QUALITY_MAX_DAYS:
        raise Invalid(f"The range may span at most {QUALITY_MAX_DAYS} days.", code="quality.range_too_long")
    lo, hi = day_start(start), day_start(end + dt.timedelta(days=1))
    visits = (
        select(Visit.id)
        .where(
            Visit.provider_id == provider_id,
            Visit.scheduled_start_at >= lo,
            Visit.scheduled_start_at < hi,
            Visit.verification.in_(("verified", "exception")),
        )
        .scalar_subquery()
    )
    had_exception = exists().where(VisitExceptionRecord.visit_id == Visit.id)
    counts = (
        await session.execute(
            select(
                func.count().filter(had_exception),
                func.count().filter(~had_exception, Visit.verification == "verified"),
            ).where(Visit.id.in_(visits))
        )
    ).one()
    mean_rating = await session.scalar(
        select(func.avg(VisitRating.score)).where(VisitRating.visit_id.in_(visits))
    )
    mean_callback = await session.scalar(
        select(func.avg(CallbackTask.satisfaction)).where(
            CallbackTask.visit_id.in_(visits), CallbackTask.status == "done"
        )
    )
    complaints = await session.scalar(
        select(func.count()).where(
            Complaint.provider_id == provider_id, Complaint.created_at >= lo, Complaint.created_at < hi
        )
    )
    stats = ProviderStats(
        verified_visits=int(counts[1]),
        exception_visits=int(counts[0]),
        mean_rating=None if mean_rating is None else round(float(mean_rating), 3),
        mean_callback_score=None if mean_callback is None else round(float(mean_callback), 3),
        complaints=int(complaints or 0),
    )
    weights = (await load_policies(session=session, day=end)).quality
    return QualityReport(provider_id, start, end, provider_quality(stats, weights=weights), stats, weights)


# --- Catalogue -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """A catalogue service with the unit price (fen) valid on the asked day (``None`` if it has none)
    and what it asks of the caregiver that day (``rule``: dated policy, like the price)."""

    service: Service
    price_fen: int | None
    rule: ServiceRule


async def catalogue(*, session: AsyncSession, day: dt.date) -> list[CatalogueEntry]:
    """The active services, their prices and requirements on ``day`` (Asia/Shanghai), in code order."""
    services = (
        await session.scalars(select(Service).where(Service.is_active.is_(True)).order_by(Service.code))
    ).all()
    policies = await load_policies(session=session, day=day)
    out = []
    for s in services:
        price = policies.snapshot.rows.get((PRICE, s.code))  # a row valid that day, never a default
        fen = int(price.value["fen"]) if price is not None and "fen" in price.value else None
        out.append(CatalogueEntry(s, fen, policies.service(s.code, s.skill)))
    return out
