from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest

from registry.assessment import (
    DIMENSION_MAX,
    ITEMS,
    LEVEL_NAMES,
    MAX_TOTAL,
    Adjustment,
    Dimension,
    InvalidAssessment,
    ItemScores,
    assess,
    level_for_total,
    valid_until,
)

pytestmark = pytest.mark.unit

ON = dt.date(2026, 11, 20)


def items_with_total(total: int) -> dict[str, int]:
    """Full marks, then points taken off item by item from the end of the table until ``total``."""
    scores = {i.key: i.max_score for i in ITEMS}
    deficit = MAX_TOTAL - total
    for item in reversed(ITEMS):
        take = min(deficit, item.max_score)
        scores[item.key] -= take
        deficit -= take
    assert deficit == 0
    return scores


def run(total: int, *, dementia: bool = False, other: bool = False, incidents: tuple[str, ...] = ()) -> Any:
    return assess(
        items_with_total(total),
        has_dementia_dx=dementia,
        has_other_mental_dx=other,
        recent_incidents=incidents,
        assessed_on=ON,
    )


def test_item_table_matches_the_standard() -> None:
    assert len(ITEMS) == 26
    assert len({i.key for i in ITEMS}) == 26
    assert MAX_TOTAL == 90
    assert dict(DIMENSION_MAX) == {
        Dimension.SELF_CARE: 32,
        Dimension.MOBILITY: 15,
        Dimension.MENTAL: 28,
        Dimension.PERCEPTION: 15,
    }
    assert [sum(1 for i in ITEMS if i.dimension is d) for d in Dimension] == [8, 4, 9, 5]


@pytest.mark.parametrize(
    ("total", "level"),
    [
        (90, 0),
        (89, 1),
        (66, 1),
        (65, 2),
        (46, 2),
        (45, 3),
        (30, 3),
        (29, 4),
        (1, 4),
        (0, 4),
    ],
)
def test_band_boundaries(total: int, level: int) -> None:
    assert level_for_total(total) == level
    r = run(total)
    assert r.total == total
    assert r.preliminary_level == level
    assert r.final_level == level
    assert r.adjustments == ()
    assert sum(r.dimension_totals.values()) == total


@pytest.mark.parametrize("total", [-1, 91])
def test_total_out_of_range(total: int) -> None:
    with pytest.raises(InvalidAssessment) as info:
        level_for_total(total)
    assert info.value.code == "assessment.total_range"


@pytest.mark.parametrize(
    ("total", "dementia", "other", "incidents", "final", "adjustments"),
    [
        (90, True, False, (), 1, (Adjustment.DEMENTIA,)),
        (90, False, True, (), 1, (Adjustment.OTHER_MENTAL,)),
        (90, False, False, ("fall", "choking"), 1, (Adjustment.INCIDENTS,)),
        (90, False, False, ("fall", "fall"), 1, (Adjustment.INCIDENTS,)),  # occurrences count
        (90, False, False, ("wandering",), 0, ()),  # one incident is not enough
        (90, True, True, (), 2, (Adjustment.DEMENTIA, Adjustment.OTHER_MENTAL)),
        (
            90,
            True,
            True,
            ("self_harm", "wandering", "fall"),
            3,
            (Adjustment.DEMENTIA, Adjustment.OTHER_MENTAL, Adjustment.INCIDENTS),
        ),
        (66, True, False, (), 2, (Adjustment.DEMENTIA,)),
        (46, True, True, (), 4, (Adjustment.DEMENTIA, Adjustment.OTHER_MENTAL)),
        # capped at 4
        (
            45,
            True,
            True,
            ("fall", "choking"),
            4,
            (Adjustment.DEMENTIA, Adjustment.OTHER_MENTAL, Adjustment.INCIDENTS),
        ),
        (29, True, False, (), 4, (Adjustment.DEMENTIA,)),
        (
            0,
            True,
            True,
            ("fall", "fall"),
            4,
            (Adjustment.DEMENTIA, Adjustment.OTHER_MENTAL, Adjustment.INCIDENTS),
        ),
    ],
)
def test_adjustments_and_cap(
    total: int,
    dementia: bool,
    other: bool,
    incidents: tuple[str, ...],
    final: int,
    adjustments: tuple[Adjustment, ...],
) -> None:
    r = run(total, dementia=dementia, other=other, incidents=incidents)
    assert r.preliminary_level == level_for_total(total)
    assert r.final_level == final
    assert r.adjustments == adjustments
    assert (r.level_name_zh, r.level_name_en) == LEVEL_NAMES[final]


def test_dimension_subtotals() -> None:
    scores = {i.key: i.max_score for i in ITEMS}
    scores["bathing"] = 1  # self-care -3
    scores["stairs"] = 0  # mobility -3
    scores["memory"] = 2  # mental -2
    scores["hearing"] = 1  # perception -1
    r = assess(scores, has_dementia_dx=False, has_other_mental_dx=False, recent_incidents=[], assessed_on=ON)
    assert dict(r.dimension_totals) == {
        Dimension.SELF_CARE: 29,
        Dimension.MOBILITY: 12,
        Dimension.MENTAL: 26,
        Dimension.PERCEPTION: 14,
    }
    assert r.total == 81
    assert r.final_level == 1
    assert r.level_name_zh == "轻度失能"
    assert r.items["bathing"] == 1


@pytest.mark.parametrize(
    ("change", "code", "item"),
    [
        ({"eating": None}, "assessment.item_missing", "eating"),
        ({"social": None}, "assessment.item_missing", "social"),
        ({"flying": 1}, "assessment.item_unknown", "flying"),
        ({"stairs": 4}, "assessment.item_range", "stairs"),
        ({"aggression": 2}, "assessment.item_range", "aggression"),
        ({"consciousness": 3}, "assessment.item_range", "consciousness"),
        ({"eating": -1}, "assessment.item_range", "eating"),
        ({"vision": 3}, "assessment.item_range", "vision"),
        ({"eating": 2.0}, "assessment.item_type", "eating"),
        ({"eating": "4"}, "assessment.item_type", "eating"),
        ({"depression": True}, "assessment.item_type", "depression"),
    ],
)
def test_invalid_items(change: dict[str, Any], code: str, item: str) -> None:
    scores: dict[str, Any] = {i.key: i.max_score for i in ITEMS}
    for key, value in change.items():
        if value is None:
            del scores[key]
        else:
            scores[key] = value
    with pytest.raises(InvalidAssessment) as info:
        assess(scores, has_dementia_dx=False, has_other_mental_dx=False, recent_incidents=[], assessed_on=ON)
    assert info.value.code == code
    assert info.value.item == item
    assert item in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_items_are_named_together() -> None:
    scores = {i.key: i.max_score for i in ITEMS if i.key not in ("eating", "stairs", "social")}
    with pytest.raises(InvalidAssessment) as info:
        assess(scores, has_dementia_dx=False, has_other_mental_dx=False, recent_incidents=[], assessed_on=ON)
    assert info.value.code == "assessment.item_missing"
    assert info.value.extra["missing"] == ["eating", "stairs", "social"]
    assert info.value.item == "eating"
    assert "3 of the 26 items" in str(info.value)


def test_item_scores_struct_is_the_item_table() -> None:
    assert msgspec.structs.fields(ItemScores)[0].name == "eating"
    assert [f.name for f in msgspec.structs.fields(ItemScores)] == [i.key for i in ITEMS]
    full = msgspec.convert({i.key: i.max_score for i in ITEMS}, ItemScores)
    r = assess(full, has_dementia_dx=False, has_other_mental_dx=False, recent_incidents=[], assessed_on=ON)
    assert r.total == MAX_TOTAL
    partial = msgspec.json.decode(b'{"eating": 4, "stairs": 3}', type=ItemScores)
    with pytest.raises(InvalidAssessment) as info:
        assess(partial, has_dementia_dx=False, has_other_mental_dx=False, recent_incidents=[], assessed_on=ON)
    assert len(info.value.extra["missing"]) == 24
    with pytest.raises(msgspec.ValidationError, match=r"\$\.stairs"):
        msgspec.json.decode(b'{"stairs": 4}', type=ItemScores)
    with pytest.raises(msgspec.ValidationError, match="flying"):
        msgspec.json.decode(b'{"flying": 1}', type=ItemScores)


def test_unknown_incident() -> None:
    with pytest.raises(InvalidAssessment) as info:
        run(90, incidents=("fall", "burn"))
    assert info.value.code == "assessment.incident_unknown"
    assert info.value.item == "burn"


@pytest.mark.parametrize(
    ("assessed_on", "until"),
    [
        (dt.date(2026, 11, 20), dt.date(2027, 11, 19)),
        (dt.date(2026, 1, 1), dt.date(2026, 12, 31)),
        (dt.date(2025, 12, 31), dt.date(2026, 12, 30)),
        (dt.date(2024, 2, 29), dt.date(2025, 2, 28)),  # leap day: anniversary is 1 March
        (dt.date(2023, 3, 1), dt.date(2024, 2, 29)),  # window ends on a leap day
        (dt.date(2027, 2, 28), dt.date(2028, 2, 27)),
        (dt.date(2027, 3, 1), dt.date(2028, 2, 29)),
    ],
)
def test_valid_until(assessed_on: dt.date, until: dt.date) -> None:
    assert valid_until(assessed_on) == until
    r = assess(
        items_with_total(70),
        has_dementia_dx=False,
        has_other_mental_dx=False,
        recent_incidents=[],
        assessed_on=assessed_on,
    )
    assert r.valid_until == until
    assert r.is_valid_on(until)
    assert not r.is_valid_on(until + dt.timedelta(days=1))
    assert not r.is_valid_on(assessed_on - dt.timedelta(days=1))


@pytest.mark.parametrize(
    ("assessed_on", "months", "until"),
    [
        (dt.date(2026, 1, 31), 1, dt.date(2026, 2, 28)),  # 31 Feb → anniversary 1 March
        (dt.date(2026, 8, 31), 6, dt.date(2027, 2, 28)),
        (dt.date(2026, 12, 15), 1, dt.date(2027, 1, 14)),
    ],
)
def test_valid_until_other_terms(assessed_on: dt.date, months: int, until: dt.date) -> None:
    assert valid_until(assessed_on, months) == until
