"""Pure scoping rules as tables of cases: who sees and edits which elder, provider, device."""

from __future__ import annotations

import pytest

from core.identity.authz import Principal
from core.identity.models import Role
from registry.scope import (
    can_edit_device,
    can_edit_elder,
    can_manage_blocklist,
    can_manage_caregivers,
    can_see_device,
    can_see_elder,
    can_see_guardian,
    can_see_provider,
    may_search_by_id_number,
    sees_care_view_only,
    sees_unmasked_id_number,
)

pytestmark = pytest.mark.unit

XIAONAN, HANCHUAN = 1, 2  # district ids used in the cases


def p(role: Role, **kw: object) -> Principal:
    return Principal(user_id=1, username=role.value, role=role, **kw)  # type: ignore[arg-type]


ADMIN = p(Role.ADMIN)
OPERATOR = p(Role.OPERATOR)
SUPERVISOR = p(Role.SUPERVISOR)
CIVIL = p(Role.CIVIL_AFFAIRS, district_ids=frozenset({XIAONAN}))
CIVIL_NONE = p(Role.CIVIL_AFFAIRS)
FAMILY = p(Role.FAMILY, guardian_id=7, elder_ids=frozenset({10, 11}))
ELDER = p(Role.ELDER, elder_id=10, elder_ids=frozenset({10}))
PROVIDER = p(Role.PROVIDER_ADMIN, provider_id=3)
# Visits to elder 20 open its record to this caregiver (served_elder_ids, loaded per request).
CAREGIVER = p(Role.CAREGIVER, provider_id=3, caregiver_id=30, served_elder_ids=frozenset({20}))
ORPHAN_PROVIDER = p(Role.PROVIDER_ADMIN)  # misconfigured: no provider


@pytest.mark.parametrize(
    ("who", "elder_id", "district_id", "served_by", "expected"),
    [
        (ADMIN, 99, HANCHUAN, (), True),
        (OPERATOR, 99, HANCHUAN, (), True),
        (SUPERVISOR, 99, XIAONAN, (), True),
        (CIVIL, 99, XIAONAN, (), True),
        (CIVIL, 99, HANCHUAN, (), False),
        (CIVIL_NONE, 99, XIAONAN, (), False),
        (FAMILY, 10, XIAONAN, (), True),
        (FAMILY, 11, HANCHUAN, (), True),
        (FAMILY, 12, XIAONAN, (), False),
        (ELDER, 10, XIAONAN, (), True),
        (ELDER, 11, XIAONAN, (), False),
        (PROVIDER, 99, XIAONAN, (3, 4), True),
        (PROVIDER, 99, XIAONAN, (4,), False),
        (PROVIDER, 99, XIAONAN, (), False),
        # A caregiver sees the elders of their own visits, not every elder their provider serves.
        (CAREGIVER, 20, XIAONAN, (), True),
        (CAREGIVER, 99, XIAONAN, (3,), False),
        (CAREGIVER, 99, XIAONAN, (5,), False),
        (p(Role.CAREGIVER, provider_id=3, caregiver_id=31), 20, XIAONAN, (3,), False),
        (ORPHAN_PROVIDER, 99, XIAONAN, (3,), False),
    ],
)
def test_can_see_elder(
    who: Principal, elder_id: int, district_id: int, served_by: tuple[int, ...], expected: bool
) -> None:
    assert (
        can_see_elder(who, elder_id=elder_id, district_id=district_id, served_by_provider_ids=served_by)
        is expected
    )


@pytest.mark.parametrize(
    ("who", "district_id", "expected"),
    [
        (ADMIN, HANCHUAN, True),
        (CIVIL, XIAONAN, True),
        (CIVIL, HANCHUAN, False),
        (OPERATOR, XIAONAN, False),  # reads all elders, edits none
        (SUPERVISOR, XIAONAN, False),
        (FAMILY, XIAONAN, False),
        (ELDER, XIAONAN, False),
        (PROVIDER, XIAONAN, False),
        (CAREGIVER, XIAONAN, False),
    ],
)
def test_can_edit_elder(who: Principal, district_id: int, expected: bool) -> None:
    assert can_edit_elder(who, district_id=district_id) is expected


@pytest.mark.parametrize(
    ("who", "provider_id", "expected"),
    [
        (ADMIN, 3, True),
        (OPERATOR, 3, True),
        (SUPERVISOR, 4, True),
        (CIVIL, 4, True),
        (PROVIDER, 3, True),
        (PROVIDER, 4, False),
        (CAREGIVER, 3, True),
        (CAREGIVER, 4, False),
        (ORPHAN_PROVIDER, 3, False),
        (FAMILY, 3, False),
        (ELDER, 3, False),
    ],
)
def test_can_see_provider(who: Principal, provider_id: int, expected: bool) -> None:
    assert can_see_provider(who, provider_id=provider_id) is expected


@pytest.mark.parametrize(
    ("who", "provider_id", "expected"),
    [
        (ADMIN, 4, True),
        (PROVIDER, 3, True),
        (PROVIDER, 4, False),
        (CAREGIVER, 3, False),  # sees colleagues, manages nobody
        (CIVIL, 3, False),
        (OPERATOR, 3, False),
        (ORPHAN_PROVIDER, 3, False),
    ],
)
def test_can_manage_caregivers(who: Principal, provider_id: int, expected: bool) -> None:
    assert can_manage_caregivers(who, provider_id=provider_id) is expected


@pytest.mark.parametrize(
    ("who", "elder_id", "district_id", "expected"),
    [
        (ADMIN, None, None, True),  # devices in stock
        (OPERATOR, None, None, True),
        (SUPERVISOR, 12, HANCHUAN, True),
        (CIVIL, 12, XIAONAN, True),
        (CIVIL, 12, HANCHUAN, False),
        (CIVIL, None, None, False),
        (FAMILY, 10, XIAONAN, True),
        (FAMILY, 12, XIAONAN, False),
        (ELDER, 10, XIAONAN, True),
        (ELDER, None, None, False),
        (PROVIDER, 10, XIAONAN, False),
        (CAREGIVER, 10, XIAONAN, False),
    ],
)
def test_can_see_device(
    who: Principal, elder_id: int | None, district_id: int | None, expected: bool
) -> None:
    assert can_see_device(who, elder_id=elder_id, district_id=district_id) is expected


@pytest.mark.parametrize(
    ("who", "district_id", "expected"),
    [
        (ADMIN, None, True),
        (ADMIN, HANCHUAN, True),
        (CIVIL, XIAONAN, True),
        (CIVIL, HANCHUAN, False),
        (CIVIL, None, False),
        (OPERATOR, XIAONAN, False),
        (FAMILY, XIAONAN, False),
    ],
)
def test_can_edit_device(who: Principal, district_id: int | None, expected: bool) -> None:
    assert can_edit_device(who, district_id=district_id) is expected


@pytest.mark.parametrize(
    ("who", "elder_id", "district_id", "expected"),
    [
        (ADMIN, 12, HANCHUAN, True),
        (CIVIL, 12, XIAONAN, True),
        (CIVIL, 12, HANCHUAN, False),
        (FAMILY, 10, HANCHUAN, True),
        (FAMILY, 12, XIAONAN, False),
        (ELDER, 10, XIAONAN, True),
        (ELDER, 11, XIAONAN, False),
        (OPERATOR, 10, XIAONAN, False),
        (PROVIDER, 10, XIAONAN, False),
        (CAREGIVER, 10, XIAONAN, False),
    ],
)
def test_can_manage_blocklist(who: Principal, elder_id: int, district_id: int, expected: bool) -> None:
    assert can_manage_blocklist(who, elder_id=elder_id, district_id=district_id) is expected


@pytest.mark.parametrize(
    ("who", "guardian_id", "districts", "expected"),
    [
        (ADMIN, 7, (), True),
        (OPERATOR, 8, (HANCHUAN,), True),
        (CIVIL, 8, (HANCHUAN, XIAONAN), True),
        (CIVIL, 8, (HANCHUAN,), False),
        (CIVIL, 8, (), False),
        (FAMILY, 7, (), True),
        (FAMILY, 8, (XIAONAN,), False),
        (ELDER, 7, (XIAONAN,), False),
        (PROVIDER, 7, (XIAONAN,), False),
    ],
)
def test_can_see_guardian(
    who: Principal, guardian_id: int, districts: tuple[int, ...], expected: bool
) -> None:
    assert can_see_guardian(who, guardian_id=guardian_id, elder_district_ids=districts) is expected


@pytest.mark.parametrize(
    ("who", "expected"),
    [(ADMIN, True), (CIVIL, True), (OPERATOR, False), (SUPERVISOR, False), (FAMILY, False), (ELDER, False),
     (PROVIDER, False), (CAREGIVER, False)],
)  # fmt: skip
def test_unmasked_id_numbers_only_for_civil_affairs_and_admin(who: Principal, expected: bool) -> None:
    assert sees_unmasked_id_number(who) is expected


@pytest.mark.parametrize(
    ("who", "care_only"),
    [(ADMIN, False), (CIVIL, False), (OPERATOR, False), (SUPERVISOR, False), (FAMILY, False),
     (ELDER, False), (PROVIDER, True), (CAREGIVER, True)],
)  # fmt: skip
def test_caregivers_and_providers_get_the_care_view_and_no_id_number_search(
    who: Principal, care_only: bool
) -> None:
    assert sees_care_view_only(who) is care_only
    assert may_search_by_id_number(who) is not care_only
