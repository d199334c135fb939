"""Pricing visits between their payers (DOMAIN §4): the payer waterfall, in integer fen. Pure.

**The waterfall.** A visit's price (``amount_fen``) is split between the payers in the order of policy
``subsidy.waterfall`` (default: long-term-care insurance 长护险, the national care voucher
养老服务消费补贴, the local government's purchase of home care by category 政府购买居家养老服务), then
the elder's co-pay. Each payer's share is

    ``share = min(round_half_up(rate × unpaid), remaining budget)``

where ``unpaid`` is what the payers before it left of the price and ``remaining budget`` is the payer's
budget for the elder in the visit's budget period less what the payer already paid the elder in that
period (never below 0). A payer pays 0 when it does not cover the service or the elder is not entitled
to it on the visit's day (:class:`Entitlements`, from :mod:`billing.eligibility`). The co-pay is what
remains, so the parts always sum to the price; no part is negative; no payer exceeds its budget.

**Payment models as data.** Each payer's rule is a dated policy value (``subsidy.ltc[level]``,
``subsidy.voucher[*]``, ``subsidy.local[category]``) with a ``model`` field naming its budget period:

- ``per_visit``: a rate per visit within a **monthly** budget per elder (calendar month, Asia/Shanghai):
  Xiaogan's default for every payer (DOMAIN §4);
- ``per_day`` (按床日): a rate per visit within a cap **per service day** (``budget_fen`` is then the
  daily cap), as pilot cities pay long-term-care insurance.

A value without ``model`` (rows written before it existed) is ``per_visit``. What a payer has already
paid is counted per (payer, period), not per rule: when an elder's level or category, or the policy,
changes within a month, the new rule's budget applies from its date, less what that payer paid earlier
in the period.

**Units.** Amounts in fen (``int``), rates in basis points (``rate_bp``, 10,000 = 100 %), days are
Asia/Shanghai calendar dates chosen by the caller. Rounding is half-up to the fen, on exact integers.

The API for everyone who prices (the quote, vouchers, monthly settlement):

- :func:`rule_pack` parses the ``subsidy.*`` policy valid on a day (a :class:`core.policy.PolicySnapshot`)
  into a :class:`RulePack`; :func:`check_subsidy_value` is the policy API's check of a new value;
- :func:`price_visit` prices one visit given what each payer already used (:data:`Used`);
- :func:`price_month` prices visits in the order given (what came before drives the caps) and returns
  every line and the usage after them;
- :func:`visit_amount_fen` is a visit's price from its unit price, unit and duration.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final, TypeAlias

from core.errors import DomainError
from core.policy import PolicyDefault, PolicyEntry, PolicySnapshot, snapshot_from_rows
from core.policy_rules import FieldError

BP: Final = 10_000  # basis points in 100 %

# --- Money ------------------------------------------------------------------------------------------


def round_half_up(value: Fraction | int) -> int:
    """``value`` (≥ 0) rounded to the nearest integer, halves up: 0.5 → 1, 2.5 → 3."""
    v = Fraction(value)
    if v < 0:
        raise ValueError(f"round_half_up takes non-negative values, not {v}")
    return int((2 * v.numerator + v.denominator) // (2 * v.denominator))


def rate_share_fen(rate_bp: int, amount_fen: int) -> int:
    """``rate × amount`` in fen, rounded half-up: 50 % of 1 fen is 1 fen, 90 % of 5 fen is 5 fen."""
    return round_half_up(Fraction(rate_bp * amount_fen, BP))


def visit_units(unit: str, duration_s: int) -> Fraction:
    """How many catalogue units a visit is: its ordered duration in hours for services priced by the
    ``hour`` (exact, e.g. 5400 s → 3/2), else one (a ``meal`` or a ``visit``)."""
    if unit == "hour":
        if duration_s <= 0:
            raise ValueError(f"a visit of {duration_s} s")
        return Fraction(duration_s, 3600)
    return Fraction(1)


def visit_amount_fen(unit_price_fen: int, units: Fraction | int) -> int:
    """A visit's price in fen: the unit price (snapshotted on the order) × units, rounded half-up."""
    return round_half_up(Fraction(unit_price_fen) * Fraction(units))


# --- Payers and their rules ------------------------------------------------------------------------


class Payer(enum.StrEnum):
    """The funding sources of DOMAIN §4 (the co-pay is what remains, not a payer)."""

    LTC = "ltc"  # 长护险 long-term-care insurance, by ability level
    VOUCHER = "voucher"  # 养老服务消费补贴 the national care voucher
    LOCAL = "local"  # 政府购买居家养老服务 local government-purchased care, by category


class PaymentModel(enum.StrEnum):
    """How a payer's budget is measured out (see the module docstring)."""

    PER_VISIT = "per_visit"  # rate within a monthly budget per elder
    PER_DAY = "per_day"  # 按床日: rate within a cap per service day


# The policy keys of each payer's rule, and of the order.
WATERFALL_KEY: Final = "subsidy.waterfall"
# How long a month's voucher account stays open after the month (read by :mod:`billing.vouchers`).
VOUCHER_EXPIRY_KEY: Final = "subsidy.voucher_expiry"
MAX_GRACE_DAYS: Final = 366
PAYER_KEYS: Final[Mapping[Payer, str]] = {
    Payer.LTC: "subsidy.ltc",
    Payer.VOUCHER: "subsidy.voucher",
    Payer.LOCAL: "subsidy.local",
}
# A budget period: (model, first day). A month starts on its 1st; a service day is itself.
Period: TypeAlias = tuple[PaymentModel, dt.date]
# What each payer has paid the elder, by (payer, period), in fen.
Used: TypeAlias = Mapping[tuple[Payer, Period], int]


def period_of(model: PaymentModel, day: dt.date) -> Period:
    """The budget period of ``day`` under ``model``: its calendar month, or the day itself."""
    if model is PaymentModel.PER_DAY:
        return (model, day)
    return (PaymentModel.PER_VISIT, day.replace(day=1))


@dataclass(frozen=True, slots=True)
class PayerRule:
    """One payer's rule on a day, from its policy value: the rate (basis points), the budget per elder
    per period of ``model`` (fen), the services it covers, and who may have it (``min_level``: the
    voucher's lowest ability level; ``min_age``: a category's lowest age). ``ref`` names the policy
    row it came from (``key[scope]@valid_from``)."""

    payer: Payer
    scope: str
    model: PaymentModel
    rate_bp: int
    budget_fen: int
    services: frozenset[str]
    min_level: int | None = None
    min_age: int | None = None
    ref: str = ""

    def covers(self, service: str) -> bool:
        return service in self.services

    @property
    def generosity(self) -> tuple[int, int]:
        """How generous a category is, to pick the single most generous one: the highest rate, then
        the highest budget (DOMAIN §4)."""
        return (self.rate_bp, self.budget_fen)


@dataclass(frozen=True, slots=True)
class RulePack:
    """The payers' rules valid on one day: the waterfall order, LTC rules by ability level, the
    voucher's rule, local rules by category. A level or category without a rule pays nothing."""

    order: tuple[Payer, ...]
    ltc: Mapping[int, PayerRule] = field(default_factory=dict)
    voucher: PayerRule | None = None
    local: Mapping[str, PayerRule] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Entitlements:
    """What an elder is entitled to on a day (:func:`billing.eligibility.entitlements_on`): LTC at an
    ability level, the voucher (with the level of the assessment that earns it), the single most
    generous local category; ``ended`` says why there is nothing (``deceased``, ``moved``)."""

    ltc_level: int | None = None
    voucher_level: int | None = None
    local_category: str | None = None
    ended: str | None = None

    def rule(self, payer: Payer, pack: RulePack) -> PayerRule | None:
        """This elder's rule of ``payer`` in ``pack``, or ``None`` when not entitled to it."""
        if payer is Payer.LTC:
            return None if self.ltc_level is None else pack.ltc.get(self.ltc_level)
        if payer is Payer.VOUCHER:
            return None if self.voucher_level is None else pack.voucher
        return None if self.local_category is None else pack.local.get(self.local_category)


NO_ENTITLEMENTS: Final = Entitlements()


# --- One visit ------------------------------------------------------------------------------------


class ShareReason(enum.StrEnum):
    """Why a payer's share is what it is (the settlement's adjudication reasons build on these)."""

    PAID = "paid"  # rate × unpaid in full (0 when nothing was left unpaid)
    CAPPED = "capped"  # cut to what remained of the budget: the cap was reached on this visit
    BUDGET_SPENT = "budget_spent"  # nothing remained of the budget for the period
    NOT_COVERED = "not_covered"  # the payer does not cover this service
    NOT_ELIGIBLE = "not_eligible"  # the elder is not entitled to this payer on the day


@dataclass(frozen=True, slots=True)
class PayerShare:
    """One payer's part of a visit. ``uncapped_fen`` is ``round_half_up(rate × unpaid)``;
    ``used_before_fen`` what the payer had paid the elder in the period before this visit."""

    payer: Payer
    share_fen: int
    reason: ShareReason
    uncapped_fen: int = 0
    used_before_fen: int = 0
    rule: PayerRule | None = None


@dataclass(frozen=True, slots=True)
class VisitPricing:
    """A visit's price split: each payer of the waterfall in order, then the co-pay. The shares and
    the co-pay sum to ``amount_fen``."""

    amount_fen: int
    shares: tuple[PayerShare, ...]
    copay_fen: int

    def share_fen(self, payer: Payer) -> int:
        return sum(s.share_fen for s in self.shares if s.payer is payer)


def price_visit(
    *,
    amount_fen: int,
    service: str,
    day: dt.date,
    entitlements: Entitlements,
    pack: RulePack,
    used: Used,
) -> VisitPricing:
    """One visit of ``service`` on ``day`` costing ``amount_fen``, through the waterfall of ``pack``,
    each payer capped by its budget less ``used`` in the visit's period (module docstring)."""
    if amount_fen < 0:
        raise ValueError(f"a visit costing {amount_fen} fen")
    unpaid = amount_fen
    shares: list[PayerShare] = []
    for payer in pack.order:
        rule = entitlements.rule(payer, pack)
        if rule is None:
            shares.append(PayerShare(payer, 0, ShareReason.NOT_ELIGIBLE))
            continue
        if not rule.covers(service):
            shares.append(PayerShare(payer, 0, ShareReason.NOT_COVERED, rule=rule))
            continue
        before = used.get((payer, period_of(rule.model, day)), 0)
        remaining = max(0, rule.budget_fen - before)
        # A rate above 100 % (refused by the policy check) could not make the co-pay negative either.
        uncapped = min(rate_share_fen(rule.rate_bp, unpaid), unpaid)
        share = min(uncapped, remaining)
        if share == uncapped:
            reason = ShareReason.PAID
        else:
            reason = ShareReason.CAPPED if share > 0 else ShareReason.BUDGET_SPENT
        shares.append(PayerShare(payer, share, reason, uncapped, before, rule))
        unpaid -= share
    return VisitPricing(amount_fen, tuple(shares), unpaid)


# --- A month (or any run) of visits ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VisitLine:
    """A visit to price: the caller's ``key`` (a visit id), its service day (Asia/Shanghai), its
    service code and its price in fen."""

    key: int
    day: dt.date
    service: str
    amount_fen: int


@dataclass(frozen=True, slots=True)
class PricedVisit:
    line: VisitLine
    entitlements: Entitlements
    pricing: VisitPricing


@dataclass(frozen=True, slots=True)
class MonthPricing:
    """Every visit priced, in the order given, and what each payer had used after them."""

    visits: tuple[PricedVisit, ...]
    used: Mapping[tuple[Payer, Period], int]

    def total_fen(self, payer: Payer) -> int:
        return sum(v.pricing.share_fen(payer) for v in self.visits)

    @property
    def copay_fen(self) -> int:
        return sum(v.pricing.copay_fen for v in self.visits)


def price_month(
    visits: Sequence[VisitLine],
    entitlements: Mapping[dt.date, Entitlements],
    packs: Mapping[dt.date, RulePack],
) -> MonthPricing:
    """One elder's visits priced in the order given (the caller's order is the order budgets are used
    in: the platform's is :data:`billing.pricing.VISIT_ORDER`), each with the entitlements and the
    rule pack of its day. Budgets are per (payer, period): a visit in a new month (or, per day, a new
    day) starts from a fresh budget. Re-running on the same input gives the same result.

    ``entitlements`` and ``packs`` must hold every visit's day (a missing day is a ``KeyError``: a
    loader's mistake is never priced as "not entitled")."""
    used: dict[tuple[Payer, Period], int] = {}
    priced: list[PricedVisit] = []
    for line in visits:
        ent = entitlements[line.day]
        pricing = price_visit(
            amount_fen=line.amount_fen,
            service=line.service,
            day=line.day,
            entitlements=ent,
            pack=packs[line.day],
            used=used,
        )
        for s in pricing.shares:
            if s.share_fen and s.rule is not None:
                key = (s.payer, period_of(s.rule.model, line.day))
                used[key] = used.get(key, 0) + s.share_fen
        priced.append(PricedVisit(line, ent, pricing))
    return MonthPricing(tuple(priced), dict(used))


# --- Rules from dated policy -----------------------------------------------------------------------


class SubsidyPolicyInvalid(DomainError):
    """A ``subsidy.*`` policy value that cannot be priced with (the policy API refuses such values; a
    row written around it is a deployment error, answered as a problem rather than a guess)."""

    status = 409
    code = "billing.policy_invalid"
    title = "Subsidy policy cannot be applied"


# An ability level (GB/T 42195: 0 intact … 4 complete loss), as an LTC scope.
LEVELS: Final = range(5)


def check_subsidy_value(key: str, scope: str, value: Mapping[str, Any]) -> list[FieldError]:
    """What the policy API refuses in a ``subsidy.*`` value beyond its shape (which the seeded
    defaults give): an unknown ``model``, a rate above 100 %, a waterfall naming an unknown payer or
    one twice, an LTC scope that is not an ability level 0–4, a voucher ``min_level`` outside 0–4, a
    voucher expiry more than a year after its month."""
    errors: list[FieldError] = []
    if key == VOUCHER_EXPIRY_KEY:
        grace = value.get("grace_days")
        if isinstance(grace, int) and not isinstance(grace, bool) and grace > MAX_GRACE_DAYS:
            errors.append(FieldError("value.grace_days", f"must be at most {MAX_GRACE_DAYS}"))
        return errors
    if key == WATERFALL_KEY:
        order = value.get("order")
        if isinstance(order, list):
            names = [str(p) for p in order]
            unknown = [n for n in names if n not in Payer.__members__.values()]
            if unknown:
                errors.append(
                    FieldError("value.order", f"names unknown payers {unknown}; known: ltc, voucher, local")
                )
            if len(set(names)) != len(names):
                errors.append(FieldError("value.order", "names a payer twice"))
        return errors
    if key not in PAYER_KEYS.values():
        return errors
    model = value.get("model")
    if model is not None and model not in PaymentModel.__members__.values():
        errors.append(FieldError("value.model", "must be per_visit or per_day"))
    rate = value.get("rate_bp")
    if isinstance(rate, int | float) and not isinstance(rate, bool) and rate > BP:
        errors.append(FieldError("value.rate_bp", f"must be at most {BP} (100 %)"))
    if key == PAYER_KEYS[Payer.LTC] and scope not in {str(v) for v in LEVELS}:
        errors.append(FieldError("scope", "must be an ability level, 0 to 4"))
    level = value.get("min_level")
    if isinstance(level, int | float) and not isinstance(level, bool) and level not in LEVELS:
        errors.append(FieldError("value.min_level", "must be an ability level, 0 to 4"))
    return errors


def _int(entry: PolicyEntry, name: str) -> int:
    v = entry.value.get(name)
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or int(v) != v:
        raise SubsidyPolicyInvalid(f"Policy {entry.ref()}: {name!r} is not a whole number ≥ 0: {v!r}.")
    return int(v)


def _optional_int(entry: PolicyEntry, name: str) -> int | None:
    return None if entry.value.get(name) is None else _int(entry, name)


def payer_rule(payer: Payer, entry: PolicyEntry) -> PayerRule:
    """One payer's rule from its policy entry (see :func:`check_subsidy_value` for what is refused)."""
    problems = check_subsidy_value(entry.key, entry.scope, entry.value)
    if problems:
        raise SubsidyPolicyInvalid(f"Policy {entry.ref()}: {problems[0].field} {problems[0].reason}.")
    services = entry.value.get("services")
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise SubsidyPolicyInvalid(f"Policy {entry.ref()}: 'services' is not a list of service codes.")
    return PayerRule(
        payer=payer,
        scope=entry.scope,
        model=PaymentModel(entry.value.get("model", PaymentModel.PER_VISIT.value)),
        rate_bp=_int(entry, "rate_bp"),
        budget_fen=_int(entry, "budget_fen"),
        services=frozenset(services),
        min_level=_optional_int(entry, "min_level"),
        min_age=_optional_int(entry, "min_age"),
        ref=entry.ref(),
    )


def rule_pack(policy: PolicySnapshot) -> RulePack:
    """The payers' rules in ``policy`` (a snapshot of the ``subsidy.`` keys on one day, with billing's
    seeded defaults): the waterfall order, LTC by level, the voucher, local rules by category."""
    order_entry = policy.entry(WATERFALL_KEY)
    problems = check_subsidy_value(WATERFALL_KEY, "*", order_entry.value)
    raw = order_entry.value.get("order")
    if problems or not isinstance(raw, list):
        raise SubsidyPolicyInvalid(f"Policy {order_entry.ref()}: 'order' is not a list of payers.")
    ltc_rules = [payer_rule(Payer.LTC, e) for e in policy.scopes(PAYER_KEYS[Payer.LTC]).values()]
    ltc = {int(r.scope): r for r in ltc_rules}  # payer_rule checked each scope is a level
    voucher = policy.find(PAYER_KEYS[Payer.VOUCHER])
    local = {sc: payer_rule(Payer.LOCAL, e) for sc, e in policy.scopes(PAYER_KEYS[Payer.LOCAL]).items()}
    return RulePack(
        order=tuple(Payer(p) for p in raw),
        ltc=ltc,
        voucher=None if voucher is None else payer_rule(Payer.VOUCHER, voucher),
        local=local,
    )


def most_generous(rules: Iterable[PayerRule]) -> PayerRule | None:
    """The most generous of ``rules``: highest rate, then highest budget, then scope name (so the
    choice never depends on the order given)."""
    best: PayerRule | None = None
    for r in rules:
        if best is None or (r.generosity, best.scope) > (best.generosity, r.scope):
            best = r
    return best


PolicyRow: TypeAlias = tuple[str, str, Mapping[str, Any] | str, dt.date, dt.date | None]


def rule_packs(
    rows: Sequence[PolicyRow], days: Iterable[dt.date], defaults: Iterable[PolicyDefault]
) -> dict[dt.date, RulePack]:
    """The :class:`RulePack` of each of ``days`` from the ``subsidy.*`` policy ``rows`` that touch
    them ((key, scope, value, valid_from, valid_to), as :func:`core.policy.snapshot_from_rows` takes)
    and billing's seeded defaults: a change applies from its date. Days under the same rows share one
    parsed pack."""
    seeded = list(defaults)
    parsed: dict[tuple[tuple[str, str, dt.date], ...], RulePack] = {}
    out: dict[dt.date, RulePack] = {}
    for day in sorted(set(days)):
        snapshot = snapshot_from_rows(day, rows, seeded)
        applied = tuple(sorted((k, sc, e.valid_from) for (k, sc), e in snapshot.rows.items()))
        if applied not in parsed:
            parsed[applied] = rule_pack(snapshot)
        out[day] = parsed[applied]
    return out
