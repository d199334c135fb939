"""Ability assessments per GB/T 42195-2022: scored by the pure :func:`registry.assessment.assess`,
stored with their item scores, read by everyone who may see the elder."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.clock import local_date
from core.crud import Paged, Window, in_key_range, page_of
from core.errors import Invalid, NotFound
from core.identity.authz import Principal
from registry.assessment import assess
from registry.models import Assessment
from registry.schemas.assessments import AssessmentCreate
from registry.service.elders import editable_elder, visible_elder


async def create_assessment(
    *, session: AsyncSession, actor: Principal, elder_id: int, data: AssessmentCreate, now: dt.datetime
) -> Assessment:
    """Score and store an assessment: ``data`` holds the 26 item scores, the diagnoses, the
    care-risk incidents of the last 30 days (one entry per incident), the assessor and
    ``assessed_on`` (not in the future, Asia/Shanghai)."""
    elder = await editable_elder(session, actor, elder_id)
    if data.assessed_on > local_date(now):
        raise Invalid(
            f"assessed_on {data.assessed_on.isoformat()} is in the future.",
            code="assessment.future_date",
            field="assessed_on",
        )
    result = assess(
        data.items,
        has_dementia_dx=data.has_dementia_dx,
        has_other_mental_dx=data.has_other_mental_dx,
        recent_incidents=data.recent_incidents,
        assessed_on=data.assessed_on,
    )
    row = Assessment(
        elder_id=elder.id,
        items=dict(result.items),
        has_dementia_dx=data.has_dementia_dx,
        has_other_mental_dx=data.has_other_mental_dx,
        recent_incidents=list(data.recent_incidents),
        total=result.total,
        preliminary_level=result.preliminary_level,
        final_level=result.final_level,
        assessor=data.assessor,
        assessed_on=data.assessed_on,
        valid_until=result.valid_until,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="assessment",
        entity_id=row.id,
        after=audit.snapshot(row),
    )
    if row.has_dementia_dx and not elder.has_dementia:
        # A diagnosed dementia found by the assessor is a fact about the elder: alarm rules
        # (wandering severity, door open at night) read the elder's flag.
        before = audit.snapshot(elder)
        elder.has_dementia = True
        await session.flush()
        audit.record(
            session,
            actor=actor,
            action="update",
            entity="elder",
            entity_id=elder.id,
            before=before,
            after=audit.snapshot(elder),
        )
    return row


async def list_assessments(
    *, session: AsyncSession, actor: Principal, elder_id: int, window: Window
) -> Paged[Assessment]:
    """An elder's assessments, newest first."""
    elder = await visible_elder(session, actor, elder_id)
    stmt = (
        select(Assessment)
        .where(Assessment.elder_id == elder.id)
        .order_by(Assessment.assessed_on.desc(), Assessment.id.desc())
    )
    return await page_of(session, stmt, window)


async def get_assessment(*, session: AsyncSession, actor: Principal, assessment_id: int) -> Assessment:
    row = await session.get(Assessment, assessment_id) if in_key_range(assessment_id) else None
    if row is not None:
        try:
            await visible_elder(session, actor, row.elder_id)
        except NotFound:
            row = None
    if row is None:
        raise NotFound(f"No assessment with id {assessment_id}.", code="assessment.not_found")
    return row
