"""Wire types of the welfare plan (探访关爱): a plan line per elder, a page of them, and an override."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from core.types import NO_NUL, Input

TierName = Literal["high", "medium", "low", "none"]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]


class OverrideIn(Input):
    """An officer's tier for the elder from today on, whatever the rules say (``none``: no visits)."""

    tier: TierName
    reason: Reason


class OverrideRead(msgspec.Struct):
    tier: TierName
    valid_from: dt.date
    valid_to: dt.date | None


class VisitRead(msgspec.Struct):
    """The latest welfare visit placed: its due day (local), why, its order and the order's state."""

    due_on: dt.date
    reason: Literal["cadence", "after_alarm"]
    order_id: int
    order_state: str


class PlanItemRead(msgspec.Struct):
    """One elder's welfare plan: the tier (``source``: the dated rules or an officer's override), the
    last visit that took place or is under way (cancelled and no-show orders do not count), the next
    due day (local; before today means overdue) and the latest order placed."""

    elder_id: int
    name: str
    district_id: int
    tier: TierName
    source: Literal["rules", "override"]
    override: OverrideRead | None
    last_visit_on: dt.date | None
    next_due_on: dt.date | None
    open_order: bool
    latest_visit: VisitRead | None


class PlanPageRead(msgspec.Struct):
    items: list[PlanItemRead]
    has_more: bool
    next_after: int | None
