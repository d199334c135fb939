"""Allowance rosters, the use cases: generate a month's roster (stored once per month and allowance),
read it in the caller's scope, close the months that are over. The rules are
:mod:`billing.allowances`; this module loads their facts and policies and stores what they return.

Invariants:

* One roster per (month, allowance), created on first generation (``INSERT … ON CONFLICT DO
  NOTHING``) and then locked (``SELECT … FOR UPDATE``) by whoever regenerates it, so two concurrent
  generations take turns and the second sees the first's lines.
* Only the roster of the current month (Asia/Shanghai) is ``open``: regenerating it recomputes its
  lines from the facts and policy as they are now (same facts → same lines, same checksum). A month
  that is over is ``closed``: generated once if it never was, then never recomputed (409
  ``allowance.roster_closed``); the 1st-of-month job closes the month before (:func:`close_past`).
  The ``allowance_rosters`` migration's trigger refuses any change to a closed roster or its lines.
* Every generation writes an audit row (``generate`` / ``regenerate``, before/after totals and
  checksum); a scheduled one has no principal (``system``).
* Services flush; the request or the job owns the transaction.

Who sees what: admins every line, civil-affairs officers the lines of their districts (the line's
district, the elder's when the roster was generated) — :func:`sees_line`, with its SQL twin.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg
import structlog
from sqlalchemy import ColumnElement, Select, and_, delete, false, func, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing import allowances as rules
from billing.allowance_models import AllowanceLine, AllowanceRoster, RosterState
from billing.allowances import (
    AllowanceKind,
    AllowancePolicy,
    AssessmentSpan,
    CategorySpan,
    Change,
    ElderFacts,
    PaidBefore,
    RosterLine,
    RosterTotals,
)
from billing.seed import POLICY_DEFAULTS
from core import audit
from core.clock import local_date
from core.crud import Window, total_of
from core.errors import Conflict, Invalid, NotFound
from core.identity.authz import Principal
from core.identity.models import Role
from core.policy import POLICY_EPOCH, load_policy
from registry.idcard import mask_id_number
from registry.models import Assessment, District, Elder, ElderCategory
from registry.scope import by_district

log = structlog.get_logger(__name__)

ENTITY: Final = "allowance_roster"
# The platform pays allowances from its policy epoch: no roster of an earlier month.
FIRST_MONTH: Final = rules.month_start(POLICY_EPOCH)


class RosterClosed(Conflict):
    code = "allowance.roster_closed"
    title = "Roster closed"


class PolicyUnreadable(Conflict):
    code = "allowance.policy_invalid"
    title = "Allowance policy cannot be applied"


# --- Scope ------------------------------------------------------------------------------------------


def sees_line(p: Principal, *, district_id: int) -> bool:
    """Whether ``p`` sees a roster line of this district: admins all, civil-affairs officers (and any
    role scoped by district, :func:`registry.scope.by_district`) those of their districts."""
    if p.role == Role.ADMIN:
        return True
    return by_district(p) and district_id in p.district_ids


def line_clause(p: Principal) -> ColumnElement[bool]:
    """SQL twin of :func:`sees_line` on ``allowance_line``."""
    if p.role == Role.ADMIN:
        return true()
    if by_district(p) and p.district_ids:
        return AllowanceLine.district_id.in_(sorted(p.district_ids))
    return false()


# --- Months -----------------------------------------------------------------------------------------


def check_month(month: dt.date, *, now: dt.datetime) -> dt.date:
    """``month`` (its first day) if a roster of it can be generated at ``now``: from the platform's
    first month to the current one (Asia/Shanghai). A later month's facts day has not come yet."""
    month = rules.month_start(month)
    if month < FIRST_MONTH:
        raise Invalid(
            f"Allowances are paid from {rules.month_label(FIRST_MONTH)}: "
            f"there is no roster of {rules.month_label(month)}.",
            code="allowance.month_before_start",
            field="month",
        )
    current = rules.month_start(local_date(now))
    if month > current:
        raise Invalid(
            f"The roster of {rules.month_label(month)} is generated from its first day "
            f"(it follows the facts of {rules.facts_day(month).isoformat()}).",
            code="allowance.month_not_started",
            field="month",
        )
    return month


# --- Loading policies and facts ---------------------------------------------------------------------


async def load_policies(session: AsyncSession, month: dt.date) -> dict[dt.date, AllowancePolicy]:
    """The allowance policy of ``month`` and of every month the rules may read for it (the back-pay
    window, at least the month before), each as valid on that month's first day."""
    current = await _policy_of(session, month)
    out = {month: current}
    for earlier in rules.policies_needed(month, current.backpay_months):
        if earlier not in out:
            out[earlier] = await _policy_of(session, earlier)
    return out


async def _policy_of(session: AsyncSession, month: dt.date) -> AllowancePolicy:
    snapshot = await load_policy(session, day=month, prefixes=rules.POLICY_PREFIXES, defaults=POLICY_DEFAULTS)
    try:
        return rules.allowance_policy(snapshot)
    except rules.AllowancePolicyInvalid as bad:
        raise PolicyUnreadable(
            f"The allowance policy valid on {month.isoformat()} cannot be applied: {bad}. End that row "
            "(PATCH /api/v1/policies/rows/{id}) or add a corrected one.",
            month=rules.month_label(month),
        ) from None


def _candidates(
    kind: AllowanceKind, month: dt.date, policies: dict[dt.date, AllowancePolicy], previous_ids: Sequence[int]
) -> Select[int, int, dt.date, dt.datetime, str, dt.date | None]:
    """Elders who may be on the roster of ``month`` or of the month before (a loose filter: the
    rules decide): paid before, or of a band's age (old age) or with an assessment valid on one of
    the two facts days (disability), and not gone before the month before's facts day."""
    day, day_before = rules.facts_day(month), rules.facts_day(rules.add_months(month, -1))
    stmt = select(
        Elder.id, Elder.district_id, Elder.birth_on, Elder.created_at, Elder.status, Elder.status_on
    )
    not_gone = or_(Elder.status.not_in(sorted(rules.ENDED_STATUSES)), Elder.status_on > day_before)
    if kind == AllowanceKind.OLD_AGE:
        ages = [
            a for m in (month, rules.add_months(month, -1)) if (a := policies[m].youngest_age) is not None
        ]
        could = Elder.birth_on <= dt.date(max(1, day.year - min(ages)), 12, 31) if ages else false()
    else:
        could = Elder.id.in_(
            select(Assessment.elder_id).where(
                Assessment.assessed_on <= day, Assessment.valid_until >= day_before
            )
        )
    was_paid = Elder.id.in_(sorted(previous_ids)) if previous_ids else false()
    return stmt.where(or_(and_(could, not_gone), was_paid)).order_by(Elder.id)


async def load_facts(
    session: AsyncSession,
    kind: AllowanceKind,
    month: dt.date,
    policies: dict[dt.date, AllowancePolicy],
    previous_ids: Sequence[int],
) -> list[ElderFacts]:
    """The facts of every candidate elder (:func:`_candidates`); for the disability allowance with
    their categories and assessments (all of them: back-pay reads earlier months)."""
    rows = (await session.execute(_candidates(kind, month, policies, previous_ids))).all()
    cats: dict[int, list[CategorySpan]] = {}
    found: dict[int, list[AssessmentSpan]] = {}
    if kind == AllowanceKind.DISABILITY and rows:
        ids = [r[0] for r in rows]
        for i in range(0, len(ids), 20_000):
            chunk = ids[i : i + 20_000]
            c = ElderCategory
            held = select(c.elder_id, c.category, c.valid_from, c.valid_to).where(c.elder_id.in_(chunk))
            for elder_id, category, valid_from, valid_to in await session.execute(held):
                cats.setdefault(elder_id, []).append(CategorySpan(category, valid_from, valid_to))
            a = Assessment
            made = select(a.elder_id, a.final_level, a.assessed_on, a.valid_until).where(
                a.elder_id.in_(chunk)
            )
            for elder_id, level, assessed_on, valid_until in await session.execute(made):
                found.setdefault(elder_id, []).append(AssessmentSpan(level, assessed_on, valid_until))
    return [
        ElderFacts(
            elder_id=r[0],
            district_id=r[1],
            birth_on=r[2],
            registered_on=local_date(r[3]),
            status=r[4],
            status_on=r[5],
            categories=tuple(cats.get(r[0], ())),
            assessments=tuple(found.get(r[0], ())),
        )
        for r in rows
    ]


async def _stored_previous(
    session: AsyncSession, kind: AllowanceKind, month: dt.date
) -> dict[int, PaidBefore] | None:
    """Who the stored roster of the month before ``month`` paid, or ``None`` if there is none."""
    before = await session.scalar(
        select(AllowanceRoster.id).where(
            AllowanceRoster.month == rules.add_months(month, -1), AllowanceRoster.kind == kind.value
        )
    )
    if before is None:
        return None
    rows = await session.execute(
        select(AllowanceLine.elder_id, AllowanceLine.district_id, AllowanceLine.band).where(
            AllowanceLine.roster_id == before, AllowanceLine.change != Change.STOPPED.value
        )
    )
    return {r[0]: PaidBefore(r[0], r[1], r[2]) for r in rows}


# --- Generating ---------------------------------------------------------------------------------------


def _header(roster: AllowanceRoster) -> dict[str, object]:
    """What the audit trail records of a roster."""
    return {
        "month": rules.month_label(roster.month),
        "kind": roster.kind,
        "state": roster.state,
        "lines": roster.lines,
        "total_fen": roster.total_fen,
        "checksum": roster.checksum,
        "generations": roster.generations,
    }


async def _lock_roster(
    session: AsyncSession, kind: AllowanceKind, month: dt.date, now: dt.datetime
) -> AllowanceRoster:
    await session.execute(
        pg_insert(AllowanceRoster)
        .values(
            month=month,
            kind=kind.value,
            state=RosterState.OPEN.value,
            facts_on=rules.facts_day(month),
            generated_at=now,
            policy_refs=[],
        )
        .on_conflict_do_nothing(index_elements=["month", "kind"])
    )
    roster = await session.scalar(
        select(AllowanceRoster)
        .where(AllowanceRoster.month == month, AllowanceRoster.kind == kind.value)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert roster is not None
    return roster


@dataclass(frozen=True, slots=True)
class Generated:
    """A generation's outcome: the roster, and whether its lines changed (a first generation counts
    as a change)."""

    roster: AllowanceRoster
    changed: bool


async def generate_roster(
    *,
    session: AsyncSession,
    kind: AllowanceKind,
    month: dt.date,
    actor: Principal | None,
    now: dt.datetime,
) -> Generated:
    """Generate the roster of ``month`` (its first day), or regenerate it while it is open.

    A month that is over is generated once (and closed at once) if it never was; otherwise 409
    ``allowance.roster_closed``. ``actor`` ``None``: the scheduled job."""
    month = check_month(month, now=now)
    roster = await _lock_roster(session, kind, month, now)
    current = rules.month_start(local_date(now))
    if roster.state == RosterState.CLOSED.value or (roster.generations > 0 and month < current):
        raise RosterClosed(
            f"The {kind.value} roster of {rules.month_label(month)} is closed: a month that is over is "
            "never recomputed. Corrections are made on the current month's roster.",
            month=rules.month_label(month),
            kind=kind.value,
        )
    before = _header(roster) if roster.generations > 0 else None
    policies = await load_policies(session, month)
    stored = await _stored_previous(session, kind, month)
    facts = await load_facts(session, kind, month, policies, sorted(stored or ()))
    last = rules.add_months(month, -1)
    previous = stored if stored is not None else rules.previous_from_facts(kind, last, facts, policies[last])
    lines = rules.roster(kind, month, facts, policies, previous)
    digest = rules.checksum(lines)
    changed = digest != roster.checksum or roster.generations == 0
    await session.execute(delete(AllowanceLine).where(AllowanceLine.roster_id == roster.id))
    await _insert_lines(session, roster.id, lines)
    t = rules.totals(lines)
    roster.facts_on = rules.facts_day(month)
    roster.lines, roster.paid, roster.added = t.lines, t.paid, t.added
    roster.changed, roster.stopped = t.changed, t.stopped
    roster.monthly_fen, roster.backpay_fen, roster.total_fen = t.monthly_fen, t.backpay_fen, t.total_fen
    roster.checksum = digest
    roster.policy_refs = list(policies[month].refs)
    roster.generations += 1
    roster.generated_at = now
    roster.generated_by_user_id = actor.user_id if actor else None
    if month < current:
        roster.state, roster.closed_at = RosterState.CLOSED.value, now
    await session.flush()
    audit.record(
        session,
        actor=actor,
        system_role=None if actor else "system",
        action="generate" if before is None else "regenerate",
        entity=ENTITY,
        entity_id=roster.id,
        before=before,
        after=_header(roster),
    )
    log.info(
        "allowance.roster_generated",
        kind=kind.value,
        month=rules.month_label(month),
        lines=t.lines,
        total_fen=t.total_fen,
        changed=changed,
    )
    return Generated(roster, changed)


LINE_COLUMNS: Final = (
    "roster_id", "elder_id", "district_id", "change", "reason", "band", "previous_band", "monthly_fen",
    "backpay_months", "backpay_fen", "amount_fen", "event_on", "policy_ref", "backpay_refs",
)  # fmt: skip


async def _insert_lines(session: AsyncSession, roster_id: int, lines: Sequence[RosterLine]) -> None:
    """COPY the lines in, on the session's own connection (inside its transaction): a roster of the
    whole city is tens of thousands of rows."""
    if not lines:
        return
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    await driver.copy_records_to_table(
        AllowanceLine.__tablename__,
        columns=LINE_COLUMNS,
        records=[
            (
                roster_id, x.elder_id, x.district_id, x.change.value, x.reason.value, x.band, x.previous_band,
                x.monthly_fen, x.backpay_months, x.backpay_fen, x.amount_fen, x.event_on, x.policy_ref,
                list(x.backpay_refs),
            )
            for x in lines
        ],
    )  # fmt: skip


async def generate_current(*, session: AsyncSession, now: dt.datetime) -> list[AllowanceRoster]:
    """The scheduled generation: the current month's roster of each allowance that has none yet
    (an existing one, generated earlier by hand, is left as it is). Idempotent."""
    month = rules.month_start(local_date(now))
    made = []
    for kind in AllowanceKind:
        exists = await session.scalar(
            select(AllowanceRoster.id).where(
                AllowanceRoster.month == month,
                AllowanceRoster.kind == kind.value,
                AllowanceRoster.generations > 0,
            )
        )
        if exists is None:
            made.append(
                (await generate_roster(session=session, kind=kind, month=month, actor=None, now=now)).roster
            )
    return made


async def close_past(*, session: AsyncSession, now: dt.datetime) -> int:
    """Close every open roster of a month that is over (the conditional update makes it
    idempotent). Returns how many were closed; each gets an audit row."""
    current = rules.month_start(local_date(now))
    closed = (
        await session.scalars(
            update(AllowanceRoster)
            .where(AllowanceRoster.state == RosterState.OPEN.value, AllowanceRoster.month < current)
            .values(state=RosterState.CLOSED.value, closed_at=now)
            .returning(AllowanceRoster.id)
        )
    ).all()
    for roster_id in closed:
        audit.record(
            session,
            actor=None,
            system_role="system",
            action="close",
            entity=ENTITY,
            entity_id=roster_id,
            before={"state": RosterState.OPEN.value},
            after={"state": RosterState.CLOSED.value},
        )
    return len(closed)


# --- Reading --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineView:
    """A roster line with the elder's name, masked ID number, birth date and district name."""

    line: AllowanceLine
    elder_name: str
    id_number_masked: str
    birth_on: dt.date
    district_name: str


@dataclass(frozen=True, slots=True)
class RosterView:
    """A roster, its totals in the reader's scope, and one page of its lines there."""

    roster: AllowanceRoster
    totals: RosterTotals
    lines: list[LineView]
    total: int
    limit: int
    offset: int


async def stored_roster(session: AsyncSession, kind: AllowanceKind, month: dt.date) -> AllowanceRoster:
    """The stored roster, or 404 ``allowance.roster_not_found``."""
    roster = await session.scalar(
        select(AllowanceRoster).where(
            AllowanceRoster.month == rules.month_start(month),
            AllowanceRoster.kind == kind.value,
            AllowanceRoster.generations > 0,
        )
    )
    if roster is None:
        raise NotFound(
            f"No {kind.value} roster of {rules.month_label(month)} has been generated.",
            code="allowance.roster_not_found",
        )
    return roster


async def scoped_totals(session: AsyncSession, actor: Principal, roster: AllowanceRoster) -> RosterTotals:
    """The roster's totals over the lines ``actor`` sees (for admins, those of the whole roster)."""
    by = AllowanceLine.change
    row = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(by == Change.ADDED.value),
                func.count().filter(by == Change.CHANGED.value),
                func.count().filter(by == Change.CONTINUED.value),
                func.count().filter(by == Change.STOPPED.value),
                func.coalesce(func.sum(AllowanceLine.backpay_months), 0),
                func.coalesce(func.sum(AllowanceLine.monthly_fen), 0),
                func.coalesce(func.sum(AllowanceLine.backpay_fen), 0),
            ).where(AllowanceLine.roster_id == roster.id, line_clause(actor))
        )
    ).one()
    lines, added, changed, continued, stopped, months, monthly, backpay = (int(v) for v in row)
    return RosterTotals(
        lines=lines,
        paid=lines - stopped,
        added=added,
        changed=changed,
        continued=continued,
        stopped=stopped,
        backpay_months=months,
        monthly_fen=monthly,
        backpay_fen=backpay,
        total_fen=monthly + backpay,
    )


def _line_filters(
    roster_id: int, actor: Principal, *, change: Change | None, district_id: int | None
) -> list[ColumnElement[bool]]:
    out = [AllowanceLine.roster_id == roster_id, line_clause(actor)]
    if change is not None:
        out.append(AllowanceLine.change == change.value)
    if district_id is not None:
        out.append(AllowanceLine.district_id == district_id)
    return out


def _lines_stmt(filters: Sequence[ColumnElement[bool]]) -> Select[AllowanceLine, str, str, dt.date, str]:
    return (
        select(AllowanceLine, Elder.name, Elder.id_number, Elder.birth_on, District.name)
        .join(Elder, Elder.id == AllowanceLine.elder_id)
        .join(District, District.id == AllowanceLine.district_id)
        .where(*filters)
        .order_by(AllowanceLine.district_id, AllowanceLine.elder_id)
    )


def _view(row: tuple[AllowanceLine, str, str, dt.date, str]) -> LineView:
    line, name, id_number, birth_on, district = row
    return LineView(line, name, mask_id_number(id_number), birth_on, district)


async def read_roster(
    *,
    session: AsyncSession,
    actor: Principal,
    kind: AllowanceKind,
    month: dt.date,
    window: Window,
    change: Change | None = None,
    district_id: int | None = None,
) -> RosterView:
    """The stored roster with the totals of the lines ``actor`` sees and one page of them (by
    district, then elder), optionally only one kind of change (``added``: the 新增 list, ``stopped``:
    the 停发 list) or one district. 404 if the month's roster has not been generated."""
    roster = await stored_roster(session, kind, month)
    filters = _line_filters(roster.id, actor, change=change, district_id=district_id)
    page = _lines_stmt(filters).limit(window.limit + 1).offset(window.offset)
    rows = (await session.execute(page)).all()
    total = await total_of(session, select(AllowanceLine.elder_id).where(*filters), window, len(rows))
    return RosterView(
        roster=roster,
        totals=await scoped_totals(session, actor, roster),
        lines=[_view(r) for r in rows[: window.limit]],
        total=total,
        limit=window.limit,
        offset=window.offset,
    )


async def all_lines(
    *, session: AsyncSession, actor: Principal, roster: AllowanceRoster, change: Change | None = None
) -> list[LineView]:
    """Every line of the roster that ``actor`` sees (for exports), by district, then elder."""
    stmt = _lines_stmt(_line_filters(roster.id, actor, change=change, district_id=None))
    return [_view(r) for r in (await session.execute(stmt)).all()]
