"""Ability assessment of older people per GB/T 42195-2022 (老年人能力评估规范), DOMAIN §2.

26 items in 4 dimensions; a higher score means more independent; the total is 0-90. The preliminary
level comes from the total; it is raised one step (at most to 4) for each of: a diagnosed dementia,
another diagnosed mental disorder, and two or more care-risk incidents in the last 30 days.
An assessment is valid for 12 months. Pure: no I/O, the assessment date is passed in.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any

import msgspec
from msgspec import UNSET

from core.errors import Invalid


class Dimension(enum.StrEnum):
    SELF_CARE = "self_care"  # 自理能力
    MOBILITY = "mobility"  # 基础运动能力
    MENTAL = "mental"  # 精神状态
    PERCEPTION = "perception"  # 感知觉与社会参与


DIMENSION_NAMES: Mapping[Dimension, tuple[str, str]] = MappingProxyType(
    {
        Dimension.SELF_CARE: ("自理能力", "Self-care"),
        Dimension.MOBILITY: ("基础运动能力", "Basic mobility"),
        Dimension.MENTAL: ("精神状态", "Mental status"),
        Dimension.PERCEPTION: ("感知觉与社会参与", "Perception and social participation"),
    }
)


# Allowed scores of an item: 0 (least independent) up to its maximum.
Score1 = Annotated[int, msgspec.Meta(ge=0, le=1)]
Score2 = Annotated[int, msgspec.Meta(ge=0, le=2)]
Score3 = Annotated[int, msgspec.Meta(ge=0, le=3)]
Score4 = Annotated[int, msgspec.Meta(ge=0, le=4)]


def _unset() -> Any:
    return UNSET


# A missing item decodes to UNSET rather than failing, so that :func:`validate_items` can name every
# missing item in one error (a decoder stops at the first missing field). Typed ``Any`` so the
# fields stay plain ``int`` in the OpenAPI schema instead of a one-armed ``oneOf``.
_NOT_SCORED: Any = msgspec.field(default_factory=_unset)


class ItemScores(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The 26 item scores of GB/T 42195-2022, each 0 up to its maximum; higher is more independent.
    All 26 are required: a request missing some gets one ``assessment.item_missing`` problem whose
    ``missing`` lists them all. This class is the one home of the item keys and their ranges."""

    # 自理能力 self-care
    eating: Score4 = _NOT_SCORED
    grooming: Score4 = _NOT_SCORED
    bathing: Score4 = _NOT_SCORED
    dressing_upper: Score4 = _NOT_SCORED
    dressing_lower: Score4 = _NOT_SCORED
    bladder: Score4 = _NOT_SCORED
    bowel: Score4 = _NOT_SCORED
    toileting: Score4 = _NOT_SCORED
    # 基础运动能力 basic mobility
    bed_mobility: Score4 = _NOT_SCORED
    transfer: Score4 = _NOT_SCORED
    walking: Score4 = _NOT_SCORED
    stairs: Score3 = _NOT_SCORED
    # 精神状态 mental status
    orientation_time: Score4 = _NOT_SCORED
    orientation_place: Score4 = _NOT_SCORED
    orientation_people: Score4 = _NOT_SCORED
    memory: Score4 = _NOT_SCORED
    comprehension: Score4 = _NOT_SCORED
    expression: Score4 = _NOT_SCORED
    aggression: Score1 = _NOT_SCORED
    depression: Score1 = _NOT_SCORED
    consciousness: Score2 = _NOT_SCORED
    # 感知觉与社会参与 perception and social participation
    vision: Score2 = _NOT_SCORED
    hearing: Score2 = _NOT_SCORED
    daily_tasks: Score4 = _NOT_SCORED
    transport: Score3 = _NOT_SCORED
    social: Score4 = _NOT_SCORED


def _max_scores() -> dict[str, int]:
    """Each item's maximum score, read from the ranges declared on :class:`ItemScores`."""
    info = msgspec.inspect.type_info(ItemScores)
    out: dict[str, int] = {}
    for field in info.fields if isinstance(info, msgspec.inspect.StructType) else ():
        kind = field.type
        if not isinstance(kind, msgspec.inspect.IntType) or kind.le is None:
            raise TypeError(f"ItemScores.{field.name} must be a bounded int score.")
        out[field.name] = kind.le
    return out


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    dimension: Dimension
    name_zh: str
    name_en: str
    max_score: int


_MAX_SCORE = _max_scores()
_NAMES: tuple[tuple[str, Dimension, str, str], ...] = (
    ("eating", Dimension.SELF_CARE, "进食", "Eating"),
    ("grooming", Dimension.SELF_CARE, "修饰", "Grooming"),
    ("bathing", Dimension.SELF_CARE, "洗澡", "Bathing"),
    ("dressing_upper", Dimension.SELF_CARE, "穿/脱上衣", "Dressing (upper body)"),
    ("dressing_lower", Dimension.SELF_CARE, "穿/脱裤子和鞋袜", "Dressing (lower body)"),
    ("bladder", Dimension.SELF_CARE, "小便控制", "Bladder control"),
    ("bowel", Dimension.SELF_CARE, "大便控制", "Bowel control"),
    ("toileting", Dimension.SELF_CARE, "如厕", "Toileting"),
    ("bed_mobility", Dimension.MOBILITY, "床上体位转移", "Bed mobility"),
    ("transfer", Dimension.MOBILITY, "床椅转移", "Bed-chair transfer"),
    ("walking", Dimension.MOBILITY, "平地行走", "Walking (about 50 m)"),
    ("stairs", Dimension.MOBILITY, "上下楼梯", "Stairs"),
    ("orientation_time", Dimension.MENTAL, "时间定向", "Orientation to time"),
    ("orientation_place", Dimension.MENTAL, "空间定向", "Orientation to place"),
    ("orientation_people", Dimension.MENTAL, "人物定向", "Orientation to people"),
    ("memory", Dimension.MENTAL, "记忆", "Memory"),
    ("comprehension", Dimension.MENTAL, "理解能力", "Comprehension"),
    ("expression", Dimension.MENTAL, "表达能力", "Expression"),
    ("aggression", Dimension.MENTAL, "攻击行为", "Aggressive behaviour"),
    ("depression", Dimension.MENTAL, "抑郁症状", "Depressive symptoms"),
    ("consciousness", Dimension.MENTAL, "意识水平", "Level of consciousness"),
    ("vision", Dimension.PERCEPTION, "视力", "Vision"),
    ("hearing", Dimension.PERCEPTION, "听力", "Hearing"),
    ("daily_tasks", Dimension.PERCEPTION, "执行日常事务", "Daily tasks"),
    ("transport", Dimension.PERCEPTION, "使用交通工具外出", "Using transport"),
    ("social", Dimension.PERCEPTION, "社会交往能力", "Social interaction"),
)
if [key for key, *_ in _NAMES] != list(_MAX_SCORE):
    raise RuntimeError("The item names and ItemScores disagree on the item keys or their order.")
ITEMS: tuple[Item, ...] = tuple(Item(key, dim, zh, en, _MAX_SCORE[key]) for key, dim, zh, en in _NAMES)
ITEMS_BY_KEY: Mapping[str, Item] = MappingProxyType({i.key: i for i in ITEMS})
MAX_TOTAL = sum(i.max_score for i in ITEMS)  # 90
DIMENSION_MAX: Mapping[Dimension, int] = MappingProxyType(
    {d: sum(i.max_score for i in ITEMS if i.dimension is d) for d in Dimension}
)

# Lowest total of each level, most independent first: (level, minimum total).
LEVEL_BANDS: tuple[tuple[int, int], ...] = ((0, 90), (1, 66), (2, 46), (3, 30), (4, 0))
LEVEL_NAMES: Mapping[int, tuple[str, str]] = MappingProxyType(
    {
        0: ("能力完好", "Intact"),
        1: ("轻度失能", "Mildly impaired"),
        2: ("中度失能", "Moderately impaired"),
        3: ("重度失能", "Severely impaired"),
        4: ("完全失能", "Completely impaired"),
    }
)
MAX_LEVEL = 4

# 照护风险事件 care-risk incidents counted for the "two or more in the last 30 days" adjustment.
INCIDENT_KINDS: frozenset[str] = frozenset({"fall", "choking", "wandering", "self_harm"})
INCIDENT_THRESHOLD = 2
VALID_MONTHS = 12


class Adjustment(enum.StrEnum):
    DEMENTIA = "dementia_dx"
    OTHER_MENTAL = "other_mental_dx"
    INCIDENTS = "recent_incidents"


class InvalidAssessment(Invalid, ValueError):
    """Bad assessment input; ``code`` is stable (``assessment.item_missing`` …), ``item`` names the
    item (the first, when ``missing`` lists several)."""

    def __init__(self, code: str, message: str, *, item: str | None = None, **extra: object) -> None:
        super().__init__(message, code=code, item=item, **extra)
        self.item = item


@dataclass(frozen=True, slots=True)
class AssessmentResult:
    items: Mapping[str, int]
    total: int
    dimension_totals: Mapping[Dimension, int]
    preliminary_level: int
    final_level: int
    adjustments: tuple[Adjustment, ...]
    assessed_on: dt.date
    valid_until: dt.date  # inclusive

    @property
    def level_name_zh(self) -> str:
        return LEVEL_NAMES[self.final_level][0]

    @property
    def level_name_en(self) -> str:
        return LEVEL_NAMES[self.final_level][1]

    def is_valid_on(self, day: dt.date) -> bool:
        return self.assessed_on <= day <= self.valid_until


def level_for_total(total: int) -> int:
    """The preliminary level (0 intact … 4 complete) for a total score 0-90."""
    if not 0 <= total <= MAX_TOTAL:
        raise InvalidAssessment("assessment.total_range", f"A total score is 0-{MAX_TOTAL}; got {total}.")
    for level, minimum in LEVEL_BANDS:
        if total >= minimum:
            return level
    raise AssertionError("unreachable: the last band starts at 0")


def valid_until(assessed_on: dt.date, months: int = VALID_MONTHS) -> dt.date:
    """The last day (inclusive) an assessment is valid: the day before its ``months`` anniversary.

    An anniversary that falls on a missing day (29 February in a common year, 31st in a short
    month) moves to the first day of the next month, so 2024-02-29 is valid through 2025-02-28.
    """
    month_index = assessed_on.month - 1 + months
    year, month = assessed_on.year + month_index // 12, month_index % 12 + 1
    try:
        anniversary = dt.date(year, month, assessed_on.day)
    except ValueError:
        anniversary = dt.date(year + month // 12, month % 12 + 1, 1)
    return anniversary - dt.timedelta(days=1)


def validate_items(items: ItemScores | Mapping[str, object]) -> dict[str, int]:
    """Check that every item is present once, known, an int and within its range.

    Missing items are reported together: one ``assessment.item_missing`` error whose ``missing``
    lists every item without a score (``item`` is the first of them)."""
    given: Mapping[str, object]
    if isinstance(items, ItemScores):
        given = {k: v for k, v in msgspec.structs.asdict(items).items() if v is not UNSET}
    else:
        given = {k: v for k, v in items.items() if v is not UNSET}
    unknown = sorted(set(given) - ITEMS_BY_KEY.keys())
    if unknown:
        raise InvalidAssessment(
            "assessment.item_unknown", f"Unknown assessment item {unknown[0]!r}.", item=unknown[0]
        )
    missing = [item for item in ITEMS if item.key not in given]
    if missing:
        names = ", ".join(f"{i.key} ({i.name_en})" for i in missing)
        raise InvalidAssessment(
            "assessment.item_missing",
            f"{len(missing)} of the {len(ITEMS)} items have no score: {names}.",
            item=missing[0].key,
            missing=[i.key for i in missing],
        )
    out: dict[str, int] = {}
    for item in ITEMS:
        score = given[item.key]
        if isinstance(score, bool) or not isinstance(score, int):
            raise InvalidAssessment(
                "assessment.item_type",
                f"Item {item.key!r} needs a whole-number score; got {score!r}.",
                item=item.key,
            )
        if not 0 <= score <= item.max_score:
            raise InvalidAssessment(
                "assessment.item_range",
                f"Item {item.key!r} ({item.name_en}) is scored 0-{item.max_score}; got {score}.",
                item=item.key,
            )
        out[item.key] = score
    return out


def assess(
    items: ItemScores | Mapping[str, int],
    *,
    has_dementia_dx: bool,
    has_other_mental_dx: bool,
    recent_incidents: Collection[str],
    assessed_on: dt.date,
) -> AssessmentResult:
    """Score an assessment and derive its level and validity.

    ``recent_incidents`` lists the care-risk incidents of the last 30 days, one entry per occurrence
    (two falls count as two), each one of :data:`INCIDENT_KINDS`.
    """
    scores = validate_items(items)
    for incident in recent_incidents:
        if incident not in INCIDENT_KINDS:
            raise InvalidAssessment(
                "assessment.incident_unknown",
                f"Unknown incident {incident!r}; expected one of {', '.join(sorted(INCIDENT_KINDS))}.",
                item=incident,
            )
    dimension_totals = dict.fromkeys(Dimension, 0)
    for item in ITEMS:
        dimension_totals[item.dimension] += scores[item.key]
    total = sum(dimension_totals.values())
    preliminary = level_for_total(total)
    adjustments: list[Adjustment] = []
    if has_dementia_dx:
        adjustments.append(Adjustment.DEMENTIA)
    if has_other_mental_dx:
        adjustments.append(Adjustment.OTHER_MENTAL)
    if len(recent_incidents) >= INCIDENT_THRESHOLD:
        adjustments.append(Adjustment.INCIDENTS)
    return AssessmentResult(
        items=MappingProxyType(scores),
        total=total,
        dimension_totals=MappingProxyType(dimension_totals),
        preliminary_level=preliminary,
        final_level=min(MAX_LEVEL, preliminary + len(adjustments)),
        adjustments=tuple(adjustments),
        assessed_on=assessed_on,
        valid_until=valid_until(assessed_on),
    )
