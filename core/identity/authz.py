"""Who may do what: role rules on routes and pure scoping rules used by the service layer.

Every route declares its rule with ``opt=allow(...)`` (or ``opt=public()``); a route without a
rule is refused at run time and fails the role-matrix test.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from core.models import Role

PUBLIC: Final = "public"
ANY_AUTHENTICATED: Final = "authenticated"
ALL_ROLES: Final = frozenset(Role)
STAFF: Final = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.ADMIN})
# Roles that see full resident ID numbers (each such read is audited).
UNMASKED_ID_ROLES: Final = frozenset({Role.CIVIL_AFFAIRS, Role.ADMIN})
# Roles that see an elder only as far as a visit needs (DOMAIN §9): name, age, address and position,
# phone, care needs, medical notes, emergency contacts. No ID number, subsidy categories or birth date.
CARE_VIEW_ROLES: Final = frozenset({Role.CAREGIVER, Role.PROVIDER_ADMIN})


def allow(*roles: Role) -> dict[str, Any]:
    """Route option: only these roles may call the route."""
    if not roles:
        raise ValueError("allow() needs at least one role; use public() for open routes")
    return {"roles": frozenset(roles)}


def public() -> dict[str, Any]:
    """Route option: no authentication needed (login, health, docs)."""
    return {"roles": PUBLIC}


def authenticated() -> dict[str, Any]:
    """Route option: any signed-in user (e.g. ``/auth/me``, logout)."""
    return {"roles": ANY_AUTHENTICATED}


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in user and the scope their role gives them."""

    user_id: int
    username: str
    role: Role
    display_name: str = ""
    provider_id: int | None = None
    caregiver_id: int | None = None
    elder_id: int | None = None
    guardian_id: int | None = None
    district_ids: frozenset[int] = field(default_factory=frozenset)
    # Elders a family member is guardian of (or the elder themself).
    elder_ids: frozenset[int] = field(default_factory=frozenset)
    # After an admin reset: the API serves only routes marked :func:`during_password_change`.
    password_change_required: bool = False
    # A caregiver's elders: those of their current and upcoming visits and of recent ones (policy
    # ``privacy.caregiver_recent_visits``), as of the request (core.registry.scope.visit_opens_elder).
    served_elder_ids: frozenset[int] = field(default_factory=frozenset)


def during_password_change(opt: dict[str, Any]) -> dict[str, Any]:
    """Route option added to a rule: served even to a user who must first choose a new password
    (their profile, the password change itself, sign-out)."""
    return {**opt, "during_password_change": True}


def rule_allows(rule: object, role: Role | None) -> bool:
    """Pure check of a route rule against a role (``None`` = anonymous)."""
    if rule == PUBLIC:
        return True
    if role is None:
        return False
    if rule == ANY_AUTHENTICATED:
        return True
    return isinstance(rule, frozenset) and role in rule


def roles_of(rule: object) -> frozenset[Role]:
    """Roles that a rule admits (all roles for public/authenticated rules)."""
    if rule in (PUBLIC, ANY_AUTHENTICATED):
        return ALL_ROLES
    return rule if isinstance(rule, frozenset) else frozenset()


# --- Scoping rules (pure) ------------------------------------------------------------------------


def sees_all_elders(p: Principal) -> bool:
    """Admins, and call-centre staff who must be able to act on any alarm in the city."""
    return p.role in (Role.ADMIN, Role.OPERATOR, Role.SUPERVISOR)


def can_see_elder(
    p: Principal, *, elder_id: int, district_id: int, served_by_provider_ids: Iterable[int] = ()
) -> bool:
    """Whether ``p`` may read this elder's record (DOMAIN §9, least privilege).

    A family member sees only their elders, an elder only themself, a civil-affairs officer only
    elders in their districts. A provider admin sees the elders its provider has an order or visit
    with (``served_by_provider_ids``: the providers of the elder's orders and visits); a caregiver
    only the elders of their own current, upcoming and recent visits (``p.served_elder_ids``), not
    every elder their provider serves.
    """
    if sees_all_elders(p):
        return True
    if p.role == Role.CIVIL_AFFAIRS:
        return district_id in p.district_ids
    if p.role in (Role.FAMILY, Role.ELDER):
        return elder_id in p.elder_ids
    if p.role == Role.PROVIDER_ADMIN:
        return p.provider_id is not None and p.provider_id in set(served_by_provider_ids)
    if p.role == Role.CAREGIVER:
        return elder_id in p.served_elder_ids
    return False


def can_edit_elder(p: Principal, *, district_id: int) -> bool:
    """Elder master data is maintained by admins and by civil-affairs officers of the district."""
    if p.role == Role.ADMIN:
        return True
    return p.role == Role.CIVIL_AFFAIRS and district_id in p.district_ids


def can_see_provider(p: Principal, *, provider_id: int) -> bool:
    if p.role in (Role.PROVIDER_ADMIN, Role.CAREGIVER):
        return p.provider_id == provider_id
    return p.role in STAFF


def sees_unmasked_id_number(p: Principal) -> bool:
    return p.role in UNMASKED_ID_ROLES


def sees_care_view_only(p: Principal) -> bool:
    """Caregivers and provider admins get the care view of an elder (:data:`CARE_VIEW_ROLES`)."""
    return p.role in CARE_VIEW_ROLES


def may_search_by_id_number(p: Principal) -> bool:
    """Only roles shown an elder's ID number (masked or not) may filter by it: for the others a
    filter on it would be a lookup of a number they may not see."""
    return not sees_care_view_only(p)
