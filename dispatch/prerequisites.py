"""What must be in place before a service is ordered, after GB/T 43153-2023's process (intake → ability
assessment → signed service agreement → preparation → delivery → evaluation): checked where orders are
created, and shown in order and visit details.

* **Ability assessment.** A service whose dated policy ``service.requires_assessment[<code>]`` (field
  ``required``; scope ``*`` for a code with no row of its own) requires it — CARE and BATH as seeded —
  is ordered only for an elder with an ability assessment (GB/T 42195, DOMAIN §2) valid on the service
  day, ``assessed_on`` ≤ day ≤ ``valid_until``. Otherwise 409 ``dispatch.assessment_required``, whose
  ``missing`` says what is missing: ``none_on_file``, ``expired`` (the latest one had expired by
  today), ``expires_before_service`` (valid today, but not on the service day) or
  ``assessed_after_service`` (only assessments dated after the service day). This applies to every
  order, one-off or of a series.
* **Service agreement.** A recurring series is a standing order with one provider: it is placed (and
  resumed) only when signed service agreements between the elder and that provider cover the service
  on every remaining day of the series; otherwise 409 ``dispatch.agreement_required`` naming the
  provider, the service and the first day not covered. One-off orders are on-demand purchases, offered
  to any provider contracted for the service (DOMAIN §6): they need no agreement. The series' orders
  go only to its provider's caregivers (:func:`series_provider_allows`).

An agreement covers a day when both sides have signed it, the day lies in its dates, and it was not
terminated with effect on or before that day. The rules (:func:`assessment_check`,
:func:`covering_term`, :func:`first_uncovered`) are pure, over facts read in one query each.

The lowest layer of ``dispatch``: it reads tables and policy, and imports no use case.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    String,
    Text,
    bindparam,
    cast,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import SHANGHAI
from core.errors import Conflict, Invalid
from core.policy import PolicyValue, load_policy, snapshot_from_rows, valid_on
from dispatch.models import (
    AgreementItem,
    AgreementState,
    RecurringOrder,
    ServiceAgreement,
    ServiceOrder,
)
from dispatch.recurrence import expand
from dispatch.seed import POLICY_DEFAULTS
from registry.models import Assessment

ASSESSMENT_POLICY = "service.requires_assessment"


class AssessmentRequired(Conflict):
    """The service needs an ability assessment of the elder valid on the service day, and there is none."""

    code = "dispatch.assessment_required"
    title = "Ability assessment required"


class AgreementRequired(Conflict):
    """No signed service agreement with the provider covers the service on a day of the series."""

    code = "dispatch.agreement_required"
    title = "Service agreement required"


# --- Ability assessment ---------------------------------------------------------------------------


class AssessmentMissing(enum.StrEnum):
    NONE_ON_FILE = "none_on_file"
    EXPIRED = "expired"  # the latest assessment before the service day had expired by today
    EXPIRES_BEFORE_SERVICE = "expires_before_service"  # valid today, no longer on the service day
    ASSESSED_AFTER_SERVICE = "assessed_after_service"  # every assessment is dated after the service day


@dataclass(frozen=True, slots=True)
class AssessmentFact:
    id: int
    assessed_on: dt.date
    valid_until: dt.date  # inclusive
    final_level: int

    def valid_on(self, day: dt.date) -> bool:
        return self.assessed_on <= day <= self.valid_until


@dataclass(frozen=True, slots=True)
class AssessmentCheck:
    """Whether ``service_code`` on ``day`` needs an assessment (``required``, by the policy row
    ``policy_ref``), the assessment valid that day if any (the latest assessed), and otherwise why
    none is (``missing``, with the assessment it is about in ``nearest``)."""

    elder_id: int
    service_code: str
    day: dt.date
    required: bool
    policy_ref: str
    valid: AssessmentFact | None
    missing: AssessmentMissing | None
    nearest: AssessmentFact | None = None

    @property
    def ok(self) -> bool:
        return not self.required or self.valid is not None

    @property
    def status(self) -> str:
        """``valid``, or what is missing (``none_on_file`` …); also when the service needs none."""
        return "valid" if self.missing is None else self.missing.value

    def explain(self) -> str:
        """Why the order is refused, in English, naming what is missing."""
        who, day, code = f"Elder {self.elder_id}", self.day.isoformat(), self.service_code
        need = f"{code} needs an ability assessment valid on the service day {day} (policy {self.policy_ref})"
        near = self.nearest
        if self.missing == AssessmentMissing.NONE_ON_FILE or near is None:
            return f"{need}; elder {self.elder_id} has none on file. Record one first."
        if self.missing == AssessmentMissing.EXPIRED:
            return (
                f"{need}; {who}'s latest assessment ({near.assessed_on.isoformat()}) expired after "
                f"{near.valid_until.isoformat()}. Re-assess first."
            )
        if self.missing == AssessmentMissing.EXPIRES_BEFORE_SERVICE:
            return (
                f"{need}; {who}'s assessment ({near.assessed_on.isoformat()}) is valid only until "
                f"{near.valid_until.isoformat()}, before the service day. Re-assess first."
            )
        return f"{need}; {who}'s assessments date from {near.assessed_on.isoformat()}, after the service day."

    def error(self) -> AssessmentRequired:
        near = self.nearest
        return AssessmentRequired(
            self.explain(),
            elder_id=self.elder_id,
            service_code=self.service_code,
            service_day=self.day.isoformat(),
            missing=self.status,
            assessed_on=None if near is None else near.assessed_on.isoformat(),
            valid_until=None if near is None else near.valid_until.isoformat(),
            policy=self.policy_ref,
        )


def assessment_check(
    facts: Iterable[AssessmentFact],
    *,
    elder_id: int,
    service_code: str,
    day: dt.date,
    today: dt.date,
    required: bool,
    policy_ref: str,
) -> AssessmentCheck:
    """The assessment of ``facts`` valid on ``day`` (the latest assessed), or why there is none. Pure."""
    known = sorted(facts, key=lambda f: (f.assessed_on, f.id))
    valid = [f for f in known if f.valid_on(day)]
    if valid:
        return AssessmentCheck(elder_id, service_code, day, required, policy_ref, valid[-1], None, valid[-1])
    before = [f for f in known if f.assessed_on <= day]
    if before:
        latest = before[-1]
        why = (
            AssessmentMissing.EXPIRED
            if latest.valid_until < today
            else AssessmentMissing.EXPIRES_BEFORE_SERVICE
        )
        return AssessmentCheck(elder_id, service_code, day, required, policy_ref, None, why, latest)
    if known:
        after = AssessmentMissing.ASSESSED_AFTER_SERVICE
        return AssessmentCheck(elder_id, service_code, day, required, policy_ref, None, after, known[0])
    return AssessmentCheck(
        elder_id, service_code, day, required, policy_ref, None, AssessmentMissing.NONE_ON_FILE
    )


async def assessment_facts(session: AsyncSession, elder_id: int) -> list[AssessmentFact]:
    """Every ability assessment of the elder (a handful), oldest first."""
    rows = await session.execute(
        select(Assessment.id, Assessment.assessed_on, Assessment.valid_until, Assessment.final_level)
        .where(Assessment.elder_id == elder_id)
        .order_by(Assessment.assessed_on, Assessment.id)
    )
    return [AssessmentFact(int(i), a, v, int(lv)) for i, a, v, lv in rows]


async def assessment_rule(session: AsyncSession, service_code: str, day: dt.date) -> tuple[bool, str]:
    """Whether ``service_code`` needs an assessment on ``day`` (policy ``service.requires_assessment``
    of that day, the service's scope else ``*``; the seeded defaults when no row is valid), with the
    reference of the policy row applied."""
    policy = await load_policy(session, day=day, prefixes=[ASSESSMENT_POLICY], defaults=POLICY_DEFAULTS)
    entry = policy.entry_or_star(ASSESSMENT_POLICY, service_code)
    return entry.value.get("required") is True, entry.ref()


async def check_assessment(
    session: AsyncSession,
    *,
    elder_id: int,
    service_code: str,
    day: dt.date,
    today: dt.date,
    facts: Sequence[AssessmentFact] | None = None,
) -> AssessmentCheck:
    """:func:`assessment_check` for the elder, with the policy of ``day`` (``facts``: the elder's
    assessments when already read)."""
    required, ref = await assessment_rule(session, service_code, day)
    if facts is None:
        facts = await assessment_facts(session, elder_id) if required else []
    return assessment_check(
        facts,
        elder_id=elder_id,
        service_code=service_code,
        day=day,
        today=today,
        required=required,
        policy_ref=ref,
    )


async def require_assessment(
    session: AsyncSession, *, elder_id: int, service_code: str, day: dt.date, today: dt.date
) -> None:
    """409 ``dispatch.assessment_required`` unless the service needs no assessment on ``day`` or the
    elder has one valid that day."""
    check = await check_assessment(
        session, elder_id=elder_id, service_code=service_code, day=day, today=today
    )
    if not check.ok:
        raise check.error()


# --- Service agreements ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgreementTerm:
    """A signed agreement's cover of one service: ``valid_from``..``valid_to`` (inclusive), cut short
    by a termination taking effect on ``ends_on`` (the first day no longer covered)."""

    agreement_id: int
    provider_id: int
    valid_from: dt.date
    valid_to: dt.date
    ends_on: dt.date | None = None

    def covers(self, day: dt.date) -> bool:
        return self.valid_from <= day <= self.valid_to and (self.ends_on is None or day < self.ends_on)

    @property
    def last_day(self) -> dt.date:
        """The last day covered (the day before its valid_from when it ends before starting)."""
        if self.ends_on is None:
            return self.valid_to
        return min(self.valid_to, self.ends_on - dt.timedelta(days=1))


def covering_term(
    terms: Iterable[AgreementTerm], day: dt.date, provider_id: int | None = None
) -> AgreementTerm | None:
    """The term covering ``day`` (with ``provider_id``, if given) that runs longest. Pure."""
    found = [t for t in terms if t.covers(day) and (provider_id is None or t.provider_id == provider_id)]
    return max(found, key=lambda t: (t.last_day, t.agreement_id)) if found else None


def first_uncovered(
    terms: Sequence[AgreementTerm], days: Iterable[dt.date], provider_id: int
) -> dt.date | None:
    """The first of ``days`` that no term with ``provider_id`` covers (renewals chain), else None. Pure."""
    for day in sorted(set(days)):
        if covering_term(terms, day, provider_id) is None:
            return day
    return None


def covered_clause() -> tuple[ColumnElement[bool], ...]:
    """Conditions on ``service_agreement``: signed by both sides (and possibly terminated since)."""
    return (
        ServiceAgreement.signed_at.is_not(None),
        ServiceAgreement.state.in_((AgreementState.SIGNED.value, AgreementState.TERMINATED.value)),
    )


async def signed_terms(
    session: AsyncSession, *, elder_id: int, service_code: str, provider_id: int | None = None
) -> list[AgreementTerm]:
    """The signed agreements of the elder (with ``provider_id``, if given) covering ``service_code``."""
    stmt = (
        select(
            ServiceAgreement.id,
            ServiceAgreement.provider_id,
            ServiceAgreement.valid_from,
            ServiceAgreement.valid_to,
            ServiceAgreement.terminated_on,
        )
        .join(AgreementItem, AgreementItem.agreement_id == ServiceAgreement.id)
        .where(
            ServiceAgreement.elder_id == elder_id,
            AgreementItem.service_code == service_code,
            *covered_clause(),
        )
        .order_by(ServiceAgreement.valid_from, ServiceAgreement.id)
    )
    if provider_id is not None:
        stmt = stmt.where(ServiceAgreement.provider_id == provider_id)
    return [AgreementTerm(int(i), int(p), f, t, e) for i, p, f, t, e in await session.execute(stmt)]


def agreement_required(
    *,
    elder_id: int,
    service_code: str,
    provider_id: int | None,
    day: dt.date,
    terms: Sequence[AgreementTerm],
    last_day: dt.date | None = None,
) -> AgreementRequired:
    """The 409 for a series whose ``day`` (its first day not covered) no signed agreement covers."""
    mine = [t for t in terms if provider_id is None or t.provider_id == provider_id]
    party = "any provider" if provider_id is None else f"provider {provider_id}"
    detail = (
        f"No signed service agreement between elder {elder_id} and {party} covers {service_code} on "
        f"{day.isoformat()}"
    )
    if last_day is not None and last_day != day:
        detail += f" (the series runs until {last_day.isoformat()})"
    if mine:
        covered = ", ".join(
            f"agreement {t.agreement_id}: {t.valid_from.isoformat()}..{t.last_day.isoformat()}" for t in mine
        )
        detail += f"; signed cover: {covered}"
    detail += (
        ". A recurring order needs one for each of its days: the provider drafts it "
        "(POST /api/v1/agreements) and both sides sign it."
    )
    return AgreementRequired(
        detail,
        elder_id=elder_id,
        provider_id=provider_id,
        service_code=service_code,
        day=day.isoformat(),
    )


async def agreed_provider(
    session: AsyncSession,
    *,
    elder_id: int,
    service_code: str,
    provider_id: int | None,
    days: Sequence[dt.date],
) -> int:
    """The provider a series on ``days`` is agreed with: ``provider_id``, or the only provider whose
    signed agreement covers the service on the first day; signed agreements with it must cover every
    one of ``days`` (renewals chain). 409 ``dispatch.agreement_required`` naming the first day not
    covered, 422 ``dispatch.provider_required`` when several providers could be meant."""
    terms = await signed_terms(session, elder_id=elder_id, service_code=service_code)
    first, last = min(days), max(days)
    if provider_id is None:
        agreed = sorted({t.provider_id for t in terms if t.covers(first)})
        if len(agreed) > 1:
            raise Invalid(
                f"Signed agreements with providers {agreed} cover {service_code} on {first.isoformat()}: "
                "say which one the series is with (provider_id).",
                code="dispatch.provider_required",
                field="provider_id",
                provider_ids=agreed,
            )
        if not agreed:
            raise agreement_required(
                elder_id=elder_id,
                service_code=service_code,
                provider_id=None,
                day=first,
                terms=terms,
                last_day=last,
            )
        provider_id = agreed[0]
    missing = first_uncovered(terms, days, provider_id)
    if missing is not None:
        raise agreement_required(
            elder_id=elder_id,
            service_code=service_code,
            provider_id=provider_id,
            day=missing,
            terms=terms,
            last_day=last,
        )
    return provider_id


def remaining_days(series: RecurringOrder, now: dt.datetime) -> list[dt.date]:
    """The Asia/Shanghai days of the series' occurrences from ``now`` on."""
    local_first = series.first_start_at.astimezone(SHANGHAI).replace(tzinfo=None)
    return [
        o.local_date
        for o in expand(
            series.rrule, first_start_local=local_first, duration_s=series.duration_s, window_from=now
        )
    ]


@dataclass(frozen=True, slots=True)
class SeriesCover:
    """The signed agreements between a series' elder and provider covering its service."""

    elder_id: int
    service_code: str
    provider_id: int
    terms: Sequence[AgreementTerm]

    def require(self, day: dt.date) -> None:
        """409 ``dispatch.agreement_required`` unless one of them covers ``day``."""
        if covering_term(self.terms, day) is None:
            raise agreement_required(
                elder_id=self.elder_id,
                service_code=self.service_code,
                provider_id=self.provider_id,
                day=day,
                terms=self.terms,
            )


async def series_cover(session: AsyncSession, series: RecurringOrder) -> SeriesCover | None:
    """The cover of the series' days (None for a series placed before agreements: no provider)."""
    if series.provider_id is None:
        return None
    terms = await signed_terms(
        session, elder_id=series.elder_id, service_code=series.service_code, provider_id=series.provider_id
    )
    return SeriesCover(series.elder_id, series.service_code, series.provider_id, terms)


def series_provider_allows(provider: Any) -> ColumnElement[bool]:
    """SQL over ``service_order``: the order may go to ``provider`` (a column or a value): it is no
    order of a series, or its series is agreed with that provider (or, placed before agreements, with
    none). Columns correlate to the enclosing statement at any depth."""
    bound = (
        select(RecurringOrder.provider_id)
        .where(RecurringOrder.id == ServiceOrder.recurring_order_id)
        .correlate_except(RecurringOrder)
        .scalar_subquery()
    )
    return or_(ServiceOrder.recurring_order_id.is_(None), func.coalesce(bound, provider) == provider)


# --- In an order's and a visit's details -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgreementCheck:
    """The agreement behind an order: ``required`` for an order of a series agreed with
    ``provider_id``; ``term`` the signed agreement covering the service day (for a one-off order,
    one with the provider that took it, if any)."""

    required: bool
    provider_id: int | None
    term: AgreementTerm | None

    @property
    def status(self) -> str:
        """``covered``, ``missing`` (required and not covered) or ``not_required``."""
        if self.term is not None:
            return "covered"
        return "missing" if self.required else "not_required"


@dataclass(frozen=True, slots=True)
class Prerequisites:
    agreement: AgreementCheck
    assessment: AssessmentCheck


async def prerequisites_of(
    session: AsyncSession,
    *,
    elder_id: int,
    service_code: str,
    day: dt.date,
    provider_id: int | None,
    recurring_order_id: int | None,
    today: dt.date,
) -> Prerequisites:
    """Both checks for an order (or its visit) of ``service_code`` on ``day``: the series' provider
    when it is of a series, else the provider that took it (``provider_id``). Their facts (the series'
    provider, the signed agreements, the assessment policy of the day, the elder's assessments) are
    read in one statement (:data:`_FACTS`), then judged by the same pure rules as elsewhere."""
    row = (
        await session.execute(
            _FACTS,
            {
                "elder_id": elder_id,
                "service_code": service_code,
                "provider_id": provider_id,
                "series_id": recurring_order_id,
                "day": day,
            },
        )
    ).one()
    required = False
    if row.bound is not None:
        required, provider_id = True, int(row.bound)
    term = None
    if provider_id is not None:
        terms = [
            AgreementTerm(*t)
            for t in _TERMS.decode(row.terms)
            if t[1] == provider_id  # the statement took the order's provider; a series' may differ
        ]
        term = covering_term(terms, day)
    policy = snapshot_from_rows(day, _POLICY_ROWS.decode(row.policy), POLICY_DEFAULTS)
    entry = policy.entry_or_star(ASSESSMENT_POLICY, service_code)
    assessment = assessment_check(
        [AssessmentFact(*f) for f in _FACTS_ROWS.decode(row.assessments)],  # shown even when none is needed
        elder_id=elder_id,
        service_code=service_code,
        day=day,
        today=today,
        required=entry.value.get("required") is True,
        policy_ref=entry.ref(),
    )
    return Prerequisites(AgreementCheck(required, provider_id, term), assessment)


def _json_list(*columns: Any) -> Any:
    """The rows as a JSON array of arrays (``[]`` when none), as text."""
    return func.coalesce(func.json_agg(func.json_build_array(*columns)), literal_column("'[]'::json"))


def _facts_statement() -> Any:
    """Built once: the facts of :func:`prerequisites_of` (parameters elder_id, service_code,
    provider_id, series_id, day) as one row of JSON arrays."""
    elder = bindparam("elder_id", type_=BigInteger)
    day = bindparam("day", type_=Date)
    bound = select(RecurringOrder.provider_id).where(
        RecurringOrder.id == bindparam("series_id", type_=BigInteger)
    )
    # The agreements of the elder and service with either provider that can matter: the order's (or
    # the visit's) and, for an order of a series, the series'.
    providers = (bindparam("provider_id", type_=BigInteger), bound.scalar_subquery())
    terms = (
        select(
            _json_list(
                ServiceAgreement.id,
                ServiceAgreement.provider_id,
                ServiceAgreement.valid_from,
                ServiceAgreement.valid_to,
                ServiceAgreement.terminated_on,
            )
        )
        .join(AgreementItem, AgreementItem.agreement_id == ServiceAgreement.id)
        .where(
            ServiceAgreement.elder_id == elder,
            AgreementItem.service_code == bindparam("service_code", type_=String),
            ServiceAgreement.provider_id.in_(providers),
            *covered_clause(),
        )
    )
    policy = select(
        _json_list(
            PolicyValue.key,
            PolicyValue.scope,
            PolicyValue.value,
            PolicyValue.valid_from,
            PolicyValue.valid_to,
        )
    ).where(PolicyValue.key.startswith(ASSESSMENT_POLICY, autoescape=True), *valid_on(day))
    assessments = select(
        _json_list(Assessment.id, Assessment.assessed_on, Assessment.valid_until, Assessment.final_level)
    ).where(Assessment.elder_id == elder)
    return select(
        bound.scalar_subquery().label("bound"),
        cast(terms.scalar_subquery(), Text).label("terms"),
        cast(policy.scalar_subquery(), Text).label("policy"),
        cast(assessments.scalar_subquery(), Text).label("assessments"),
    )


_FACTS: Final = _facts_statement()
_TERMS: Final = msgspec.json.Decoder(list[tuple[int, int, dt.date, dt.date, dt.date | None]])
_POLICY_ROWS: Final = msgspec.json.Decoder(list[tuple[str, str, dict[str, Any], dt.date, dt.date | None]])
_FACTS_ROWS: Final = msgspec.json.Decoder(list[tuple[int, dt.date, dt.date, int]])


async def order_prerequisites(
    session: AsyncSession, *, order: ServiceOrder, day: dt.date, today: dt.date
) -> Prerequisites:
    """:func:`prerequisites_of` an order whose visit is (to be) on ``day``."""
    return await prerequisites_of(
        session,
        elder_id=order.elder_id,
        service_code=order.service_code,
        day=day,
        provider_id=order.provider_id,
        recurring_order_id=order.recurring_order_id,
        today=today,
    )


async def require_series_provider(
    session: AsyncSession, *, order: ServiceOrder, caregiver_id: int, provider_id: int
) -> None:
    """409 ``dispatch.series_provider`` when the order is of a series agreed with another provider than
    ``provider_id`` (the caregiver's)."""
    if order.recurring_order_id is None:
        return
    agreed = await session.scalar(
        select(RecurringOrder.provider_id).where(RecurringOrder.id == order.recurring_order_id)
    )
    if agreed is not None and agreed != provider_id:
        raise Conflict(
            f"This order is of recurring order {order.recurring_order_id}, agreed with provider {agreed}; "
            f"caregiver {caregiver_id} works for provider {provider_id}.",
            code="dispatch.series_provider",
            provider_id=agreed,
        )
