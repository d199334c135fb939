"""The dated policy a close applies, read once through :mod:`core.policy` for every day it prices:
the payers' rules (``subsidy.*``, DOMAIN §4), the waterfall order, adjudication (``settlement.*``) and
the review signals with dispatch's travel norms. Pure but for :func:`load_settlement_policy`.

A payer's value: ``rate_bp``, ``budget_fen``, ``services``, optionally ``min_level`` (voucher),
``min_age`` (a category) and ``model`` (``per_visit``, the default: the budget is per month; or
``per_day``: per service day).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.seed import POLICY_DEFAULTS
from billing.signals import SignalPolicy
from core.clock import SHANGHAI
from core.policy import PolicySnapshot, PolicyValue, load_policy, snapshot_from_rows
from dispatch.seed import POLICY_DEFAULTS as DISPATCH_DEFAULTS

# The payers of DOMAIN §4, by the names the waterfall order uses (the co-pay is what remains).
PAYERS: Final = ("ltc", "voucher", "local")
PAYER_KEYS: Final = {"ltc": "subsidy.ltc", "voucher": "subsidy.voucher", "local": "subsidy.local"}
WATERFALL_KEY: Final = "subsidy.waterfall"
CUTOFF_KEY: Final = "settlement.cutoff"
ADJUDICATION_KEY: Final = "settlement.adjudication"
SIGNALS_KEY: Final = "settlement.signals"
PREFIXES: Final = ("subsidy.", "settlement.")
PER_DAY: Final = "per_day"


@dataclass(frozen=True, slots=True)
class PayerRow:
    """One payer's rule for one scope (an LTC level, ``*`` for the voucher, a local category)."""

    payer: str
    scope: str
    rate_bp: int
    budget_fen: int
    services: tuple[str, ...]
    min_level: int | None = None
    min_age: int | None = None
    per_day: bool = False


@dataclass(frozen=True, slots=True)
class DayPolicy:
    """Everything a close applies to the lines of one service day."""

    day: dt.date
    order: tuple[str, ...]
    rows: tuple[PayerRow, ...]
    units_min_bp: int
    agreement_required: bool

    @property
    def rules(self) -> tuple[Any, ...]:
        """What decides prices on the day (a change of it cuts the elders' months into segments)."""
        return (self.order, self.rows)


@dataclass(frozen=True, slots=True)
class SettlementPolicy:
    days: Mapping[dt.date, DayPolicy]
    signals: SignalPolicy

    def change_days(self) -> list[dt.date]:
        """Days (not the first of a month) whose pricing rules differ from the day before."""
        out = []
        for day in sorted(self.days):
            prev = self.days.get(day - dt.timedelta(days=1))
            if day.day != 1 and prev is not None and prev.rules != self.days[day].rules:
                out.append(day)
        return out

    def min_ages(self) -> list[int]:
        return sorted({r.min_age for d in self.days.values() for r in d.rows if r.min_age is not None})


def _int(value: Mapping[str, Any], name: str, default: int | None = None) -> int | None:
    v = value.get(name, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"policy field {name!r} is not a number: {v!r}")
    return int(v)


def payer_rows(snapshot: PolicySnapshot) -> tuple[PayerRow, ...]:
    out: list[PayerRow] = []
    for payer, key in PAYER_KEYS.items():
        for scope, entry in sorted(snapshot.scopes(key).items()):
            v = entry.value
            out.append(
                PayerRow(
                    payer=payer,
                    scope=scope,
                    rate_bp=_int(v, "rate_bp") or 0,
                    budget_fen=_int(v, "budget_fen") or 0,
                    services=tuple(sorted(str(s) for s in v.get("services", []))),
                    min_level=_int(v, "min_level"),
                    min_age=_int(v, "min_age"),
                    per_day=v.get("model") == PER_DAY,
                )
            )
    return tuple(out)


def day_policy(snapshot: PolicySnapshot) -> DayPolicy:
    order = tuple(str(p) for p in snapshot.value(WATERFALL_KEY).get("order", []) if str(p) in PAYERS)
    adj = snapshot.value(ADJUDICATION_KEY)
    return DayPolicy(
        day=snapshot.day,
        order=order,
        rows=payer_rows(snapshot),
        units_min_bp=_int(adj, "units_min_bp") or 0,
        agreement_required=bool(adj.get("agreement_required", False)),
    )


def cutoff_at(month: dt.date, snapshot: PolicySnapshot) -> dt.datetime:
    """The cut-off of ``month``'s period (UTC): ``settlement.cutoff`` day and hour of the next month,
    Asia/Shanghai, read from the policy of the next month's first day (``snapshot``)."""
    nxt = (month.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    value = snapshot.value(CUTOFF_KEY)
    last = calendar.monthrange(nxt.year, nxt.month)[1]
    day = min(max(1, _int(value, "day", 1) or 1), last)
    hour = min(max(0, _int(value, "hour", 0) or 0), 23)
    return dt.datetime(nxt.year, nxt.month, day, hour, tzinfo=SHANGHAI).astimezone(dt.UTC)


async def load_settlement_policy(
    session: AsyncSession, days: Sequence[dt.date], signals_day: dt.date
) -> SettlementPolicy:
    """The policy of each of ``days`` (one query for the rows touching them) and the signals' policy
    of ``signals_day``."""
    if not days:
        raise ValueError("no days to load policy for")
    first, last = min(days), max(days)
    stmt = select(
        PolicyValue.key, PolicyValue.scope, PolicyValue.value, PolicyValue.valid_from, PolicyValue.valid_to
    ).where(
        PolicyValue.key.startswith(PREFIXES[0], autoescape=True)
        | PolicyValue.key.startswith(PREFIXES[1], autoescape=True),
        PolicyValue.valid_from <= last,
        PolicyValue.valid_to.is_(None) | (PolicyValue.valid_to >= first),
    )
    rows = [(r[0], r[1], r[2], r[3], r[4]) for r in (await session.execute(stmt)).all()]
    by_day = {d: day_policy(snapshot_from_rows(d, rows, POLICY_DEFAULTS)) for d in sorted(set(days))}
    snap = snapshot_from_rows(signals_day, rows, POLICY_DEFAULTS)
    travel = await load_policy(
        session, day=signals_day, prefixes=["dispatch.speed", "dispatch.detour"], defaults=DISPATCH_DEFAULTS
    )
    sig = snap.value(SIGNALS_KEY)
    signals = SignalPolicy(
        travel_slack_bp=_int(sig, "travel_slack_bp") or 0,
        jump_bp=_int(sig, "jump_bp") or 0,
        jump_months=_int(sig, "jump_months") or 0,
        jump_min_fen=_int(sig, "jump_min_fen") or 0,
        urban_speed_kmh=travel.number("dispatch.speed", "kmh", "urban"),
        rural_speed_kmh=travel.number("dispatch.speed", "kmh", "rural"),
        detour_bp=int(travel.number("dispatch.detour", "bp")),
    )
    return SettlementPolicy(by_day, signals)


async def load_cutoff(session: AsyncSession, month: dt.date) -> dt.datetime:
    nxt = (month.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    snap = await load_policy(session, day=nxt, prefixes=[CUTOFF_KEY], defaults=POLICY_DEFAULTS)
    return cutoff_at(month, snap)
