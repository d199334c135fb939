"""What the caregiver's phone does: start and end the shift and report the position, list and answer
open offers, read the day's own visits, and work the visit at the door (en route, check-in by GPS and
the door's QR code, checklist, check-out, the elder's PIN sign-off), plus the elder's and family's side
of the sign-off (the PIN to tell, the confirmation). Check-out and sign-off verify the visit through
:func:`dispatch.visits.verify_visit`. Wrong PINs are counted per visit, and after a few PIN sign-off of
that visit is refused for a while (policy ``verification.signoff_pin``), so a PIN cannot be guessed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy import BigInteger, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.clock import SHANGHAI, local_date
from core.crud import in_key_range, not_found
from core.errors import Conflict, DomainError, Forbidden, Invalid, TooManyRequests
from core.identity.authz import Principal
from core.identity.models import Role
from dispatch.common import (
    DispatchError,
    SignOffPinPolicy,
    exception_records,
    load_policies,
    move,
    visible_visit,
)
from dispatch.models import CaregiverPosition, Offer, OfferState, ServiceOrder, Visit
from dispatch.offers import accept_offer, decline_offer, dispatch_order
from dispatch.states import OrderState
from dispatch.verification import CaptureMethod, Verdict, VerificationResult, VisitException
from dispatch.visits import verify_visit
from registry.models import Elder


def _caregiver_id(p: Principal) -> int:
    if p.caregiver_id is None:
        raise Forbidden("Only caregivers have a shift.", code="scope.caregiver")
    return p.caregiver_id


async def set_position(
    *,
    session: AsyncSession,
    actor: Principal,
    lat: float,
    lon: float,
    now: dt.datetime,
    on_shift: bool | None = None,
) -> CaregiverPosition:
    """Record the caregiver's position (degrees); ``on_shift`` starts (True) or ends (False) the shift."""
    cid = _caregiver_id(actor)
    pos = await session.get(CaregiverPosition, cid, populate_existing=True)
    if pos is None:
        pos = CaregiverPosition(caregiver_id=cid, lat=lat, lon=lon, at=now, on_shift=False)
        session.add(pos)
    pos.lat, pos.lon, pos.at = lat, lon, now
    if on_shift is True:
        if pos.on_shift:
            raise Conflict("Your shift has already started.", code="dispatch.shift_started")
        pos.on_shift, pos.shift_started_at = True, now
    elif on_shift is False:
        if not pos.on_shift:
            raise Conflict("You are not on shift.", code="dispatch.shift_not_started")
        pos.on_shift = False
    await session.flush()
    return pos


async def end_shift(*, session: AsyncSession, actor: Principal, now: dt.datetime) -> CaregiverPosition:
    cid = _caregiver_id(actor)
    pos = await session.get(CaregiverPosition, cid, populate_existing=True)
    if pos is None or not pos.on_shift:
        raise Conflict("You are not on shift.", code="dispatch.shift_not_started")
    pos.on_shift = False
    await session.flush()
    return pos


@dataclass(frozen=True, slots=True)
class OpenOffer:
    offer: Offer
    order: ServiceOrder


async def my_offers(*, session: AsyncSession, actor: Principal, now: dt.datetime) -> list[OpenOffer]:
    """The caregiver's open offers, soonest deadline first."""
    cid = _caregiver_id(actor)
    rows = await session.execute(
        select(Offer, ServiceOrder)
        .join(ServiceOrder, ServiceOrder.id == Offer.order_id)
        .where(Offer.caregiver_id == cid, Offer.state == OfferState.PENDING.value, Offer.deadline_at >= now)
        .order_by(Offer.deadline_at)
    )
    return [OpenOffer(o, so) for o, so in rows]


async def accept(*, session: AsyncSession, actor: Principal, offer_id: int, now: dt.datetime) -> Visit:
    return await accept_offer(session=session, offer_id=offer_id, caregiver_id=_caregiver_id(actor), now=now)


async def decline(
    *, session: AsyncSession, actor: Principal, offer_id: int, now: dt.datetime
) -> ServiceOrder:
    """Decline an offer; the order is offered to the next candidate at once (or escalated)."""
    order_id = await decline_offer(
        session=session, offer_id=offer_id, caregiver_id=_caregiver_id(actor), now=now
    )
    await dispatch_order(session=session, order_id=order_id, now=now)
    order = await session.get(ServiceOrder, order_id, populate_existing=True)
    if order is None:  # pragma: no cover
        raise DispatchError(f"order {order_id} vanished")
    return order


@dataclass(frozen=True, slots=True)
class PlanItem:
    visit: Visit
    order_state: str
    elder_name: str
    address: str
    lat: float
    lon: float


async def day_plan(*, session: AsyncSession, actor: Principal, day: dt.date) -> list[PlanItem]:
    """The caregiver's visits on an Asia/Shanghai day, in start order (cancelled ones left out)."""
    cid = _caregiver_id(actor)
    start = dt.datetime.combine(day, dt.time(0), SHANGHAI)
    rows = await session.execute(
        select(Visit, ServiceOrder.state, Elder.name, Elder.address, Elder.lat, Elder.lon)
        .join(ServiceOrder, ServiceOrder.id == Visit.order_id)
        .join(Elder, Elder.id == Visit.elder_id)
        .where(
            Visit.caregiver_id == cid,
            Visit.scheduled_start_at >= start,
            Visit.scheduled_start_at < start + dt.timedelta(days=1),
            ServiceOrder.state.notin_([OrderState.CANCELLED.value]),
        )
        .order_by(Visit.scheduled_start_at, Visit.id)
    )
    return [PlanItem(v, st, n, a, la, lo) for v, st, n, a, la, lo in rows]


async def _my_visit(session: AsyncSession, actor: Principal, visit_id: int) -> tuple[Visit, ServiceOrder]:
    cid = _caregiver_id(actor)
    # A day-plan re-plan hands visits to other caregivers under the order's row lock. Lock the order of
    # the visit if the visit is this caregiver's (someone else's is answered like a missing one, and its
    # order is not locked), then read the visit again, after the lock: still this caregiver's?
    order = (
        (
            await session.scalars(
                _LOCK_MY_ORDER, {"visit_id": visit_id, "caregiver_id": cid}, execution_options=_FRESH
            )
        ).one_or_none()
        if in_key_range(visit_id)
        else None
    )
    if order is None:
        raise not_found("visit", visit_id)
    visit = await session.get(Visit, visit_id, populate_existing=True)
    if visit is None or visit.caregiver_id != cid:
        raise not_found("visit", visit_id)
    return visit, order


_FRESH: Final = {"populate_existing": True}
_LOCK_MY_ORDER: Final = (
    select(ServiceOrder)
    .where(
        ServiceOrder.id
        == select(Visit.order_id)
        .where(
            Visit.id == bindparam("visit_id", type_=BigInteger),
            Visit.caregiver_id == bindparam("caregiver_id", type_=BigInteger),
        )
        .scalar_subquery()
    )
    .with_for_update()
)


def door_code(secret: str, elder_id: int) -> str:
    """The code printed as a QR sticker on the elder's door (an HMAC, so it cannot be guessed)."""
    return hmac.new(secret.encode(), f"door:{elder_id}".encode(), hashlib.sha256).hexdigest()[:16]


def sign_off_pin(secret: str, visit_id: int) -> str:
    """The visit's 6-digit sign-off PIN, shown to the elder and family in their app."""
    digest = hmac.new(secret.encode(), f"signoff:{visit_id}".encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:4], 'big') % 1_000_000:06d}"


async def en_route(*, session: AsyncSession, actor: Principal, visit_id: int, now: dt.datetime) -> Visit:
    visit, order = await _my_visit(session, actor, visit_id)
    await move(
        session=session,
        order=order,
        target=OrderState.EN_ROUTE,
        actor=Role.CAREGIVER,
        actor_user_id=actor.user_id,
        now=now,
    )
    return visit


async def check_in(
    *,
    session: AsyncSession,
    actor: Principal,
    visit_id: int,
    lat: float,
    lon: float,
    qr_code: str | None,
    secret: str,
    now: dt.datetime,
) -> Visit:
    """Check in at the door with the phone's GPS position (degrees) and, optionally, the door's QR code."""
    visit, order = await _my_visit(session, actor, visit_id)
    qr_ok = qr_code is not None and hmac.compare_digest(qr_code, door_code(secret, visit.elder_id))
    if qr_code is not None and not qr_ok:
        raise Invalid("The QR code does not belong to this elder's door.", code="dispatch.qr_mismatch")
    await move(
        session=session,
        order=order,
        target=OrderState.CHECKED_IN,
        actor=Role.CAREGIVER,
        actor_user_id=actor.user_id,
        now=now,
    )
    visit.check_in_at, visit.check_in_lat, visit.check_in_lon = now, lat, lon
    visit.check_in_method = (CaptureMethod.QR if qr_ok else CaptureMethod.GPS).value
    visit.check_in_qr_ok = qr_ok
    await session.flush()
    return visit


async def save_checklist(
    *, session: AsyncSession, actor: Principal, visit_id: int, items: Mapping[str, bool]
) -> Visit:
    """Replace the visit's task checklist (task name → done), allowed while on site."""
    visit, order = await _my_visit(session, actor, visit_id)
    if order.state != OrderState.CHECKED_IN.value:
        raise Conflict("The checklist can be filled in only while checked in.", code="dispatch.not_on_site")
    visit.checklist = dict(items)
    await session.flush()
    return visit


async def check_out(
    *, session: AsyncSession, actor: Principal, visit_id: int, lat: float, lon: float, now: dt.datetime
) -> tuple[Visit, VerificationResult]:
    """Check out, then verify the visit at once (it stays pending while the sign-off may still come)."""
    visit, order = await _my_visit(session, actor, visit_id)
    await move(
        session=session,
        order=order,
        target=OrderState.CHECKED_OUT,
        actor=Role.CAREGIVER,
        actor_user_id=actor.user_id,
        now=now,
    )
    visit.check_out_at, visit.check_out_lat, visit.check_out_lon = now, lat, lon
    visit.check_out_method = CaptureMethod.GPS.value
    await session.flush()
    result = await verify_visit(session=session, visit_id=visit.id, now=now)
    return visit, result


class SignOffLocked(TooManyRequests):
    """Too many wrong PINs for this visit: PIN sign-off is refused until the lock passes."""

    code = "signoff.locked"
    title = "PIN sign-off locked"


@dataclass(frozen=True, slots=True)
class PinSignOff:
    """What a PIN sign-off attempt produced: the visit verified again, or ``error`` (a wrong PIN, a
    locked visit), which the caller raises only after committing, so that the wrong PIN counts."""

    visit: Visit
    result: VerificationResult | None = None
    error: DomainError | None = None

    def unwrap(self) -> tuple[Visit, VerificationResult]:
        """The visit and its verification, or raise the attempt's error."""
        if self.error is not None:
            raise self.error
        if self.result is None:  # pragma: no cover - a success always carries its result
            raise DispatchError(f"visit {self.visit.id}: sign-off without a result")
        return self.visit, self.result


async def sign_off_by_pin(
    *,
    session: AsyncSession,
    actor: Principal,
    visit_id: int,
    pin: str,
    secret: str,
    now: dt.datetime,
    policy: SignOffPinPolicy | None = None,
) -> PinSignOff:
    """The caregiver enters the PIN the elder reads from their app; the visit is verified again.

    Wrong PINs are counted on the visit; the ``policy.max_failures``-th in a row locks PIN sign-off of
    that visit for ``policy.lock_s`` seconds (429 ``signoff.locked``, the right PIN included; family
    confirmation still works), after which the count starts again. A wrong PIN is therefore a change
    too: like a failed login, the caller must commit even when the outcome carries an ``error``, and
    raise it afterwards (:meth:`PinSignOff.unwrap`). Errors of scope and state are raised at once.
    ``policy`` defaults to the one valid today (Asia/Shanghai).
    """
    visit, _ = await _my_visit(session, actor, visit_id)
    # Lock the row: concurrent guesses for one visit take turns, each seeing the others' count.
    await session.refresh(visit, attribute_names=["pin_failures", "pin_locked_until"], with_for_update=True)
    if visit.pin_locked_until is not None and visit.pin_locked_until > now:
        return PinSignOff(visit, error=_locked(visit.pin_locked_until, now))
    if hmac.compare_digest(pin, sign_off_pin(secret, visit.id)):
        visit.pin_failures, visit.pin_locked_until = 0, None
        _, result = await _sign_off(session, visit, method="pin", user_id=None, now=now)
        return PinSignOff(visit, result)
    if policy is None:
        policy = (await load_policies(session=session, day=local_date(now))).sign_off_pin
    failures = visit.pin_failures + 1
    if failures < policy.max_failures:
        visit.pin_failures, visit.pin_locked_until = failures, None
        await session.flush()
        wrong = Invalid(
            "The sign-off PIN is wrong.",
            code="dispatch.pin_wrong",
            attempts_left=policy.max_failures - failures,
        )
        return PinSignOff(visit, error=wrong)
    visit.pin_failures, visit.pin_locked_until = 0, now + dt.timedelta(seconds=policy.lock_s)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="signoff_pin_locked",
        entity="visit",
        entity_id=visit.id,
        after={"failures": failures, "locked_until": visit.pin_locked_until},
    )
    return PinSignOff(visit, error=_locked(visit.pin_locked_until, now))


def _locked(until: dt.datetime, now: dt.datetime) -> SignOffLocked:
    return SignOffLocked(
        "Too many wrong sign-off PINs for this visit; try again later, or ask the family to confirm.",
        locked_until=until.isoformat(),
        retry_after_s=max(1, math.ceil((until - now).total_seconds())),
    )


async def sign_off_code(*, session: AsyncSession, actor: Principal, visit_id: int, secret: str) -> str:
    """The PIN for the elder or family to tell the caregiver."""
    visit = await visible_visit(session=session, actor=actor, visit_id=visit_id)
    return sign_off_pin(secret, visit.id)


async def confirm_by_family(
    *, session: AsyncSession, actor: Principal, visit_id: int, now: dt.datetime
) -> tuple[Visit, VerificationResult]:
    """A family member (or the elder in their own app) confirms the visit took place."""
    visit = await visible_visit(session=session, actor=actor, visit_id=visit_id)
    return await _sign_off(session, visit, method="family", user_id=actor.user_id, now=now)


async def _sign_off(
    session: AsyncSession, visit: Visit, *, method: str, user_id: int | None, now: dt.datetime
) -> tuple[Visit, VerificationResult]:
    order = await session.get(ServiceOrder, visit.order_id, populate_existing=True)
    open_states = (OrderState.CHECKED_IN.value, OrderState.CHECKED_OUT.value, OrderState.EXCEPTION.value)
    if order is None or order.state not in open_states:
        raise Conflict(
            "Only a visit in progress or awaiting verification can be signed off.",
            code="dispatch.sign_off_state",
        )
    if visit.signed_off_at is not None:
        raise Conflict("The visit is already signed off.", code="dispatch.signed_off")
    visit.signed_off_at, visit.sign_off_method, visit.signed_off_by_user_id = now, method, user_id
    await session.flush()
    if order.state == OrderState.CHECKED_OUT.value:
        return visit, await verify_visit(session=session, visit_id=visit.id, now=now)
    if order.state == OrderState.EXCEPTION.value:
        # Already held for other reasons: the sign-off is recorded as evidence for the resolver.
        open_codes = tuple(
            VisitException(r.code)
            for r in await exception_records(session, visit.id)
            if r.resolved_at is None
        )
        return visit, VerificationResult(Verdict.EXCEPTION, open_codes, None, None)
    return visit, VerificationResult(Verdict.PENDING, (), None, None)
