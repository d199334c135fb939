"""Adjudicating a visit line, as claims systems do (openIMIS): passed, or rejected with a numbered
reason. Pure; the close applies the same rules set-based in SQL (:mod:`billing.settlement_close`,
:func:`hard_reason_sql`), and a test holds the two equal.

A line is checked in two steps.

1. **Is the visit payable at all?** (:func:`hard_reason`, first failing check wins, in this order)

   * 8 ``unresolved_exception``: a verification exception of the visit is still open. A visit with an
     unresolved exception is never paid (DOMAIN §5).
   * 1 ``no_verified_visit``: the visit was not verified by the period's cut-off (pending, an exception
     resolved as rejected, still checked in). Verified later, it is settled as an adjustment in the
     next open period.
   * 7 ``duplicate``: another visit of the same elder, service and scheduled start was listed first
     (lower id), or the visit was already paid in another period.
   * 2 ``units_mismatch``: the visit is not the service the order bills, or for a service priced by
     the hour it was on site for less than ``units_min_bp`` of the ordered (billed) duration.
   * 4 ``not_contracted``: the provider holds no contract for the service on the day
     (``provider_service``), or — when policy ``settlement.adjudication.agreement_required`` — no service
     agreement both sides signed covers it (:mod:`dispatch.agreements`).

   A line rejected here is not payable: nothing is posted for it, not even the co-pay.

2. **What do the public payers pay?** (:func:`public_reason`, after the waterfall). The visit stands
   and the elder's co-pay is posted; only the public payers' claim is rejected when:

   * 6 ``not_eligible``: the elder is entitled to no payer on the day (no LTC coverage with an
     assessed level, no voucher, no category; or deceased or moved away before it);
   * 3 ``not_covered``: entitled, but none of the elder's payers covers this service;
   * 5 ``cap_reached``: covered, but the covering payers' budgets are spent (every share is 0).

``payable`` lines (passed, or rejected for reasons 3, 5, 6) are posted to the ledger.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class Reason(enum.IntEnum):
    """The numbered rejection reasons (stable: statements, exports and the API carry the numbers)."""

    NO_VERIFIED_VISIT = 1
    UNITS_MISMATCH = 2
    NOT_COVERED = 3
    NOT_CONTRACTED = 4
    CAP_REACHED = 5
    NOT_ELIGIBLE = 6
    DUPLICATE = 7
    UNRESOLVED_EXCEPTION = 8

    @property
    def code(self) -> str:
        return self.name.lower()


# zh-CN and English labels of each reason, for statements, exports and pages.
REASON_LABELS: Final[dict[Reason, tuple[str, str]]] = {
    Reason.NO_VERIFIED_VISIT: ("服务未核验", "no verified visit"),
    Reason.UNITS_MISMATCH: ("计费单位与服务记录不符", "units do not match the visit"),
    Reason.NOT_COVERED: ("服务不在补贴范围", "service not covered"),
    Reason.NOT_CONTRACTED: ("无服务协议或合同", "not contracted"),
    Reason.CAP_REACHED: ("补贴额度已用完", "cap reached"),
    Reason.NOT_ELIGIBLE: ("服务当日不符合补贴条件", "elder not eligible on the date"),
    Reason.DUPLICATE: ("重复结算", "duplicate"),
    Reason.UNRESOLVED_EXCEPTION: ("核验异常未处理", "unresolved verification exception"),
}

# Rejections of the public payers' claim only: the visit stands and its co-pay is posted.
PUBLIC_ONLY: Final = frozenset({Reason.NOT_COVERED, Reason.CAP_REACHED, Reason.NOT_ELIGIBLE})
# Rejections of the visit itself, in the order they are checked.
HARD_ORDER: Final = (
    Reason.UNRESOLVED_EXCEPTION,
    Reason.NO_VERIFIED_VISIT,
    Reason.DUPLICATE,
    Reason.UNITS_MISMATCH,
    Reason.NOT_CONTRACTED,
)


@dataclass(frozen=True, slots=True)
class AdjudicationPolicy:
    """``settlement.adjudication`` on the service day."""

    units_min_bp: int
    agreement_required: bool


@dataclass(frozen=True, slots=True)
class VisitFacts:
    """What step 1 looks at. ``on_site_s`` is check-out minus check-in (None without both);
    ``hourly`` whether the service is priced by the hour."""

    open_exception: bool
    verified_by_cutoff: bool
    duplicate: bool
    service_matches_order: bool
    hourly: bool
    duration_s: int
    on_site_s: int | None
    contracted: bool
    agreement_covered: bool


def units_mismatch(f: VisitFacts, policy: AdjudicationPolicy) -> bool:
    """The visit is not what the order bills: another service, or (by the hour) too short on site."""
    if not f.service_matches_order:
        return True
    if not f.hourly:
        return False
    return f.on_site_s is None or f.on_site_s * 10_000 < f.duration_s * policy.units_min_bp


def hard_reason(f: VisitFacts, policy: AdjudicationPolicy) -> Reason | None:
    """Step 1: the first reason the visit is not payable at all, else None."""
    if f.open_exception:
        return Reason.UNRESOLVED_EXCEPTION
    if not f.verified_by_cutoff:
        return Reason.NO_VERIFIED_VISIT
    if f.duplicate:
        return Reason.DUPLICATE
    if units_mismatch(f, policy):
        return Reason.UNITS_MISMATCH
    if not f.contracted or (policy.agreement_required and not f.agreement_covered):
        return Reason.NOT_CONTRACTED
    return None


def public_reason(*, entitled: bool, covered: bool, public_fen: int, amount_fen: int) -> Reason | None:
    """Step 2, for a payable visit: why the public payers pay nothing, else None (passed).

    ``entitled``: the elder has some payer on the day; ``covered``: one of them covers the service;
    ``public_fen``: what the payers pay in all."""
    if not entitled:
        return Reason.NOT_ELIGIBLE
    if not covered:
        return Reason.NOT_COVERED
    if public_fen == 0 and amount_fen > 0:
        return Reason.CAP_REACHED
    return None


def payable(reason: Reason | None) -> bool:
    """Whether a line with this outcome is posted to the ledger (its co-pay at least)."""
    return reason is None or reason in PUBLIC_ONLY


def hard_reason_sql(cand: str = "c") -> str:
    """The SQL twin of :func:`hard_reason` over the close's candidate rows (alias ``cand``), whose
    columns are named as the :class:`VisitFacts` fields plus ``units_min_bp`` and
    ``agreement_required`` (the policy of the line's day). NULL when the visit is payable."""
    c = cand
    return f"""CASE
        WHEN {c}.open_exception THEN {int(Reason.UNRESOLVED_EXCEPTION)}
        WHEN NOT {c}.verified_by_cutoff THEN {int(Reason.NO_VERIFIED_VISIT)}
        WHEN {c}.duplicate THEN {int(Reason.DUPLICATE)}
        WHEN NOT {c}.service_matches_order
          OR ({c}.hourly AND ({c}.on_site_s IS NULL
                              OR {c}.on_site_s::bigint * 10000 < {c}.duration_s::bigint * {c}.units_min_bp))
          THEN {int(Reason.UNITS_MISMATCH)}
        WHEN NOT {c}.contracted OR ({c}.agreement_required AND NOT {c}.agreement_covered)
          THEN {int(Reason.NOT_CONTRACTED)}
    END"""
