"""Real-time dispatch: the 60 s offer to one caregiver, the race-safe accept, decline and expiry, and
the choice of the next caregiver or escalation to the operator queue. :func:`dispatch_order` reads an
order's facts and the nearest eligible caregivers in two statements and lets :mod:`dispatch.matching`
rank them; :func:`build_request` and :func:`caregiver_profiles` are the matching views of an order and
of caregivers that manual assignment, verification and day planning use too.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import structlog
from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Double,
    Integer,
    Interval,
    String,
    Table,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from core.crud import in_key_range
from dispatch.common import (
    CONTINUITY_DAYS as CONTINUITY_DAYS,  # re-exported: the policy's default, still imported from here
)
from dispatch.common import (
    DispatchError,
    OfferNotOpen,
    OfferPolicy,
    Policies,
    StateConflict,
    change_state,
    continuity_days_sql,
    contracted,
    load_policies,
    logged,
    new_visit,
    policies_from,
    policy_rows_json,
    service_rule,
)
from dispatch.matching import (
    METRES_PER_DEGREE_LAT,
    Booking,
    CaregiverIndex,
    CaregiverProfile,
    CertificateInfo,
    MatchPolicy,
    OrderRequest,
    ServiceRule,
    busy_interval,
    local_date,
    match,
    max_distance_m,
)
from dispatch.models import CaregiverPosition, Offer, OfferState, Service, ServiceOrder, Visit
from dispatch.states import BOOKED, Actor, OrderState, transition
from registry.models import (
    Caregiver,
    Certificate,
    Community,
    District,
    Elder,
    ElderBlockedCaregiver,
    ProviderDistrict,
)

log = structlog.get_logger(__name__)

CANDIDATE_POOL = 32  # nearest caregivers fetched per dispatch; the matching core ranks them
_BOOKED_STATES = tuple(sorted(s.value for s in BOOKED))


@functools.cache
def _make_offer_statement() -> Any:
    """Built once: the order's conditional move to ``offered`` (``offer_attempts`` + 1), its
    transition row and the offer row, returning the offer (no row: the order had left ``expected``)."""
    at = bindparam("at", type_=DateTime(timezone=True))
    moved = (
        update(ServiceOrder)
        .where(
            ServiceOrder.id == bindparam("order_id", type_=BigInteger),
            ServiceOrder.state == bindparam("expected", type_=String),
        )
        .values(state=OrderState.OFFERED.value, updated_at=at, offer_attempts=ServiceOrder.offer_attempts + 1)
        .returning(ServiceOrder.id, ServiceOrder.offer_attempts)
        .cte("moved")
    )
    made = (
        insert(cast(Table, Offer.__table__))
        .from_select(
            ["order_id", "caregiver_id", "rank", "score", "eta_s", "state", "offered_at", "deadline_at"],
            select(
                moved.c.id,
                bindparam("offer_caregiver_id", type_=BigInteger),
                moved.c.offer_attempts,
                bindparam("score", type_=Double),
                bindparam("eta_s", type_=Integer),
                literal(OfferState.PENDING.value, String),
                at,
                bindparam("deadline_at", type_=DateTime(timezone=True)),
            ),
        )
        .returning(*Offer.__table__.c)
        .cte("made")
    )
    # A SELECT over the data-modifying CTEs (an ORM INSERT given parameters would be a bulk insert).
    return select(aliased(Offer, made)).add_cte(logged(moved.c.id).cte("logged"))


async def make_offer(
    *,
    session: AsyncSession,
    order_id: int,
    caregiver_id: int,
    score: float,
    eta_s: int,
    now: dt.datetime,
    policy: OfferPolicy,
    actor: Actor = Actor.SYSTEM,
    expected: OrderState | None = None,
) -> Offer:
    """Offer a ``created`` (or, by staff, an ``escalated``) order to one caregiver until now + 60 s.

    ``expected`` is the order's current state if the caller has just read it (else it is read here).
    The state change, its transition row and the offer row are one statement: one round trip.
    """
    if expected is None:
        state = await session.scalar(select(ServiceOrder.state).where(ServiceOrder.id == order_id))
        if state is None:
            raise DispatchError(f"order {order_id} not found")
        expected = OrderState(state)
    transition(expected, OrderState.OFFERED, actor=actor, now=now)
    params = {
        "order_id": order_id,
        "expected": expected.value,
        "from_state": expected.value,
        "to_state": OrderState.OFFERED.value,
        "actor_role": actor.value,
        "actor_user_id": None,
        "at": now,
        "offer_caregiver_id": caregiver_id,  # not "caregiver_id": the UPDATE would take it as a SET value
        "score": score,
        "eta_s": eta_s,
        "deadline_at": now + dt.timedelta(seconds=policy.offer_seconds),
    }
    offer: Offer | None = (await session.scalars(_make_offer_statement(), params)).one_or_none()
    if offer is None:
        raise StateConflict(f"order {order_id} is no longer {expected.value}")
    # Keep a loaded copy of the order in step without another round trip.
    order = session.identity_map.get(identity_key(ServiceOrder, order_id))
    if isinstance(order, ServiceOrder):
        set_committed_value(order, "state", OrderState.OFFERED.value)
        set_committed_value(order, "offer_attempts", offer.rank)
        set_committed_value(order, "updated_at", now)
    log.info("dispatch.offer.made", order_id=order_id, offer_id=offer.id, caregiver_id=caregiver_id)
    return offer


async def _close_offer(
    session: AsyncSession,
    *,
    offer_id: int,
    caregiver_id: int,
    to: OfferState,
    now: dt.datetime,
    in_time: bool,
) -> int:
    """Move this caregiver's pending offer to ``to`` with one conditional UPDATE (the race-safe step);
    ``in_time`` also requires the deadline not to have passed. Returns the order id, or raises
    :class:`OfferNotOpen` when the offer was not open (taken, answered, expired or someone else's)."""
    if not in_key_range(offer_id):  # no offer has an id the bigint column cannot hold
        raise OfferNotOpen(f"offer {offer_id} is not open for caregiver {caregiver_id}")
    conditions = [
        Offer.id == offer_id,
        Offer.caregiver_id == caregiver_id,
        Offer.state == OfferState.PENDING.value,
    ]
    if in_time:
        conditions.append(Offer.deadline_at >= now)
    order_id = await session.scalar(
        update(Offer).where(*conditions).values(state=to.value, responded_at=now).returning(Offer.order_id)
    )
    if order_id is None:
        raise OfferNotOpen(f"offer {offer_id} is not open for caregiver {caregiver_id}")
    return int(order_id)


async def accept_offer(*, session: AsyncSession, offer_id: int, caregiver_id: int, now: dt.datetime) -> Visit:
    """Accept an open offer. Of any number of simultaneous accepts exactly one succeeds.

    The offer row is claimed with a conditional UPDATE (``state = 'pending'`` and before the deadline);
    PostgreSQL row locking makes every concurrent claimer wait and then re-check the condition, so
    only the first commit wins and the others get :class:`OfferNotOpen`.
    """
    order_id = await _close_offer(
        session, offer_id=offer_id, caregiver_id=caregiver_id, to=OfferState.ACCEPTED, now=now, in_time=True
    )
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.OFFERED,
        target=OrderState.ACCEPTED,
        actor=Actor.CAREGIVER,
        actor_user_id=None,
        now=now,
        values={
            "caregiver_id": caregiver_id,
            "provider_id": select(Caregiver.provider_id)
            .where(Caregiver.id == caregiver_id)
            .scalar_subquery(),
        },
    )
    order = await session.get(ServiceOrder, order_id, populate_existing=True)
    if order is None:  # pragma: no cover - the UPDATE above just found it
        raise DispatchError(f"order {order_id} vanished")
    start = max(order.window_start_at, now) if order.asap else order.window_start_at
    visit = new_visit(order, caregiver_id=caregiver_id, provider_id=order.provider_id, start=start)
    session.add(visit)
    await session.flush()
    log.info("dispatch.offer.accepted", order_id=order_id, offer_id=offer_id, caregiver_id=caregiver_id)
    return visit


async def decline_offer(*, session: AsyncSession, offer_id: int, caregiver_id: int, now: dt.datetime) -> int:
    """Decline an open offer; the order goes back to ``created`` for the next candidate. Returns its id."""
    order_id = await _close_offer(
        session, offer_id=offer_id, caregiver_id=caregiver_id, to=OfferState.DECLINED, now=now, in_time=False
    )
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.OFFERED,
        target=OrderState.CREATED,
        actor=Actor.CAREGIVER,
        actor_user_id=None,
        now=now,
        note="declined",
    )
    return int(order_id)


async def expire_offers(*, session: AsyncSession, now: dt.datetime) -> list[int]:
    """Expire every open offer past its deadline; their orders return to ``created``. Returns order ids."""
    rows = await session.scalars(
        update(Offer)
        .where(Offer.state == OfferState.PENDING.value, Offer.deadline_at < now)
        .values(state=OfferState.EXPIRED.value)
        .returning(Offer.order_id)
    )
    order_ids = sorted(set(rows))
    for oid in order_ids:
        await change_state(
            session=session,
            order_id=oid,
            expected=OrderState.OFFERED,
            target=OrderState.CREATED,
            actor=Actor.SYSTEM,
            actor_user_id=None,
            now=now,
            note="offer expired",
        )
    return order_ids


async def offer_next(
    *,
    session: AsyncSession,
    order_id: int,
    request: OrderRequest,
    index: CaregiverIndex,
    profiles: Mapping[int, CaregiverProfile],
    match_policy: MatchPolicy,
    offer_policy: OfferPolicy,
    now: dt.datetime,
) -> Offer | None:
    """Offer a ``created`` order to the best caregiver not yet asked; escalate to the operator queue
    after ``max_attempts`` offers or when nobody is eligible. Returns the new offer, or None if escalated.
    """
    order = await session.get(ServiceOrder, order_id, populate_existing=True)
    if order is None:
        raise DispatchError(f"order {order_id} not found")
    asked = frozenset(await session.scalars(select(Offer.caregiver_id).where(Offer.order_id == order_id)))
    return await _offer_or_escalate(
        session=session,
        order_id=order_id,
        state=order.state,
        attempts=order.offer_attempts,
        asked=asked,
        request=request,
        index=index,
        profiles=profiles,
        match_policy=match_policy,
        offer_policy=offer_policy,
        now=now,
    )


async def _offer_or_escalate(
    *,
    session: AsyncSession,
    order_id: int,
    state: str,
    attempts: int,
    asked: frozenset[int],
    request: OrderRequest,
    index: CaregiverIndex,
    profiles: Mapping[int, CaregiverProfile],
    match_policy: MatchPolicy,
    offer_policy: OfferPolicy,
    now: dt.datetime,
) -> Offer | None:
    """:func:`offer_next` given the order's state, offer count and the caregivers already asked."""
    if state != OrderState.CREATED.value:
        raise StateConflict(f"order {order_id} is {state}, not created")
    if attempts < offer_policy.max_attempts:
        result = match(
            request, index=index, profiles=profiles, policy=match_policy, now=now, limit=len(asked) + 5
        )
        for cand in result.candidates:
            if cand.caregiver_id not in asked:
                return await make_offer(
                    session=session,
                    order_id=order_id,
                    caregiver_id=cand.caregiver_id,
                    score=cand.score,
                    eta_s=cand.eta_s,
                    now=now,
                    policy=offer_policy,
                    expected=OrderState.CREATED,
                )
    await change_state(
        session=session,
        order_id=order_id,
        expected=OrderState.CREATED,
        target=OrderState.ESCALATED,
        actor=Actor.SYSTEM,
        actor_user_id=None,
        now=now,
        note=f"after {attempts} offers",
    )
    order = session.identity_map.get(identity_key(ServiceOrder, order_id))
    if isinstance(order, ServiceOrder):
        set_committed_value(order, "state", OrderState.ESCALATED.value)
        set_committed_value(order, "updated_at", now)
    log.info("dispatch.order.escalated", order_id=order_id, attempts=attempts)
    return None


# --- Real-time dispatch -----------------------------------------------------------------------------


async def build_request(
    *, session: AsyncSession, order: ServiceOrder, now: dt.datetime, policies: Policies | None = None
) -> OrderRequest:
    """The matching view of an order: the elder's home, gender, block list and continuity of care
    (visits checked in during the policy's continuity window before ``now``). ``policies`` are those
    of the service day; read here when not given."""
    elder = (
        await session.execute(
            select(
                Elder.id,
                Elder.gender,
                Elder.allows_any_gender_bathing,
                Elder.lat,
                Elder.lon,
                Community.is_village,
                District.kind,
            )
            .join(Community, Community.id == Elder.community_id)
            .join(District, District.id == Elder.district_id)
            .where(Elder.id == order.elder_id)
        )
    ).one()
    service = await session.get(Service, order.service_code)
    if service is None:  # pragma: no cover - a foreign key
        raise DispatchError(f"unknown service {order.service_code}")
    blocked = frozenset(
        await session.scalars(
            select(ElderBlockedCaregiver.caregiver_id).where(ElderBlockedCaregiver.elder_id == elder.id)
        )
    )
    start = max(order.window_start_at, now) if order.asap else order.window_start_at
    if policies is None:
        policies = await load_policies(session=session, day=local_date(start))
    since = now - dt.timedelta(days=policies.continuity_days)
    continuity = {
        int(cid): int(n)
        for cid, n in await session.execute(
            select(Visit.caregiver_id, func.count())
            .where(Visit.elder_id == elder.id, Visit.check_in_at >= since)
            .group_by(Visit.caregiver_id)
        )
    }
    return OrderRequest(
        elder_id=elder.id,
        elder_gender=elder.gender,
        elder_allows_any_gender=elder.allows_any_gender_bathing,
        lat=elder.lat,
        lon=elder.lon,
        rural=bool(elder.is_village) or elder.kind == "rural",
        service=service_rule(service),
        start=start,
        duration_s=order.duration_s,
        asap=order.asap,
        urgent=order.urgent,
        blocked=blocked,
        continuity=continuity,
    )


async def caregiver_profiles(
    session: AsyncSession, caregivers: Sequence[Any], around: dt.datetime, *, now: dt.datetime
) -> dict[int, CaregiverProfile]:
    """Matching profiles of caregivers (rows or :class:`Caregiver` objects: id, gender, skills, shift,
    work days, capacity, rating, is_active) with their certificates and bookings (as they stand at
    ``now``: :func:`dispatch.matching.busy_interval`) of visits scheduled from the day before to the day
    after ``around``. Two queries whatever the number of caregivers."""
    ids = [int(c.id) for c in caregivers]
    bookings: dict[int, list[Booking]] = {i: [] for i in ids}
    certificates: dict[int, list[CertificateInfo]] = {i: [] for i in ids}
    if ids:
        rows = await session.execute(
            select(Visit.caregiver_id, *_BOOKING_COLUMNS)
            .join(ServiceOrder, ServiceOrder.id == Visit.order_id)
            .where(
                Visit.caregiver_id.in_(ids),
                ServiceOrder.state.in_(_BOOKED_STATES),
                Visit.scheduled_start_at >= around - dt.timedelta(days=1),
                Visit.scheduled_start_at < around + dt.timedelta(days=1),
            )
        )
        for cid, start, end, check_in, check_out in rows:
            bookings[int(cid)].append(
                busy_interval(
                    scheduled_start=start,
                    scheduled_end=end,
                    check_in_at=check_in,
                    check_out_at=check_out,
                    now=now,
                )
            )
        certs = await session.execute(
            select(
                Certificate.caregiver_id,
                Certificate.kind,
                Certificate.level,
                Certificate.issued_on,
                Certificate.expires_on,
            ).where(Certificate.caregiver_id.in_(ids))
        )
        for cid, kind, level, issued, expires in certs:
            certificates[int(cid)].append(CertificateInfo(kind, level, issued, expires))
    return {
        int(c.id): CaregiverProfile(
            id=int(c.id),
            gender=c.gender,
            skills=frozenset(c.skills),
            certificates=tuple(certificates[int(c.id)]),
            shift_start=c.shift_start,
            shift_end=c.shift_end,
            work_days=frozenset(c.work_days),
            daily_capacity=c.daily_capacity,
            rating=c.rating,
            bookings=tuple(bookings[int(c.id)]),
            is_active=c.is_active,
        )
        for c in caregivers
    }


@dataclass(frozen=True, slots=True)
class _DispatchFacts:
    """What dispatching one order needs, read in one round trip."""

    request: OrderRequest
    district_id: int
    provider_ids: frozenset[int]  # serving the elder's district, contracted for the service that day
    policies: Policies
    state: str
    attempts: int
    asked: frozenset[int]


@functools.cache
def _facts_statement() -> Any:
    """The statement behind :func:`_dispatch_facts`, built once (parameters: order_id, elder_id,
    service_code, now, day); reusing the object spares SQLAlchemy rebuilding it and its cache key on
    every order."""
    elder_id = bindparam("elder_id", type_=BigInteger)
    day = bindparam("day", type_=Date)
    # The continuity window comes from the policy of the service day, read in this same statement.
    since = bindparam("now", type_=DateTime(timezone=True)) - func.make_interval(
        0, 0, 0, continuity_days_sql(day), type_=Interval
    )
    counts = (
        select(Visit.caregiver_id.label("cid"), func.count().label("n"))
        .where(Visit.elder_id == elder_id, Visit.check_in_at >= since)
        .group_by(Visit.caregiver_id)
        .subquery()
    )
    continuity = select(func.json_agg(func.json_build_array(counts.c.cid, counts.c.n), type_=JSON))
    blocked = select(func.array_agg(ElderBlockedCaregiver.caregiver_id, type_=ARRAY(BigInteger))).where(
        ElderBlockedCaregiver.elder_id == elder_id
    )
    asked = select(func.array_agg(Offer.caregiver_id, type_=ARRAY(BigInteger))).where(
        Offer.order_id == bindparam("order_id", type_=BigInteger)
    )
    # Providers serving the district and contracted for the service on the service day: the contract
    # rule is applied once per provider here, not once per caregiver in the candidate search.
    providers = select(func.array_agg(ProviderDistrict.provider_id, type_=ARRAY(BigInteger))).where(
        ProviderDistrict.district_id == Elder.district_id,
        contracted(ProviderDistrict.provider_id, bindparam("service_code", type_=String), day),
    )
    return (
        select(
            ServiceOrder.state,
            ServiceOrder.offer_attempts,
            Elder.id,
            Elder.gender,
            Elder.allows_any_gender_bathing,
            Elder.lat,
            Elder.lon,
            Elder.district_id,
            Community.is_village,
            District.kind,
            Service.code,
            Service.skill,
            Service.certificate_kind,
            Service.max_certificate_level,
            Service.same_gender,
            Service.min_minutes,
            blocked.scalar_subquery().label("blocked"),
            continuity.scalar_subquery().label("continuity"),
            asked.scalar_subquery().label("asked"),
            providers.scalar_subquery().label("providers"),
            policy_rows_json(day).label("policies"),
        )
        .join(Elder, Elder.id == ServiceOrder.elder_id)
        .join(Community, Community.id == Elder.community_id)
        .join(District, District.id == Elder.district_id)
        .join(Service, Service.code == ServiceOrder.service_code)
        .where(ServiceOrder.id == bindparam("order_id", type_=BigInteger))
    )


async def _dispatch_facts(session: AsyncSession, order: ServiceOrder, now: dt.datetime) -> _DispatchFacts:
    """The order's current state and offers, the elder's home and block list, continuity of care, the
    service's rule and the policies of the service day: one statement (scalar subqueries)."""
    start = max(order.window_start_at, now) if order.asap else order.window_start_at
    params = {
        "order_id": order.id,
        "elder_id": order.elder_id,
        "service_code": order.service_code,
        "now": now,
        "day": local_date(start),
    }
    row = (await session.execute(_facts_statement(), params)).one()
    request = OrderRequest(
        elder_id=row.id,
        elder_gender=row.gender,
        elder_allows_any_gender=row.allows_any_gender_bathing,
        lat=row.lat,
        lon=row.lon,
        rural=bool(row.is_village) or row.kind == "rural",
        service=ServiceRule(
            code=row.code,
            skill=row.skill,
            certificate_kind=row.certificate_kind,
            max_certificate_level=row.max_certificate_level,
            same_gender=row.same_gender,
            min_minutes=row.min_minutes,
        ),
        start=start,
        duration_s=order.duration_s,
        asap=order.asap,
        urgent=order.urgent,
        blocked=frozenset(row.blocked or ()),
        continuity={int(c): int(n) for c, n in row.continuity or ()},
    )
    return _DispatchFacts(
        request=request,
        district_id=int(row.district_id),
        provider_ids=frozenset(row.providers or ()),
        policies=policies_from([(k, sc, v) for k, sc, v in row.policies or ()]),
        state=row.state,
        attempts=int(row.offer_attempts),
        asked=frozenset(row.asked or ()),
    )


# What a booking is made of (:func:`dispatch.matching.busy_interval`), in this order.
_BOOKING_COLUMNS = (Visit.scheduled_start_at, Visit.scheduled_end_at, Visit.check_in_at, Visit.check_out_at)

_PROFILE_COLUMNS = (
    Caregiver.id,
    Caregiver.gender,
    Caregiver.skills,
    Caregiver.shift_start,
    Caregiver.shift_end,
    Caregiver.work_days,
    Caregiver.daily_capacity,
    Caregiver.rating,
    Caregiver.is_active,
)


@functools.cache
def _candidate_statement(*, realtime: bool, continuity: bool) -> Any:
    """The statement behind :func:`_candidate_rows`, built once per variant. Parameters: lat, lon
    (degrees), dlon (the radius in degrees of longitude), shrink2 (cos² of the latitude), window,
    pool, skill, providers, continuity (ids), since and until (the bookings' span)."""
    lat = bindparam("lat", type_=Double)
    lon = bindparam("lon", type_=Double)
    dlon = bindparam("dlon", type_=Double)
    window = bindparam("window", type_=Integer)
    here = func.point(lon, lat)
    eligible = (
        Caregiver.is_active,
        Caregiver.skills.contains(bindparam("skill", type_=ARRAY(String))),
        Caregiver.provider_id.in_(bindparam("providers", expanding=True, type_=BigInteger)),
    )
    pos_distance = func.point(CaregiverPosition.lon, CaregiverPosition.lat).op("<->", return_type=Double)(
        here
    )
    pos_window = (
        select(CaregiverPosition.caregiver_id.label("id"), CaregiverPosition.lat, CaregiverPosition.lon)
        .where(CaregiverPosition.on_shift, pos_distance <= dlon)
        .order_by(pos_distance)
        .limit(window)
        .cte("pos_window")
    )
    windows = [pos_window]

    def fit(window_id: Any) -> Any:
        # LATERAL with LIMIT (which PostgreSQL does not flatten): one primary-key probe per window
        # row; as a plain join the planner tends to hash the provider's whole roster instead.
        return select(Caregiver.id).where(Caregiver.id == window_id, *eligible).limit(1).lateral()

    fit_on_shift = fit(pos_window.c.id)
    parts = [select(pos_window.c.id, pos_window.c.lat, pos_window.c.lon).join(fit_on_shift, true())]
    if not realtime:  # caregivers off shift count from home
        home_distance = func.point(Caregiver.home_lon, Caregiver.home_lat).op("<->", return_type=Double)(here)
        home_window = (
            select(Caregiver.id.label("id"), Caregiver.home_lat.label("lat"), Caregiver.home_lon.label("lon"))
            .where(home_distance <= dlon)
            .order_by(home_distance)
            .limit(window)
            .cte("home_window")
        )
        windows.append(home_window)
        shift_open = exists().where(
            CaregiverPosition.caregiver_id == home_window.c.id, CaregiverPosition.on_shift
        )
        fit_at_home = fit(home_window.c.id)
        parts.append(
            select(home_window.c.id, home_window.c.lat, home_window.c.lon)
            .join(fit_at_home, true())
            .where(~shift_open)
        )
    near = union_all(*parts).subquery("near")
    d2 = (near.c.lat - lat) * (near.c.lat - lat) + (near.c.lon - lon) * (near.c.lon - lon) * bindparam(
        "shrink2", type_=Double
    )
    nearest = (
        select(near.c.id, near.c.lat, near.c.lon, literal(True).label("is_near"))
        .order_by(d2)
        .limit(bindparam("pool", type_=Integer))
    )
    chosen: Any = nearest
    if continuity:
        shift_on = CaregiverPosition.on_shift.is_(True)
        lat_c = (
            CaregiverPosition.lat
            if realtime
            else case((shift_on, CaregiverPosition.lat), else_=Caregiver.home_lat)
        )
        lon_c = (
            CaregiverPosition.lon
            if realtime
            else case((shift_on, CaregiverPosition.lon), else_=Caregiver.home_lon)
        )
        known = (
            select(Caregiver.id, lat_c.label("lat"), lon_c.label("lon"), literal(False).label("is_near"))
            .outerjoin(CaregiverPosition, CaregiverPosition.caregiver_id == Caregiver.id)
            .where(Caregiver.id.in_(bindparam("continuity", expanding=True, type_=BigInteger)), *eligible)
        )
        if realtime:
            known = known.where(shift_on)
        chosen = union_all(nearest.subquery().select(), known)
    picked = chosen.subquery("picked")
    # The facts each booking is made of (epoch seconds, null when not yet), not the interval itself:
    # :func:`_profile_of` applies the one rule, :func:`dispatch.matching.busy_interval`.
    bookings = (
        select(
            func.json_agg(
                func.json_build_array(*(func.extract("epoch", c) for c in _BOOKING_COLUMNS)), type_=JSON
            )
        )
        .join(ServiceOrder, ServiceOrder.id == Visit.order_id)
        .where(
            Visit.caregiver_id == picked.c.id,
            ServiceOrder.state.in_(_BOOKED_STATES),
            Visit.scheduled_start_at >= bindparam("since", type_=DateTime(timezone=True)),
            Visit.scheduled_start_at < bindparam("until", type_=DateTime(timezone=True)),
        )
        .scalar_subquery()
    )
    certificates = (
        select(
            func.json_agg(
                func.json_build_array(
                    Certificate.kind, Certificate.level, Certificate.issued_on, Certificate.expires_on
                ),
                type_=JSON,
            )
        )
        .where(Certificate.caregiver_id == picked.c.id)
        .scalar_subquery()
    )
    full = or_(*(select(func.count()).select_from(w).scalar_subquery() >= window for w in windows))
    return select(
        *_PROFILE_COLUMNS,
        picked.c.lat,
        picked.c.lon,
        picked.c.is_near,
        bookings.label("bookings"),
        certificates.label("certificates"),
        full.label("window_full"),
    ).join(picked, picked.c.id == Caregiver.id)


async def _candidate_rows(
    session: AsyncSession, facts: _DispatchFacts, *, realtime: bool, radius_m: float, pool: int
) -> tuple[list[Any], int, bool]:
    """The ``pool`` eligible caregivers nearest the elder (plus the elder's continuity caregivers), each
    with its matching profile, bookings and certificates: one statement.

    Returns (rows, how many of them are among the nearest, whether a search window was full).

    Nearest-first comes from the GiST indexes on ``point(lon, lat)`` (migration 0006): a KNN index
    scan (``<->``, plain degrees) takes the ``8 × pool`` nearest positions (and, for scheduled orders,
    homes) inside the matching radius; the eligible ones among them are re-ranked by the
    latitude-scaled distance (a degree of longitude is 0.86 of one of latitude in Xiaogan). The
    window is a single-table subquery with LIMIT so the planner cannot trade the KNN scan for a scan
    of everything in range; when a window is full but yields fewer than ``pool`` eligible caregivers,
    the caller searches again with a larger pool.
    """
    request = facts.request
    shrink = max(math.cos(math.radians(request.lat)), 0.01)
    params = {
        "lat": request.lat,
        "lon": request.lon,
        "dlon": radius_m / METRES_PER_DEGREE_LAT / shrink,  # bounds the radius in any direction
        "shrink2": shrink * shrink,
        "window": 8 * pool,
        "pool": pool,
        "skill": [request.service.skill],
        "providers": sorted(facts.provider_ids),
        "since": request.start - dt.timedelta(days=1),
        "until": request.start + dt.timedelta(days=1),
    }
    if request.continuity:
        params["continuity"] = sorted(request.continuity)
    stmt = _candidate_statement(realtime=realtime, continuity=bool(request.continuity))
    rows = list((await session.execute(stmt, params)).all())
    return rows, sum(1 for r in rows if r.is_near), any(r.window_full for r in rows)


def _profile_of(row: Any, now: dt.datetime) -> CaregiverProfile:
    """A :class:`CaregiverProfile` from a :func:`_candidate_rows` row (epoch seconds, ISO dates), its
    bookings as they stand at ``now``."""

    def at(epoch: float | None) -> dt.datetime | None:
        return None if epoch is None else dt.datetime.fromtimestamp(float(epoch), dt.UTC)

    return CaregiverProfile(
        id=int(row.id),
        gender=row.gender,
        skills=frozenset(row.skills),
        certificates=tuple(
            CertificateInfo(kind, level, dt.date.fromisoformat(issued), dt.date.fromisoformat(expires))
            for kind, level, issued, expires in row.certificates or ()
        ),
        shift_start=row.shift_start,
        shift_end=row.shift_end,
        work_days=frozenset(row.work_days),
        daily_capacity=row.daily_capacity,
        rating=row.rating,
        bookings=tuple(
            busy_interval(
                scheduled_start=cast(dt.datetime, at(start)),
                scheduled_end=cast(dt.datetime, at(end)),
                check_in_at=at(check_in),
                check_out_at=at(check_out),
                now=now,
            )
            for start, end, check_in, check_out in row.bookings or ()
        ),
        is_active=row.is_active,
    )


async def dispatch_order(*, session: AsyncSession, order_id: int, now: dt.datetime) -> Offer | None:
    """Offer a ``created`` order to the best caregiver not yet asked, or escalate it.

    Candidates are the active caregivers with the service's skill of providers serving the elder's
    district and holding a contract for the service valid on its (Asia/Shanghai) service day, within
    reach of the elder (the matching radius of the policy). For as-soon-as-possible
    and urgent orders only caregivers on shift count, at their last reported position; otherwise a
    caregiver off shift counts from home. The database returns the :data:`CANDIDATE_POOL` nearest
    (plus the elder's continuity caregivers); the matching core applies every hard rule and scores
    them. Travel is half the score, so the best candidate is in practice always among the nearest.

    Round trips: the order's facts (one statement), the candidates with their profiles (one), the
    offer with its state change (one); a second, wider candidate search only when the nearest are busy.
    """
    # Only fields fixed at creation are read from this copy; state and offers come with the facts.
    order = await session.get(ServiceOrder, order_id)
    if order is None:
        raise DispatchError(f"order {order_id} not found")
    facts = await _dispatch_facts(session, order, now)
    request, policies = facts.request, facts.policies
    mp = policies.match
    if order.urgent:
        eta_min = mp.urgent_eta_rural_min if request.rural else mp.urgent_eta_urban_min
    else:
        eta_min = mp.max_eta_min
    radius = max_distance_m(eta_min, rural=request.rural, policy=mp)
    realtime = order.asap or order.urgent

    async def candidates(pool: int) -> tuple[CaregiverIndex, dict[int, CaregiverProfile], bool]:
        rows, fetched, full = await _candidate_rows(
            session, facts, realtime=realtime, radius_m=radius, pool=pool
        )
        index = CaregiverIndex()
        profiles: dict[int, CaregiverProfile] = {}
        for r in rows:
            index.update(int(r.id), r.lat, r.lon, r.skills)
            profiles[int(r.id)] = _profile_of(r, now)
        # Someone in range may have been left out: the pool or a KNN window was full.
        return index, profiles, fetched >= pool or full

    index, profiles, more_in_range = await candidates(CANDIDATE_POOL)
    enough = policies.offer.max_attempts + 1
    if more_in_range:
        found = match(request, index=index, profiles=profiles, policy=mp, now=now, limit=enough)
        if len(found.candidates) < enough:  # the nearest are busy: look farther before escalating
            index, profiles, _ = await candidates(CANDIDATE_POOL * 8)
    return await _offer_or_escalate(
        session=session,
        order_id=order_id,
        state=facts.state,
        attempts=facts.attempts,
        asked=facts.asked,
        request=request,
        index=index,
        profiles=profiles,
        match_policy=mp,
        offer_policy=policies.offer,
        now=now,
    )


async def expire_and_redispatch(*, session: AsyncSession, now: dt.datetime) -> int:
    """Job: expire offers past their deadline and offer each order to the next candidate (or escalate).
    Returns the number of orders moved on."""
    order_ids = await expire_offers(session=session, now=now)
    for oid in order_ids:
        await dispatch_order(session=session, order_id=oid, now=now)
    if order_ids:
        log.info("dispatch.offers.expired", orders=len(order_ids))
    return len(order_ids)
