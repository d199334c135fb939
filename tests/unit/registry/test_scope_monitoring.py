"""Who reads and changes an elder's monitoring settings (registry.scope), as tables of cases: the
call centre in its area (city-wide without districts), the elder's family reading; nobody else."""

from __future__ import annotations

import pytest

from core.identity.authz import Principal
from core.identity.models import Role
from registry.scope import can_edit_monitoring, can_see_monitoring, in_call_centre_area

pytestmark = pytest.mark.unit

XIAONAN, HANCHUAN = 1, 2
ELDER_ID = 10


def p(role: Role, **kw: object) -> Principal:
    return Principal(user_id=1, username=role.value, role=role, **kw)  # type: ignore[arg-type]


OPERATOR_CITY = p(Role.OPERATOR)
OPERATOR_XIAONAN = p(Role.OPERATOR, district_ids=frozenset({XIAONAN}))
SUPERVISOR_HANCHUAN = p(Role.SUPERVISOR, district_ids=frozenset({HANCHUAN}))
SUPERVISOR_CITY = p(Role.SUPERVISOR)
FAMILY_OF = p(Role.FAMILY, guardian_id=7, elder_ids=frozenset({ELDER_ID}))
FAMILY_OTHER = p(Role.FAMILY, guardian_id=8, elder_ids=frozenset({11}))
ELDER_SELF = p(Role.ELDER, elder_id=ELDER_ID, elder_ids=frozenset({ELDER_ID}))
CIVIL = p(Role.CIVIL_AFFAIRS, district_ids=frozenset({XIAONAN}))
ADMIN = p(Role.ADMIN)
PROVIDER = p(Role.PROVIDER_ADMIN, provider_id=3)
CAREGIVER = p(Role.CAREGIVER, provider_id=3, caregiver_id=30, served_elder_ids=frozenset({ELDER_ID}))


@pytest.mark.parametrize(
    ("who", "district_id", "read", "change"),
    [
        (OPERATOR_CITY, XIAONAN, True, True),
        (OPERATOR_CITY, HANCHUAN, True, True),
        (OPERATOR_XIAONAN, XIAONAN, True, True),
        (OPERATOR_XIAONAN, HANCHUAN, False, False),
        (SUPERVISOR_HANCHUAN, HANCHUAN, True, True),
        (SUPERVISOR_HANCHUAN, XIAONAN, False, False),
        (SUPERVISOR_CITY, XIAONAN, True, True),
        (FAMILY_OF, XIAONAN, True, False),
        (FAMILY_OTHER, XIAONAN, False, False),
        (ELDER_SELF, XIAONAN, False, False),
        (CIVIL, XIAONAN, False, False),
        (ADMIN, XIAONAN, False, False),
        (PROVIDER, XIAONAN, False, False),
        (CAREGIVER, XIAONAN, False, False),
    ],
)
def test_monitoring_scope(who: Principal, district_id: int, read: bool, change: bool) -> None:
    assert can_see_monitoring(who, elder_id=ELDER_ID, district_id=district_id) is read
    assert can_edit_monitoring(who, district_id=district_id) is change


def test_call_centre_area() -> None:
    assert in_call_centre_area(OPERATOR_CITY, district_id=HANCHUAN)
    assert in_call_centre_area(OPERATOR_XIAONAN, district_id=XIAONAN)
    assert not in_call_centre_area(OPERATOR_XIAONAN, district_id=HANCHUAN)
