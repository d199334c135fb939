"""Who sees which registry record: pure rules (tested as tables), their SQL twins for lists, and
the loader that puts a principal's elders into it. The only copy of these rules; every domain that
scopes by elder, provider or device imports them from here.

The rules cover elders, providers, caregivers, devices, guardians, block lists and service
agreements; each one that lists rows has a SQL predicate twin, so list queries return exactly the rows
the detail rule admits. (Route rules, which role may call which route at all, are the kernel's:
:mod:`core.identity.authz`.)

Least privilege for the service side (DOMAIN §9): a provider admin sees the elders with an order or
visit with its provider, or a service agreement both sides have signed with it; a caregiver only the
elders of their own current, upcoming and recent visits (:func:`visit_opens_elder`, window
``privacy.caregiver_recent_visits``), loaded into the principal when it is built for the request
(:func:`load_elder_scope`, which the composition root hands to :mod:`core.identity.sessions`: the
kernel names no domain). Neither sees every elder of the districts the provider serves.

Every other domain reads the registry, so the registry imports none of them (import-linter): the
tables of theirs these rules and the figures read (dispatch's ``service_order``, ``visit`` and
``service_agreement``, the ingest's ``device``) are declared here as lightweight ``table()``
references with only the columns read; ``tests/unit/registry/test_scope.py`` checks them against
:mod:`dispatch.models` and :mod:`iot_ingest.models`. Device and gateway lists pass their own
``elder_id`` column to :func:`device_clause`, agreement lists their columns to
:func:`agreement_clause`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Select,
    SQLColumnExpression,
    String,
    and_,
    column,
    exists,
    false,
    func,
    literal,
    select,
    table,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import local_date
from core.identity.authz import STAFF, Principal
from core.identity.models import AppUser, Role
from core.identity.sessions import ScopeFields, ScopeLoader
from core.policy import policy_number
from registry.models import Caregiver, Elder, ElderGuardian, Guardian

# Roles that see full resident ID numbers (each such read is audited).
UNMASKED_ID_ROLES: Final = frozenset({Role.CIVIL_AFFAIRS, Role.ADMIN})
# Roles that see an elder only as far as a visit needs (DOMAIN §9): name, age, address and position,
# phone, care needs, medical notes, emergency contacts. No ID number, subsidy categories or birth date.
CARE_VIEW_ROLES: Final = frozenset({Role.CAREGIVER, Role.PROVIDER_ADMIN})

# Days after a visit's end during which its caregiver still sees the elder (dated policy).
RECENT_VISITS_POLICY: Final = "privacy.caregiver_recent_visits"

# --- The other domains' facts the rules read (see the module docstring) -------------------------

_TZ = DateTime(timezone=True)
service_order_t = table(
    "service_order",
    column("id", BigInteger),
    column("elder_id", BigInteger),
    column("provider_id", BigInteger),
    column("state", String),
)
visit_t = table(
    "visit",
    column("order_id", BigInteger),
    column("elder_id", BigInteger),
    column("caregiver_id", BigInteger),
    column("provider_id", BigInteger),
    column("scheduled_end_at", _TZ),
    column("check_out_at", _TZ),
)
service_agreement_t = table(
    "service_agreement",
    column("elder_id", BigInteger),
    column("provider_id", BigInteger),
    column("signed_at", _TZ),
)
device_t = table(
    "device",
    column("elder_id", BigInteger),
    column("status", String),
    column("online", Boolean),
)
# dispatch.states.OrderState.CANCELLED, and the states of a visit under way (EN_ROUTE, CHECKED_IN).
ORDER_CANCELLED: Final = "cancelled"
VISIT_UNDER_WAY: Final = ("en_route", "checked_in")

# --- Pure rules ---------------------------------------------------------------------------------


def sees_all_elders(p: Principal) -> bool:
    """Admins, and call-centre staff with no districts (city-wide when unscoped, DOMAIN §9)."""
    return p.role == Role.ADMIN or (p.role in (Role.OPERATOR, Role.SUPERVISOR) and not p.district_ids)


def by_district(p: Principal) -> bool:
    """Whether ``p`` sees by district: civil-affairs officers, and call-centre staff with districts
    (DOMAIN §9: operators and supervisors see the elders in their districts)."""
    return p.role == Role.CIVIL_AFFAIRS or (
        p.role in (Role.OPERATOR, Role.SUPERVISOR) and bool(p.district_ids)
    )


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
    if by_district(p):
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
    return by_district(p) and district_id in p.district_ids


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


def can_manage_caregivers(p: Principal, *, provider_id: int) -> bool:
    """Admins manage every provider's caregivers; a provider admin only their own provider's."""
    if p.role == Role.ADMIN:
        return True
    return p.role == Role.PROVIDER_ADMIN and p.provider_id == provider_id


# Roles that read every service agreement: admins, and operators (who place recurring orders, which
# need one). Supervisors and caregivers read none.
AGREEMENTS_CITY_WIDE: Final = frozenset({Role.ADMIN, Role.OPERATOR})


def can_see_agreement(p: Principal, *, elder_id: int, district_id: int, provider_id: int) -> bool:
    """Whether ``p`` may read a service agreement between this elder and this provider: admins and
    operators every one; a civil-affairs officer those of elders in their districts; a provider admin
    its provider's; an elder or family member their elders'."""
    if p.role in AGREEMENTS_CITY_WIDE:
        return True
    if by_district(p):
        return district_id in p.district_ids
    if p.role == Role.PROVIDER_ADMIN:
        return p.provider_id is not None and p.provider_id == provider_id
    if p.role in (Role.ELDER, Role.FAMILY):
        return elder_id in p.elder_ids
    return False


def can_see_device(p: Principal, *, elder_id: int | None, district_id: int | None) -> bool:
    """Call-centre staff and admins see every device; a civil-affairs officer devices of elders in
    their districts; a family member or elder the devices of their elders. Devices not yet
    installed in a home (no elder) are visible to admins and call-centre staff only."""
    if sees_all_elders(p):
        return True
    if elder_id is None:
        return False
    if by_district(p):
        return district_id in p.district_ids
    if p.role in (Role.FAMILY, Role.ELDER):
        return elder_id in p.elder_ids
    return False


def can_edit_device(p: Principal, *, district_id: int | None) -> bool:
    """Admins edit any device; a civil-affairs officer devices installed in their districts."""
    if p.role == Role.ADMIN:
        return True
    return by_district(p) and district_id is not None and district_id in p.district_ids


# Who works on an elder's monitoring settings (iot_ingest.monitoring): the call centre.
MONITORING_STAFF: Final = frozenset({Role.OPERATOR, Role.SUPERVISOR})


def in_call_centre_area(p: Principal, *, district_id: int) -> bool:
    """Whether a district is in an operator's or supervisor's area: their districts, or the whole
    city when they have none (DOMAIN §9)."""
    return not p.district_ids or district_id in p.district_ids


def can_see_monitoring(p: Principal, *, elder_id: int, district_id: int) -> bool:
    """An elder's monitoring settings (daytime and night windows, safe zone, vital-sign overrides)
    are read by operators and supervisors in their area and by the elder's family."""
    if p.role in MONITORING_STAFF:
        return in_call_centre_area(p, district_id=district_id)
    if p.role == Role.FAMILY:
        return elder_id in p.elder_ids
    return False


def can_edit_monitoring(p: Principal, *, district_id: int) -> bool:
    """Only operators and supervisors change them, in their area."""
    return p.role in MONITORING_STAFF and in_call_centre_area(p, district_id=district_id)


def can_manage_blocklist(p: Principal, *, elder_id: int, district_id: int) -> bool:
    """An elder, their family, the district's civil-affairs officer or an admin may block caregivers."""
    if p.role == Role.ADMIN:
        return True
    if by_district(p):
        return district_id in p.district_ids
    if p.role in (Role.FAMILY, Role.ELDER):
        return elder_id in p.elder_ids
    return False


def can_see_guardian(p: Principal, *, guardian_id: int, elder_district_ids: Iterable[int]) -> bool:
    """Admins and call-centre staff (who phone families on alarms) see every guardian; a
    civil-affairs officer guardians of elders in their districts; a family member themself."""
    if sees_all_elders(p):
        return True
    if by_district(p):
        return bool(p.district_ids.intersection(elder_district_ids))
    if p.role == Role.FAMILY:
        return p.guardian_id == guardian_id
    return False


def visit_opens_elder(
    *,
    scheduled_end_at: dt.datetime,
    check_out_at: dt.datetime | None,
    cancelled: bool,
    now: dt.datetime,
    recent_days: float,
) -> bool:
    """Whether a caregiver's visit lets them read the elder's care record at ``now``: while it is
    upcoming or current, and for ``recent_days`` after it ended (its scheduled end, or its check-out
    if later). A visit of a cancelled order opens nothing; a negative window counts as 0."""
    if cancelled:
        return False
    ends_at = max(scheduled_end_at, check_out_at) if check_out_at is not None else scheduled_end_at
    return ends_at >= now - dt.timedelta(days=max(0.0, recent_days))


def shows_contacts_during_visit(
    p: Principal, *, order_state: str, caregiver_id: int | None, provider_id: int | None
) -> bool:
    """Whether this visit lets ``p``, limited to the care view, read the elder's emergency contacts
    (DOMAIN §9: "emergency contacts during the visit"): the visit is under way (the caregiver is on
    the way or on site) and it is ``p``'s own (a caregiver) or its provider's (a provider admin)."""
    if order_state not in VISIT_UNDER_WAY:
        return False
    if p.role == Role.CAREGIVER:
        return p.caregiver_id is not None and caregiver_id == p.caregiver_id
    if p.role == Role.PROVIDER_ADMIN:
        return p.provider_id is not None and provider_id == p.provider_id
    return False


# --- Loading the facts the rules need -----------------------------------------------------------


async def load_elder_scope(session: AsyncSession, user: AppUser, role: Role, now: dt.datetime) -> ScopeFields:
    """The elders an account's role ties it to, for its principal: a family member's (their
    guardian links), an elder's own record, a caregiver's served elders (:func:`served_elder_ids_stmt`
    at ``now``). Other roles see elders by district or provider, which the principal carries anyway.

    A family member's elders may be cached with the principal: a change of ``elder_guardian`` moves
    the account's ``scope_epoch`` on (migration 0017). A caregiver's may not (``rebuild_each_request``)."""
    if role == Role.FAMILY and user.guardian_id is not None:
        linked = await session.scalars(
            select(ElderGuardian.elder_id).where(ElderGuardian.guardian_id == user.guardian_id)
        )
        return {"elder_ids": frozenset(linked.all())}
    if role == Role.ELDER and user.elder_id is not None:
        return {"elder_ids": frozenset({user.elder_id})}
    if role == Role.CAREGIVER and user.caregiver_id is not None:
        served = await session.scalars(served_elder_ids_stmt(user.caregiver_id, now))
        # Visits come and go and the window moves with the clock: built afresh for every request.
        return {"served_elder_ids": frozenset(served.all()), "rebuild_each_request": True}
    return {}


# What the registry adds to every principal; the composition root passes these to the kernel.
SCOPE_LOADERS: Final[tuple[ScopeLoader, ...]] = (load_elder_scope,)


async def elders_with_visit_under_way(
    session: AsyncSession, p: Principal, elder_ids: Iterable[int]
) -> set[int]:
    """Those of ``elder_ids`` whose contacts :func:`shows_contacts_during_visit` opens to ``p`` now."""
    if p.role == Role.CAREGIVER and p.caregiver_id is not None:
        own = visit_t.c.caregiver_id == p.caregiver_id
    elif p.role == Role.PROVIDER_ADMIN and p.provider_id is not None:
        own = visit_t.c.provider_id == p.provider_id
    else:
        return set()
    rows = await session.scalars(
        select(visit_t.c.elder_id)
        .join(service_order_t, service_order_t.c.id == visit_t.c.order_id)
        .where(
            own,
            visit_t.c.elder_id.in_(sorted(set(elder_ids))),
            service_order_t.c.state.in_(VISIT_UNDER_WAY),
        )
    )
    return {int(v) for v in rows}


def served_elder_ids_stmt(caregiver_id: int, now: dt.datetime) -> Select[int]:
    """SQL twin of :func:`visit_opens_elder`: the elders of the caregiver's visits open at ``now``,
    with the window valid on ``now``'s local date (no valid row: 0 days, only current and upcoming)."""
    days = func.greatest(0.0, policy_number(RECENT_VISITS_POLICY, "*", "days", local_date(now), 0.0))
    since = literal(now, _TZ) - func.make_interval(0, 0, 0, 0, 0, 0, days * 86400.0)
    return (
        select(visit_t.c.elder_id)
        .distinct()
        .join(service_order_t, service_order_t.c.id == visit_t.c.order_id)
        .where(
            visit_t.c.caregiver_id == caregiver_id,
            service_order_t.c.state != ORDER_CANCELLED,
            # greatest() skips NULLs: the check-out when there is one and it is later.
            func.greatest(visit_t.c.scheduled_end_at, visit_t.c.check_out_at) >= since,
        )
    )


def _provider_elder_ids(provider_id: int) -> Select[int]:
    """Elders with an order or a visit (of any state, so history included) with the provider, or an
    agreement with it that both sides signed (a draft the provider wrote alone opens nothing)."""
    orders = select(service_order_t.c.elder_id).where(service_order_t.c.provider_id == provider_id)
    visits = select(visit_t.c.elder_id).where(visit_t.c.provider_id == provider_id)
    agreed = select(service_agreement_t.c.elder_id).where(
        service_agreement_t.c.provider_id == provider_id, service_agreement_t.c.signed_at.is_not(None)
    )
    return select(orders.union(visits, agreed).subquery().c.elder_id)


async def providers_serving(session: AsyncSession, elder_id: int) -> list[int]:
    """Providers with an order or a visit for the elder, or a signed agreement with the elder."""
    orders = select(service_order_t.c.provider_id).where(
        service_order_t.c.elder_id == elder_id, service_order_t.c.provider_id.is_not(None)
    )
    visits = select(visit_t.c.provider_id).where(
        visit_t.c.elder_id == elder_id, visit_t.c.provider_id.is_not(None)
    )
    agreed = select(service_agreement_t.c.provider_id).where(
        service_agreement_t.c.elder_id == elder_id, service_agreement_t.c.signed_at.is_not(None)
    )
    return [int(v) for v in await session.scalars(orders.union(visits, agreed))]


async def sees_elder(session: AsyncSession, p: Principal, elder: Elder) -> bool:
    """:func:`can_see_elder` with the providers of the elder's orders and visits loaded."""
    served_by: list[int] = []
    if p.role == Role.PROVIDER_ADMIN:
        served_by = await providers_serving(session, elder.id)
    return can_see_elder(
        p, elder_id=elder.id, district_id=elder.district_id, served_by_provider_ids=served_by
    )


# --- SQL twins of the rules, for lists ----------------------------------------------------------


def elder_clause(p: Principal) -> ColumnElement[bool]:
    """Rows of ``elder`` that :func:`can_see_elder` admits for ``p``."""
    if sees_all_elders(p):
        return true()
    if by_district(p):
        return Elder.district_id.in_(sorted(p.district_ids)) if p.district_ids else false()
    if p.role in (Role.FAMILY, Role.ELDER):
        return Elder.id.in_(sorted(p.elder_ids)) if p.elder_ids else false()
    if p.role == Role.PROVIDER_ADMIN and p.provider_id is not None:
        return Elder.id.in_(_provider_elder_ids(p.provider_id))
    if p.role == Role.CAREGIVER:
        return Elder.id.in_(sorted(p.served_elder_ids)) if p.served_elder_ids else false()
    return false()


def caregiver_clause(p: Principal) -> ColumnElement[bool]:
    """Rows of ``caregiver`` that :func:`can_see_provider` admits for their provider."""
    if p.role in (Role.PROVIDER_ADMIN, Role.CAREGIVER):
        return Caregiver.provider_id == p.provider_id if p.provider_id is not None else false()
    if p.role in (Role.ADMIN, Role.OPERATOR, Role.SUPERVISOR, Role.CIVIL_AFFAIRS):
        return true()
    return false()


def device_clause(p: Principal, elder_fk: SQLColumnExpression[Any]) -> ColumnElement[bool]:
    """Rows of a table of home equipment (``device``, ``gateway``: installed in an elder's home
    through their ``elder_id``, given as ``elder_fk``) that :func:`can_see_device` admits."""
    if sees_all_elders(p):
        return true()
    if by_district(p):
        if not p.district_ids:
            return false()
        return elder_fk.in_(select(Elder.id).where(Elder.district_id.in_(sorted(p.district_ids))))
    if p.role in (Role.FAMILY, Role.ELDER):
        return elder_fk.in_(sorted(p.elder_ids)) if p.elder_ids else false()
    return false()


def agreement_clause(
    p: Principal, *, elder_col: SQLColumnExpression[Any], provider_col: SQLColumnExpression[Any]
) -> ColumnElement[bool]:
    """Rows of ``service_agreement`` (its ``elder_id`` and ``provider_id`` columns) that
    :func:`can_see_agreement` admits."""
    if p.role in AGREEMENTS_CITY_WIDE:
        return true()
    if by_district(p):
        if not p.district_ids:
            return false()
        return elder_col.in_(select(Elder.id).where(Elder.district_id.in_(sorted(p.district_ids))))
    if p.role == Role.PROVIDER_ADMIN:
        return provider_col == p.provider_id if p.provider_id is not None else false()
    if p.role in (Role.ELDER, Role.FAMILY):
        return elder_col.in_(sorted(p.elder_ids)) if p.elder_ids else false()
    return false()


def guardian_clause(p: Principal) -> ColumnElement[bool]:
    """Rows of ``guardian`` that :func:`can_see_guardian` admits."""
    if sees_all_elders(p):
        return true()
    if by_district(p) and p.district_ids:
        return exists(
            select(ElderGuardian.elder_id)
            .join(Elder, Elder.id == ElderGuardian.elder_id)
            .where(
                and_(ElderGuardian.guardian_id == Guardian.id, Elder.district_id.in_(sorted(p.district_ids)))
            )
        )
    if p.role == Role.FAMILY and p.guardian_id is not None:
        return Guardian.id == p.guardian_id
    return false()
