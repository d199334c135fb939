"""Route rules as tables of cases: which role may call a route declaring which rule. (Which records
a role sees is the registry's: tests/unit/registry/test_scope_rules.py.)"""

from __future__ import annotations

import pytest

from core.identity.authz import ANY_AUTHENTICATED, PUBLIC, allow, authenticated, public, roles_of, rule_allows
from core.identity.models import Role

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("rule", "role", "expected"),
    [
        (PUBLIC, None, True),
        (PUBLIC, Role.ADMIN, True),
        (ANY_AUTHENTICATED, None, False),
        (ANY_AUTHENTICATED, Role.ELDER, True),
        (allow(Role.ADMIN)["roles"], Role.ADMIN, True),
        (allow(Role.ADMIN)["roles"], Role.CIVIL_AFFAIRS, False),
        (allow(Role.ADMIN)["roles"], None, False),
        (None, Role.ADMIN, False),  # no rule: nobody
        ("admin", Role.ADMIN, False),  # a bare string is not a rule
    ],
)
def test_rule_allows(rule: object, role: Role | None, expected: bool) -> None:
    assert rule_allows(rule, role) is expected


def test_rule_constructors() -> None:
    assert public() == {"roles": PUBLIC}
    assert authenticated() == {"roles": ANY_AUTHENTICATED}
    assert roles_of(allow(Role.FAMILY, Role.ELDER)["roles"]) == {Role.FAMILY, Role.ELDER}
    assert roles_of(PUBLIC) == frozenset(Role)
    assert roles_of(None) == frozenset()
    with pytest.raises(ValueError, match="at least one role"):
        allow()
