"""Dispatch's seed: the service catalogue's prices and requirements, the dispatch and visit-verification
policy defaults (DOMAIN §3, §5, §6), and dispatch's part of the demo data set.

:func:`seed_contracts` runs after the demo's own rows (``demo.seed``): without contracts no order could
be dispatched. Every provider without any contract yet is contracted, open-ended from
:data:`CONTRACTS_FROM`, for each catalogue service some caregiver of it is skilled in. Idempotent: a
provider that holds any contract (seeded before, or set through the API) is left alone. Then
:func:`seed_agreements` gives elders with an account of their own a signed service agreement with the
providers (with an admin account) serving them, so their standing orders can be placed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog
from sqlalchemy import any_, exists, func, literal, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import SHANGHAI
from core.identity.models import AppUser, Role
from core.policy import load_policy
from core.seed import POLICY_EPOCH, DomainSeed, PolicyDefault
from dispatch.models import (
    AgreementItem,
    AgreementParty,
    AgreementSignature,
    AgreementState,
    ProviderService,
    Service,
    ServiceAgreement,
    SignatureMethod,
)
from registry.models import Caregiver, Elder, ElderStatus, ProviderDistrict

log = structlog.get_logger(__name__)

# --- Services (DOMAIN §3) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    code: str
    name_zh: str
    name_en: str
    unit: str
    price_fen: int
    min_minutes: int | None
    certificate: str | None  # certificate kind required, if any
    max_cert_level: int | None  # 养老护理员 level required ("level 4 or above" = level <= 4)
    same_gender: bool  # same gender as the elder unless the elder allows otherwise


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("MEAL", "助餐", "Meal delivery", "meal", 1200, None, "health", None, False),
    ServiceSpec("CLEAN", "助洁", "Cleaning", "hour", 4000, 60, None, None, False),
    ServiceSpec("BATH", "助浴", "Bathing", "visit", 8000, 45, "eldercare_worker", 4, True),
    ServiceSpec("ESCORT", "助行", "Walking / outing escort", "hour", 3500, 60, None, None, False),
    ServiceSpec("MEDESC", "助医", "Escort to the doctor", "hour", 4000, 60, None, None, False),
    ServiceSpec("VISIT", "探访关爱", "Caring visit", "visit", 3000, 30, None, None, False),
    ServiceSpec("ERRAND", "委托代办", "Errands / shopping", "visit", 1500, None, None, None, False),
    ServiceSpec("CARE", "基础照护", "Basic nursing care", "hour", 6000, 60, "eldercare_worker", 4, False),
)
SERVICE_CODES: tuple[str, ...] = tuple(s.code for s in SERVICES)

# --- Policy defaults (DOMAIN §3, §5, §6), written to ``policy_value`` ---------------------------

_SRC_CATALOGUE = "DOMAIN §3 default catalogue [E]; process per GB/T 43153-2023 [R]"
_SRC_VERIFY = "DOMAIN §5 visit verification thresholds [E]"
_SRC_DISPATCH = "DOMAIN §6 dispatch norms [E]"
_SRC_CANCEL = "cancellation terms, project default [E] (not in DOMAIN)"
PRICE_POLICY = "service.price_fen"


def _catalogue_defaults() -> tuple[PolicyDefault, ...]:
    out: list[PolicyDefault] = []
    for s in SERVICES:
        out.append(
            PolicyDefault(
                PRICE_POLICY,
                s.code,
                {"fen": s.price_fen, "unit": s.unit, "min_minutes": s.min_minutes},
                _SRC_CATALOGUE,
            )
        )
        out.append(
            PolicyDefault(
                "service.requirement",
                s.code,
                {"certificate": s.certificate, "max_level": s.max_cert_level, "same_gender": s.same_gender},
                _SRC_CATALOGUE,
            )
        )
    return tuple(out)


# --- Start at risk (dispatch.start_risk / dispatch.start_watch) ---------------------------------
# An accepted visit goes to the operator queue when its caregiver has not set off and the travel from
# their last position (at most stale_position_seconds old; else from home, and then at the latest
# unlocated_seconds before the start) plus margin_seconds exceeds the time left to the start; starts
# more than lookahead_seconds ahead are not watched yet.
_START_RISK_DEFAULTS: tuple[PolicyDefault, ...] = (
    PolicyDefault(
        "dispatch.start_risk",
        "*",
        {
            "margin_seconds": 5 * 60,
            "stale_position_seconds": 10 * 60,
            "lookahead_seconds": 2 * 3600,
            "unlocated_seconds": 15 * 60,
        },
        "DOMAIN §6 start at risk → operator queue; thresholds [E]",
    ),
)

# --- Matching horizon and continuity (helper dispol, issue #10) ---------------------------------
# Read by dispatch.policies (MatchPolicy): until these were seeded they were constants in code.
_MATCHING_DEFAULTS: tuple[PolicyDefault, ...] = (
    # How far (travel time) real-time matching looks for a caregiver for an order that is not urgent;
    # urgent orders use dispatch.urgent_eta_max instead.
    PolicyDefault(
        "dispatch.max_eta",
        "*",
        {"seconds": 60 * 60},
        "search horizon for non-urgent orders, project default [E]; DOMAIN §6 sets only the urgent one",
    ),
    # This many of an elder's visits by one caregiver within dispatch.continuity_window give that
    # caregiver the full continuity term of the match score (fewer: proportionally less).
    PolicyDefault(
        "dispatch.continuity_saturation",
        "*",
        {"visits": 4},
        "DOMAIN §6 continuity of care; about one visit a week over the 30-day window [E]",
    ),
)

# --- The GB/T 43153 service process (intake → assessment → agreement → service) ------------------
# Which services need an ability assessment (GB/T 42195, DOMAIN §2) valid on the service day before
# they may be ordered (dispatch.prerequisites): the care services, which are planned from the
# assessed ability. ``*`` is the rule for a service with no row of its own (none required).
_SRC_PROCESS = "GB/T 43153-2023 process: ability assessment before care services [R]; which services [E]"
_ASSESSMENT_REQUIRED_FOR = frozenset({"CARE", "BATH"})
_PROCESS_DEFAULTS: tuple[PolicyDefault, ...] = (
    PolicyDefault("service.requires_assessment", "*", {"required": False}, _SRC_PROCESS),
    *(
        PolicyDefault(
            "service.requires_assessment",
            s.code,
            {"required": s.code in _ASSESSMENT_REQUIRED_FOR},
            _SRC_PROCESS,
        )
        for s in SERVICES
    ),
)


POLICY_DEFAULTS: tuple[PolicyDefault, ...] = (
    *_catalogue_defaults(),
    PolicyDefault("verification.checkin_radius", "urban", {"metres": 200}, _SRC_VERIFY),
    PolicyDefault("verification.checkin_radius", "rural", {"metres": 500}, _SRC_VERIFY),
    PolicyDefault("verification.min_onsite", "*", {"bp": 8000}, _SRC_VERIFY),
    PolicyDefault("verification.signoff_window", "*", {"seconds": 24 * 3600}, _SRC_VERIFY),
    # The time element of EVV: a check-in this long before the scheduled start, or after the latest
    # start promised (the order's window end), is an exception.
    PolicyDefault("verification.checkin_early", "*", {"seconds": 30 * 60}, _SRC_VERIFY),
    PolicyDefault("verification.checkin_late", "*", {"seconds": 30 * 60}, _SRC_VERIFY),
    # After this many wrong sign-off PINs for one visit, PIN sign-off of it is refused for a while:
    # a 6-digit PIN cannot be guessed by trying (family confirmation still works).
    PolicyDefault(
        "verification.signoff_pin",
        "*",
        {"max_failures": 5, "lock_minutes": 15},
        "sign-off PIN guessing limit [E]",
    ),
    PolicyDefault("verification.callback_sample", "*", {"bp": 1000}, _SRC_VERIFY),
    PolicyDefault(
        "dispatch.urgent_eta_max", "urban", {"seconds": 15 * 60}, _SRC_DISPATCH + "; [R] 15-min circle"
    ),
    PolicyDefault("dispatch.urgent_eta_max", "rural", {"seconds": 30 * 60}, _SRC_DISPATCH),
    # The 15-minute home-care circle: for an urban elder's visit booked for a set time, caregivers
    # within this straight-line distance all get the full travel term of the match score, so
    # continuity, workload and rating choose among them (dispatch.matching.walk_circle_m). Urgent
    # and as-soon-as-possible orders have no circle; no rural circle is seeded.
    PolicyDefault("dispatch.walk_circle", "urban", {"metres": 1000}, "DOMAIN §6 一刻钟居家养老服务圈 [R]"),
    PolicyDefault("dispatch.speed", "urban", {"kmh": 15}, _SRC_DISPATCH),
    PolicyDefault("dispatch.speed", "rural", {"kmh": 30}, _SRC_DISPATCH),
    PolicyDefault("dispatch.detour", "*", {"bp": 13_000}, _SRC_DISPATCH),
    PolicyDefault("dispatch.offer_window", "*", {"seconds": 60}, _SRC_DISPATCH),
    PolicyDefault("dispatch.max_offers", "*", {"count": 3}, _SRC_DISPATCH),
    PolicyDefault("dispatch.continuity_window", "*", {"days": 30}, _SRC_DISPATCH),
    # The call centre undertakes to assign an order from its queue (nobody could take it at once)
    # within this time; the person ordering is told so.
    PolicyDefault("dispatch.operator_pickup", "*", {"seconds": 15 * 60}, "operator queue response time [E]"),
    # The day planner's search budget per provider: min + per visit, capped (wall milliseconds);
    # from escalate_at_minute (20:00) the evening before, orders no plan placed go to the operators.
    PolicyDefault(
        "dispatch.dayplan",
        "*",
        {"max_ms": 5000, "min_ms": 200, "per_visit_ms": 20, "escalate_at_minute": 1200},
        "planner budget; unplaced orders go to the operator queue from 20:00 the evening before [E]",
    ),
    # A customer cancelling an accepted visit less than this before its start pays the late fee.
    PolicyDefault("dispatch.cancel_notice", "*", {"seconds": 2 * 3600}, _SRC_CANCEL),
    PolicyDefault("dispatch.late_cancel_fee", "*", {"fen": 1000}, _SRC_CANCEL),
    # How far ahead a visit may be ordered, and how far back a recurring series may start
    # (dispatch.orders; beyond these a request is a 422 naming the field).
    PolicyDefault("dispatch.order_horizon", "*", {"days": 180}, "ordering horizon, project default [E]"),
    # A window may start this little in the past (a request in flight) and last at most this long.
    PolicyDefault(
        "dispatch.order_window",
        "*",
        {"past_grace_minutes": 5, "max_hours": 12},
        "order window bounds, project default [E]",
    ),
    PolicyDefault(
        "dispatch.series_lookback", "*", {"days": 31}, "series start lookback, project default [E]"
    ),
    # Soft-preference weights of matching (DOMAIN §6) and of the provider quality score [E].
    PolicyDefault(
        "dispatch.match_weights",
        "*",
        {"travel_bp": 5000, "continuity_bp": 2500, "fairness_bp": 1500, "rating_bp": 1000},
        _SRC_DISPATCH,
    ),
    *_MATCHING_DEFAULTS,
    PolicyDefault(
        "dispatch.quality_weights",
        "*",
        {"rating_bp": 3500, "callback_bp": 2500, "exceptions_bp": 2000, "complaints_bp": 2000},
        "DOMAIN §3/§5 evaluation [E]",
    ),
    *_START_RISK_DEFAULTS,
    *_PROCESS_DEFAULTS,
)

CONTRACTS_FROM = POLICY_EPOCH  # fixed, before any demo day, like the dated catalogue prices


async def seed_contracts(session: AsyncSession, *, today: dt.date) -> dict[str, int]:
    """Contract the providers that have none; returns the row count of ``provider_service``."""
    uncontracted = ~exists().where(ProviderService.provider_id == Caregiver.provider_id)
    skilled = (
        select(Caregiver.provider_id, Service.code, literal(CONTRACTS_FROM).label("valid_from"))
        .join(Service, Service.skill == any_(Caregiver.skills))
        .where(uncontracted)
        .distinct()
    )
    added = await session.execute(
        pg_insert(ProviderService)
        .from_select(["provider_id", "service_code", "valid_from"], skilled)  # valid_to: null, open-ended
        .on_conflict_do_nothing()
        .returning(ProviderService.provider_id)
    )
    providers = len(set(added.scalars()))
    total = int(await session.scalar(select(func.count()).select_from(ProviderService)) or 0)
    log.info("seed.dispatch.contracts", today=today.isoformat(), providers_contracted=providers, total=total)
    return {"provider_service": total}


# --- Demo service agreements (the service process's signed agreement) ----------------------------------


async def seed_agreements(session: AsyncSession, *, today: dt.date) -> dict[str, int]:
    """Every elder with an account of their own and no agreement yet gets one with each provider that
    has an admin account and serves the elder's district: signed on paper by both sides, from
    ``today`` for a year, for every service the provider is contracted for today, at today's catalogue
    prices. In the demo: the demo elder with the demo provider, so its standing orders can be placed.
    Idempotent; returns the row count of ``service_agreement``."""
    with_account = select(AppUser.elder_id).where(
        AppUser.role == Role.ELDER.value, AppUser.elder_id.is_not(None)
    )
    admins = select(AppUser.provider_id).where(
        AppUser.role == Role.PROVIDER_ADMIN.value, AppUser.provider_id.is_not(None)
    )
    pairs = (
        await session.execute(
            select(Elder.id, ProviderDistrict.provider_id)
            .join(ProviderDistrict, ProviderDistrict.district_id == Elder.district_id)
            .where(
                Elder.id.in_(with_account),
                Elder.status == ElderStatus.ACTIVE.value,
                ProviderDistrict.provider_id.in_(admins),
                ~exists().where(ServiceAgreement.elder_id == Elder.id),
            )
            .order_by(Elder.id, ProviderDistrict.provider_id)
        )
    ).all()
    prices = await load_policy(session, day=today, prefixes=[PRICE_POLICY], defaults=POLICY_DEFAULTS)
    signed_at = dt.datetime.combine(today, dt.time(9), SHANGHAI)
    drafts: list[ServiceAgreement] = []
    for elder_id, provider_id in pairs:
        codes = sorted(
            await session.scalars(
                select(ProviderService.service_code).where(
                    ProviderService.provider_id == provider_id,
                    ProviderService.valid_from <= today,
                    or_(ProviderService.valid_to.is_(None), ProviderService.valid_to >= today),
                )
            )
        )
        if not codes:
            continue
        entries = {code: prices.entry(PRICE_POLICY, code) for code in codes}
        drafts.append(
            ServiceAgreement(
                elder_id=elder_id,
                provider_id=provider_id,
                valid_from=today,
                valid_to=today + dt.timedelta(days=364),
                price_list_on=today,
                state=AgreementState.DRAFT.value,
                created_at=signed_at,
                updated_at=signed_at,
                items=[
                    AgreementItem(
                        service_code=code,
                        price_fen=int(e.number("fen")),
                        unit=e.text("unit"),
                        price_ref=e.ref(),
                    )
                    for code, e in entries.items()
                ],
                signatures=[
                    AgreementSignature(
                        party=party.value,
                        signer_name="演示签署人",
                        method=SignatureMethod.PAPER_SCAN.value,
                        document_ref=f"demo/agreement-{elder_id}-{provider_id}-{party.value}.pdf",
                        signed_at=signed_at,
                    )
                    for party in (AgreementParty.ELDER, AgreementParty.PROVIDER)
                ],
            )
        )
    session.add_all(drafts)
    await session.flush()  # drafts with their items: the terms are frozen once signed
    for draft in drafts:
        draft.state, draft.signed_at = AgreementState.SIGNED.value, signed_at
    await session.flush()
    total = int(await session.scalar(select(func.count()).select_from(ServiceAgreement)) or 0)
    log.info("seed.dispatch.agreements", today=today.isoformat(), added=len(drafts), total=total)
    return {"service_agreement": total}


SEED = DomainSeed(policies=POLICY_DEFAULTS)
