"""HTTP edge of marketplace and dispatch: orders, the caregiver app, visits, ratings and complaints.

Handlers parse, call one use case and serialise; the use cases (:mod:`dispatch.orders`,
:mod:`dispatch.caregiver_app`, :mod:`dispatch.visits`, :mod:`dispatch.dayplans`, :mod:`dispatch.quality`)
apply the actor's scope.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from litestar import Controller, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from core.clock import local_date
from core.crud import Window
from core.http import CurrentPrincipal, Db, Now
from core.identity.authz import allow, authenticated, without_request_scope
from core.identity.models import Role
from core.types import Id32Query, Id64Query, check_day, parse_day
from dispatch import caregiver_app, contracts, orders, quality, series, visits
from dispatch.dayplans.common import day_plans
from dispatch.dayplans.plan import build_day
from dispatch.dayplans.replan import replan_day
from dispatch.models import CaregiverPosition, ExceptionNoteKind
from dispatch.schemas import (
    AssignIn,
    BuildIn,
    CallbackCompleteIn,
    CallbackPage,
    CallbackRead,
    CancelIn,
    CancelRead,
    CheckInIn,
    ChecklistIn,
    ComplaintCreate,
    ComplaintPage,
    ComplaintRead,
    ContractList,
    ContractRead,
    DayPlanRead,
    ExceptionNoteIn,
    NoShowIn,
    OfferRead,
    OrderCreate,
    OrderDetailRead,
    OrderPage,
    OrderRead,
    PlanItemRead,
    PositionIn,
    PositionRead,
    QualityRead,
    RatingIn,
    RatingRead,
    RecurringOrderCreate,
    RecurringOrderRead,
    ReplanIn,
    ResolveIn,
    SeriesChangeRead,
    SeriesPage,
    ServiceRead,
    SignOffCodeRead,
    SignOffIn,
    VerificationRead,
    VisitDetailRead,
    VisitRead,
    callback_page,
    callback_read,
    complaint_page,
    complaint_read,
    contract_read,
    day_plan_read,
    offer_read,
    order_detail_read,
    order_page,
    order_read,
    quality_read,
    rating_read,
    recurring_order_read,
    series_change_read,
    series_page,
    service_read,
    verification_read,
    visit_detail_read,
    visit_read,
)
from dispatch.verification import ExceptionCode

R = Role
ORDERING = allow(R.ELDER, R.FAMILY, R.OPERATOR)
READ_ORDERS = allow(
    R.ELDER, R.FAMILY, R.CAREGIVER, R.PROVIDER_ADMIN, R.OPERATOR, R.SUPERVISOR, R.CIVIL_AFFAIRS, R.ADMIN
)
# Pause, resume, cancel a series: who may place one, and supervisors and admins (not a provider admin:
# the standing order is the customer's; a provider withdraws single visits).
MANAGING_SERIES = allow(R.ELDER, R.FAMILY, R.OPERATOR, R.SUPERVISOR, R.ADMIN)
CANCELLING = allow(R.ELDER, R.FAMILY, R.PROVIDER_ADMIN, R.OPERATOR, R.SUPERVISOR, R.ADMIN)
STAFF_DESK = allow(R.OPERATOR, R.SUPERVISOR, R.ADMIN)
ASSIGNING = allow(R.PROVIDER_ADMIN, R.OPERATOR, R.SUPERVISOR, R.ADMIN)
CAREGIVER = allow(R.CAREGIVER)
CUSTOMER = allow(R.ELDER, R.FAMILY)
# Exceptions are resolved by independent users (dispatch.visits.RESOLVERS); the provider admin is let
# through to learn, after the scope check, that it may explain or contest but not resolve (a 403 with
# its own code, since it sees the visit).
RESOLVING = allow(R.PROVIDER_ADMIN, R.SUPERVISOR, R.CIVIL_AFFAIRS, R.ADMIN)
EXPLAINING = allow(R.CAREGIVER, R.PROVIDER_ADMIN)
READ_DAYPLANS = allow(R.CAREGIVER, R.PROVIDER_ADMIN, R.OPERATOR, R.SUPERVISOR, R.ADMIN)
REPLANNING = allow(R.PROVIDER_ADMIN, R.SUPERVISOR, R.ADMIN)
READ_COMPLAINTS = allow(
    R.ELDER, R.FAMILY, R.PROVIDER_ADMIN, R.OPERATOR, R.SUPERVISOR, R.CIVIL_AFFAIRS, R.ADMIN
)

Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Rows per page (1-200)")]
Offset = Annotated[int, QueryParameter(ge=0, le=1_000_000, description="Rows to skip")]
StateQuery = Annotated[
    str | None,
    QueryParameter(name="state", pattern=r"^[a-z_]{2,12}$", description="Order state, e.g. accepted"),
]
SeriesStateQuery = Annotated[
    str | None,
    QueryParameter(
        name="state", pattern=r"^(active|paused|cancelled)$", description="active, paused or cancelled"
    ),
]
CALLBACKS = allow(R.OPERATOR, R.SUPERVISOR, R.CIVIL_AFFAIRS, R.ADMIN)
READ_QUALITY = allow(R.PROVIDER_ADMIN, R.SUPERVISOR, R.CIVIL_AFFAIRS, R.ADMIN)
READ_CONTRACTS = allow(R.PROVIDER_ADMIN, R.OPERATOR, R.SUPERVISOR, R.CIVIL_AFFAIRS, R.ADMIN)
CONTRACTING = allow(R.CIVIL_AFFAIRS, R.ADMIN)
CallbackState = Annotated[
    str | None, QueryParameter(name="state", pattern=r"^(open|done)$", description="open or done")
]
FromDay = Annotated[
    str | None, QueryParameter(name="from", max_length=40, description="First day, YYYY-MM-DD, Shanghai")
]
ToDay = Annotated[
    str | None, QueryParameter(name="to", max_length=40, description="Last day, YYYY-MM-DD, Shanghai")
]


class OrderController(Controller):
    path = "/api/v1/orders"
    tags = ["dispatch"]  # noqa: RUF012

    @post(
        "/",
        opt=ORDERING,
        summary="Order a visit (as-soon-as-possible and same-day orders are dispatched)",
        description=(
            "As-soon-as-possible, urgent and same-day orders are offered at once to the best caregiver "
            "on shift nearby (caregivers report being on shift with POST /api/v1/caregiver/shift/start "
            "and their position). When nobody can take it, the order is `escalated` to the call-centre "
            "queue: `next_step` (code `operator_queue`) says so and by when (`act_by`, policy "
            "`dispatch.operator_pickup`) a caregiver is assigned by hand."
        ),
    )
    async def create_order(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[OrderCreate]
    ) -> OrderRead:
        order = await orders.place_order(
            session=db,
            actor=principal,
            elder_id=data.elder_id,
            service_code=data.service_code,
            now=now,
            window_start_at=data.window_start_at,
            window_end_at=data.window_end_at,
            duration_s=None if data.duration_minutes is None else data.duration_minutes * 60,
            asap=data.asap,
            urgent=data.urgent,
            requirements=data.requirements,
        )
        return order_read(order, await orders.next_step(session=db, order=order))

    @get("/", opt=READ_ORDERS, summary="Orders in your scope, latest window first")
    async def list_orders(
        self,
        db: Db,
        principal: CurrentPrincipal,
        order_state: StateQuery = None,
        elder_id: Id64Query = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> OrderPage:
        result = await orders.list_orders(
            session=db, actor=principal, window=Window(limit, offset), state=order_state, elder_id=elder_id
        )
        return order_page(result)

    @get(
        "/{order_id:int}",
        opt=READ_ORDERS,
        summary="One order with its transitions, visit, service agreement and the elder's assessment",
    )
    async def get_order(
        self, db: Db, principal: CurrentPrincipal, now: Now, order_id: FromPath[int]
    ) -> OrderDetailRead:
        detail = await orders.order_detail(session=db, actor=principal, order_id=order_id, now=now)
        return order_detail_read(detail)

    @post("/{order_id:int}/cancel", opt=CANCELLING, status_code=200, summary="Cancel; says what it costs")
    async def cancel(
        self, db: Db, principal: CurrentPrincipal, now: Now, order_id: FromPath[int], data: JSONBody[CancelIn]
    ) -> CancelRead:
        out = await orders.cancel_order(
            session=db, actor=principal, order_id=order_id, reason=data.reason, now=now
        )
        return CancelRead(order=order_read(out.order), consequence=out.consequence.value, fee_fen=out.fee_fen)

    @post("/{order_id:int}/no-show", opt=STAFF_DESK, status_code=200, summary="Record a no-show")
    async def no_show(
        self, db: Db, principal: CurrentPrincipal, now: Now, order_id: FromPath[int], data: JSONBody[NoShowIn]
    ) -> OrderRead:
        order = await orders.mark_no_show(
            session=db, actor=principal, order_id=order_id, note=data.note, now=now
        )
        return order_read(order)

    @post("/{order_id:int}/assign", opt=ASSIGNING, status_code=200, summary="Assign a queued order by hand")
    async def assign(
        self, db: Db, principal: CurrentPrincipal, now: Now, order_id: FromPath[int], data: JSONBody[AssignIn]
    ) -> VisitRead:
        visit = await orders.assign_order(
            session=db, actor=principal, order_id=order_id, caregiver_id=data.caregiver_id, now=now
        )
        return visit_read(visit)


class RecurringOrderController(Controller):
    path = "/api/v1/recurring-orders"
    tags = ["dispatch"]  # noqa: RUF012

    @post("/", opt=ORDERING, summary="Order a recurring visit (RFC 5545 RRULE); the next 14 days are created")
    async def create(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[RecurringOrderCreate]
    ) -> RecurringOrderRead:
        placed, created = await orders.place_recurring_order(
            session=db,
            actor=principal,
            elder_id=data.elder_id,
            service_code=data.service_code,
            rrule=data.rrule,
            first_start_at=data.first_start_at,
            duration_s=data.duration_minutes * 60,
            window_s=data.window_minutes * 60,
            now=now,
            requirements=data.requirements,
            provider_id=data.provider_id,
        )
        return recurring_order_read(placed, created)

    @get("/", opt=READ_ORDERS, summary="Recurring series in your scope, newest first")
    async def list_series(
        self,
        db: Db,
        principal: CurrentPrincipal,
        series_state: SeriesStateQuery = None,
        elder_id: Id64Query = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> SeriesPage:
        result = await series.list_series(
            session=db, actor=principal, window=Window(limit, offset), state=series_state, elder_id=elder_id
        )
        return series_page(result)

    @get("/{series_id:int}", opt=READ_ORDERS, summary="One recurring series with its orders")
    async def get_series(
        self, db: Db, principal: CurrentPrincipal, series_id: FromPath[int]
    ) -> RecurringOrderRead:
        found, found_orders = await series.series_detail(session=db, actor=principal, series_id=series_id)
        return recurring_order_read(found, found_orders)

    @post(
        "/{series_id:int}/pause",
        opt=MANAGING_SERIES,
        status_code=200,
        summary="Pause a series: its future orders no caregiver holds yet are cancelled",
    )
    async def pause(
        self, db: Db, principal: CurrentPrincipal, now: Now, series_id: FromPath[int]
    ) -> SeriesChangeRead:
        return await self._change(db, principal, now, series_id, "pause")

    @post(
        "/{series_id:int}/resume",
        opt=MANAGING_SERIES,
        status_code=200,
        summary="Resume a paused series: the next 14 days' visits are created again",
    )
    async def resume(
        self, db: Db, principal: CurrentPrincipal, now: Now, series_id: FromPath[int]
    ) -> SeriesChangeRead:
        return await self._change(db, principal, now, series_id, "resume")

    @post(
        "/{series_id:int}/cancel",
        opt=MANAGING_SERIES,
        status_code=200,
        summary="Cancel a series for good: its future orders no caregiver holds yet are cancelled",
    )
    async def cancel(
        self, db: Db, principal: CurrentPrincipal, now: Now, series_id: FromPath[int]
    ) -> SeriesChangeRead:
        return await self._change(db, principal, now, series_id, "cancel")

    async def _change(
        self, db: Db, principal: CurrentPrincipal, now: Now, series_id: int, action: str
    ) -> SeriesChangeRead:
        change = await series.change_series(
            session=db, actor=principal, series_id=series_id, action=action, now=now
        )
        return series_change_read(change)


class CaregiverAppController(Controller):
    """What the caregiver's phone calls: shift, position, offers, day plan, the visit at the door."""

    path = "/api/v1/caregiver"
    tags = ["caregiver app"]  # noqa: RUF012
    # Every handler scopes by the caregiver's own id: none reads the served elders the principal would
    # otherwise load again on every request.
    opt = without_request_scope()

    @post(
        "/shift/start",
        opt=CAREGIVER,
        status_code=200,
        summary="Start the shift at a position",
        description=(
            'Body: `{"lat": …, "lon": …}` (WGS 84 degrees, the phone\'s GPS fix). Only caregivers on '
            "shift with a known position are offered as-soon-as-possible and same-day orders; keep "
            "reporting with PUT /api/v1/caregiver/position while on shift, and end it with "
            "POST /api/v1/caregiver/shift/end. 409 `dispatch.shift_started` if already on shift."
        ),
    )
    async def start_shift(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[PositionIn]
    ) -> PositionRead:
        pos = await caregiver_app.set_position(
            session=db, actor=principal, lat=data.lat, lon=data.lon, now=now, on_shift=True
        )
        return _position(pos)

    @post("/shift/end", opt=CAREGIVER, status_code=200, summary="End the shift")
    async def end_shift(self, db: Db, principal: CurrentPrincipal, now: Now) -> PositionRead:
        return _position(await caregiver_app.end_shift(session=db, actor=principal, now=now))

    @put("/position", opt=CAREGIVER, summary="Report the current position")
    async def position(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[PositionIn]
    ) -> PositionRead:
        return _position(
            await caregiver_app.set_position(session=db, actor=principal, lat=data.lat, lon=data.lon, now=now)
        )

    @get("/offers", opt=CAREGIVER, summary="Open offers with their deadlines")
    async def offers(self, db: Db, principal: CurrentPrincipal, now: Now) -> list[OfferRead]:
        return [
            offer_read(o, now) for o in await caregiver_app.my_offers(session=db, actor=principal, now=now)
        ]

    @post("/offers/{offer_id:int}/accept", opt=CAREGIVER, status_code=200, summary="Accept an offer")
    async def accept(
        self, db: Db, principal: CurrentPrincipal, now: Now, offer_id: FromPath[int]
    ) -> VisitRead:
        return visit_read(await caregiver_app.accept(session=db, actor=principal, offer_id=offer_id, now=now))

    @post("/offers/{offer_id:int}/decline", opt=CAREGIVER, status_code=200, summary="Decline an offer")
    async def decline(
        self, db: Db, principal: CurrentPrincipal, now: Now, offer_id: FromPath[int]
    ) -> OrderRead:
        return order_read(
            await caregiver_app.decline(session=db, actor=principal, offer_id=offer_id, now=now)
        )

    @get("/plan", opt=CAREGIVER, summary="The day's visits in order (default: today, Asia/Shanghai)")
    async def plan(
        self, db: Db, principal: CurrentPrincipal, now: Now, day: FromQuery[dt.date | None] = None
    ) -> list[PlanItemRead]:
        day = local_date(now) if day is None else check_day(day, field="day")
        items = await caregiver_app.day_plan(session=db, actor=principal, day=day)
        return [
            PlanItemRead(visit_read(i.visit), i.order_state, i.elder_name, i.address, i.lat, i.lon)
            for i in items
        ]

    @post("/visits/{visit_id:int}/en-route", opt=CAREGIVER, status_code=200, summary="On the way")
    async def en_route(
        self, db: Db, principal: CurrentPrincipal, now: Now, visit_id: FromPath[int]
    ) -> VisitRead:
        return visit_read(
            await caregiver_app.en_route(session=db, actor=principal, visit_id=visit_id, now=now)
        )

    @post("/visits/{visit_id:int}/check-in", opt=CAREGIVER, status_code=200, summary="Check in (GPS, QR)")
    async def check_in(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        state: State,
        visit_id: FromPath[int],
        data: JSONBody[CheckInIn],
    ) -> VisitRead:
        visit = await caregiver_app.check_in(
            session=db,
            actor=principal,
            visit_id=visit_id,
            lat=data.lat,
            lon=data.lon,
            qr_code=data.qr_code,
            secret=state.settings.secret_key,
            now=now,
        )
        return visit_read(visit)

    @put("/visits/{visit_id:int}/checklist", opt=CAREGIVER, summary="Save the task checklist")
    async def checklist(
        self, db: Db, principal: CurrentPrincipal, visit_id: FromPath[int], data: JSONBody[ChecklistIn]
    ) -> VisitRead:
        visit = await caregiver_app.save_checklist(
            session=db, actor=principal, visit_id=visit_id, items=data.items
        )
        return visit_read(visit)

    @post("/visits/{visit_id:int}/check-out", opt=CAREGIVER, status_code=200, summary="Check out and verify")
    async def check_out(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        visit_id: FromPath[int],
        data: JSONBody[PositionIn],
    ) -> VerificationRead:
        visit, result = await caregiver_app.check_out(
            session=db, actor=principal, visit_id=visit_id, lat=data.lat, lon=data.lon, now=now
        )
        return verification_read(visit, result)

    @post(
        "/visits/{visit_id:int}/sign-off",
        opt=CAREGIVER,
        status_code=200,
        summary="Elder's PIN sign-off (locked for a while after too many wrong PINs)",
    )
    async def sign_off(
        self,
        principal: CurrentPrincipal,
        now: Now,
        state: State,
        visit_id: FromPath[int],
        data: JSONBody[SignOffIn],
    ) -> VerificationRead:
        # Its own transaction, like a login: a wrong PIN is committed (it counts towards the visit's
        # lock) before its error is raised, which would roll back the request's transaction.
        async with state.sessionmaker() as session, session.begin():
            outcome = await caregiver_app.sign_off_by_pin(
                session=session,
                actor=principal,
                visit_id=visit_id,
                pin=data.pin,
                secret=state.settings.secret_key,
                now=now,
            )
        visit, result = outcome.unwrap()
        return verification_read(visit, result)


class VisitController(Controller):
    path = "/api/v1/visits"
    tags = ["dispatch"]  # noqa: RUF012

    @get(
        "/{visit_id:int}",
        opt=READ_ORDERS,
        summary="One visit with its verification exceptions, service agreement and the elder's assessment",
    )
    async def get_visit(
        self, db: Db, principal: CurrentPrincipal, now: Now, visit_id: FromPath[int]
    ) -> VisitDetailRead:
        return visit_detail_read(
            await visits.visit_detail(session=db, actor=principal, visit_id=visit_id, now=now)
        )

    @post(
        "/{visit_id:int}/exceptions/{code:str}/resolve",
        opt=RESOLVING,
        status_code=200,
        summary="Resolve an exception with reason and resolution codes",
    )
    async def resolve(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        visit_id: FromPath[int],
        code: FromPath[ExceptionCode],
        data: JSONBody[ResolveIn],
    ) -> VisitRead:
        visit, exceptions = await visits.resolve_exception(
            session=db,
            actor=principal,
            visit_id=visit_id,
            code=code,
            reason_code=data.reason_code,
            resolution_code=data.resolution_code,
            note=data.note,
            now=now,
        )
        return visit_read(visit, exceptions)

    @post(
        "/{visit_id:int}/exceptions/{code:str}/notes",
        opt=EXPLAINING,
        status_code=200,
        summary="Explain or contest an exception (the provider side; kept in its history)",
    )
    async def note_exception(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        visit_id: FromPath[int],
        code: FromPath[ExceptionCode],
        data: JSONBody[ExceptionNoteIn],
    ) -> VisitRead:
        visit, exceptions = await visits.add_exception_note(
            session=db,
            actor=principal,
            visit_id=visit_id,
            code=code,
            kind=ExceptionNoteKind(data.kind),
            text=data.text,
            now=now,
        )
        return visit_read(visit, exceptions)

    @get("/{visit_id:int}/sign-off-code", opt=CUSTOMER, summary="The PIN to tell the caregiver")
    async def sign_off_code(
        self, db: Db, principal: CurrentPrincipal, state: State, visit_id: FromPath[int]
    ) -> SignOffCodeRead:
        pin = await caregiver_app.sign_off_code(
            session=db, actor=principal, visit_id=visit_id, secret=state.settings.secret_key
        )
        return SignOffCodeRead(visit_id=visit_id, pin=pin)

    @post("/{visit_id:int}/confirm", opt=CUSTOMER, status_code=200, summary="Confirm the visit took place")
    async def confirm(
        self, db: Db, principal: CurrentPrincipal, now: Now, visit_id: FromPath[int]
    ) -> VerificationRead:
        visit, result = await caregiver_app.confirm_by_family(
            session=db, actor=principal, visit_id=visit_id, now=now
        )
        return verification_read(visit, result)

    @post("/{visit_id:int}/rating", opt=CUSTOMER, summary="Rate a verified visit (1-5)")
    async def rate(
        self, db: Db, principal: CurrentPrincipal, now: Now, visit_id: FromPath[int], data: JSONBody[RatingIn]
    ) -> RatingRead:
        rating = await visits.rate_visit(
            session=db, actor=principal, visit_id=visit_id, score=data.score, comment=data.comment, now=now
        )
        return rating_read(rating)


class ComplaintController(Controller):
    path = "/api/v1/complaints"
    tags = ["dispatch"]  # noqa: RUF012

    @post("/", opt=CUSTOMER, summary="Complain about one of your orders")
    async def create(
        self, db: Db, principal: CurrentPrincipal, now: Now, data: JSONBody[ComplaintCreate]
    ) -> ComplaintRead:
        complaint = await visits.file_complaint(
            session=db, actor=principal, order_id=data.order_id, text=data.text, now=now
        )
        return complaint_read(complaint)

    @get("/", opt=READ_COMPLAINTS, summary="Complaints in your scope, newest first")
    async def list_complaints(
        self, db: Db, principal: CurrentPrincipal, limit: Limit = 50, offset: Offset = 0
    ) -> ComplaintPage:
        return complaint_page(
            await visits.list_complaints(session=db, actor=principal, window=Window(limit, offset))
        )


class DayPlanController(Controller):
    """Stored day plans (built by the ``dispatch.plan_tomorrow`` job, on demand by a dispatcher, and
    kept up to date by ``dispatch.rebuild_dirty_plans``) and their re-planning."""

    path = "/api/v1/dayplans"
    tags = ["dispatch"]  # noqa: RUF012

    @get("/{day:str}", opt=READ_DAYPLANS, summary="The day's plans in your scope (a caregiver: own route)")
    async def get_plans(
        self, db: Db, principal: CurrentPrincipal, day: FromPath[str], provider_id: Id32Query = None
    ) -> list[DayPlanRead]:
        views = await day_plans(session=db, actor=principal, day=_plan_day(day), provider_id=provider_id)
        full = principal.role != R.CAREGIVER
        return [day_plan_read(v, full=full) for v in views]

    @post(
        "/{day:str}/build",
        opt=REPLANNING,
        status_code=200,
        summary="Build (or bring up to date) a provider's plan of the day now, as the nightly job would",
    )
    async def build(
        self, db: Db, principal: CurrentPrincipal, now: Now, day: FromPath[str], data: JSONBody[BuildIn]
    ) -> DayPlanRead:
        view = await build_day(
            session=db, actor=principal, day=_plan_day(day), provider_id=data.provider_id, now=now
        )
        return day_plan_read(view)

    @post(
        "/{day:str}/replan",
        opt=REPLANNING,
        status_code=200,
        summary="Re-plan after caregivers call in sick or orders are cancelled, moving as little as possible",
    )
    async def replan(
        self, db: Db, principal: CurrentPrincipal, now: Now, day: FromPath[str], data: JSONBody[ReplanIn]
    ) -> DayPlanRead:
        view = await replan_day(
            session=db,
            actor=principal,
            day=_plan_day(day),
            provider_id=data.provider_id,
            sick_caregiver_ids=data.sick_caregiver_ids,
            cancelled_order_ids=data.cancelled_order_ids,
            now=now,
        )
        return day_plan_read(view)


def _plan_day(text: str) -> dt.date:
    """The path's date (parsed here so a bad date is a 422 with a code, after the role check)."""
    return parse_day(text, field="day", code="dayplan.date_invalid")


class CallbackController(Controller):
    """Phone callbacks (回访) of sampled verified visits, worked by the call centre."""

    path = "/api/v1/callbacks"
    tags = ["dispatch"]  # noqa: RUF012

    @get("/", opt=CALLBACKS, summary="Callback tasks in your scope, earliest due first")
    async def list_callbacks(
        self,
        db: Db,
        principal: CurrentPrincipal,
        callback_state: CallbackState = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> CallbackPage:
        result = await quality.list_callbacks(
            session=db, actor=principal, window=Window(limit, offset), state=callback_state
        )
        return callback_page(result)

    @post("/{callback_id:int}/complete", opt=CALLBACKS, status_code=200, summary="Record a callback outcome")
    async def complete(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        callback_id: FromPath[int],
        data: JSONBody[CallbackCompleteIn],
    ) -> CallbackRead:
        task = await quality.complete_callback(
            session=db,
            actor=principal,
            callback_id=callback_id,
            satisfaction=data.satisfaction,
            reached=data.reached,
            note=data.note,
            now=now,
        )
        return callback_read(task)


OnDay = Annotated[
    str | None, QueryParameter(name="on", max_length=40, description="Price date, YYYY-MM-DD, Shanghai")
]


class CatalogueController(Controller):
    path = "/api/v1/services"
    tags = ["dispatch"]  # noqa: RUF012

    @get("/", opt=authenticated(), summary="The service catalogue with unit prices (fen) valid on a day")
    async def list_services(self, db: Db, now: Now, on_day: OnDay = None) -> list[ServiceRead]:
        day = local_date(now) if on_day is None else _query_day(on_day, "on", "catalogue.date_invalid")
        return [service_read(e) for e in await quality.catalogue(session=db, day=day)]


class ProviderQualityController(Controller):
    path = "/api/v1/providers"
    tags = ["dispatch"]  # noqa: RUF012

    @get("/{provider_id:int}/quality", opt=READ_QUALITY, summary="A provider's quality score and its inputs")
    async def quality(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        provider_id: FromPath[int],
        from_day: FromDay = None,
        to_day: ToDay = None,
    ) -> QualityRead:
        report = await quality.provider_quality_report(
            session=db,
            actor=principal,
            provider_id=provider_id,
            start=None if from_day is None else _query_day(from_day, "from"),
            end=None if to_day is None else _query_day(to_day, "to"),
            now=now,
        )
        return quality_read(report)


ContractDay = Annotated[
    str | None,
    QueryParameter(name="on", max_length=40, description="Only contracts valid this day, YYYY-MM-DD"),
]


class ProviderContractController(Controller):
    """The services a provider is contracted to deliver, over dates (dispatch offers only those)."""

    path = "/api/v1/providers/{provider_id:int}/services"
    tags = ["dispatch"]  # noqa: RUF012

    @get("/", opt=READ_CONTRACTS, summary="A provider's contracted services (optionally: valid on a day)")
    async def list_contracts(
        self, db: Db, principal: CurrentPrincipal, provider_id: FromPath[int], on_day: ContractDay = None
    ) -> list[ContractRead]:
        day = None if on_day is None else _query_day(on_day, "on", "contract.date_invalid")
        rows = await contracts.provider_contracts(
            session=db, actor=principal, provider_id=provider_id, on=day
        )
        return [contract_read(c) for c in rows]

    @put("/", opt=CONTRACTING, summary="Replace a provider's contracted services")
    async def replace_contracts(
        self, db: Db, principal: CurrentPrincipal, provider_id: FromPath[int], data: JSONBody[ContractList]
    ) -> list[ContractRead]:
        terms = [contracts.ContractTerm(c.service_code, c.valid_from, c.valid_to) for c in data]
        rows = await contracts.replace_contracts(
            session=db, actor=principal, provider_id=provider_id, terms=terms
        )
        return [contract_read(c) for c in rows]


def _query_day(text: str, name: str, code: str = "quality.date_invalid") -> dt.date:
    """A query date (parsed here so a bad date is a 422 with a code)."""
    return parse_day(text, field=name, code=code)


def _position(pos: CaregiverPosition) -> PositionRead:
    return PositionRead(pos.caregiver_id, pos.lat, pos.lon, pos.at, pos.on_shift, pos.shift_started_at)


CONTROLLERS = (
    OrderController,
    RecurringOrderController,
    CaregiverAppController,
    VisitController,
    ComplaintController,
    DayPlanController,
    CallbackController,
    ProviderQualityController,
    ProviderContractController,
    CatalogueController,
)
