"""Monthly cash allowances paid to elders (DOMAIN §4): the pure rules of the rosters.

Two allowances, each with one roster per month:

* **old age** (高龄津贴, ``old_age``): by age band, policy ``allowance.old_age[<band>]``
  (``min_age``, ``max_age`` or null, ``fen``);
* **disability care** (经济困难失能老年人护理补贴, ``disability``): for elders assessed at a level the
  policy pays (``allowance.disability[<level>]``: ``fen`` and the low-income ``categories`` that
  qualify) who hold one of those categories.

**The one timing rule.** A month's allowance follows the elder's facts as they stood on the last day
of the month before (:func:`facts_day`). So every change takes effect the month after the month it
happens in, as DOMAIN §4 asks: a new age band starts the month after the birthday month (someone who
turns 90 on 10 May is paid the 90-99 band from June); payment stops the month after a death or a move
out (died 15 July: July is paid, August is not); an assessment or a category that starts in a month
pays from the next one, and one that ends in a month still pays the next one. The policy applied to a
month is the one valid on its first day (:func:`AllowancePolicy` from that day's snapshot), so a
policy change applies from the first month that starts on or after its date.

**Registration and back-pay (补发).** An elder is on a roster only once registered on the platform
(``registered_on``, the local day their record was created) by the facts day. An elder registered
during month M-1 whose entitlement began earlier is *late*: their first line (month M) adds the months
owed, each month of the ``allowance.backpay`` window before M in which they were entitled had they
been registered, at that month's own band and amount (so nothing is paid twice: a month before the
registration was on no roster). The window is ``allowance.backpay[*].months`` valid in month M.

**Additions, changes, stoppages (新增/变更/停发).** Each line says how the elder's payment moved
since the month before: ``added`` (with why: turned the age, registered, registered late, assessed,
category granted), ``changed`` (a new band or level), ``continued`` or ``stopped`` (with why: death,
move, assessment expired, level or category no longer paid). "The month before" is what the stored
roster of that month paid when there is one (``previous``), else what these rules give for it.

Everything here is pure: facts, policies and months in, lines out (integer fen, no I/O, no clock).
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from core.policy import PolicySnapshot
from registry.idcard import age_on
from registry.models import ElderStatus

OLD_AGE_KEY: Final = "allowance.old_age"
DISABILITY_KEY: Final = "allowance.disability"
BACKPAY_KEY: Final = "allowance.backpay"
POLICY_PREFIXES: Final = ("allowance.",)
# Statuses after whose date nothing more is paid (hospitalised elders are still paid).
ENDED_STATUSES: Final = frozenset({ElderStatus.DECEASED.value, ElderStatus.MOVED.value})


class AllowanceKind(enum.StrEnum):
    OLD_AGE = "old_age"  # 高龄津贴
    DISABILITY = "disability"  # 经济困难失能老年人护理补贴


class Change(enum.StrEnum):
    """How a line's payment moved since the month before."""

    ADDED = "added"  # 新增
    CHANGED = "changed"  # 变更: another band or level
    CONTINUED = "continued"  # 续发
    STOPPED = "stopped"  # 停发: on the roster with 0, to say why


class Reason(enum.StrEnum):
    """Why a line is what it is. Stable codes: exports and pages translate them."""

    CONTINUED = "continued"
    TURNED_AGE = "turned_age"  # reached a band's age (the month after the birthday month)
    REGISTERED = "registered"  # registered last month, entitled from this month
    LATE_REGISTRATION = "late_registration"  # registered last month, entitled before: back-paid
    ASSESSED = "assessed"  # a level the policy pays, from the month after the assessment
    CATEGORY_GRANTED = "category_granted"  # a qualifying low-income category
    RESUMED = "resumed"  # entitled again, or not paid last month for another reason
    BAND_CHANGED = "band_changed"  # the next age band, the month after the birthday month
    LEVEL_CHANGED = "level_changed"  # reassessed at another level the policy pays
    DECEASED = "deceased"  # the month after the death
    MOVED = "moved"  # the month after moving out
    ASSESSMENT_EXPIRED = "assessment_expired"  # no valid assessment on the facts day
    LEVEL_NOT_PAID = "level_not_paid"  # reassessed at a level the policy does not pay
    CATEGORY_ENDED = "category_ended"  # no qualifying category on the facts day
    NO_LONGER_ELIGIBLE = "no_longer_eligible"  # any other end (e.g. a policy change)


class _Refusal(enum.Enum):
    """Why an elder is not entitled in a month (internal: mapped onto :class:`Reason`)."""

    DECEASED = "deceased"
    MOVED = "moved"
    NOT_REGISTERED = "not_registered"
    NO_BAND = "no_band"
    NO_ASSESSMENT = "no_assessment"
    LEVEL_NOT_PAID = "level_not_paid"
    NO_CATEGORY = "no_category"


# --- Months ---------------------------------------------------------------------------------------


def month_start(day: dt.date) -> dt.date:
    """The first day of ``day``'s month (a month is represented by its first day)."""
    return day.replace(day=1)


def add_months(month: dt.date, n: int) -> dt.date:
    """The first day of the month ``n`` months after (or before, ``n < 0``) ``month``'s."""
    index = month.year * 12 + month.month - 1 + n
    return dt.date(index // 12, index % 12 + 1, 1)


@functools.cache  # called for every elder and month: a handful of distinct months per roster
def facts_day(month: dt.date) -> dt.date:
    """The day whose facts a month's allowance follows: the last day of the month before."""
    return month_start(month) - dt.timedelta(days=1)


def month_label(month: dt.date) -> str:
    """``YYYY-MM``."""
    return f"{month.year:04d}-{month.month:02d}"


def parse_month(text: str) -> dt.date:
    """``YYYY-MM`` → the month's first day; anything else is a :class:`ValueError`."""
    if len(text) != 7 or text[4] != "-" or not (text[:4].isdigit() and text[5:].isdigit()):
        raise ValueError(f"not a month (YYYY-MM): {text[:20]!r}")
    return dt.date(int(text[:4]), int(text[5:]), 1)


# --- Facts and policy -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CategorySpan:
    """A subsidy category held over ``valid_from``..``valid_to`` (inclusive; ``None``: open)."""

    category: str
    valid_from: dt.date
    valid_to: dt.date | None = None

    def holds_on(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True, slots=True)
class AssessmentSpan:
    """A GB/T 42195 assessment: its final level, its day and the last day it is valid."""

    level: int
    assessed_on: dt.date
    valid_until: dt.date


@dataclass(frozen=True, slots=True)
class ElderFacts:
    """What the rules read about one elder. ``status_on`` dates a ``moved``/``deceased`` status."""

    elder_id: int
    district_id: int
    birth_on: dt.date
    registered_on: dt.date
    status: str = ElderStatus.ACTIVE.value
    status_on: dt.date | None = None
    categories: tuple[CategorySpan, ...] = ()
    assessments: tuple[AssessmentSpan, ...] = ()


@dataclass(frozen=True, slots=True)
class AgeBand:
    """An old-age band: ages ``min_age``..``max_age`` (inclusive; ``None``: no upper bound)."""

    scope: str
    min_age: int
    max_age: int | None
    fen: int
    ref: str

    def covers(self, age: int) -> bool:
        return age >= self.min_age and (self.max_age is None or age <= self.max_age)


@functools.cache
def _highest_first(bands: tuple[AgeBand, ...]) -> tuple[AgeBand, ...]:
    return tuple(sorted(bands, key=lambda b: (b.min_age, b.scope), reverse=True))


@dataclass(frozen=True, slots=True)
class LevelRate:
    """The disability allowance for an assessment level, for holders of one of ``categories``."""

    level: int
    fen: int
    categories: frozenset[str]
    ref: str


@dataclass(frozen=True, slots=True)
class AllowancePolicy:
    """The allowance policy valid on one month's first day."""

    bands: tuple[AgeBand, ...]
    levels: tuple[LevelRate, ...]
    backpay_months: int
    refs: tuple[str, ...] = ()

    def band_for(self, age: int) -> AgeBand | None:
        """The band covering ``age``: of several (overlapping rows), the one with the highest minimum."""
        for band in _highest_first(self.bands):
            if band.min_age <= age and (band.max_age is None or age <= band.max_age):
                return band
        return None

    def rate_for(self, level: int) -> LevelRate | None:
        return next((r for r in self.levels if r.level == level), None)

    @property
    def youngest_age(self) -> int | None:
        """The lowest age any band pays (for the query that picks candidates)."""
        return min((b.min_age for b in self.bands), default=None)


class AllowancePolicyInvalid(TypeError):
    """A stored allowance policy row the rules cannot read (the policy API checks a value's shape,
    not what its scope means: a disability scope must be an assessment level)."""


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise AllowancePolicyInvalid(f"{what} is not a whole number: {value!r}")
    return int(value)


def allowance_policy(snapshot: PolicySnapshot) -> AllowancePolicy:
    """The allowance policy of a snapshot (rows valid on its day, else the seeded defaults) under
    :data:`POLICY_PREFIXES`. Scopes of ``allowance.disability`` are levels; a value or scope the rules
    cannot read is :class:`AllowancePolicyInvalid` naming the row."""
    bands = []
    for scope, e in sorted(snapshot.scopes(OLD_AGE_KEY).items()):
        hi = e.value.get("max_age")
        bands.append(
            AgeBand(
                scope=scope,
                min_age=_int(e.value.get("min_age"), f"{e.ref()} min_age"),
                max_age=None if hi is None else _int(hi, f"{e.ref()} max_age"),
                fen=_int(e.value.get("fen"), f"{e.ref()} fen"),
                ref=e.ref(),
            )
        )
    levels = []
    for scope, e in sorted(snapshot.scopes(DISABILITY_KEY).items()):
        cats = e.value.get("categories")
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            raise AllowancePolicyInvalid(f"{e.ref()} categories is not a list of category codes: {cats!r}")
        if not scope.isdigit():
            raise AllowancePolicyInvalid(f"{e.ref()}: the scope must be an assessment level (0-4)")
        levels.append(
            LevelRate(
                level=int(scope),
                fen=_int(e.value.get("fen"), f"{e.ref()} fen"),
                categories=frozenset(cats),
                ref=e.ref(),
            )
        )
    backpay = snapshot.entry(BACKPAY_KEY)
    return AllowancePolicy(
        bands=tuple(bands),
        levels=tuple(levels),
        backpay_months=max(0, _int(backpay.value.get("months"), f"{backpay.ref()} months")),
        refs=(*(b.ref for b in bands), *(r.ref for r in levels), backpay.ref()),
    )


# --- One elder, one month ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entitlement:
    """What an elder is entitled to in a month: the band (old age) or level (disability) as the
    policy scope names it, the amount in fen, and the policy row applied."""

    band: str
    fen: int
    policy_ref: str


@dataclass(frozen=True, slots=True)
class _Judgement:
    entitlement: Entitlement | None
    refusal: _Refusal | None = None
    # The day the refusal's cause took effect, when there is one (death, move, expiry, end).
    event_on: dt.date | None = None


def _judge(
    kind: AllowanceKind,
    facts: ElderFacts,
    month: dt.date,
    policy: AllowancePolicy,
    *,
    ignore_registration: bool = False,
) -> _Judgement:
    day = facts_day(month)
    if facts.status in ENDED_STATUSES and facts.status_on is not None and facts.status_on <= day:
        refusal = _Refusal.DECEASED if facts.status == ElderStatus.DECEASED.value else _Refusal.MOVED
        return _Judgement(None, refusal, facts.status_on)
    if not ignore_registration and facts.registered_on > day:
        return _Judgement(None, _Refusal.NOT_REGISTERED)
    if kind == AllowanceKind.OLD_AGE:
        band = policy.band_for(age_on(facts.birth_on, day))
        if band is None:
            return _Judgement(None, _Refusal.NO_BAND)
        return _Judgement(Entitlement(band.scope, band.fen, band.ref))
    return _judge_disability(facts, day, policy)


def _judge_disability(facts: ElderFacts, day: dt.date, policy: AllowancePolicy) -> _Judgement:
    made = [a for a in facts.assessments if a.assessed_on <= day]
    if not made:
        return _Judgement(None, _Refusal.NO_ASSESSMENT)
    # The latest assessment speaks for the elder: a reassessment supersedes the one before.
    latest = max(made, key=lambda a: (a.assessed_on, a.valid_until, a.level))
    if latest.valid_until < day:
        return _Judgement(None, _Refusal.NO_ASSESSMENT, latest.valid_until)
    rate = policy.rate_for(latest.level)
    if rate is None:
        return _Judgement(None, _Refusal.LEVEL_NOT_PAID, latest.assessed_on)
    held = [c for c in facts.categories if c.category in rate.categories]
    if not any(c.holds_on(day) for c in held):
        ended = [c.valid_to for c in held if c.valid_to is not None and c.valid_to < day]
        return _Judgement(None, _Refusal.NO_CATEGORY, max(ended, default=None))
    return _Judgement(Entitlement(str(rate.level), rate.fen, rate.ref))


def entitlement(
    kind: AllowanceKind, facts: ElderFacts, month: dt.date, policy: AllowancePolicy
) -> Entitlement | None:
    """What ``facts`` entitle the elder to in ``month`` under ``policy`` (the policy valid on the
    month's first day), or ``None``."""
    return _judge(kind, facts, month, policy).entitlement


# --- The roster -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaidBefore:
    """An elder paid in the month before: what the previous roster says (band or level)."""

    elder_id: int
    district_id: int
    band: str


@dataclass(frozen=True, slots=True)
class RosterLine:
    """One elder's line of a month's roster (integer fen). A stopped line pays 0 and carries the
    band it paid before; ``event_on`` dates the cause where there is one (death, move, end)."""

    elder_id: int
    district_id: int
    change: Change
    reason: Reason
    band: str
    monthly_fen: int
    backpay_months: int = 0
    backpay_fen: int = 0
    previous_band: str | None = None
    event_on: dt.date | None = None
    policy_ref: str | None = None
    backpay_refs: tuple[str, ...] = field(default=())

    @property
    def amount_fen(self) -> int:
        """What this line pays: the month's allowance plus the back-pay."""
        return self.monthly_fen + self.backpay_fen

    @property
    def paid(self) -> bool:
        return self.change != Change.STOPPED


_STOP_REASONS: Final = {
    _Refusal.DECEASED: Reason.DECEASED,
    _Refusal.MOVED: Reason.MOVED,
    _Refusal.NO_ASSESSMENT: Reason.ASSESSMENT_EXPIRED,
    _Refusal.LEVEL_NOT_PAID: Reason.LEVEL_NOT_PAID,
    _Refusal.NO_CATEGORY: Reason.CATEGORY_ENDED,
}
_START_REASONS: Final = {
    _Refusal.NO_BAND: Reason.TURNED_AGE,
    _Refusal.NO_ASSESSMENT: Reason.ASSESSED,
    _Refusal.LEVEL_NOT_PAID: Reason.ASSESSED,
    _Refusal.NO_CATEGORY: Reason.CATEGORY_GRANTED,
}


def policies_needed(month: dt.date, backpay_months: int) -> list[dt.date]:
    """The months whose policy :func:`roster` needs: ``month`` and the ``max(1, backpay_months)``
    months before it (the month before decides additions when no roster of it is stored)."""
    return [add_months(month, -k) for k in range(max(1, backpay_months), -1, -1)]


def _backpay(
    kind: AllowanceKind,
    facts: ElderFacts,
    month: dt.date,
    policies: Mapping[dt.date, AllowancePolicy],
) -> tuple[int, int, tuple[str, ...]]:
    """Months owed to an elder registered in the month before ``month``, their total in fen and the
    policy rows applied: each month of the window in which the elder was entitled, registration
    aside, at that month's amount."""
    if not facts_day(add_months(month, -1)) < facts.registered_on <= facts_day(month):
        return 0, 0, ()
    months = fen = 0
    refs: list[str] = []
    for k in range(policies[month].backpay_months, 0, -1):  # oldest first
        earlier = add_months(month, -k)
        owed = _judge(kind, facts, earlier, policies[earlier], ignore_registration=True).entitlement
        if owed is not None:
            months += 1
            fen += owed.fen
            refs.append(f"{month_label(earlier)}:{owed.policy_ref}")
    return months, fen, tuple(refs)


def _line(
    kind: AllowanceKind,
    facts: ElderFacts,
    month: dt.date,
    policies: Mapping[dt.date, AllowancePolicy],
    before: PaidBefore | None,
) -> RosterLine | None:
    now = _judge(kind, facts, month, policies[month])
    got = now.entitlement
    if got is None:
        if before is None:
            return None
        stop = _STOP_REASONS.get(now.refusal) if now.refusal else None
        return RosterLine(
            facts.elder_id,
            facts.district_id,
            Change.STOPPED,
            stop or Reason.NO_LONGER_ELIGIBLE,
            band=before.band,
            monthly_fen=0,
            previous_band=before.band,
            event_on=now.event_on,
        )
    if before is not None:
        if before.band == got.band:
            change, reason = Change.CONTINUED, Reason.CONTINUED
        else:
            change = Change.CHANGED
            reason = Reason.BAND_CHANGED if kind == AllowanceKind.OLD_AGE else Reason.LEVEL_CHANGED
        return RosterLine(
            facts.elder_id,
            facts.district_id,
            change,
            reason,
            band=got.band,
            monthly_fen=got.fen,
            previous_band=before.band,
            policy_ref=got.policy_ref,
        )
    months, fen, refs = _backpay(kind, facts, month, policies)
    return RosterLine(
        facts.elder_id,
        facts.district_id,
        Change.ADDED,
        _why_added(kind, facts, month, policies, backpay_months=months),
        band=got.band,
        monthly_fen=got.fen,
        backpay_months=months,
        backpay_fen=fen,
        policy_ref=got.policy_ref,
        backpay_refs=refs,
    )


def _why_added(
    kind: AllowanceKind,
    facts: ElderFacts,
    month: dt.date,
    policies: Mapping[dt.date, AllowancePolicy],
    *,
    backpay_months: int,
) -> Reason:
    """Why an elder not paid the month before is paid in ``month``: what stood in the way then."""
    if backpay_months:
        return Reason.LATE_REGISTRATION
    last = add_months(month, -1)
    then = _judge(kind, facts, last, policies[last], ignore_registration=True)
    if then.entitlement is not None:
        # Entitled last month but for the registration: registered then (or paid by no roster).
        return Reason.REGISTERED if facts.registered_on > facts_day(last) else Reason.RESUMED
    start = _START_REASONS.get(then.refusal) if then.refusal else None
    return start or Reason.RESUMED


def previous_from_facts(
    kind: AllowanceKind, month: dt.date, facts: Iterable[ElderFacts], policy: AllowancePolicy
) -> dict[int, PaidBefore]:
    """Who these rules pay in ``month`` (under that month's ``policy``): the month before's payees
    when no roster of it is stored."""
    out: dict[int, PaidBefore] = {}
    for f in facts:
        got = entitlement(kind, f, month, policy)
        if got is not None:
            out[f.elder_id] = PaidBefore(f.elder_id, f.district_id, got.band)
    return out


def roster(
    kind: AllowanceKind,
    month: dt.date,
    facts: Iterable[ElderFacts],
    policies: Mapping[dt.date, AllowancePolicy],
    previous: Mapping[int, PaidBefore],
) -> list[RosterLine]:
    """The roster of ``month``: a line for every elder entitled in it (with back-pay when registered
    late) and a stopped line for every elder of ``previous`` no longer entitled, ordered by district
    and elder. ``policies`` holds the policy of each month of :func:`policies_needed`; ``facts``
    must include every elder of ``previous`` (one missing is stopped as no longer eligible)."""
    month = month_start(month)
    missing = [m for m in policies_needed(month, policies[month].backpay_months) if m not in policies]
    if missing:
        raise ValueError(f"no policy for {', '.join(month_label(m) for m in missing)}")
    lines: list[RosterLine] = []
    seen: set[int] = set()
    for f in facts:
        if f.elder_id in seen:
            raise ValueError(f"elder {f.elder_id} given twice")
        seen.add(f.elder_id)
        line = _line(kind, f, month, policies, previous.get(f.elder_id))
        if line is not None:
            lines.append(line)
    for gone in previous.values():
        if gone.elder_id not in seen:
            lines.append(
                RosterLine(
                    gone.elder_id,
                    gone.district_id,
                    Change.STOPPED,
                    Reason.NO_LONGER_ELIGIBLE,
                    band=gone.band,
                    monthly_fen=0,
                    previous_band=gone.band,
                )
            )
    lines.sort(key=lambda x: (x.district_id, x.elder_id))
    return lines


# --- Totals and the fingerprint -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RosterTotals:
    """Counts and sums (fen) of a set of lines; ``total_fen = monthly_fen + backpay_fen``."""

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


def totals(lines: Sequence[RosterLine]) -> RosterTotals:
    by_change = {c: sum(1 for x in lines if x.change == c) for c in Change}
    monthly = sum(x.monthly_fen for x in lines)
    backpay = sum(x.backpay_fen for x in lines)
    return RosterTotals(
        lines=len(lines),
        paid=sum(1 for x in lines if x.paid),
        added=by_change[Change.ADDED],
        changed=by_change[Change.CHANGED],
        continued=by_change[Change.CONTINUED],
        stopped=by_change[Change.STOPPED],
        backpay_months=sum(x.backpay_months for x in lines),
        monthly_fen=monthly,
        backpay_fen=backpay,
        total_fen=monthly + backpay,
    )


def checksum(lines: Iterable[RosterLine]) -> str:
    """SHA-256 of the lines in a canonical form: equal for equal rosters, whatever their order."""
    canon = sorted(_canonical(x) for x in lines)
    return hashlib.sha256("\n".join(canon).encode()).hexdigest()


def _canonical(x: RosterLine) -> str:
    return json.dumps(
        [
            x.elder_id,
            x.district_id,
            x.change.value,
            x.reason.value,
            x.band,
            x.monthly_fen,
            x.backpay_months,
            x.backpay_fen,
            x.previous_band,
            x.event_on.isoformat() if x.event_on else None,
            x.policy_ref,
            list(x.backpay_refs),
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
