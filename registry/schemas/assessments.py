"""Ability assessments (GB/T 42195-2022): the 26 item scores in, the computed levels out."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from core.http import Page, component_key
from core.types import Day, Input, Name
from registry.assessment import LEVEL_NAMES, ItemScores
from registry.models import Assessment

Incident = Literal["fall", "choking", "wandering", "self_harm"]


class AssessmentCreate(Input):
    """``items`` holds the score of each of the 26 items (all required; missing ones are reported
    together); ``recent_incidents`` lists care-risk incidents of the last 30 days, one per incident."""

    items: Annotated[
        ItemScores,
        msgspec.Meta(
            description="The score of each of the 26 items; all are required. A request missing some "
            "gets one `assessment.item_missing` problem whose `missing` lists every one of them."
        ),
    ]
    assessor: Name
    assessed_on: Day
    has_dementia_dx: bool = False
    has_other_mental_dx: bool = False
    recent_incidents: Annotated[list[Incident], msgspec.Meta(max_length=30)] = msgspec.field(
        default_factory=list
    )


class AssessmentRead(msgspec.Struct):
    """``total`` is 0-90; levels 0 intact … 4 complete impairment; ``valid_until`` inclusive."""

    id: int
    elder_id: int
    items: ItemScores
    has_dementia_dx: bool
    has_other_mental_dx: bool
    recent_incidents: list[str]
    total: int
    preliminary_level: int
    final_level: int
    level_name_zh: str
    level_name_en: str
    assessor: str
    assessed_on: dt.date
    valid_until: dt.date
    created_at: dt.datetime


def assessment_read(a: Assessment) -> AssessmentRead:
    zh, en = LEVEL_NAMES[a.final_level]
    return AssessmentRead(
        id=a.id,
        elder_id=a.elder_id,
        items=msgspec.convert(a.items, ItemScores),
        has_dementia_dx=a.has_dementia_dx,
        has_other_mental_dx=a.has_other_mental_dx,
        recent_incidents=list(a.recent_incidents),
        total=a.total,
        preliminary_level=a.preliminary_level,
        final_level=a.final_level,
        level_name_zh=zh,
        level_name_en=en,
        assessor=a.assessor,
        assessed_on=a.assessed_on,
        valid_until=a.valid_until,
        created_at=a.created_at,
    )


# Paged lists keep the OpenAPI component names they had when these schemas were in api/schemas/
# (clients see them; see core.http.component_key).
AssessmentPage = Annotated[
    Page[AssessmentRead], component_key("Page_api.schemas.assessments.AssessmentRead_")
]
