"""Elders (老年人): master data, emergency contacts, subsidy categories, long-term-care coverage,
status changes and blocked caregivers.

Resident ID numbers are validated (GB 11643) and stored once; callers get :class:`ElderView` with
``unmasked`` telling whether the reader may see the full number. Only the detail read unmasks, and
only for the roles of :data:`registry.scope.UNMASKED_ID_ROLES`; each such read writes an audit row
``read_unmasked``. Lists and write responses are always masked. The birth date is shown only with
the full number (it is 8 of the hidden digits); the others get the age. Caregivers and provider
admins get the care view (``care_only``): no ID number, birth date or subsidy categories at all,
and the emergency contacts only while one of their visits to the elder is under way.

A record the actor may not see is reported as "not found" (404), never 403, so its existence does
not leak; a record they see but may not change gives 403.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.clock import local_date
from core.crud import (
    MAX_BIGINT,
    Paged,
    Window,
    check_range,
    delete_and_audit,
    in_key_range,
    like_prefix,
    require_ref,
)
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.identity.authz import Principal
from core.identity.models import Role
from core.phone import normalise_phone
from core.policy import policy_number
from core.types import given, given_or
from registry.idcard import age_on, validate_id_number
from registry.models import (
    Assessment,
    Caregiver,
    Community,
    District,
    Elder,
    ElderBlockedCaregiver,
    ElderCategory,
    ElderStatus,
    EmergencyContact,
    LtcCoverage,
)
from registry.schemas.elders import (
    MAX_CONTACTS,
    CategoryIn,
    CategoryUpdate,
    ContactIn,
    ElderCareRead,
    ElderCreate,
    ElderRead,
    ElderUpdate,
    LtcIn,
    LtcUpdate,
)
from registry.scope import (
    can_edit_elder,
    can_manage_blocklist,
    can_see_elder,
    elder_clause,
    elders_with_visit_under_way,
    may_search_by_id_number,
    providers_serving,
    sees_care_view_only,
    sees_elder,
    sees_unmasked_id_number,
)
from registry.service import elder_reads
from registry.service.elder_reads import current_level_expr
from registry.service.places import district_of_community

MIN_AGE_POLICY = "registry.min_age"
Child = TypeVar("Child", ElderCategory, LtcCoverage)


@dataclass(frozen=True, slots=True)
class ElderFilter:
    """List filters; ``level`` is the final level of the assessment valid today (none → no match)."""

    district_code: str | None = None
    district_id: int | None = None
    street_id: int | None = None
    community_id: int | None = None
    status: str | None = None
    living_situation: str | None = None
    name_prefix: str | None = None
    has_dementia: bool | None = None
    level: int | None = None
    id_number: str | None = None


@dataclass(frozen=True, slots=True)
class ElderView:
    """An elder as one reader sees it: ``level`` is the current ability level (None when no valid
    assessment), ``age`` in whole years today, ``unmasked`` whether the full ID number (and with it
    the birth date) may be shown, ``care_only`` whether the reader gets only the care view."""

    elder: Elder
    level: int | None
    age: int
    unmasked: bool = False
    care_only: bool = False
    # In the care view, emergency contacts are shown only during a visit under way.
    contacts_shown: bool = True


def elder_view(
    actor: Principal,
    elder: Elder,
    *,
    level: int | None,
    today: dt.date,
    unmasked: bool = False,
    visit_under_way: bool = False,
) -> ElderView:
    care_only = sees_care_view_only(actor)
    return ElderView(
        elder=elder,
        level=level,
        age=age_on(elder.birth_on, today),
        unmasked=unmasked,
        care_only=care_only,
        contacts_shown=not care_only or visit_under_way,
    )


@dataclass(frozen=True, slots=True)
class BlockedView:
    caregiver_id: int
    caregiver_name: str
    reason: str
    created_at: dt.datetime


# --- Lookups and permission checks --------------------------------------------------------------


async def current_level(session: AsyncSession, elder_id: int, today: dt.date) -> int | None:
    return await session.scalar(
        select(Assessment.final_level)
        .where(
            Assessment.elder_id == elder_id,
            Assessment.assessed_on <= today,
            Assessment.valid_until >= today,
        )
        .order_by(Assessment.assessed_on.desc(), Assessment.id.desc())
        .limit(1)
    )


async def visible_elder(session: AsyncSession, actor: Principal, elder_id: int) -> Elder:
    """The elder if ``actor`` may see it; otherwise the same 404 as for a missing record."""
    elder = await session.get(Elder, elder_id) if in_key_range(elder_id, limit=MAX_BIGINT) else None
    if elder is None or not await sees_elder(session, actor, elder):
        raise NotFound(f"No elder with id {elder_id}.", code="elder.not_found")
    return elder


def _require_edit(actor: Principal, district_id: int) -> None:
    if not can_edit_elder(actor, district_id=district_id):
        raise Forbidden("You may change elders only in your own districts.", code="scope.district")


async def editable_elder(session: AsyncSession, actor: Principal, elder_id: int) -> Elder:
    """The elder if ``actor`` may change its master data (404 when not visible, 403 when read-only)."""
    elder = await visible_elder(session, actor, elder_id)
    _require_edit(actor, elder.district_id)
    return elder


def elder_snapshot(elder: Elder) -> dict[str, Any]:
    """Audit snapshot including the ordered contacts, categories and coverages."""
    out = audit.snapshot(elder)
    out["contacts"] = [audit.snapshot(c) for c in elder.contacts]
    out["categories"] = [audit.snapshot(c) for c in elder.categories]
    out["ltc_coverages"] = [audit.snapshot(c) for c in elder.ltc_coverages]
    return out


async def _place(session: AsyncSession, community_id: int) -> tuple[Community, int]:
    community = await require_ref(session, Community, community_id, field="community_id", what="community")
    return community, await district_of_community(session, community)


def _contacts(rows: Sequence[ContactIn]) -> list[EmergencyContact]:
    if len(rows) > MAX_CONTACTS:
        raise Invalid(f"At most {MAX_CONTACTS} emergency contacts.", code="contacts.too_many")
    return [
        EmergencyContact(position=i, name=row.name, relation=row.relation, phone=normalise_phone(row.phone))
        for i, row in enumerate(rows, start=1)
    ]


def _overlaps(a_from: dt.date, a_to: dt.date | None, b_from: dt.date, b_to: dt.date | None) -> bool:
    return (b_to is None or a_from <= b_to) and (a_to is None or b_from <= a_to)


def _check_identity(id_number: str, gender: str, birth_on: dt.date, today: dt.date) -> str:
    """Validate the ID number and its agreement with gender and birth date; returns it normalised."""
    parsed = validate_id_number(id_number, today=today)
    if parsed.birth_on != birth_on:
        raise Invalid(
            f"birth_on {birth_on.isoformat()} differs from the birth date in the ID number "
            f"({parsed.birth_on.isoformat()}).",
            code="id_number.birth_mismatch",
            field="birth_on",
        )
    if parsed.gender != gender:
        raise Invalid(
            f"gender {gender} differs from the gender encoded in the ID number ({parsed.gender}).",
            code="id_number.gender_mismatch",
            field="gender",
        )
    return parsed.value


async def _check_age(session: AsyncSession, birth_on: dt.date, today: dt.date, *, disabled: bool) -> None:
    """The registry is for elders: at least ``registry.min_age`` (scope ``*``) years old on ``today``.
    Documented exception: a person with assessed disability — shown by long-term-care insurance
    (长护险) coverage, which covers disability at any age — needs only the ``disability`` scope's age.
    Both are dated policy; with no row valid there is no minimum."""
    scope = "disability" if disabled else "*"
    years = await session.scalar(select(policy_number(MIN_AGE_POLICY, scope, "years", today, 0)))
    if years and age_on(birth_on, today) < years:
        raise Invalid(
            f"The elder is {age_on(birth_on, today)}; the registry takes people aged {years:g} or over"
            + ("." if disabled else " (or with long-term-care coverage for a disability)."),
            code="elder.too_young",
            field="birth_on",
        )


async def _unique_id_number(session: AsyncSession, id_number: str, *, except_id: int | None = None) -> None:
    existing = await session.scalar(select(Elder.id).where(Elder.id_number == id_number))
    if existing is not None and existing != except_id:
        raise Conflict(
            "An elder with this ID number is already registered.",
            code="elder.duplicate_id_number",
            field="id_number",
        )


# --- Elders -------------------------------------------------------------------------------------


async def list_elders(
    *, session: AsyncSession, actor: Principal, filters: ElderFilter, window: Window, now: dt.datetime
) -> Paged[ElderRead | ElderCareRead]:
    """Elders ``actor`` may see, filtered, ordered by id; ID numbers masked. Filtering by ID number
    is refused (403 ``elder.id_number_filter``) to roles not shown the number. Read in one query per
    page (:mod:`registry.service.elder_reads`)."""
    f = filters
    if f.id_number is not None and not may_search_by_id_number(actor):
        raise Forbidden("Your role may not search elders by ID number.", code="elder.id_number_filter")
    today = local_date(now)
    stmt = select(Elder.id).where(elder_clause(actor))
    if f.district_code is not None:
        stmt = stmt.where(
            Elder.district_id == select(District.id).where(District.code == f.district_code).scalar_subquery()
        )
    if f.district_id is not None:
        stmt = stmt.where(Elder.district_id == f.district_id)
    if f.street_id is not None:
        stmt = stmt.where(
            Elder.community_id.in_(select(Community.id).where(Community.street_id == f.street_id))
        )
    if f.community_id is not None:
        stmt = stmt.where(Elder.community_id == f.community_id)
    if f.status is not None:
        stmt = stmt.where(Elder.status == f.status)
    if f.living_situation is not None:
        stmt = stmt.where(Elder.living_situation == f.living_situation)
    if f.name_prefix:
        stmt = stmt.where(Elder.name.like(like_prefix(f.name_prefix)))
    if f.has_dementia is not None:
        stmt = stmt.where(Elder.has_dementia.is_(f.has_dementia))
    if f.level is not None:
        stmt = stmt.where(current_level_expr(local_date(now)) == f.level)
    if f.id_number is not None:
        stmt = stmt.where(Elder.id_number == f.id_number.strip().upper())
    care_only = sees_care_view_only(actor)
    result = await elder_reads.page_rows(session, stmt, window, today, care_only=care_only)
    under_way = (
        await elders_with_visit_under_way(session, actor, [row.id for row in result.items])
        if care_only
        else None
    )
    items = elder_reads.reads_of(result.items, care_only=care_only, contacts_shown=under_way)
    return Paged(items=items, total=result.total, limit=window.limit, offset=window.offset)


async def get_elder(
    *, session: AsyncSession, actor: Principal, elder_id: int, now: dt.datetime
) -> ElderRead | ElderCareRead:
    """One elder, as :func:`visible_elder` admits it; for civil-affairs officers and admins
    unmasked, and that read is audited. Read in one query (:mod:`registry.service.elder_reads`)."""
    today = local_date(now)
    care_only = sees_care_view_only(actor)
    unmasked = sees_unmasked_id_number(actor)
    row = (
        await elder_reads.one_row(session, elder_id, today, care_only=care_only, unmasked=unmasked)
        if in_key_range(elder_id, limit=MAX_BIGINT)
        else None
    )
    served_by = (
        await providers_serving(session, elder_id) if row and actor.role == Role.PROVIDER_ADMIN else []
    )
    if row is None or not can_see_elder(
        actor, elder_id=row.id, district_id=row.district_id, served_by_provider_ids=served_by
    ):
        raise NotFound(f"No elder with id {elder_id}.", code="elder.not_found")
    if unmasked:
        await audit.record_read(session, actor=actor, entity="elder", entity_id=row.id, fields=["id_number"])
    under_way = await elders_with_visit_under_way(session, actor, [row.id]) if care_only else None
    read: ElderRead | ElderCareRead = elder_reads.reads_of(
        [row], care_only=care_only, contacts_shown=under_way
    )[0]
    return read


async def create_elder(
    *, session: AsyncSession, actor: Principal, data: ElderCreate, now: dt.datetime
) -> ElderView:
    """Register an elder. ``gender`` and ``birth_on`` default to what the ID number encodes; when
    given they must agree with it. ``lat``/``lon`` default to the community's centre."""
    today = local_date(now)
    parsed = validate_id_number(data.id_number, today=today)
    gender = data.gender.value if data.gender else parsed.gender
    birth_on = data.birth_on or parsed.birth_on
    id_number = _check_identity(parsed.value, gender, birth_on, today)
    await _check_age(session, birth_on, today, disabled=bool(data.ltc_coverages))
    community, district_id = await _place(session, data.community_id)
    _require_edit(actor, district_id)
    await _unique_id_number(session, id_number)
    for category in data.categories:
        check_range(category.valid_from, category.valid_to)
    for coverage in data.ltc_coverages:
        check_range(coverage.valid_from, coverage.valid_to)
    elder = Elder(
        name=data.name,
        gender=gender,
        birth_on=birth_on,
        id_number=id_number,
        phone=normalise_phone(data.phone) if data.phone else None,
        address=data.address,
        lat=data.lat if data.lat is not None else community.lat,
        lon=data.lon if data.lon is not None else community.lon,
        community_id=community.id,
        district_id=district_id,
        living_situation=data.living_situation.value,
        has_dementia=data.has_dementia,
        allows_any_gender_bathing=data.allows_any_gender_bathing,
        medical_notes=data.medical_notes,
        status=ElderStatus.ACTIVE.value,
        created_at=now,
        updated_at=now,
        contacts=_contacts(data.contacts),
        categories=[
            ElderCategory(category=r.category.value, valid_from=r.valid_from, valid_to=r.valid_to)
            for r in data.categories
        ],
        ltc_coverages=[
            LtcCoverage(policy_no=r.policy_no, valid_from=r.valid_from, valid_to=r.valid_to)
            for r in data.ltc_coverages
        ],
    )
    session.add(elder)
    await session.flush()
    audit.record(
        session, actor=actor, action="create", entity="elder", entity_id=elder.id, after=elder_snapshot(elder)
    )
    return elder_view(actor, elder, level=None, today=today)


async def update_elder(
    *, session: AsyncSession, actor: Principal, elder_id: int, changes: ElderUpdate, now: dt.datetime
) -> ElderView:
    """Change the master data sent (fields left unset keep their value); moving to another community
    re-derives the district (which the actor must also be allowed to edit)."""
    elder = await editable_elder(session, actor, elder_id)
    today = local_date(now)
    values = given(changes)
    if {"id_number", "gender", "birth_on"} & values.keys():
        values["id_number"] = _check_identity(
            values.get("id_number", elder.id_number),
            values.get("gender", elder.gender),
            values.get("birth_on", elder.birth_on),
            today,
        )
        await _unique_id_number(session, values["id_number"], except_id=elder.id)
        await _check_age(
            session, values.get("birth_on", elder.birth_on), today, disabled=bool(elder.ltc_coverages)
        )
    if values.get("phone") is not None:
        values["phone"] = normalise_phone(values["phone"])
    if "community_id" in values:
        _, district_id = await _place(session, values["community_id"])
        _require_edit(actor, district_id)
        values["district_id"] = district_id
    before = elder_snapshot(elder)
    for key, value in values.items():
        setattr(elder, key, value)
    elder.updated_at = now
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="update",
        entity="elder",
        entity_id=elder.id,
        before=before,
        after=elder_snapshot(elder),
    )
    level = await current_level(session, elder.id, today)
    return elder_view(actor, elder, level=level, today=today)


async def delete_elder(*, session: AsyncSession, actor: Principal, elder_id: int) -> None:
    """Erase an elder (admins only, e.g. a record entered twice). Elders with history (orders,
    alarms…) cannot be erased: 409 ``conflict.in_use``; record a status change instead."""
    elder = await editable_elder(session, actor, elder_id)
    if actor.role != Role.ADMIN:
        raise Forbidden("Only admins may erase an elder.", code="auth.forbidden")
    await delete_and_audit(session, elder, actor=actor, entity="elder")


async def change_status(
    *,
    session: AsyncSession,
    actor: Principal,
    elder_id: int,
    status: str,
    on: dt.date,
    now: dt.datetime,
) -> ElderView:
    """Record that the elder is active again, hospitalised, moved away or deceased on ``on``.

    The date may not be in the future (Asia/Shanghai); a deceased elder's status is final.
    """
    elder = await editable_elder(session, actor, elder_id)
    today = local_date(now)
    if on > today:
        raise Invalid(
            f"The status date {on.isoformat()} is in the future.", code="status.future_date", field="on"
        )
    if elder.status == ElderStatus.DECEASED.value and status != ElderStatus.DECEASED.value:
        raise Conflict("A deceased elder's status cannot change.", code="elder.deceased")
    before = {"status": elder.status, "status_on": elder.status_on}
    elder.status = status
    elder.status_on = on
    elder.updated_at = now
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="status_change",
        entity="elder",
        entity_id=elder.id,
        before=before,
        after={"status": status, "status_on": on},
    )
    level = await current_level(session, elder.id, today)
    return elder_view(actor, elder, level=level, today=today)


# --- Emergency contacts (ordered) ---------------------------------------------------------------


async def replace_contacts(
    *,
    session: AsyncSession,
    actor: Principal,
    elder_id: int,
    contacts: Sequence[ContactIn],
    now: dt.datetime,
) -> list[EmergencyContact]:
    """Replace the ordered emergency contacts (first = called first). Families may maintain them
    for their own elders, as may the district's civil-affairs officers and admins."""
    elder = await visible_elder(session, actor, elder_id)
    if not (actor.role == Role.FAMILY and elder.id in actor.elder_ids):
        _require_edit(actor, elder.district_id)
    new = _contacts(contacts)
    before = [audit.snapshot(c) for c in elder.contacts]
    # Delete first: (elder_id, position) is unique and the unit of work inserts before it deletes.
    elder.contacts.clear()
    await session.flush()
    elder.contacts.extend(new)
    elder.updated_at = now
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="update",
        entity="emergency_contact",
        entity_id=elder.id,
        before={"contacts": before},
        after={"contacts": [audit.snapshot(c) for c in elder.contacts]},
    )
    return list(elder.contacts)


# --- Subsidy categories and long-term-care coverage ---------------------------------------------


async def _child(session: AsyncSession, model: type[Child], elder: Elder, key: int, what: str) -> Child:
    row = await session.get(model, key) if in_key_range(key) else None
    if row is None or row.elder_id != elder.id:
        raise NotFound(f"Elder {elder.id} has no {what} with id {key}.", code=f"{what}.not_found")
    return row


async def _updated(
    session: AsyncSession, actor: Principal, row: Child, entity: str, before: dict[str, Any]
) -> Child:
    """Flush an edited child row and audit it against its ``before`` snapshot."""
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="update",
        entity=entity,
        entity_id=row.id,
        before=before,
        after=audit.snapshot(row),
    )
    return row


async def _delete_child(
    session: AsyncSession, actor: Principal, elder_id: int, model: type[Child], key: int, entity: str
) -> None:
    """Remove one of an editable elder's dated rows (categories, LTC coverages), audited."""
    elder = await editable_elder(session, actor, elder_id)
    row = await _child(session, model, elder, key, entity)
    rows: list[Child] = elder.categories if model is ElderCategory else elder.ltc_coverages  # type: ignore[assignment]
    rows.remove(row)  # delete-orphan: the flush deletes it, and the loaded elder stays current
    await session.flush()
    audit.record(
        session, actor=actor, action="delete", entity=entity, entity_id=key, before=audit.snapshot(row)
    )


def _check_category_overlap(
    elder: Elder, category: str, start: dt.date, end: dt.date | None, skip: int | None
) -> None:
    for row in elder.categories:
        if (
            row.id != skip
            and row.category == category
            and _overlaps(start, end, row.valid_from, row.valid_to)
        ):
            raise Conflict(
                f"The elder already holds category {category} from {row.valid_from.isoformat()}"
                f" to {row.valid_to.isoformat() if row.valid_to else 'open end'}.",
                code="elder_category.overlap",
            )


async def add_category(
    *, session: AsyncSession, actor: Principal, elder_id: int, data: CategoryIn
) -> ElderCategory:
    """Add a subsidy category held from ``valid_from`` to ``valid_to`` (inclusive; None = open)."""
    elder = await editable_elder(session, actor, elder_id)
    check_range(data.valid_from, data.valid_to)
    _check_category_overlap(elder, data.category.value, data.valid_from, data.valid_to, None)
    row = ElderCategory(category=data.category.value, valid_from=data.valid_from, valid_to=data.valid_to)
    elder.categories.append(row)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="elder_category",
        entity_id=row.id,
        after=audit.snapshot(row),
    )
    return row


async def update_category(
    *, session: AsyncSession, actor: Principal, elder_id: int, category_id: int, changes: CategoryUpdate
) -> ElderCategory:
    elder = await editable_elder(session, actor, elder_id)
    row: ElderCategory = await _child(session, ElderCategory, elder, category_id, "elder_category")
    category = str(given_or(changes.category, row.category))  # a StrEnum's str() is its value
    start = given_or(changes.valid_from, row.valid_from)
    end = given_or(changes.valid_to, row.valid_to)
    check_range(start, end)
    _check_category_overlap(elder, category, start, end, row.id)
    before = audit.snapshot(row)
    row.category, row.valid_from, row.valid_to = category, start, end
    return await _updated(session, actor, row, "elder_category", before)


async def delete_category(
    *, session: AsyncSession, actor: Principal, elder_id: int, category_id: int
) -> None:
    await _delete_child(session, actor, elder_id, ElderCategory, category_id, "elder_category")


def _check_ltc_overlap(elder: Elder, start: dt.date, end: dt.date | None, skip: int | None) -> None:
    for row in elder.ltc_coverages:
        if row.id != skip and _overlaps(start, end, row.valid_from, row.valid_to):
            raise Conflict(
                f"Coverage {row.policy_no} already covers part of this period.", code="ltc_coverage.overlap"
            )


async def add_ltc_coverage(
    *, session: AsyncSession, actor: Principal, elder_id: int, data: LtcIn
) -> LtcCoverage:
    """Add long-term-care insurance (长护险) coverage; coverages of one elder may not overlap."""
    elder = await editable_elder(session, actor, elder_id)
    check_range(data.valid_from, data.valid_to)
    _check_ltc_overlap(elder, data.valid_from, data.valid_to, None)
    row = LtcCoverage(policy_no=data.policy_no, valid_from=data.valid_from, valid_to=data.valid_to)
    elder.ltc_coverages.append(row)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="ltc_coverage",
        entity_id=row.id,
        after=audit.snapshot(row),
    )
    return row


async def update_ltc_coverage(
    *, session: AsyncSession, actor: Principal, elder_id: int, coverage_id: int, changes: LtcUpdate
) -> LtcCoverage:
    elder = await editable_elder(session, actor, elder_id)
    row: LtcCoverage = await _child(session, LtcCoverage, elder, coverage_id, "ltc_coverage")
    start = given_or(changes.valid_from, row.valid_from)
    end = given_or(changes.valid_to, row.valid_to)
    check_range(start, end)
    _check_ltc_overlap(elder, start, end, row.id)
    before = audit.snapshot(row)
    row.policy_no = given_or(changes.policy_no, row.policy_no)
    row.valid_from, row.valid_to = start, end
    return await _updated(session, actor, row, "ltc_coverage", before)


async def delete_ltc_coverage(
    *, session: AsyncSession, actor: Principal, elder_id: int, coverage_id: int
) -> None:
    await _delete_child(session, actor, elder_id, LtcCoverage, coverage_id, "ltc_coverage")


# --- Blocked caregivers -------------------------------------------------------------------------


async def list_blocked(*, session: AsyncSession, actor: Principal, elder_id: int) -> list[BlockedView]:
    elder = await visible_elder(session, actor, elder_id)
    rows = await session.execute(
        select(ElderBlockedCaregiver, Caregiver.name)
        .join(Caregiver, Caregiver.id == ElderBlockedCaregiver.caregiver_id)
        .where(ElderBlockedCaregiver.elder_id == elder.id)
        .order_by(ElderBlockedCaregiver.created_at, ElderBlockedCaregiver.caregiver_id)
    )
    return [
        BlockedView(
            caregiver_id=b.caregiver_id, caregiver_name=name, reason=b.reason, created_at=b.created_at
        )
        for b, name in rows.all()
    ]


async def _blocklist_elder(session: AsyncSession, actor: Principal, elder_id: int) -> Elder:
    elder = await visible_elder(session, actor, elder_id)
    if not can_manage_blocklist(actor, elder_id=elder.id, district_id=elder.district_id):
        raise Forbidden("You may not change this elder's blocked caregivers.", code="auth.forbidden")
    return elder


async def block_caregiver(
    *,
    session: AsyncSession,
    actor: Principal,
    elder_id: int,
    caregiver_id: int,
    reason: str,
    now: dt.datetime,
) -> BlockedView:
    """Never dispatch this caregiver to this elder again (DOMAIN §6 hard rule)."""
    elder = await _blocklist_elder(session, actor, elder_id)
    caregiver = await require_ref(session, Caregiver, caregiver_id, field="caregiver_id", what="caregiver")
    if await session.get(ElderBlockedCaregiver, (elder.id, caregiver.id)) is not None:
        raise Conflict("This caregiver is already blocked for this elder.", code="conflict.duplicate")
    row = ElderBlockedCaregiver(elder_id=elder.id, caregiver_id=caregiver.id, reason=reason, created_at=now)
    session.add(row)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="elder_blocked_caregiver",
        entity_id=f"{elder.id}/{caregiver.id}",
        after=audit.snapshot(row),
    )
    return BlockedView(
        caregiver_id=caregiver.id, caregiver_name=caregiver.name, reason=reason, created_at=now
    )


async def unblock_caregiver(
    *, session: AsyncSession, actor: Principal, elder_id: int, caregiver_id: int
) -> None:
    elder = await _blocklist_elder(session, actor, elder_id)
    row = (
        await session.get(ElderBlockedCaregiver, (elder.id, caregiver_id))
        if in_key_range(caregiver_id)
        else None
    )
    if row is None:
        raise NotFound(
            "This caregiver is not blocked for this elder.", code="elder_blocked_caregiver.not_found"
        )
    await delete_and_audit(session, row, actor=actor, entity="elder_blocked_caregiver")
