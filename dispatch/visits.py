"""Visits once the caregiver has left: verification against DOMAIN §5 (at check-out, and by job once the
sign-off window has passed), resolving exceptions by a named user, reading a visit with its
exceptions, the daily phone-callback sample of verified visits, ratings and complaints.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import BigInteger, bindparam, exists, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.clock import SHANGHAI, local_date
from core.crud import Paged, Window, page_of
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.identity.authz import Principal
from core.identity.models import Role
from dispatch.candidates import build_request
from dispatch.common import (
    DispatchError,
    exception_records,
    load_policies,
    move,
    scope_clause,
    visible_order,
    visible_visit,
)
from dispatch.matching import CertificateInfo
from dispatch.models import (
    CallbackTask,
    Complaint,
    ExceptionNoteKind,
    ServiceOrder,
    Visit,
    VisitExceptionNote,
    VisitExceptionRecord,
    VisitRating,
)
from dispatch.prerequisites import Prerequisites, order_prerequisites
from dispatch.states import EXCEPTION_RESOLVERS, SYSTEM, OrderState
from dispatch.verification import (
    EXCEPTION_REASON_CODES,
    Capture,
    CaptureMethod,
    Verdict,
    VerificationResult,
    VisitRecord,
    select_callbacks,
    verify,
)
from registry.models import Caregiver

log = structlog.get_logger(__name__)


async def verify_visit(*, session: AsyncSession, visit_id: int, now: dt.datetime) -> VerificationResult:
    """Check a checked-out visit against DOMAIN §5; record the verdict, its exceptions and the order state.

    A pending verdict (only the sign-off missing, inside its 24 h) changes nothing.
    """
    visit = await session.get(Visit, visit_id, populate_existing=True)
    if visit is None:
        raise DispatchError(f"visit {visit_id} not found")
    order = await session.get(ServiceOrder, visit.order_id, populate_existing=True)
    if order is None or order.state != OrderState.CHECKED_OUT.value:
        raise Conflict("Only a checked-out visit can be verified.", code="dispatch.verify_state")
    # The policy of the service day: its thresholds, and what the service asked of the caregiver then.
    service_on = local_date(visit.check_in_at or visit.scheduled_start_at)
    policies = await load_policies(session=session, day=service_on)
    request = await build_request(session=session, order=order, now=now, policies=policies)
    caregiver = await session.get(Caregiver, visit.caregiver_id)
    certs = tuple(
        CertificateInfo(c.kind, c.level, c.issued_on, c.expires_on)
        for c in (caregiver.certificates if caregiver else [])
    )
    # The caregiver's other visits as they actually ran; one still checked in has run until now.
    others: list[tuple[dt.datetime, dt.datetime]] = [
        (a, b or now)
        for a, b in await session.execute(
            select(Visit.check_in_at, Visit.check_out_at).where(
                Visit.caregiver_id == visit.caregiver_id,
                Visit.id != visit.id,
                Visit.check_in_at.is_not(None),
                Visit.check_in_at < (visit.check_out_at or now),
                func.coalesce(Visit.check_out_at, now) > (visit.check_in_at or now),
            )
        )
        if a is not None
    ]

    def capture(
        at: dt.datetime | None, method: str | None, lat: float | None, lon: float | None, qr: bool
    ) -> Capture | None:
        if at is None:
            return None
        return Capture(at, CaptureMethod(method or "gps"), lat, lon, qr)

    record = VisitRecord(
        visit_id=visit.id,
        service=request.service,
        elder_id=visit.elder_id,
        caregiver_id=visit.caregiver_id,
        service_on=service_on,
        scheduled_start=visit.scheduled_start_at,
        window_end=order.window_end_at,
        home_lat=request.lat,
        home_lon=request.lon,
        rural=request.rural,
        check_in=capture(
            visit.check_in_at,
            visit.check_in_method,
            visit.check_in_lat,
            visit.check_in_lon,
            visit.check_in_qr_ok,
        ),
        check_out=capture(
            visit.check_out_at, visit.check_out_method, visit.check_out_lat, visit.check_out_lon, False
        ),
        signed_off_at=visit.signed_off_at,
        caregiver_certificates=certs,
        other_visits=tuple(others),
    )
    result = verify(record, policy=policies.verification, now=now)
    if result.verdict == Verdict.VERIFIED:
        await move(
            session=session,
            order=order,
            target=OrderState.VERIFIED,
            actor=SYSTEM,
            actor_user_id=None,
            now=now,
        )
        visit.verification, visit.verified_at = "verified", now
    elif result.verdict == Verdict.EXCEPTION:
        await session.execute(
            pg_insert(VisitExceptionRecord)
            .values(
                [
                    {"visit_id": visit.id, "code": e.value, "detected_at": now, "note": ""}
                    for e in result.exceptions
                ]
            )
            .on_conflict_do_nothing(constraint="uq_visit_exception_visit_code")
        )
        await move(
            session=session,
            order=order,
            target=OrderState.EXCEPTION,
            actor=SYSTEM,
            actor_user_id=None,
            now=now,
            note=",".join(e.value for e in result.exceptions)[:200],
        )
        visit.verification = "exception"
    await session.flush()
    log.info("dispatch.visit.verified", visit_id=visit.id, verdict=result.verdict.value)
    return result


async def verify_overdue(*, session: AsyncSession, now: dt.datetime) -> int:
    """Job: verify checked-out visits whose sign-off window has passed (they become exceptions if
    still unsigned). Returns how many were verified."""
    policies = await load_policies(session=session, day=local_date(now))
    cutoff = now - dt.timedelta(seconds=policies.verification.sign_off_within_s)
    ids = list(
        await session.scalars(
            select(Visit.id)
            .join(ServiceOrder, ServiceOrder.id == Visit.order_id)
            .where(ServiceOrder.state == OrderState.CHECKED_OUT.value, Visit.check_out_at < cutoff)
        )
    )
    for vid in ids:
        await verify_visit(session=session, visit_id=vid, now=now)
    return len(ids)


# Who resolves an exception (see :data:`dispatch.states.EXCEPTION_RESOLVERS`: every exception holds the
# visit from payment, so nobody on the side of the provider that is paid), and who may explain or
# contest one: the provider's admin and the visit's caregiver.
RESOLVERS = frozenset(Role(a.value) for a in EXCEPTION_RESOLVERS)
EXPLAINERS = frozenset({Role.PROVIDER_ADMIN, Role.CAREGIVER})


class NotIndependent(Forbidden):
    """The provider side may explain or contest an exception of its visit, never resolve it."""

    code = "dispatch.resolver_not_independent"
    title = "Not an independent resolver"


async def _open_record(session: AsyncSession, visit: Visit, code: str) -> VisitExceptionRecord:
    record = await session.scalar(
        select(VisitExceptionRecord).where(
            VisitExceptionRecord.visit_id == visit.id, VisitExceptionRecord.code == code
        )
    )
    if record is None:
        raise NotFound(f"Visit {visit.id} has no exception {code!r}.", code="visit_exception.not_found")
    return record


async def resolve_exception(
    *,
    session: AsyncSession,
    actor: Principal,
    visit_id: int,
    code: str,
    reason_code: str,
    resolution_code: str,
    note: str,
    now: dt.datetime,
) -> tuple[Visit, list[VisitExceptionRecord]]:
    """Resolve one exception of a visit by a named, independent user (:data:`RESOLVERS`: a supervisor,
    civil affairs of the elder's district, an admin), audited and kept in the exception's history.
    When every exception is resolved and none was rejected, the visit becomes verified (and payable).

    A visit outside the actor's scope is a 404; the provider side, which sees the visit, gets 403
    ``dispatch.resolver_not_independent`` (it may explain or contest: :func:`add_exception_note`)."""
    visit = await visible_visit(session=session, actor=actor, visit_id=visit_id)
    if actor.role not in RESOLVERS:
        raise NotIndependent(
            "An exception holding a visit from payment is resolved by civil affairs, a supervisor or an "
            "admin; the provider may explain or contest it."
        )
    if reason_code not in EXCEPTION_REASON_CODES:
        raise Invalid(f"Unknown reason code {reason_code!r}.", code="dispatch.reason_unknown")
    record = await _open_record(session, visit, code)
    if record.resolved_at is not None:
        raise Conflict("This exception is already resolved.", code="dispatch.exception_resolved")
    record.reason_code, record.resolution_code = reason_code, resolution_code
    record.resolved_by_user_id, record.resolved_at, record.note = actor.user_id, now, note
    session.add(
        VisitExceptionNote(
            exception_id=record.id,
            kind=ExceptionNoteKind.RESOLUTION.value,
            text=f"{resolution_code} ({reason_code}){': ' + note if note else ''}"[:400],
            by_user_id=actor.user_id,
            by_role=actor.role.value,
            at=now,
        )
    )
    audit.record(
        session,
        actor=actor,
        action="resolve",
        entity="visit_exception",
        entity_id=record.id,
        after={
            "visit_id": visit.id,
            "code": code,
            "reason_code": reason_code,
            "resolution_code": resolution_code,
            "note": note,
        },
    )
    await session.flush()
    records = await exception_records(session, visit.id)
    if all(r.resolved_at is not None for r in records) and all(
        r.resolution_code != "rejected" for r in records
    ):
        order = await session.get(ServiceOrder, visit.order_id, populate_existing=True)
        if order is not None and order.state == OrderState.EXCEPTION.value:
            await move(
                session=session,
                order=order,
                target=OrderState.VERIFIED,
                actor=actor.role,
                actor_user_id=actor.user_id,
                now=now,
                note="exceptions resolved",
            )
            visit.verification, visit.verified_at = "verified", now
            await session.flush()
    log.info("dispatch.exception.resolved", visit_id=visit.id, code=code, resolution=resolution_code)
    return visit, records


async def add_exception_note(
    *,
    session: AsyncSession,
    actor: Principal,
    visit_id: int,
    code: str,
    kind: ExceptionNoteKind,
    text: str,
    now: dt.datetime,
) -> tuple[Visit, list[VisitExceptionRecord]]:
    """The provider's admin or the visit's caregiver explains or contests one exception of the visit;
    the note joins the exception's history for the resolver (open or already resolved: a rejection
    may be contested too). It changes no state."""
    if actor.role not in EXPLAINERS or kind == ExceptionNoteKind.RESOLUTION:
        raise Forbidden("Only the provider side explains or contests an exception.", code="auth.forbidden")
    visit = await visible_visit(session=session, actor=actor, visit_id=visit_id)
    record = await _open_record(session, visit, code)
    session.add(
        VisitExceptionNote(
            exception_id=record.id,
            kind=kind.value,
            text=text,
            by_user_id=actor.user_id,
            by_role=actor.role.value,
            at=now,
        )
    )
    await session.flush()
    log.info("dispatch.exception.noted", visit_id=visit.id, code=code, kind=kind.value)
    return visit, await exception_records(session, visit.id)


@dataclass(frozen=True, slots=True)
class VisitDetail:
    visit: Visit
    exceptions: list[VisitExceptionRecord]
    # The agreement behind its order and the elder's assessment on its day (as of ``now``).
    prerequisites: Prerequisites


async def visit_detail(
    *, session: AsyncSession, actor: Principal, visit_id: int, now: dt.datetime
) -> VisitDetail:
    visit = await visible_visit(session=session, actor=actor, visit_id=visit_id)
    found = (await session.execute(_ORDER_OF_VISIT, {"order_id": visit.order_id})).one_or_none()
    if found is None:  # pragma: no cover - a foreign key
        raise NotFound(f"No order for visit {visit.id}.", code="order.not_found")
    order, flagged = found
    checks = await order_prerequisites(
        session, order=order, day=local_date(visit.scheduled_start_at), today=local_date(now)
    )
    return VisitDetail(visit, await exception_records(session, visit.id) if flagged else [], checks)


# A visit's order, and whether the visit has exceptions (most have none: their query is then skipped).
_ORDER_OF_VISIT = select(
    ServiceOrder, exists().where(VisitExceptionRecord.visit_id == Visit.id, Visit.order_id == ServiceOrder.id)
).where(ServiceOrder.id == bindparam("order_id", type_=BigInteger))


async def sample_callbacks(*, session: AsyncSession, now: dt.datetime) -> int:
    """Job: give a random ≥ 10 % (policy) of yesterday's verified visits a phone callback task.

    Yesterday is the Asia/Shanghai day before ``now``; a day already sampled is left alone, and the
    sample is seeded by the date so it can be reproduced for audit. Returns the tasks created.
    """
    day = local_date(now) - dt.timedelta(days=1)
    start = dt.datetime.combine(day, dt.time(0), SHANGHAI)
    due = day + dt.timedelta(days=1)
    if await session.scalar(select(CallbackTask.id).where(CallbackTask.due_on == due).limit(1)) is not None:
        return 0
    ids = list(
        await session.scalars(
            select(Visit.id).where(
                Visit.verification == "verified",
                Visit.verified_at >= start,
                Visit.verified_at < start + dt.timedelta(days=1),
            )
        )
    )
    policies = await load_policies(session=session, day=day)
    chosen = select_callbacks(
        ids, ratio=policies.verification.callback_ratio, seed=int(day.strftime("%Y%m%d"))
    )
    for vid in sorted(chosen):
        session.add(CallbackTask(visit_id=vid, due_on=due, status="open"))
    await session.flush()
    return len(chosen)


# --- Ratings and complaints ----------------------------------------------------------------------


async def rate_visit(
    *, session: AsyncSession, actor: Principal, visit_id: int, score: int, comment: str, now: dt.datetime
) -> VisitRating:
    """An elder or family member rates a verified visit (1–5), once each; the order becomes rated."""
    visit = await visible_visit(session=session, actor=actor, visit_id=visit_id)
    order = await session.get(ServiceOrder, visit.order_id, populate_existing=True)
    if order is None or order.state not in (OrderState.VERIFIED.value, OrderState.RATED.value):
        raise Conflict("Only verified visits can be rated.", code="dispatch.rate_state")
    exists_already = await session.scalar(
        select(VisitRating.id).where(
            VisitRating.visit_id == visit.id, VisitRating.by_user_id == actor.user_id
        )
    )
    if exists_already is not None:
        raise Conflict("You have already rated this visit.", code="dispatch.already_rated")
    rating = VisitRating(
        visit_id=visit.id,
        by_user_id=actor.user_id,
        by_role=actor.role.value,
        score=score,
        comment=comment,
        created_at=now,
    )
    session.add(rating)
    if order.state == OrderState.VERIFIED.value:
        await move(
            session=session,
            order=order,
            target=OrderState.RATED,
            actor=actor.role,
            actor_user_id=actor.user_id,
            now=now,
        )
    await session.flush()
    return rating


async def file_complaint(
    *, session: AsyncSession, actor: Principal, order_id: int, text: str, now: dt.datetime
) -> Complaint:
    """An elder or family member complains about one of their orders."""
    order = await visible_order(session=session, actor=actor, order_id=order_id)
    visit_id = await session.scalar(select(Visit.id).where(Visit.order_id == order.id))
    complaint = Complaint(
        order_id=order.id,
        visit_id=visit_id,
        elder_id=order.elder_id,
        provider_id=order.provider_id,
        caregiver_id=order.caregiver_id,
        filed_by_user_id=actor.user_id,
        text=text,
        status="open",
        created_at=now,
    )
    session.add(complaint)
    await session.flush()
    log.info("dispatch.complaint.filed", complaint_id=complaint.id, order_id=order.id)
    return complaint


async def list_complaints(*, session: AsyncSession, actor: Principal, window: Window) -> Paged[Complaint]:
    clause = scope_clause(
        actor,
        elder_col=Complaint.elder_id,
        provider_col=Complaint.provider_id,
        caregiver_col=Complaint.caregiver_id,
    )
    stmt: Any = select(Complaint).where(clause).order_by(Complaint.id.desc())
    return await page_of(session, stmt, window)
