"""Who may call what: the signed-in :class:`Principal` and the role rules on routes.

Every route declares its rule with ``opt=allow(...)`` (or ``opt=public()``); a route without a
rule is refused at run time and fails the role-matrix test. Which *records* a principal may see is
the owning domain's rule (the registry's ``scope`` module for elders, providers and devices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from core.identity.models import Role

PUBLIC: Final = "public"
ANY_AUTHENTICATED: Final = "authenticated"
ALL_ROLES: Final = frozenset(Role)
STAFF: Final = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.CIVIL_AFFAIRS, Role.ADMIN})


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
    # Elders a family member is guardian of (or the elder themself; filled by a domain's ScopeLoader).
    elder_ids: frozenset[int] = field(default_factory=frozenset)
    # After an admin reset: the API serves only routes marked :func:`during_password_change`.
    password_change_required: bool = False
    # A caregiver's elders: those of their current and upcoming visits and of recent ones (policy
    # ``privacy.caregiver_recent_visits``), as of the request (filled by a domain's ScopeLoader).
    served_elder_ids: frozenset[int] = field(default_factory=frozenset)


def during_password_change(opt: dict[str, Any]) -> dict[str, Any]:
    """Route option added to a rule: served even to a user who must first choose a new password
    (their profile, the password change itself, sign-out)."""
    return {**opt, "during_password_change": True}


# Route option: the route reads none of the principal's scope that is rebuilt every request (a
# caregiver's served elders, see core.identity.sessions.ScopeFields); the guard then skips rebuilding it.
WITHOUT_REQUEST_SCOPE: Final = "without_request_scope"


def without_request_scope() -> dict[str, Any]:
    """Controller or route option: the handlers use no per-request scope (they scope by the account's
    own keys, e.g. ``caregiver_id``). Their principal carries none: ``elder_ids`` and
    ``served_elder_ids`` are empty for such a principal, so a handler that read them would see no
    elder through them (it fails closed, never open)."""
    return {WITHOUT_REQUEST_SCOPE: True}


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
