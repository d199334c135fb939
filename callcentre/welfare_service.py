"""Welfare visits (探访关爱) — the use cases: the plan (who is visited how often, when next, and how
their last order stands), officers' overrides, and placing the due visits and the after-alarm visits
as dispatch orders (the job in :mod:`callcentre.welfare_jobs` calls the latter two).

The rules are :mod:`callcentre.welfare` (pure); this module reads the facts in batches of elders (a
handful of queries per batch, never one per elder) and writes ``welfare_override`` / ``welfare_visit``.
Orders go through :func:`dispatch.system_orders.place_system_order`, so a welfare visit is matched,
offered, verified and rated like any other order. Services flush; the request or the job commits.

Nothing twice: a visit is inserted in a savepoint together with its order; the unique indexes of
``welfare_visit`` (one cadence visit per elder and due day, one visit per alarm) refuse a second
one, and the savepoint takes the second order with it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog
from sqlalchemy import func, or_, select, true
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callcentre.contract import Severity
from callcentre.models import Alarm
from callcentre.seed import POLICY_DEFAULTS, WELFARE_DEFAULTS
from callcentre.welfare import (
    POLICY_PREFIXES,
    Assessed,
    ElderFacts,
    Override,
    Tier,
    TierSource,
    VisitReason,
    after_alarm_hours,
    next_due,
    recent_alarm_days,
    risk_tier,
    visit_window,
)
from callcentre.welfare_models import WelfareOverride, WelfareVisit
from core import audit
from core.clock import SHANGHAI, local_date
from core.crud import in_key_range
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.identity.authz import Principal
from core.identity.models import Role
from core.policy import PolicySnapshot, load_policy
from dispatch.common import DispatchError
from dispatch.models import ServiceOrder
from dispatch.prerequisites import AgreementRequired, AssessmentRequired
from dispatch.states import OrderState
from dispatch.system_orders import place_system_order
from registry.models import Assessment, Elder, ElderCategory, ElderStatus
from registry.scope import by_district, sees_all_elders

log = structlog.get_logger(__name__)

SERVICE_CODE: Final = "VISIT"  # 探访关爱 caring visit (DOMAIN §3)
BATCH: Final = 500  # elders whose facts are read together
ENTITY: Final = "welfare_override"
# An order that has not yet ended one way or another: while one exists no other cadence visit is placed.
OPEN_STATES: Final = frozenset(
    {
        OrderState.CREATED,
        OrderState.OFFERED,
        OrderState.ESCALATED,
        OrderState.ACCEPTED,
        OrderState.EN_ROUTE,
        OrderState.CHECKED_IN,
    }
)
# An order that did not bring anybody to the elder: it does not count as their last visit.
FAILED_STATES: Final = frozenset({OrderState.CANCELLED, OrderState.NO_SHOW})


class WelfareElderNotFound(NotFound):
    code = "welfare.elder_not_found"


class WelfareOverrideNone(Conflict):
    code = "welfare.no_override"
    title = "No override to clear"


@dataclass(frozen=True, slots=True)
class LastVisit:
    due_on: dt.date
    reason: str
    order_id: int
    order_state: str


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """One elder's line of the welfare plan."""

    elder_id: int
    name: str
    district_id: int
    tier: Tier
    source: TierSource
    override: Override | None
    last_visit_on: dt.date | None  # the latest welfare visit that was not cancelled nor a no-show
    next_due_on: dt.date | None
    latest: LastVisit | None  # the latest welfare visit placed, whatever became of it

    @property
    def open_order(self) -> bool:
        return self.latest is not None and self.latest.order_state in OPEN_STATES


@dataclass(frozen=True, slots=True)
class PlanPage:
    items: list[PlanEntry]
    next_after: int | None
    has_more: bool


async def welfare_policy(session: AsyncSession, day: dt.date) -> PolicySnapshot:
    return await load_policy(
        session, day=day, prefixes=POLICY_PREFIXES, defaults=(*POLICY_DEFAULTS, *WELFARE_DEFAULTS)
    )


# --- Reading the facts, one batch of elders at a time ------------------------------------------------


async def _entries(
    session: AsyncSession, elders: Sequence[Any], *, policy: PolicySnapshot, now: dt.datetime
) -> list[PlanEntry]:
    """The plan entries of ``elders`` (rows with id, name, district_id, birth_on, living_situation,
    has_dementia), every tier included (``none`` too)."""
    if not elders:
        return []
    today = local_date(now)
    ids = [e.id for e in elders]
    categories: dict[int, set[str]] = {}
    for elder_id, category in await session.execute(
        select(ElderCategory.elder_id, ElderCategory.category).where(
            ElderCategory.elder_id.in_(ids),
            ElderCategory.valid_from <= today,
            or_(ElderCategory.valid_to.is_(None), ElderCategory.valid_to >= today),
        )
    ):
        categories.setdefault(elder_id, set()).add(category)
    assessments = {
        r.elder_id: r
        for r in await session.execute(
            select(Assessment.elder_id, Assessment.final_level, Assessment.has_dementia_dx)
            .where(
                Assessment.elder_id.in_(ids), Assessment.assessed_on <= today, Assessment.valid_until >= today
            )
            .order_by(Assessment.elder_id, Assessment.assessed_on.desc(), Assessment.id.desc())
            .ext(distinct_on(Assessment.elder_id))
        )
    }
    since = now - dt.timedelta(days=recent_alarm_days(policy))
    alarms: dict[int, int] = {
        row.elder_id: int(row.n)
        for row in await session.execute(
            select(Alarm.elder_id, func.count().label("n"))
            .where(
                Alarm.elder_id.in_(ids),
                Alarm.severity == Severity.CRITICAL.value,
                Alarm.received_at >= since,
                Alarm.received_at <= now,
            )
            .group_by(Alarm.elder_id)
        )
    }
    overrides = {
        o.elder_id: Override(Tier(o.tier), o.valid_from, o.valid_to)
        for o in await session.scalars(
            select(WelfareOverride)
            .where(
                WelfareOverride.elder_id.in_(ids),
                WelfareOverride.valid_from <= today,
                or_(WelfareOverride.valid_to.is_(None), WelfareOverride.valid_to >= today),
            )
            .order_by(WelfareOverride.elder_id, WelfareOverride.valid_from.desc())
        )
    }
    visits = (
        select(
            WelfareVisit.elder_id,
            WelfareVisit.due_on,
            WelfareVisit.reason,
            WelfareVisit.order_id,
            ServiceOrder.state,
        )
        .join(ServiceOrder, ServiceOrder.id == WelfareVisit.order_id)
        .where(WelfareVisit.elder_id.in_(ids))
        .order_by(WelfareVisit.elder_id, WelfareVisit.due_on.desc(), WelfareVisit.id.desc())
        .ext(distinct_on(WelfareVisit.elder_id))
    )
    latest = {
        r.elder_id: LastVisit(r.due_on, r.reason, r.order_id, r.state) for r in await session.execute(visits)
    }
    done = {
        r.elder_id: r.due_on
        for r in await session.execute(
            visits.where(ServiceOrder.state.not_in([s.value for s in FAILED_STATES]))
        )
    }
    out: list[PlanEntry] = []
    for e in elders:
        a = assessments.get(e.id)
        facts = ElderFacts(
            elder_id=e.id,
            birth_on=e.birth_on,
            living_situation=e.living_situation,
            categories=frozenset(categories.get(e.id, ())),
            assessment_level=None if a is None else a.final_level,
            dementia=e.has_dementia or (a is not None and a.has_dementia_dx),
            critical_alarms=int(alarms.get(e.id, 0)),
        )
        override = overrides.get(e.id)
        decided: Assessed = risk_tier(facts, policy, today, override)
        last_on = done.get(e.id)
        out.append(
            PlanEntry(
                elder_id=e.id,
                name=e.name,
                district_id=e.district_id,
                tier=decided.tier,
                source=decided.source,
                override=override,
                last_visit_on=last_on,
                next_due_on=next_due(tier=decided.tier, last_visit_on=last_on, policy=policy, today=today),
                latest=latest.get(e.id),
            )
        )
    return out


_ELDER_COLUMNS = (
    Elder.id,
    Elder.name,
    Elder.district_id,
    Elder.birth_on,
    Elder.living_situation,
    Elder.has_dementia,
)


def _scope_clause(p: Principal) -> Any:
    """Which elders' plans ``p`` reads (registry.scope's rule): every one, or their districts'."""
    if sees_all_elders(p):
        return true()
    if by_district(p):
        return Elder.district_id.in_(sorted(p.district_ids))
    raise Forbidden("You may not read the welfare plan.", code="auth.forbidden")


async def _active_elders(session: AsyncSession, *where: Any, after: int | None, limit: int) -> Sequence[Any]:
    stmt = select(*_ELDER_COLUMNS).where(Elder.status == ElderStatus.ACTIVE.value, *where)
    if after is not None:
        stmt = stmt.where(Elder.id > after)
    return (await session.execute(stmt.order_by(Elder.id).limit(limit))).all()


# --- The plan ------------------------------------------------------------------------------------------


async def plan(
    *,
    session: AsyncSession,
    actor: Principal,
    now: dt.datetime,
    district_id: int | None = None,
    tier: Tier | None = None,
    limit: int = 50,
    after: int | None = None,
) -> PlanPage:
    """The welfare plan of the elders ``actor`` sees (active elders in the programme: tier not
    ``none``, or of ``tier``), by elder id, keyset-paged by ``after``."""
    scope = _scope_clause(actor)
    where: list[Any] = [scope]
    if district_id is not None:
        where.append(Elder.district_id == district_id)
    policy = await welfare_policy(session, local_date(now))
    items: list[PlanEntry] = []
    cursor = after
    while len(items) <= limit:
        rows = await _active_elders(session, *where, after=cursor, limit=BATCH)
        if not rows:
            break
        for entry in await _entries(session, rows, policy=policy, now=now):
            wanted = entry.tier != Tier.NONE if tier is None else entry.tier == tier
            if not wanted:
                continue
            items.append(entry)
            if len(items) > limit:
                break
        cursor = rows[-1].id
    has_more = len(items) > limit
    items = items[:limit]
    return PlanPage(items, items[-1].elder_id if has_more and items else None, has_more)


async def _visible(session: AsyncSession, actor: Principal, elder_id: int) -> Any:
    """The elder's row if ``actor`` sees it (404 otherwise, also out of district)."""
    scope = _scope_clause(actor)
    rows = (
        await _active_elders(session, scope, Elder.id == elder_id, after=None, limit=1)
        if in_key_range(elder_id)
        else []
    )
    if not rows:
        raise WelfareElderNotFound(f"No elder with id {elder_id} in your area.")
    return rows[0]


async def plan_entry(
    *, session: AsyncSession, actor: Principal, elder_id: int, now: dt.datetime
) -> PlanEntry:
    """One elder's plan line (whatever the tier)."""
    row = await _visible(session, actor, elder_id)
    policy = await welfare_policy(session, local_date(now))
    return (await _entries(session, [row], policy=policy, now=now))[0]


# --- Overrides ---------------------------------------------------------------------------------------


def _require_officer(actor: Principal) -> None:
    if actor.role not in (Role.CIVIL_AFFAIRS, Role.ADMIN):
        raise Forbidden("Only civil-affairs officers and admins set welfare tiers.", code="auth.forbidden")


async def _close_open(session: AsyncSession, actor: Principal, elder_id: int, today: dt.date) -> bool:
    """End the elder's open override: yesterday if it began before today, else remove it (a same-day
    correction). Audited. Returns whether there was one."""
    row = await session.scalar(
        select(WelfareOverride)
        .where(WelfareOverride.elder_id == elder_id, WelfareOverride.valid_to.is_(None))
        .with_for_update()
    )
    if row is None:
        return False
    before = audit.snapshot(row)
    if row.valid_from < today:
        row.valid_to = today - dt.timedelta(days=1)
        await session.flush()
        audit.record(
            session,
            actor=actor,
            action="update",
            entity=ENTITY,
            entity_id=row.id,
            before=before,
            after=audit.snapshot(row),
        )
    else:
        await session.delete(row)
        await session.flush()
        audit.record(session, actor=actor, action="delete", entity=ENTITY, entity_id=row.id, before=before)
    return True


async def set_override(
    *, session: AsyncSession, actor: Principal, elder_id: int, tier: Tier, reason: str, now: dt.datetime
) -> PlanEntry:
    """From today on, ``elder_id`` is visited as ``tier`` whatever the rules say (audited); an open
    override is closed first. Civil-affairs officers of the elder's district and admins."""
    _require_officer(actor)
    row = await _visible(session, actor, elder_id)
    if not reason.strip():
        raise Invalid("Give a reason for the override.", code="welfare.reason_required", field="reason")
    today = local_date(now)
    await _close_open(session, actor, row.id, today)
    override = WelfareOverride(
        elder_id=row.id, tier=tier.value, valid_from=today, reason=reason.strip(), set_by=actor.user_id
    )
    session.add(override)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        entity=ENTITY,
        entity_id=override.id,
        after=audit.snapshot(override),
    )
    log.info("welfare.override_set", elder_id=row.id, tier=tier.value, user_id=actor.user_id)
    return await plan_entry(session=session, actor=actor, elder_id=row.id, now=now)


async def clear_override(
    *, session: AsyncSession, actor: Principal, elder_id: int, now: dt.datetime
) -> PlanEntry:
    """From today on the rules decide again (audited). 409 ``welfare.no_override`` if none is open."""
    _require_officer(actor)
    row = await _visible(session, actor, elder_id)
    if not await _close_open(session, actor, row.id, local_date(now)):
        raise WelfareOverrideNone(f"Elder {row.id} has no open welfare override.")
    log.info("welfare.override_cleared", elder_id=row.id, user_id=actor.user_id)
    return await plan_entry(session=session, actor=actor, elder_id=row.id, now=now)


# --- Placing visits (the job) ----------------------------------------------------------------------


async def _place(
    session: AsyncSession,
    *,
    elder_id: int,
    tier: Tier,
    reason: VisitReason,
    due_on: dt.date,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    alarm_id: int | None = None,
) -> int | None:
    """Place one welfare visit (order + marker) in a savepoint; None when a visit with the same key
    exists (another run placed it) or dispatch refuses the order (logged; the next run tries again)."""
    try:
        async with session.begin_nested():
            order = await place_system_order(
                session=session,
                elder_id=elder_id,
                service_code=SERVICE_CODE,
                window_start_at=start,
                window_end_at=end,
                now=now,
                requirements="探访关爱 welfare visit"
                + ("" if alarm_id is None else f" after alarm {alarm_id}"),
            )
            session.add(
                WelfareVisit(
                    elder_id=elder_id,
                    due_on=due_on,
                    reason=reason.value,
                    tier=tier.value,
                    alarm_id=alarm_id,
                    order_id=order.id,
                )
            )
            await session.flush()
    except IntegrityError as exc:
        if "uq_welfare_visit" not in str(exc.orig):
            raise
        log.info("welfare.visit_exists", elder_id=elder_id, reason=reason.value, alarm_id=alarm_id)
        return None
    except (DispatchError, AssessmentRequired, AgreementRequired) as exc:
        log.warning("welfare.visit_refused", elder_id=elder_id, reason=reason.value, error=str(exc))
        return None
    log.info(
        "welfare.visit_placed", elder_id=elder_id, reason=reason.value, order_id=order.id, tier=tier.value
    )
    return order.id


def _local(day: dt.date, at: dt.time) -> dt.datetime:
    return dt.datetime.combine(day, at, tzinfo=SHANGHAI).astimezone(dt.UTC)


async def place_due_visits(
    *, session: AsyncSession, now: dt.datetime, elder_ids: Iterable[int] | None = None
) -> list[int]:
    """Place a cadence visit for every active elder in the programme whose next visit is due today or
    earlier and who has no open welfare order. The order's window is the cadence policy's visiting
    hours: today's from now while they are open (dispatched at once, as a same-day order), tomorrow's
    once they are over (left to tomorrow's day plan). Before today's hours open, a run places nothing:
    a same-day order dispatched at night would find nobody on shift and go to the operator queue.
    ``elder_ids`` limits the run. Returns the orders placed."""
    today = local_date(now)
    policy = await welfare_policy(session, today)
    opens, closes = visit_window(policy)
    if now < _local(today, opens):
        return []
    where: list[Any] = [] if elder_ids is None else [Elder.id.in_(list(elder_ids))]
    placed: list[int] = []
    cursor: int | None = None
    while True:
        rows = await _active_elders(session, *where, after=cursor, limit=BATCH)
        if not rows:
            break
        cursor = rows[-1].id
        for e in await _entries(session, rows, policy=policy, now=now):
            if e.next_due_on is None or e.next_due_on > today or e.open_order:
                continue
            day = today if now < _local(today, closes) else today + dt.timedelta(days=1)
            start, end = max(_local(day, opens), now), _local(day, closes)
            order_id = await _place(
                session,
                elder_id=e.elder_id,
                tier=e.tier,
                reason=VisitReason.CADENCE,
                due_on=day,
                start=start,
                end=end,
                now=now,
            )
            if order_id is not None:
                placed.append(order_id)
    return placed


async def place_after_alarm_visits(
    *, session: AsyncSession, now: dt.datetime, elder_ids: Iterable[int] | None = None
) -> list[int]:
    """Place one welfare visit within ``after_critical_hours`` of every CRITICAL alarm raised in that
    many hours before ``now`` for an elder in the programme, unless it has one. Returns the orders."""
    today = local_date(now)
    policy = await welfare_policy(session, today)
    hours = dt.timedelta(hours=after_alarm_hours(policy))
    stmt = (
        select(Alarm.id, Alarm.elder_id, Alarm.received_at)
        .where(
            Alarm.severity == Severity.CRITICAL.value,
            Alarm.elder_id.is_not(None),
            Alarm.received_at > now - hours,
            Alarm.received_at <= now,
            ~select(WelfareVisit.id).where(WelfareVisit.alarm_id == Alarm.id).exists(),
        )
        .order_by(Alarm.id)
    )
    if elder_ids is not None:
        stmt = stmt.where(Alarm.elder_id.in_(list(elder_ids)))
    alarms = (await session.execute(stmt)).all()
    if not alarms:
        return []
    rows = await _active_elders(
        session, Elder.id.in_({a.elder_id for a in alarms}), after=None, limit=len(alarms)
    )
    tiers = {e.elder_id: e.tier for e in await _entries(session, rows, policy=policy, now=now)}
    placed: list[int] = []
    for a in alarms:
        tier = tiers.get(a.elder_id, Tier.NONE)
        if tier == Tier.NONE:
            continue
        order_id = await _place(
            session,
            elder_id=a.elder_id,
            tier=tier,
            reason=VisitReason.AFTER_ALARM,
            due_on=today,
            start=now,
            end=a.received_at + hours,
            now=now,
            alarm_id=a.id,
        )
        if order_id is not None:
            placed.append(order_id)
    return placed
