"""The matching views that the database gives :mod:`dispatch.matching`: an order as an
:class:`~dispatch.matching.OrderRequest` (:func:`build_request`), caregivers as
:class:`~dispatch.matching.CaregiverProfile` s (:func:`caregiver_profiles`), and for real-time dispatch
the order's facts (:func:`dispatch_facts`) and its nearest eligible caregivers
(:func:`nearest_candidates`), each in one statement. Read only: offers, manual assignment,
verification and day planning use them.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Double,
    Integer,
    Interval,
    String,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import local_date
from dispatch.common import DispatchError, contracted
from dispatch.matching import (
    METRES_PER_DEGREE_LAT,
    Booking,
    CaregiverIndex,
    CaregiverProfile,
    CertificateInfo,
    OrderRequest,
    busy_interval,
    eta_horizon_min,
    match,
    max_distance_m,
)
from dispatch.models import CaregiverPosition, Offer, Service, ServiceOrder, Visit
from dispatch.policies import (
    Policies,
    continuity_days_sql,
    load_policies,
    policies_from_json,
    policy_rows_json,
)
from dispatch.prerequisites import series_provider_allows
from dispatch.states import BOOKED
from registry.models import (
    Caregiver,
    Certificate,
    Community,
    District,
    Elder,
    ElderBlockedCaregiver,
    ProviderDistrict,
)

CANDIDATE_POOL = 32  # nearest caregivers fetched per dispatch; the matching core ranks them
_BOOKED_STATES = tuple(sorted(s.value for s in BOOKED))


async def build_request(
    *, session: AsyncSession, order: ServiceOrder, now: dt.datetime, policies: Policies | None = None
) -> OrderRequest:
    """The matching view of an order: the elder's home, gender, block list, continuity of care
    (visits checked in during the policy's continuity window before ``now``) and what the service
    asks of the caregiver. ``policies`` are those of the service day (the local date of the visit's
    start); read here when not given."""
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
        service=policies.service(service.code, service.skill),
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
class DispatchFacts:
    """What dispatching one order needs, read in one round trip."""

    request: OrderRequest
    district_id: int
    # Serving the elder's district, contracted for the service that day (and for an order of a series,
    # the provider it is agreed with).
    provider_ids: frozenset[int]
    policies: Policies
    state: str
    attempts: int
    asked: frozenset[int]


@functools.cache
def _facts_statement() -> Any:
    """The statement behind :func:`dispatch_facts`, built once (parameters: order_id, elder_id,
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
    # An order of a series goes only to the provider the series is agreed with (dispatch.prerequisites).
    providers = select(func.array_agg(ProviderDistrict.provider_id, type_=ARRAY(BigInteger))).where(
        ProviderDistrict.district_id == Elder.district_id,
        contracted(ProviderDistrict.provider_id, bindparam("service_code", type_=String), day),
        series_provider_allows(ProviderDistrict.provider_id),
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


async def dispatch_facts(session: AsyncSession, order: ServiceOrder, now: dt.datetime) -> DispatchFacts:
    """The order's current state and offers, the elder's home and block list, continuity of care, and
    the policies of the service day, the service's requirement among them: one statement (scalar
    subqueries)."""
    start = max(order.window_start_at, now) if order.asap else order.window_start_at
    day = local_date(start)
    params = {
        "order_id": order.id,
        "elder_id": order.elder_id,
        "service_code": order.service_code,
        "now": now,
        "day": day,
    }
    row = (await session.execute(_facts_statement(), params)).one()
    policies = policies_from_json(day, row.policies)
    request = OrderRequest(
        elder_id=row.id,
        elder_gender=row.gender,
        elder_allows_any_gender=row.allows_any_gender_bathing,
        lat=row.lat,
        lon=row.lon,
        rural=bool(row.is_village) or row.kind == "rural",
        service=policies.service(row.code, row.skill),
        start=start,
        duration_s=order.duration_s,
        asap=order.asap,
        urgent=order.urgent,
        blocked=frozenset(row.blocked or ()),
        continuity={int(c): int(n) for c, n in row.continuity or ()},
    )
    return DispatchFacts(
        request=request,
        district_id=int(row.district_id),
        provider_ids=frozenset(row.providers or ()),
        policies=policies,
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
    session: AsyncSession, facts: DispatchFacts, *, realtime: bool, radius_m: float, pool: int
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


async def nearest_candidates(
    session: AsyncSession, facts: DispatchFacts, *, now: dt.datetime
) -> tuple[CaregiverIndex, dict[int, CaregiverProfile]]:
    """The caregivers worth ranking for an order, indexed by position, with their matching profiles.

    Candidates are the active caregivers with the service's skill of providers serving the elder's
    district and holding a contract for the service valid on its (Asia/Shanghai) service day, within
    reach of the elder (the matching radius of the policy). For as-soon-as-possible and urgent orders
    only caregivers on shift count, at their last reported position; otherwise a caregiver off shift
    counts from home. The database returns the :data:`CANDIDATE_POOL` nearest (plus the elder's
    continuity caregivers); travel is half the score, so the best candidate is in practice always
    among them. (Inside the walk circle of :func:`dispatch.matching.walk_circle_m` travel no longer
    tells caregivers apart: where more than the pool of eligible caregivers live within it, the choice
    among them is made from the nearest.) A second, wider search (one more statement) only when the
    nearest are busy.
    """
    request, policies = facts.request, facts.policies
    mp = policies.match
    radius = max_distance_m(eta_horizon_min(request, mp), rural=request.rural, policy=mp)
    realtime = request.asap or request.urgent

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
    return index, profiles
