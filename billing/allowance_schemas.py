"""Wire types of the allowance rosters. Months are ``YYYY-MM``; amounts integer fen; dates
Asia/Shanghai calendar days; instants ISO 8601 with a time zone."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, Literal

import msgspec

from billing.allowance_models import AllowanceRoster
from billing.allowance_service import Generated, LineView, RosterView
from billing.allowances import RosterTotals, month_label
from core.types import Input

MONTH_PATTERN: Final = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
MonthText = Annotated[str, msgspec.Meta(pattern=MONTH_PATTERN, description="A month, YYYY-MM")]
KindText = Literal["old_age", "disability"]
ChangeText = Literal["added", "changed", "continued", "stopped"]


class AllowanceGenerate(Input):
    """Generate (or regenerate, while it is open) the roster of a month: ``old_age`` (高龄津贴) or
    ``disability`` (经济困难失能老年人护理补贴)."""

    month: MonthText
    kind: KindText


class AllowanceTotalsRead(msgspec.Struct):
    """Counts and sums over the lines you see (fen; ``total_fen = monthly_fen + backpay_fen``).
    ``paid`` lines pay something; ``stopped`` lines (停发) pay 0 and say why."""

    lines: int
    paid: int
    added: int
    changed: int
    continued: int
    stopped: int
    backpay_months: int
    monthly_fen: int
    backpay_fen: int
    total_fen: int


class AllowanceLineRead(msgspec.Struct):
    """One elder's line. ``change``: how the payment moved since the month before (``added`` 新增,
    ``changed`` 变更, ``continued``, ``stopped`` 停发); ``reason`` why (a stable code:
    ``turned_age``, ``registered``, ``late_registration``, ``assessed``, ``category_granted``,
    ``resumed``, ``band_changed``, ``level_changed``, ``continued``, ``deceased``, ``moved``,
    ``assessment_expired``, ``level_not_paid``, ``category_ended``, ``no_longer_eligible``).
    ``band``: the age band (old age) or assessment level (disability) paid, as the policy scope names
    it; ``event_on`` dates the cause of a stop; ``backpay_refs`` the policy of each month back-paid."""

    elder_id: int
    elder_name: str
    id_number_masked: str
    birth_on: dt.date
    district_id: int
    district_name: str
    change: str
    reason: str
    band: str
    previous_band: str | None
    monthly_fen: int
    backpay_months: int
    backpay_fen: int
    amount_fen: int
    event_on: dt.date | None
    policy_ref: str | None
    backpay_refs: list[str]


class AllowanceRosterRead(msgspec.Struct):
    """A month's roster: its state (``open`` while the month is current, then ``closed``), the day
    whose facts it follows, the policy rows applied, its checksum (equal after a regeneration that
    changed nothing), the totals of the lines you see, and one page of them."""

    month: str
    kind: str
    state: str
    facts_on: dt.date
    generations: int
    generated_at: dt.datetime
    closed_at: dt.datetime | None
    checksum: str
    policy_refs: list[str]
    totals: AllowanceTotalsRead
    items: list[AllowanceLineRead]
    total: int
    limit: int
    offset: int
    has_more: bool = False

    def __post_init__(self) -> None:
        self.has_more = self.offset + len(self.items) < self.total


class AllowanceGeneratedRead(msgspec.Struct):
    """The roster after a generation: its header, the totals of the lines you see, and whether the
    lines changed (``false``: a regeneration from the same facts and policy)."""

    month: str
    kind: str
    state: str
    facts_on: dt.date
    generations: int
    generated_at: dt.datetime
    closed_at: dt.datetime | None
    checksum: str
    policy_refs: list[str]
    totals: AllowanceTotalsRead
    lines_changed: bool


def totals_read(t: RosterTotals) -> AllowanceTotalsRead:
    return AllowanceTotalsRead(
        lines=t.lines,
        paid=t.paid,
        added=t.added,
        changed=t.changed,
        continued=t.continued,
        stopped=t.stopped,
        backpay_months=t.backpay_months,
        monthly_fen=t.monthly_fen,
        backpay_fen=t.backpay_fen,
        total_fen=t.total_fen,
    )


def line_read(v: LineView) -> AllowanceLineRead:
    x = v.line
    return AllowanceLineRead(
        elder_id=x.elder_id,
        elder_name=v.elder_name,
        id_number_masked=v.id_number_masked,
        birth_on=v.birth_on,
        district_id=x.district_id,
        district_name=v.district_name,
        change=x.change,
        reason=x.reason,
        band=x.band,
        previous_band=x.previous_band,
        monthly_fen=x.monthly_fen,
        backpay_months=x.backpay_months,
        backpay_fen=x.backpay_fen,
        amount_fen=x.amount_fen,
        event_on=x.event_on,
        policy_ref=x.policy_ref,
        backpay_refs=list(x.backpay_refs),
    )


def roster_read(view: RosterView) -> AllowanceRosterRead:
    r = view.roster
    return AllowanceRosterRead(
        month=month_label(r.month),
        kind=r.kind,
        state=r.state,
        facts_on=r.facts_on,
        generations=r.generations,
        generated_at=r.generated_at,
        closed_at=r.closed_at,
        checksum=r.checksum,
        policy_refs=list(r.policy_refs),
        totals=totals_read(view.totals),
        items=[line_read(v) for v in view.lines],
        total=view.total,
        limit=view.limit,
        offset=view.offset,
    )


def generated_read(g: Generated, totals: RosterTotals) -> AllowanceGeneratedRead:
    r: AllowanceRoster = g.roster
    return AllowanceGeneratedRead(
        month=month_label(r.month),
        kind=r.kind,
        state=r.state,
        facts_on=r.facts_on,
        generations=r.generations,
        generated_at=r.generated_at,
        closed_at=r.closed_at,
        checksum=r.checksum,
        policy_refs=list(r.policy_refs),
        totals=totals_read(totals),
        lines_changed=g.changed,
    )
