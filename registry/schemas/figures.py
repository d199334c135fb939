"""Headline figures of an area (the whole city or some districts) on a date."""

from __future__ import annotations

import datetime as dt

import msgspec

from registry.models import LivingSituation, SubsidyCategory
from registry.service.figures import Figures


class ElderFigures(msgspec.Struct):
    """Active elders; ``by_living_situation`` sums to ``total``; ``by_category`` counts the elders
    holding each subsidy category on the date (an elder may hold several, or none)."""

    total: int
    by_living_situation: dict[LivingSituation, int]
    by_category: dict[SubsidyCategory, int]


class DeviceFigures(msgspec.Struct):
    """Active devices installed in the homes of the area's elders, and how many are online."""

    total: int
    online: int


class FiguresRead(msgspec.Struct):
    """``district_ids`` is null for the whole city. ``providers`` are the active providers under
    contract on ``on`` that serve a district of the area; ``caregivers`` their active caregivers."""

    on: dt.date
    district_ids: list[int] | None
    elders: ElderFigures
    providers: int
    caregivers: int
    devices: DeviceFigures


def figures_read(f: Figures) -> FiguresRead:
    return FiguresRead(
        on=f.on,
        district_ids=None if f.district_ids is None else list(f.district_ids),
        elders=ElderFigures(
            total=f.elders,
            by_living_situation=dict(f.elders_by_living_situation),
            by_category=dict(f.elders_by_category),
        ),
        providers=f.providers,
        caregivers=f.caregivers,
        devices=DeviceFigures(total=f.devices, online=f.devices_online),
    )
