"""Dispatch's dated policy: every ``dispatch.*``, ``verification.*`` and ``service.*`` rule valid on
one day, read through the one reader (:func:`core.policy.load_policy`) with dispatch's seeded
defaults (:data:`dispatch.seed.POLICY_DEFAULTS`) as the only fallback.

:func:`load_policies` reads the rows of a day in one query; :func:`policies_from` turns a
:class:`~core.policy.PolicySnapshot` into the plain values the pure cores take (:class:`Policies`).
Callers load them once per request or job, for the order's *service day*, never per candidate.

A number is read as :func:`core.policy.policy_number` reads it in SQL: the field of the row valid on
the day if it is a JSON number, else the same field of the seeded default (:func:`number`); SQL that
needs a policy number in a statement uses :func:`policy_number_sql`, whose fallback is that same
seeded default. No number of DOMAIN.md is written here.

A service's requirement (``service.requirement[<code>]``: certificate kind, maximum certificate level,
same-gender rule) and its minimum time on site (``service.price_fen[<code>].min_minutes``) are the
row valid on the day; a field the row leaves out keeps the seeded default's, a field it sets to
``null`` means "none" (:meth:`Policies.service`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Integer, cast, func, or_, select
from sqlalchemy.dialects.postgresql import JSON, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from core.policy import (
    PolicyMissing,
    PolicySnapshot,
    PolicyValue,
    load_policy,
    policy_number,
    snapshot_from_rows,
    valid_on,
)
from dispatch.matching import MatchPolicy, MatchWeights, ServiceRule
from dispatch.seed import POLICY_DEFAULTS
from dispatch.states import CancellationPolicy
from dispatch.verification import QualityWeights, VerificationPolicy

PREFIXES: tuple[str, ...] = ("dispatch.", "verification.", "service.")

REQUIREMENT = "service.requirement"
PRICE = "service.price_fen"


@dataclass(frozen=True, slots=True)
class OfferPolicy:
    """``offer_seconds`` to answer an offer; after ``max_attempts`` offers the order is escalated."""

    offer_seconds: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class SignOffPinPolicy:
    """Wrong sign-off PINs one visit may see before PIN sign-off of that visit is refused for
    ``lock_s`` seconds (policy ``verification.signoff_pin``)."""

    max_failures: int
    lock_s: int


@dataclass(frozen=True, slots=True)
class DayPlanBudget:
    """The planner's search budget per provider in wall seconds (policy ``dispatch.dayplan``, in ms):
    ``min_s`` plus ``per_visit_s`` for each visit to plan, at most ``max_s``."""

    max_s: float
    min_s: float
    per_visit_s: float

    def seconds(self, visits: int) -> float:
        return max(0.0, min(self.max_s, self.min_s + self.per_visit_s * visits))


@dataclass(frozen=True, slots=True)
class Policies:
    """The dispatch, verification and service policy valid on :attr:`day` (the snapshot it was read
    from is kept for the per-service rules and for what a decision records it applied)."""

    snapshot: PolicySnapshot
    match: MatchPolicy
    offer: OfferPolicy
    verification: VerificationPolicy
    cancellation: CancellationPolicy
    quality: QualityWeights
    continuity_days: int  # whole days, as :func:`continuity_days_sql` counts them
    sign_off_pin: SignOffPinPolicy
    dayplan: DayPlanBudget
    # Local minute of the evening before from which orders no day plan placed go to the operators.
    escalate_at_minute: int

    @property
    def day(self) -> dt.date:
        return self.snapshot.day

    def service(self, code: str, skill: str) -> ServiceRule:
        """What the service asks of the caregiver on :attr:`day`: ``service.requirement[code]``
        (certificate kind, maximum level, same-gender rule) and ``service.price_fen[code]``
        ``min_minutes`` (null or 0: a delivery, no minimum on site). ``skill`` is the catalogue's (the
        ``service`` table's): what a caregiver must be skilled in is the service itself, not dated."""
        certificate = _field(self.snapshot, REQUIREMENT, code, "certificate")
        max_level = _field(self.snapshot, REQUIREMENT, code, "max_level")
        same_gender = _field(self.snapshot, REQUIREMENT, code, "same_gender")
        min_minutes = _field(self.snapshot, PRICE, code, "min_minutes")
        if certificate is not None and not isinstance(certificate, str):
            raise TypeError(f"policy {REQUIREMENT!r} scope {code!r}: certificate is {certificate!r}")
        if same_gender is not None and not isinstance(same_gender, bool):
            raise TypeError(f"policy {REQUIREMENT!r} scope {code!r}: same_gender is {same_gender!r}")
        return ServiceRule(
            code=code,
            skill=skill,
            certificate_kind=certificate,
            max_certificate_level=_whole_or_none(max_level, REQUIREMENT, code, "max_level"),
            same_gender=same_gender is True,
            min_minutes=_whole_or_none(min_minutes, PRICE, code, "min_minutes") or 0,
        )


def min_on_site_minutes(code: str, price: Mapping[str, Any] | None) -> int:
    """The service's minimum time on site from a ``service.price_fen[code]`` value read in SQL (the
    row valid on the service day, ``None`` if none), as :meth:`Policies.service` reads it: a field the
    row leaves out keeps the seeded default's; null means none (0)."""
    if price is not None and "min_minutes" in price:
        v = price["min_minutes"]
    else:
        seeded = (d.value for d in POLICY_DEFAULTS if (d.key, d.scope) == (PRICE, code))
        v = next(seeded, {}).get("min_minutes")
    return _whole_or_none(v, PRICE, code, "min_minutes") or 0


def _field(snapshot: PolicySnapshot, key: str, scope: str, name: str) -> Any:
    """``value[name]`` of the row valid on the day if the row names the field, else the seeded
    default's (a field a later row leaves out is not thereby removed)."""
    row = snapshot.rows.get((key, scope))
    if row is not None and name in row.value:
        return row.value[name]
    default = snapshot.defaults.get((key, scope))
    if default is None:
        if row is None:
            raise PolicyMissing(key, scope, snapshot.day)
        return None
    return default.value.get(name)


def _whole_or_none(v: Any, key: str, scope: str, name: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v):
        raise TypeError(f"policy {key!r} scope {scope!r}: {name!r} is not a whole number: {v!r}")
    return int(v)


def number(snapshot: PolicySnapshot, key: str, name: str, scope: str = "*") -> float:
    """``value[name]`` of the row valid on the day if that is a JSON number (not true/false), else
    the seeded default's: exactly what :func:`core.policy.policy_number` reads in SQL."""
    row = snapshot.rows.get((key, scope))
    if row is not None:
        v = row.value.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    default = snapshot.defaults.get((key, scope))
    if default is None:
        raise PolicyMissing(key, scope, snapshot.day)
    return default.number(name)


def _optional_number(snapshot: PolicySnapshot, key: str, name: str, scope: str) -> float | None:
    """:func:`number`, or ``None`` when neither a row nor a seeded default has this scope."""
    if snapshot.find(key, scope) is None:
        return None
    return number(snapshot, key, name, scope)


def seeded_number(key: str, name: str, scope: str = "*") -> float:
    """The seeded default of a policy number (:data:`dispatch.seed.POLICY_DEFAULTS`)."""
    for d in POLICY_DEFAULTS:
        if d.key == key and d.scope == scope:
            v = d.value.get(name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                break
            return float(v)
    raise LookupError(f"no seeded number {key}[{scope}].{name}")


def policy_number_sql(key: str, name: str, day: Any, scope: str = "*") -> ColumnElement[float]:
    """:func:`core.policy.policy_number` with the seeded default as its fallback (never a number
    typed again in code): for statements that read their policy in the same round trip."""
    return policy_number(key, scope, name, day, seeded_number(key, name, scope))


def match_policy_from(snapshot: PolicySnapshot) -> MatchPolicy:
    """The matching norms of a snapshot holding the ``dispatch.`` keys (rows over seeded defaults)."""

    def num(key: str, name: str, scope: str = "*") -> float:
        return number(snapshot, key, name, scope)

    def bp(key: str, name: str) -> float:
        return num(key, name) / 10_000

    return MatchPolicy(
        detour_factor=bp("dispatch.detour", "bp"),
        urban_speed_kmh=num("dispatch.speed", "kmh", "urban"),
        rural_speed_kmh=num("dispatch.speed", "kmh", "rural"),
        urgent_eta_urban_min=num("dispatch.urgent_eta_max", "seconds", "urban") / 60,
        urgent_eta_rural_min=num("dispatch.urgent_eta_max", "seconds", "rural") / 60,
        max_eta_min=num("dispatch.max_eta", "seconds") / 60,
        continuity_saturation=max(1, int(num("dispatch.continuity_saturation", "visits"))),
        # The 15-minute home-care circle of an area kind; none seeded for rural areas.
        walk_circle_urban_m=_optional_number(snapshot, "dispatch.walk_circle", "metres", "urban") or 0.0,
        walk_circle_rural_m=_optional_number(snapshot, "dispatch.walk_circle", "metres", "rural") or 0.0,
        weights=MatchWeights(
            travel=bp("dispatch.match_weights", "travel_bp"),
            continuity=bp("dispatch.match_weights", "continuity_bp"),
            fairness=bp("dispatch.match_weights", "fairness_bp"),
            rating=bp("dispatch.match_weights", "rating_bp"),
        ),
    )


def policies_from(snapshot: PolicySnapshot) -> Policies:
    """The plain policy values of a snapshot (rows valid on its day, seeded defaults beneath)."""

    def num(key: str, name: str, scope: str = "*") -> float:
        return number(snapshot, key, name, scope)

    def bp(key: str, name: str) -> float:
        return num(key, name) / 10_000

    match = match_policy_from(snapshot)
    verification = VerificationPolicy(
        max_check_in_distance_urban_m=num("verification.checkin_radius", "metres", "urban"),
        max_check_in_distance_rural_m=num("verification.checkin_radius", "metres", "rural"),
        min_on_site_ratio=bp("verification.min_onsite", "bp"),
        sign_off_within_s=int(num("verification.signoff_window", "seconds")),
        callback_ratio=bp("verification.callback_sample", "bp"),
        early_check_in_s=int(num("verification.checkin_early", "seconds")),
        late_check_in_s=int(num("verification.checkin_late", "seconds")),
    )
    return Policies(
        snapshot=snapshot,
        match=match,
        offer=OfferPolicy(
            offer_seconds=int(num("dispatch.offer_window", "seconds")),
            max_attempts=int(num("dispatch.max_offers", "count")),
        ),
        verification=verification,
        cancellation=CancellationPolicy(
            notice_s=int(num("dispatch.cancel_notice", "seconds")),
            late_fee_fen=int(num("dispatch.late_cancel_fee", "fen")),
        ),
        quality=QualityWeights(
            rating=bp("dispatch.quality_weights", "rating_bp"),
            callback=bp("dispatch.quality_weights", "callback_bp"),
            exceptions=bp("dispatch.quality_weights", "exceptions_bp"),
            complaints=bp("dispatch.quality_weights", "complaints_bp"),
        ),
        continuity_days=max(0, int(num("dispatch.continuity_window", "days"))),
        sign_off_pin=SignOffPinPolicy(
            # At least one wrong PIN is allowed before the lock; a lock is never negative.
            max_failures=max(1, int(num("verification.signoff_pin", "max_failures"))),
            lock_s=max(0, int(num("verification.signoff_pin", "lock_minutes") * 60)),
        ),
        dayplan=DayPlanBudget(
            max_s=num("dispatch.dayplan", "max_ms") / 1000,
            min_s=num("dispatch.dayplan", "min_ms") / 1000,
            per_visit_s=num("dispatch.dayplan", "per_visit_ms") / 1000,
        ),
        escalate_at_minute=int(num("dispatch.dayplan", "escalate_at_minute")),
    )


def policies_on(
    day: dt.date, rows: Iterable[tuple[str, str, Mapping[str, Any] | str, dt.date, dt.date | None]] = ()
) -> Policies:
    """:func:`policies_from` of (key, scope, value, valid_from, valid_to) rows over dispatch's seeded
    defaults: the pure path (tests, the benchmark, rows read in another statement)."""
    return policies_from(snapshot_from_rows(day, rows, POLICY_DEFAULTS))


async def load_policies(*, session: AsyncSession, day: dt.date) -> Policies:
    """Every dispatch, verification and service policy valid on ``day`` (one query)."""
    return policies_from(await load_policy(session, day=day, prefixes=PREFIXES, defaults=POLICY_DEFAULTS))


def _policy_filter(day: Any) -> tuple[ColumnElement[bool], ...]:
    return (or_(*(PolicyValue.key.startswith(p, autoescape=True) for p in PREFIXES)), *valid_on(day))


def policy_rows_json(day: Any) -> Any:
    """A scalar subquery: the rows :func:`load_policies` reads, as a JSON array of
    [key, scope, value, valid_from, valid_to], for a statement that reads its policy in the same round
    trip as its data (:func:`policies_from_json` reads it back)."""
    row = func.json_build_array(
        PolicyValue.key, PolicyValue.scope, PolicyValue.value, PolicyValue.valid_from, PolicyValue.valid_to
    )
    return (
        select(func.json_agg(aggregate_order_by(row, PolicyValue.valid_from.asc()), type_=JSON))
        .where(*_policy_filter(day))
        .scalar_subquery()
    )


def policies_from_json(day: dt.date, rows: Iterable[Any] | None) -> Policies:
    """:func:`policies_on` of the rows of :func:`policy_rows_json` (dates as ISO text)."""
    return policies_on(
        day,
        [
            (k, sc, v, dt.date.fromisoformat(fr), None if to is None else dt.date.fromisoformat(to))
            for k, sc, v, fr, to in rows or ()
        ],
    )


def continuity_days_sql(day: Any) -> ColumnElement[int]:
    """SQL twin of :attr:`Policies.continuity_days` valid on ``day`` (whole days, at least 0)."""
    days = policy_number_sql("dispatch.continuity_window", "days", day)
    return cast(func.greatest(0, func.trunc(days)), Integer)


__all__ = [
    "PREFIXES",
    "DayPlanBudget",
    "OfferPolicy",
    "Policies",
    "SignOffPinPolicy",
    "continuity_days_sql",
    "load_policies",
    "match_policy_from",
    "min_on_site_minutes",
    "number",
    "policies_from",
    "policies_from_json",
    "policies_on",
    "policy_number_sql",
    "policy_rows_json",
    "seeded_number",
]
