"""Review signals flagged on settlement lines for the reviewing officer. They reject nothing by
themselves: the officer looks, and approves or rejects the line with a reason.

* ``caregiver_overload``: the caregiver has more visits that day than their daily capacity
  (``caregiver.daily_capacity``, what dispatch plans them for);
* ``impossible_travel``: the check-in is too far from the caregiver's previous check-out that day for
  the time between them: the gap is under ``travel_slack_bp`` of dispatch's travel estimate (haversine
  × ``dispatch.detour`` at ``dispatch.speed`` of the destination's district kind);
* ``hospital_day``: the elder was in hospital that day (``elder_absence`` of kind ``hospital``);
* ``billing_jump``: the provider's payable amount for the period is more than ``jump_bp`` of its
  average over the previous ``jump_months`` periods, and at least ``jump_min_fen`` more (policy
  ``settlement.signals``). Flagged on every line of the provider in the period, and on its statement.

Stored on a line as a bit set (``settlement_line.signals``). The rules are pure here; the close
evaluates their SQL twins (:data:`HAVERSINE_M_SQL`, :func:`too_far_apart_sql`) set-based.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from core.geo import EARTH_RADIUS_M, travel_seconds


class Signal(enum.IntFlag):
    CAREGIVER_OVERLOAD = 1
    IMPOSSIBLE_TRAVEL = 2
    HOSPITAL_DAY = 4
    BILLING_JUMP = 8

    @property
    def code(self) -> str:
        return (self.name or "").lower()


SIGNAL_LABELS: Final[dict[Signal, tuple[str, str]]] = {
    Signal.CAREGIVER_OVERLOAD: (
        "护理员当日服务次数超出能力",
        "more visits in a day than the caregiver can do",
    ),
    Signal.IMPOSSIBLE_TRAVEL: ("两次签到间隔不足以到达", "check-ins too far apart for the time between them"),
    Signal.HOSPITAL_DAY: ("老人当日住院", "the elder was in hospital that day"),
    Signal.BILLING_JUMP: ("机构结算金额突增", "a sudden jump in the provider's billing"),
}


def signal_codes(bits: int) -> list[str]:
    """The codes of the signals set in ``bits``, in bit order."""
    return [s.code for s in Signal if bits & s]


@dataclass(frozen=True, slots=True)
class SignalPolicy:
    """``settlement.signals`` with dispatch's travel norms of the period."""

    travel_slack_bp: int
    jump_bp: int
    jump_months: int
    jump_min_fen: int
    urban_speed_kmh: float
    rural_speed_kmh: float
    detour_bp: int


def overloaded(visits_that_day: int, daily_capacity: int) -> bool:
    return visits_that_day > daily_capacity


def too_far_apart(distance_m: float, gap_s: float, *, rural: bool, policy: SignalPolicy) -> bool:
    """Whether ``gap_s`` seconds between a check-out and the next check-in ``distance_m`` away is under
    the slack share of the travel estimate."""
    speed = policy.rural_speed_kmh if rural else policy.urban_speed_kmh
    needed = travel_seconds(distance_m, speed_kmh=speed, detour=policy.detour_bp / 10_000)
    return gap_s * 10_000 < needed * policy.travel_slack_bp


def billing_jump(current_fen: int, previous_fen: Sequence[int], policy: SignalPolicy) -> bool:
    """Whether the provider's ``current_fen`` jumps over its previous periods' (the last
    ``jump_months`` of them; none known: no jump)."""
    recent = list(previous_fen)[-policy.jump_months :] if policy.jump_months > 0 else []
    if not recent:
        return False
    average = sum(recent) / len(recent)
    return current_fen * 10_000 > average * policy.jump_bp and current_fen - average >= policy.jump_min_fen


# The one haversine of core.geo, in SQL over four double precision expressions: (lat1, lon1, lat2, lon2).
HAVERSINE_M_SQL: Final = (
    f"(2 * {EARTH_RADIUS_M} * asin(least(1.0, sqrt("
    "power(sin(radians({lat2} - {lat1}) / 2), 2) + "
    "cos(radians({lat1})) * cos(radians({lat2})) * power(sin(radians({lon2} - {lon1}) / 2), 2)))))"
)


def haversine_sql(lat1: str, lon1: str, lat2: str, lon2: str) -> str:
    return HAVERSINE_M_SQL.format(lat1=lat1, lon1=lon1, lat2=lat2, lon2=lon2)


def too_far_apart_sql(distance: str, gap_s: str, speed_kmh: str, detour_bp: str, slack_bp: str) -> str:
    """SQL twin of :func:`too_far_apart` over expressions (metres, seconds, km/h, bp, bp)."""
    needed = f"({distance} * {detour_bp} / 10000.0 / ({speed_kmh} / 3.6))"
    return f"({gap_s} * 10000.0 < {needed} * {slack_bp})"
