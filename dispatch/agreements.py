"""Service agreements (服务协议, GB/T 43153-2023) between an elder, or a guardian acting for them, and a
provider: drafting, revising a draft, signing, terminating, listing and reading them.

States: ``draft`` → ``signed`` once every required party has signed → ``terminated``; a draft can be
terminated too (withdrawn). The required parties are the provider and the elder's side: the elder, or
the guardian named in the agreement (``guardian_id``, linked to the elder) signing for them.

Who does what (the routes' rules are the first gate; each use case checks the rest):

* **Draft**, and **revise a draft nobody has signed yet**: the provider admin, for its own provider and
  an active elder living in a district the provider serves. The services must be ones the provider is
  contracted for on the first day; each item quotes the catalogue price valid that day (policy
  ``service.price_fen``: fen, unit and the reference of the policy row), so the agreement records the
  price list it was signed under. It may not start in the past.
* **Sign** (:func:`signing_refusal`): the provider admin as ``provider`` — in the app, or a paper it
  signed — and recording the elder's or guardian's signed paper (``paper_scan`` with the scanned
  document's reference: the provider's staff collect paper signatures at intake); the elder in the app
  as ``elder`` when no guardian signs for them; the family member who is the agreement's guardian, in
  the app, as ``guardian``.
* **Terminate**, with a reason, taking effect today or on a later day of its term: a party — the
  provider admin, the elder, a family member of the elder. Orders of the elder's series with the
  provider that no signed agreement covers any more and that no caregiver holds yet are cancelled, free
  of charge; those a caregiver holds are listed (cancel each on its own, with its notice rule).
* **Read**: :func:`registry.scope.can_see_agreement`; an agreement out of scope is a 404.

Every change is audited (entity ``service_agreement``). Each change first locks the agreement's row
(``SELECT … FOR UPDATE``), so two parties signing at once both count, one party signing twice is
refused, and a draft is never revised while someone signs it; the unique (agreement, party) index
backs this up. The terms of an agreement that is no longer a draft never change (a trigger refuses it
too): amending one is drafting a new one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.clock import local_date
from core.crud import Paged, Window, check_range, in_key_range, not_found, page_of, unknown_reference
from core.errors import Conflict, Forbidden, Invalid
from core.identity.authz import Principal
from core.identity.models import Role
from core.policy import load_policy
from core.types import UNSET, Unset, given_or
from dispatch.common import day_start, mark_day_dirty, move
from dispatch.models import (
    AgreementItem,
    AgreementParty,
    AgreementSignature,
    AgreementState,
    Offer,
    OfferState,
    ProviderService,
    RecurringOrder,
    Service,
    ServiceAgreement,
    ServiceOrder,
    SignatureMethod,
)
from dispatch.prerequisites import AgreementTerm, covering_term, signed_terms
from dispatch.seed import POLICY_DEFAULTS, PRICE_POLICY
from dispatch.states import NOT_DISPATCHED, OrderState
from registry.models import Elder, ElderGuardian, ElderStatus, ProviderDistrict
from registry.scope import agreement_clause

log = structlog.get_logger(__name__)

ENTITY = "service_agreement"
# Orders a caregiver holds: ending the agreement keeps them (they are listed instead).
HELD = (OrderState.ACCEPTED.value, OrderState.EN_ROUTE.value)


@dataclass(frozen=True, slots=True)
class AgreementTerms:
    """What a draft says: the elder (and the guardian signing for them, if any), the services, and the
    term ``valid_from``..``valid_to`` (inclusive, Asia/Shanghai dates)."""

    elder_id: int
    services: tuple[str, ...]
    valid_from: dt.date
    valid_to: dt.date
    guardian_id: int | None = None


@dataclass(frozen=True, slots=True)
class TermChanges:
    """A revision of a draft: the fields given replace the draft's (``UNSET``: left as they are)."""

    services: tuple[str, ...] | Unset = UNSET
    valid_from: dt.date | Unset = UNSET
    valid_to: dt.date | Unset = UNSET
    guardian_id: int | Unset | None = UNSET


@dataclass(frozen=True, slots=True)
class SignatureIn:
    """A signature to record: for ``paper_scan`` the name on the paper and the scan's reference."""

    party: AgreementParty
    method: SignatureMethod = SignatureMethod.IN_APP
    signer_name: str | None = None
    document_ref: str | None = None


@dataclass(frozen=True, slots=True)
class AgreementEnd:
    agreement: ServiceAgreement
    cancelled_order_ids: list[int]  # series orders no longer covered that no caregiver held
    kept_order_ids: list[int]  # series orders no longer covered that a caregiver holds


def required_parties(a: ServiceAgreement) -> tuple[AgreementParty, AgreementParty]:
    """The elder's side (the guardian named in it, else the elder) and the provider."""
    return (
        AgreementParty.GUARDIAN if a.guardian_id is not None else AgreementParty.ELDER,
        AgreementParty.PROVIDER,
    )


def missing_parties(a: ServiceAgreement) -> list[AgreementParty]:
    signed = {s.party for s in a.signatures}
    return [p for p in required_parties(a) if p.value not in signed]


def signing_refusal(actor: Principal, a: ServiceAgreement, s: SignatureIn) -> Forbidden | Invalid | None:
    """Why ``actor`` may not record signature ``s`` on ``a`` (which it sees), or None. Pure."""
    elder_side = required_parties(a)[0]
    if s.party not in required_parties(a):
        whom = f"guardian {a.guardian_id}" if a.guardian_id is not None else "the elder personally"
        return Invalid(
            f"This agreement is signed for the elder by {whom}, not as {s.party.value}.",
            code="agreement.party_not_required",
            field="party",
        )
    if s.method == SignatureMethod.PAPER_SCAN:
        if not (s.signer_name and s.document_ref):
            return Invalid(
                "A paper signature needs the signer's name and the scanned document's reference.",
                code="agreement.paper_incomplete",
                field="document_ref" if s.signer_name else "signer_name",
            )
    elif s.signer_name is not None or s.document_ref is not None:
        return Invalid(
            "Signing in the app records the signed-in account; signer_name and document_ref are for "
            "paper signatures.",
            code="agreement.in_app_extra",
            field="signer_name" if s.signer_name is not None else "document_ref",
        )
    if actor.role == Role.PROVIDER_ADMIN and actor.provider_id == a.provider_id:
        if s.party == AgreementParty.PROVIDER or s.method == SignatureMethod.PAPER_SCAN:
            return None
        return Forbidden(
            f"The provider records the {elder_side.value}'s signature only from the signed paper "
            "(method paper_scan); in the app they sign themselves.",
            code="agreement.not_your_party",
        )
    in_app = s.method == SignatureMethod.IN_APP
    if (
        actor.role == Role.ELDER
        and s.party == AgreementParty.ELDER
        and in_app
        and actor.elder_id == a.elder_id
    ):
        return None
    if (
        actor.role == Role.FAMILY
        and s.party == AgreementParty.GUARDIAN
        and in_app
        and actor.guardian_id is not None
        and actor.guardian_id == a.guardian_id
    ):
        return None
    return Forbidden(
        f"You may not sign this agreement as {s.party.value} ({s.method.value}).",
        code="agreement.not_your_party",
    )


# --- Reading --------------------------------------------------------------------------------------


async def visible_agreement(
    *, session: AsyncSession, actor: Principal, agreement_id: int, lock: bool = False
) -> ServiceAgreement:
    """The agreement if ``actor`` may see it (with ``lock``: its row locked, freshly read), else the
    404 ``service_agreement.not_found`` of one that does not exist."""
    stmt: Any = select(ServiceAgreement).where(
        ServiceAgreement.id == agreement_id,
        agreement_clause(
            actor, elder_col=ServiceAgreement.elder_id, provider_col=ServiceAgreement.provider_id
        ),
    )
    if lock:
        stmt = stmt.with_for_update(of=ServiceAgreement).execution_options(populate_existing=True)
    found: ServiceAgreement | None = await session.scalar(stmt) if in_key_range(agreement_id) else None
    if found is None:
        raise not_found(ENTITY, agreement_id)
    return found


async def list_agreements(
    *,
    session: AsyncSession,
    actor: Principal,
    window: Window,
    elder_id: int | None = None,
    provider_id: int | None = None,
    state: str | None = None,
) -> Paged[ServiceAgreement]:
    """The agreements in ``actor``'s scope, newest first."""
    stmt: Any = select(ServiceAgreement).where(
        agreement_clause(
            actor, elder_col=ServiceAgreement.elder_id, provider_col=ServiceAgreement.provider_id
        )
    )
    if elder_id is not None:
        stmt = stmt.where(ServiceAgreement.elder_id == elder_id)
    if provider_id is not None:
        stmt = stmt.where(ServiceAgreement.provider_id == provider_id)
    if state is not None:
        stmt = stmt.where(ServiceAgreement.state == state)
    return await page_of(
        session, stmt.order_by(ServiceAgreement.created_at.desc(), ServiceAgreement.id.desc()), window
    )


# --- Drafting -------------------------------------------------------------------------------------


async def draft_agreement(
    *, session: AsyncSession, actor: Principal, terms: AgreementTerms, now: dt.datetime
) -> ServiceAgreement:
    """A draft between ``terms.elder_id`` and the actor's provider, its items priced (see the module
    docstring); audited."""
    if actor.role != Role.PROVIDER_ADMIN or actor.provider_id is None:
        raise Forbidden("Only a provider admin drafts a service agreement.", code="auth.forbidden")
    items = await _checked_items(session, provider_id=actor.provider_id, terms=terms, today=local_date(now))
    agreement = ServiceAgreement(
        elder_id=terms.elder_id,
        provider_id=actor.provider_id,
        guardian_id=terms.guardian_id,
        valid_from=terms.valid_from,
        valid_to=terms.valid_to,
        price_list_on=terms.valid_from,
        state=AgreementState.DRAFT.value,
        created_by_user_id=actor.user_id,
        created_at=now,
        updated_at=now,
        items=items,
        signatures=[],
    )
    session.add(agreement)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        entity=ENTITY,
        entity_id=agreement.id,
        after=snapshot(agreement),
    )
    log.info("dispatch.agreement.drafted", agreement_id=agreement.id, elder_id=agreement.elder_id)
    return agreement


async def revise_agreement(
    *, session: AsyncSession, actor: Principal, agreement_id: int, changes: TermChanges, now: dt.datetime
) -> ServiceAgreement:
    """Replace terms of a draft nobody has signed yet (409 ``agreement.not_editable`` otherwise: a
    signed agreement is amended by a new one); the items are priced again; audited."""
    agreement = await visible_agreement(session=session, actor=actor, agreement_id=agreement_id, lock=True)
    if actor.role != Role.PROVIDER_ADMIN:
        raise Forbidden("Only the provider admin revises its draft.", code="auth.forbidden")
    if agreement.state != AgreementState.DRAFT.value or agreement.signatures:
        raise Conflict(
            f"Agreement {agreement.id} is {agreement.state}"
            + (" and signed by a party" if agreement.signatures else "")
            + ": its terms no longer change. Terminate it and draft a new one to amend it.",
            code="agreement.not_editable",
            state=agreement.state,
        )
    before = snapshot(agreement)
    terms = AgreementTerms(
        elder_id=agreement.elder_id,
        services=given_or(changes.services, tuple(i.service_code for i in agreement.items)),
        valid_from=given_or(changes.valid_from, agreement.valid_from),
        valid_to=given_or(changes.valid_to, agreement.valid_to),
        guardian_id=given_or(changes.guardian_id, agreement.guardian_id),
    )
    items = await _checked_items(
        session, provider_id=agreement.provider_id, terms=terms, today=local_date(now)
    )
    agreement.items.clear()
    await session.flush()  # the old items go before the new ones (same keys) come
    agreement.items.extend(items)
    agreement.guardian_id = terms.guardian_id
    agreement.valid_from = terms.valid_from
    agreement.valid_to = terms.valid_to
    agreement.price_list_on = terms.valid_from
    agreement.updated_at = now
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="update",
        entity=ENTITY,
        entity_id=agreement.id,
        before=before,
        after=snapshot(agreement),
    )
    return agreement


async def _checked_items(
    session: AsyncSession, *, provider_id: int, terms: AgreementTerms, today: dt.date
) -> list[AgreementItem]:
    """The priced items of ``terms``, or a 422 naming the first problem."""
    if terms.valid_from < today:
        raise Invalid(
            f"valid_from {terms.valid_from.isoformat()} is in the past; an agreement starts today or later.",
            code="agreement.starts_in_past",
            field="valid_from",
        )
    check_range(terms.valid_from, terms.valid_to)
    await _check_parties(session, provider_id=provider_id, terms=terms)
    codes = list(terms.services)
    await _check_services(session, provider_id=provider_id, codes=codes, day=terms.valid_from)
    return await _priced(session, codes=codes, day=terms.valid_from)


async def _check_parties(session: AsyncSession, *, provider_id: int, terms: AgreementTerms) -> None:
    """An active elder in a district the provider serves; a guardian linked to the elder."""
    elder = (
        await session.execute(select(Elder.status, Elder.district_id).where(Elder.id == terms.elder_id))
    ).one_or_none()
    serves = elder is not None and await session.scalar(
        select(ProviderDistrict.provider_id).where(
            ProviderDistrict.provider_id == provider_id, ProviderDistrict.district_id == elder.district_id
        )
    )
    if elder is None or not serves:  # an elder the provider does not serve: as if unknown
        raise unknown_reference("elder_id", terms.elder_id, "elder in a district your provider serves")
    if elder.status != ElderStatus.ACTIVE.value:
        raise Invalid(
            f"Elder {terms.elder_id} is {elder.status}, not active.", code="agreement.elder_inactive"
        )
    if terms.guardian_id is not None:
        linked = await session.scalar(
            select(ElderGuardian.guardian_id).where(
                ElderGuardian.elder_id == terms.elder_id, ElderGuardian.guardian_id == terms.guardian_id
            )
        )
        if linked is None:
            raise unknown_reference("guardian_id", terms.guardian_id, "guardian of this elder")


async def _check_services(session: AsyncSession, *, provider_id: int, codes: list[str], day: dt.date) -> None:
    """Each once, known and active, and contracted by the provider on ``day``."""
    if not codes or len(set(codes)) != len(codes):
        raise Invalid(
            "List each service once, at least one.", code="agreement.services_invalid", field="services"
        )
    known = set(await session.scalars(select(Service.code).where(Service.code.in_(codes), Service.is_active)))
    contracted = set(
        await session.scalars(
            select(ProviderService.service_code).where(
                ProviderService.provider_id == provider_id,
                ProviderService.service_code.in_(codes),
                ProviderService.valid_from <= day,
                or_(ProviderService.valid_to.is_(None), ProviderService.valid_to >= day),
            )
        )
    )
    for code in codes:
        if code not in known:
            raise Invalid(
                f"Unknown or inactive service {code!r}.", code="agreement.service_unknown", field="services"
            )
        if code not in contracted:
            raise Invalid(
                f"Provider {provider_id} holds no contract for {code} on {day.isoformat()}.",
                code="agreement.service_not_contracted",
                field="services",
                service_code=code,
            )


async def _priced(session: AsyncSession, *, codes: list[str], day: dt.date) -> list[AgreementItem]:
    """One item per service quoting the catalogue price valid on ``day`` (policy ``service.price_fen``)."""
    prices = await load_policy(session, day=day, prefixes=[PRICE_POLICY], defaults=POLICY_DEFAULTS)
    items: list[AgreementItem] = []
    for code in sorted(codes):
        entry = prices.find(PRICE_POLICY, code)
        fen = entry.value.get("fen") if entry is not None else None
        if entry is None or not isinstance(fen, int):
            raise Invalid(
                f"{code} has no catalogue price valid on {day.isoformat()}.",
                code="agreement.no_price",
                field="services",
            )
        items.append(
            AgreementItem(
                service_code=code, price_fen=fen, unit=str(entry.value.get("unit", "")), price_ref=entry.ref()
            )
        )
    return items


# --- Signing and terminating ---------------------------------------------------------------------


async def sign_agreement(
    *, session: AsyncSession, actor: Principal, agreement_id: int, signature: SignatureIn, now: dt.datetime
) -> ServiceAgreement:
    """Record one party's signature on a draft (:func:`signing_refusal` says who may); the last
    required one makes it ``signed``. 409 ``agreement.not_draft`` once signed or terminated, 409
    ``agreement.already_signed`` for a party that has signed; audited."""
    agreement = await visible_agreement(session=session, actor=actor, agreement_id=agreement_id, lock=True)
    refusal = signing_refusal(actor, agreement, signature)
    if refusal is not None:
        raise refusal
    if agreement.state != AgreementState.DRAFT.value:
        raise Conflict(
            f"Agreement {agreement.id} is {agreement.state}; only a draft is signed.",
            code="agreement.not_draft",
            state=agreement.state,
        )
    if signature.party.value in {s.party for s in agreement.signatures}:
        raise _already_signed(agreement, signature.party)
    in_app = signature.method == SignatureMethod.IN_APP
    row = AgreementSignature(
        agreement_id=agreement.id,
        party=signature.party.value,
        signer_name=(actor.display_name or actor.username)[:40] if in_app else signature.signer_name,
        user_id=actor.user_id if in_app else None,
        method=signature.method.value,
        document_ref=signature.document_ref,
        recorded_by_user_id=actor.user_id,
        signed_at=now,
    )
    try:
        # The row lock above serialises signers; the unique (agreement, party) index is the backstop.
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError as exc:
        if "uq_agreement_signature_party" not in str(exc.orig):
            raise
        raise _already_signed(agreement, signature.party) from None
    await session.refresh(agreement, attribute_names=["signatures"])
    before_state = agreement.state
    if not missing_parties(agreement):
        agreement.state = AgreementState.SIGNED.value
        agreement.signed_at = now
    agreement.updated_at = now
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="sign",
        entity=ENTITY,
        entity_id=agreement.id,
        before={"state": before_state},
        after={"state": agreement.state, "signature": audit.snapshot(row)},
    )
    log.info("dispatch.agreement.signed", agreement_id=agreement.id, party=row.party, state=agreement.state)
    return agreement


def _already_signed(a: ServiceAgreement, party: AgreementParty) -> Conflict:
    return Conflict(
        f"Agreement {a.id} is already signed as {party.value}.",
        code="agreement.already_signed",
        party=party.value,
    )


async def terminate_agreement(
    *,
    session: AsyncSession,
    actor: Principal,
    agreement_id: int,
    reason: str,
    effective_on: dt.date | None,
    now: dt.datetime,
) -> AgreementEnd:
    """End an agreement (a draft, or a signed one) with ``reason``, taking effect on ``effective_on``
    (default today; a draft's at once): the first day it no longer covers. 409
    ``agreement.invalid_transition`` once terminated; audited. See the module docstring for the
    series orders it cancels."""
    agreement = await visible_agreement(session=session, actor=actor, agreement_id=agreement_id, lock=True)
    if not _is_party(actor, agreement):
        raise Forbidden("Only a party to the agreement terminates it.", code="agreement.not_your_party")
    if agreement.state == AgreementState.TERMINATED.value:
        raise Conflict(
            f"Agreement {agreement.id} is already terminated.",
            code="agreement.invalid_transition",
            state=agreement.state,
        )
    ends_on = _termination_day(agreement, effective_on, today=local_date(now))
    before = snapshot(agreement)
    agreement.state = AgreementState.TERMINATED.value
    agreement.terminated_at = now
    agreement.terminated_on = ends_on
    agreement.terminated_by_user_id = actor.user_id
    agreement.termination_reason = reason[:200]
    agreement.updated_at = now
    await session.flush()
    cancelled, kept = await _end_uncovered_orders(session, actor=actor, agreement=agreement, now=now)
    audit.record(
        session,
        actor=actor,
        action="terminate",
        entity=ENTITY,
        entity_id=agreement.id,
        before=before,
        after={**snapshot(agreement), "cancelled_order_ids": cancelled, "kept_order_ids": kept},
    )
    log.info(
        "dispatch.agreement.terminated", agreement_id=agreement.id, cancelled=len(cancelled), kept=len(kept)
    )
    return AgreementEnd(agreement, cancelled, kept)


def _termination_day(a: ServiceAgreement, effective_on: dt.date | None, *, today: dt.date) -> dt.date:
    """The first day a termination leaves uncovered: ``effective_on`` (default today) for a signed
    agreement, today or later and not after its last day (422 otherwise); today for a draft."""
    if a.state == AgreementState.DRAFT.value or effective_on is None:
        return today
    if effective_on < today:
        raise Invalid(
            "A termination takes effect today or later, not in the past.",
            code="agreement.termination_in_past",
            field="effective_on",
        )
    if effective_on > a.valid_to:
        raise Invalid(
            f"effective_on is after the agreement's last day ({a.valid_to.isoformat()}).",
            code="agreement.termination_after_end",
            field="effective_on",
        )
    return effective_on


def _is_party(actor: Principal, a: ServiceAgreement) -> bool:
    if actor.role == Role.PROVIDER_ADMIN:
        return actor.provider_id == a.provider_id
    if actor.role in (Role.ELDER, Role.FAMILY):
        return a.elder_id in actor.elder_ids
    return False


async def _end_uncovered_orders(
    session: AsyncSession, *, actor: Principal, agreement: ServiceAgreement, now: dt.datetime
) -> tuple[list[int], list[int]]:
    """Cancel the future orders of the elder's series with this provider, of the agreement's
    services, that no signed agreement covers now and no caregiver holds; list those one holds."""
    if agreement.signed_at is None or agreement.terminated_on is None:
        return [], []  # a draft covered nothing
    codes = [i.service_code for i in agreement.items]
    orders = list(
        await session.scalars(
            select(ServiceOrder)
            .join(RecurringOrder, RecurringOrder.id == ServiceOrder.recurring_order_id)
            .where(
                RecurringOrder.elder_id == agreement.elder_id,
                RecurringOrder.provider_id == agreement.provider_id,
                ServiceOrder.service_code.in_(codes),
                ServiceOrder.window_start_at >= max(now, day_start(agreement.terminated_on)),
                ServiceOrder.state.in_((*NOT_DISPATCHED, *HELD)),
            )
            .order_by(ServiceOrder.window_start_at, ServiceOrder.id)
        )
    )
    terms: dict[str, Sequence[AgreementTerm]] = {}
    cancelled: list[int] = []
    kept: list[int] = []
    note = f"agreement {agreement.id} terminated"
    for order in orders:
        if order.service_code not in terms:
            terms[order.service_code] = await signed_terms(
                session,
                elder_id=agreement.elder_id,
                service_code=order.service_code,
                provider_id=agreement.provider_id,
            )
        if covering_term(terms[order.service_code], local_date(order.window_start_at)) is not None:
            continue  # another agreement (a renewal) still covers it
        if order.state in HELD:
            kept.append(order.id)
            continue
        await session.execute(
            update(Offer)
            .where(Offer.order_id == order.id, Offer.state == OfferState.PENDING.value)
            .values(state=OfferState.WITHDRAWN.value, responded_at=now)
        )
        await move(
            session=session,
            order=order,
            target=OrderState.CANCELLED,
            actor=actor.role,
            actor_user_id=actor.user_id,
            now=now,
            note=note,
            values={"cancelled_by_role": actor.role.value, "cancel_reason": note, "cancellation_fee_fen": 0},
        )
        await mark_day_dirty(session=session, order=order, now=now)
        cancelled.append(order.id)
    return cancelled, kept


def snapshot(a: ServiceAgreement) -> dict[str, Any]:
    """The agreement, its items and signatures, for the audit trail."""
    return {
        **audit.snapshot(a),
        "items": [audit.snapshot(i) for i in a.items],
        "signatures": [audit.snapshot(s) for s in a.signatures],
    }
