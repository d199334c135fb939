"""An elder as a reader sees it, straight from PostgreSQL to the read structs: the list and the one
elder that every role reads most.

One query per page (or elder): PostgreSQL builds each elder's JSON object, with exactly the fields of
:mod:`registry.schemas.elders`' read structs (the full view or the care view), the current level and
the emergency contacts, subsidy categories and long-term-care coverages aggregated in it (in the order
the ORM relationships give them); msgspec decodes a page of them straight into the structs. No ORM
objects and no Python per field: their loading and building were most of the cost of a page. The
age (:func:`registry.idcard.age_on`) and the masked ID number (:func:`registry.idcard.mask_id_number`)
have their SQL twins here. The writes still answer through the ORM converters (``elder_read`` of an
``ElderView``); ``tests/integration/registry/test_elder_reads.py`` checks both give the same body for
every role.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from sqlalchemy import (
    ARRAY,
    BigInteger,
    BindParameter,
    Boolean,
    ColumnElement,
    Date,
    Integer,
    Row,
    ScalarSelect,
    Select,
    Subquery,
    Table,
    Text,
    any_,
    bindparam,
    case,
    cast,
    extract,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from core.crud import Paged, Window, total_of
from registry.models import Assessment, Elder, ElderCategory, EmergencyContact, LtcCoverage
from registry.schemas.elders import ElderCareRead, ElderRead

ElderReadAny = ElderRead | ElderCareRead

_ELDER: Final[Table] = Elder.__table__  # type: ignore[assignment]
_CONTACT: Final[Table] = EmergencyContact.__table__  # type: ignore[assignment]
_CATEGORY: Final[Table] = ElderCategory.__table__  # type: ignore[assignment]
_COVERAGE: Final[Table] = LtcCoverage.__table__  # type: ignore[assignment]

_FULL_LIST: Final = msgspec.json.Decoder(list[ElderRead])
_CARE_LIST: Final = msgspec.json.Decoder(list[ElderCareRead])

# The elder's own columns each view shows as they are.
_CARE_COLUMNS: Final = (
    "id",
    "name",
    "gender",
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
)
_FULL_COLUMNS: Final = (*_CARE_COLUMNS, "status_on")


def _utc(column: ColumnElement[Any]) -> ColumnElement[str]:
    """An instant as ISO 8601 in UTC with ``Z`` (what the ORM path's aware datetimes encode to)."""
    return func.to_char(func.timezone("UTC", column), literal_column("""'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""))


def age_sql(birth_on: ColumnElement[dt.date], today: ColumnElement[dt.date]) -> ColumnElement[int]:
    """SQL twin of :func:`registry.idcard.age_on`: whole years (29 February turns a year on 1 March)."""

    def md(day: ColumnElement[dt.date]) -> ColumnElement[Any]:
        return extract("month", day) * 100 + extract("day", day)

    return cast(
        extract("year", today) - extract("year", birth_on) - case((md(today) < md(birth_on), 1), else_=0),
        Integer,
    )


def masked_id_sql(id_number: ColumnElement[str]) -> ColumnElement[str]:
    """SQL twin of :func:`registry.idcard.mask_id_number`: region and sequence shown, the rest ``*``."""
    s = func.upper(func.btrim(id_number))
    return case(
        (func.length(s) != 18, func.repeat("*", func.length(s))),
        else_=func.substr(s, 1, 6) + "********" + func.substr(s, 15, 3) + "*",
    )


def _json_rows(table: Table, fields: Sequence[str], order: Sequence[str], ids: Any) -> Subquery:
    """``(elder_id, rows)``: the rows of ``table`` of the elders ``ids`` as a JSON array of objects
    each, aggregated for all of them in one pass (one index scan, not one per elder)."""
    pairs: list[ColumnElement[Any]] = []
    for name in fields:
        pairs += [literal_column(f"'{name}'"), table.c[name]]
    rows = func.json_agg(aggregate_order_by(func.json_build_object(*pairs), *(table.c[o] for o in order)))
    return (
        select(table.c.elder_id, rows.label("rows"))
        .where(table.c.elder_id == any_(ids))
        .group_by(table.c.elder_id)
        .subquery()
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


_EMPTY: Final[ColumnElement[Any]] = literal_column("'[]'::json")


def _select(*, care_only: bool) -> Select[Any]:
    """``(id, district_id, body)`` of the elders of the bound array ``ids``, ordered by id: ``body``
    is the elder's read as a JSON object (text), for the bound ``today`` and ``unmasked`` (the full
    view: the ID number and birth date shown). The care view's contacts are all there; the caller
    hides them unless a visit is under way."""
    today = bindparam("today", type_=Date)
    ids = bindparam("ids", type_=ARRAY(BigInteger))
    contacts = _json_rows(_CONTACT, ("position", "name", "relation", "phone"), ("position",), ids)
    source = _ELDER.outerjoin(contacts, contacts.c.elder_id == _ELDER.c.id)
    pairs: list[ColumnElement[Any]] = []

    def put(name: str, value: ColumnElement[Any]) -> None:
        pairs.extend((literal_column(f"'{name}'"), value))

    for name in _CARE_COLUMNS if care_only else _FULL_COLUMNS:
        put(name, _ELDER.c[name])
    put("age", age_sql(_ELDER.c.birth_on, today))
    put("level", current_level_expr(today))
    put("contacts", func.coalesce(contacts.c.rows, _EMPTY))
    if care_only:
        put("view", literal_column("'care'"))
    else:
        categories = _json_rows(
            _CATEGORY, ("id", "category", "valid_from", "valid_to"), ("valid_from", "id"), ids
        )
        coverages = _json_rows(
            _COVERAGE, ("id", "policy_no", "valid_from", "valid_to"), ("valid_from", "id"), ids
        )
        source = source.outerjoin(categories, categories.c.elder_id == _ELDER.c.id).outerjoin(
            coverages, coverages.c.elder_id == _ELDER.c.id
        )
        unmasked = bindparam("unmasked", type_=Boolean)
        put("view", literal_column("'full'"))
        put("birth_on", case((unmasked, _ELDER.c.birth_on), else_=None))
        put("id_number", case((unmasked, _ELDER.c.id_number), else_=masked_id_sql(_ELDER.c.id_number)))
        put("id_number_masked", ~unmasked)
        put("categories", func.coalesce(categories.c.rows, _EMPTY))
        put("ltc_coverages", func.coalesce(coverages.c.rows, _EMPTY))
        put("created_at", _utc(_ELDER.c.created_at))
        put("updated_at", _utc(_ELDER.c.updated_at))
    body = cast(func.json_build_object(*pairs), Text)
    return (
        select(_ELDER.c.id, _ELDER.c.district_id, body.label("body"))
        .select_from(source)
        .where(_ELDER.c.id == any_(ids))
        .order_by(_ELDER.c.id)
    )


# Built once per view: SQLAlchemy computes their cache keys and compiles them once; each read binds
# its ids (a page's, or one elder's).
_FULL: Final = _select(care_only=False)
_CARE: Final = _select(care_only=True)


def reads_of(
    rows: Sequence[Row[Any]], *, care_only: bool, contacts_shown: set[int] | None = None
) -> list[Any]:
    """The read structs of rows of :func:`_select`, decoded in one go. In the care view the contacts
    of elders not in ``contacts_shown`` are hidden (null)."""
    text = "[" + ",".join(row.body for row in rows) + "]"
    if not care_only:
        return _FULL_LIST.decode(text)
    reads = _CARE_LIST.decode(text)
    for read in reads:
        if contacts_shown is None or read.id not in contacts_shown:
            read.contacts = None
    return reads


async def page_rows(
    session: AsyncSession,
    ids: Select[Any],
    window: Window,
    today: dt.date,
    *,
    care_only: bool,
    unmasked: bool = False,
) -> Paged[Row[Any]]:
    """The rows (``id``, ``district_id``, ``body``) of one page of the elders whose ids ``ids`` selects
    (by id), with the total: the page's ids come with the number of all matching rows (a window
    count, so no second statement counts them), then their reads."""
    page = (
        await session.execute(
            ids.add_columns(func.count().over().label("total"))
            .order_by(_ELDER.c.id)
            .limit(window.limit)
            .offset(window.offset)
        )
    ).all()
    if page:
        total = int(page[0].total)
    else:  # past the end (or nothing matches): the count says how many there are
        total = await total_of(session, ids, window, 0)
    rows = await _rows(session, [int(r.id) for r in page], today, care_only=care_only, unmasked=unmasked)
    return Paged(items=rows, total=total, limit=window.limit, offset=window.offset)


async def _rows(
    session: AsyncSession, ids: list[int], today: dt.date, *, care_only: bool, unmasked: bool
) -> list[Row[Any]]:
    if not ids:
        return []
    params: dict[str, Any] = {"ids": ids, "today": today}
    if not care_only:
        params["unmasked"] = unmasked
    return list((await session.execute(_CARE if care_only else _FULL, params)).all())


async def one_row(
    session: AsyncSession, elder_id: int, today: dt.date, *, care_only: bool, unmasked: bool = False
) -> Row[Any] | None:
    """The row (``id``, ``district_id``, ``body``) of one elder (whoever may see it: the caller
    checks), or ``None``."""
    rows = await _rows(session, [elder_id], today, care_only=care_only, unmasked=unmasked)
    return rows[0] if rows else None
