"""An elder as a reader sees it, straight from Core rows to the read structs: the list and the one
elder that every role reads most.

One query per page (or elder) selects the elder's columns, the current level, and the emergency
contacts, subsidy categories and long-term-care coverages as JSON arrays aggregated in the same query
(in the order the ORM relationships give them), decoded by msgspec into
:mod:`registry.schemas.elders`' structs. No ORM objects: their loading was most of the cost of a page.
The writes still answer through the ORM converters (``elder_read`` of an ``ElderView``);
``tests/integration/registry/test_elder_reads.py`` checks both give the same body for every role.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Date,
    Row,
    ScalarSelect,
    Select,
    Table,
    Text,
    bindparam,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from core.crud import Paged, Window, total_of
from registry.idcard import age_on, mask_id_number
from registry.models import Assessment, Elder, ElderCategory, EmergencyContact, LtcCoverage
from registry.schemas.elders import CategoryRead, ContactRead, ElderCareRead, ElderRead, LtcRead

ElderReadAny = ElderRead | ElderCareRead

_ELDER: Final[Table] = Elder.__table__  # type: ignore[assignment]
_CONTACT: Final[Table] = EmergencyContact.__table__  # type: ignore[assignment]
_CATEGORY: Final[Table] = ElderCategory.__table__  # type: ignore[assignment]
_COVERAGE: Final[Table] = LtcCoverage.__table__  # type: ignore[assignment]

_CONTACTS: Final = msgspec.json.Decoder(list[ContactRead])
_CATEGORIES: Final = msgspec.json.Decoder(list[CategoryRead])
_COVERAGES: Final = msgspec.json.Decoder(list[LtcRead])

# The elder's own columns the reads show (both views take theirs from these).
_COLUMNS: Final = (
    "id",
    "name",
    "gender",
    "birth_on",
    "id_number",
    "phone",
    "address",
    "lat",
    "lon",
    "community_id",
    "district_id",
    "living_situation",
    "has_dementia",
    "allows_any_gender_bathing",
    "medical_notes",
    "status",
    "status_on",
    "created_at",
    "updated_at",
)


def _json_rows(table: Table, fields: Sequence[str], order: Sequence[str]) -> ScalarSelect[Any]:
    """The elder's rows of ``table`` as a JSON array of objects (``[]`` when none), as text."""
    pairs: list[ColumnElement[Any]] = []
    for name in fields:
        pairs += [literal_column(f"'{name}'"), table.c[name]]
    rows = func.json_agg(aggregate_order_by(func.json_build_object(*pairs), *(table.c[o] for o in order)))
    return (
        select(cast(func.coalesce(rows, literal_column("'[]'::json")), Text))
        .where(table.c.elder_id == _ELDER.c.id)
        .correlate(_ELDER)
        .scalar_subquery()
    )


def current_level_expr(today: dt.date | BindParameter[dt.date]) -> ScalarSelect[int]:
    """Final level of the latest assessment of ``Elder`` valid on ``today`` (correlated subquery)."""
    return (
        select(Assessment.final_level)
        .where(
            Assessment.elder_id == Elder.id,
            Assessment.assessed_on <= today,
            Assessment.valid_until >= today,
        )
        .order_by(Assessment.assessed_on.desc(), Assessment.id.desc())
        .limit(1)
        .correlate(Elder)
        .scalar_subquery()
    )


def _select(*, care_only: bool) -> Select[Any]:
    """The read's columns, the level as of the bound ``today``."""
    level = current_level_expr(bindparam("today", type_=Date))
    columns: list[Any] = [*(_ELDER.c[n] for n in _COLUMNS), level.label("level")]
    columns.append(
        _json_rows(_CONTACT, ("position", "name", "relation", "phone"), ("position",)).label("contacts")
    )
    if not care_only:  # the care view has no categories or coverages
        columns.append(
            _json_rows(_CATEGORY, ("id", "category", "valid_from", "valid_to"), ("valid_from", "id")).label(
                "categories"
            )
        )
        columns.append(
            _json_rows(_COVERAGE, ("id", "policy_no", "valid_from", "valid_to"), ("valid_from", "id")).label(
                "ltc_coverages"
            )
        )
    return select(*columns)


# Built once per view (SQLAlchemy caches their compiled forms; a page joins its ids to them).
_FULL: Final = _select(care_only=False)
_CARE: Final = _select(care_only=True)
_ONE_FULL: Final = _FULL.where(_ELDER.c.id == bindparam("elder_id", type_=BigInteger))
_ONE_CARE: Final = _CARE.where(_ELDER.c.id == bindparam("elder_id", type_=BigInteger))


def read_of(
    row: Row[Any], *, care_only: bool, unmasked: bool, contacts_shown: bool, today: dt.date
) -> ElderReadAny:
    """The read struct of a row of :func:`_select`: the care view, or the full record (masked
    unless ``unmasked``), as ``registry.schemas.elders.elder_read`` gives them."""
    age = age_on(row.birth_on, today)
    if care_only:
        return ElderCareRead(
            id=row.id,
            name=row.name,
            gender=row.gender,
            age=age,
            phone=row.phone,
            address=row.address,
            lat=row.lat,
            lon=row.lon,
            community_id=row.community_id,
            district_id=row.district_id,
            living_situation=row.living_situation,
            has_dementia=row.has_dementia,
            allows_any_gender_bathing=row.allows_any_gender_bathing,
            medical_notes=row.medical_notes,
            status=row.status,
            level=row.level,
            contacts=_CONTACTS.decode(row.contacts) if contacts_shown else None,
        )
    return ElderRead(
        id=row.id,
        name=row.name,
        gender=row.gender,
        age=age,
        birth_on=row.birth_on if unmasked else None,
        id_number=row.id_number if unmasked else mask_id_number(row.id_number),
        id_number_masked=not unmasked,
        phone=row.phone,
        address=row.address,
        lat=row.lat,
        lon=row.lon,
        community_id=row.community_id,
        district_id=row.district_id,
        living_situation=row.living_situation,
        has_dementia=row.has_dementia,
        allows_any_gender_bathing=row.allows_any_gender_bathing,
        medical_notes=row.medical_notes,
        status=row.status,
        status_on=row.status_on,
        level=row.level,
        contacts=_CONTACTS.decode(row.contacts),
        categories=_CATEGORIES.decode(row.categories),
        ltc_coverages=_COVERAGES.decode(row.ltc_coverages),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def page_rows(
    session: AsyncSession, ids: Select[Any], window: Window, today: dt.date, *, care_only: bool
) -> Paged[Row[Any]]:
    """The rows of one page of the elders whose ids ``ids`` selects (by id), with the total."""
    page_ids = ids.order_by(_ELDER.c.id).limit(window.limit + 1).offset(window.offset).subquery()
    stmt = (
        (_CARE if care_only else _FULL)
        .select_from(_ELDER.join(page_ids, page_ids.c.id == _ELDER.c.id))
        .order_by(_ELDER.c.id)
    )
    rows = list((await session.execute(stmt, {"today": today})).all())
    total = await total_of(session, ids, window, len(rows))
    return Paged(items=rows[: window.limit], total=total, limit=window.limit, offset=window.offset)


async def one_row(
    session: AsyncSession, elder_id: int, today: dt.date, *, care_only: bool
) -> Row[Any] | None:
    """The row of one elder (whoever may see it: the caller checks), or ``None``."""
    stmt = _ONE_CARE if care_only else _ONE_FULL
    row: Row[Any] | None = (await session.execute(stmt, {"elder_id": elder_id, "today": today})).one_or_none()
    return row
