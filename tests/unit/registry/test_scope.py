"""The caregiver's visit window as a table of cases, and the other domains' columns the scope SQL
reads (dispatch's orders and visits, the ingest's devices)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Table

from core.identity.authz import Principal
from core.identity.models import Role
from dispatch.models import ServiceAgreement, ServiceOrder, Visit
from dispatch.states import OrderState
from iot_ingest.models import Device
from registry.scope import (
    ORDER_CANCELLED,
    RECENT_VISITS_POLICY,
    VISIT_UNDER_WAY,
    can_see_agreement,
    device_t,
    service_agreement_t,
    service_order_t,
    shows_contacts_during_visit,
    visit_opens_elder,
    visit_t,
)
from registry.seed import POLICY_DEFAULTS

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("end", "check_out", "cancelled", "days", "expected"),
    [
        (NOW + 3 * DAY, None, False, 30, True),  # upcoming
        (NOW + HOUR, None, False, 30, True),  # current
        (NOW + 90 * DAY, None, False, 30, True),  # upcoming, however far ahead
        (NOW - 29 * DAY, None, False, 30, True),  # recent
        (NOW - 30 * DAY, None, False, 30, True),  # the window's edge is inside
        (NOW - 30 * DAY - dt.timedelta(seconds=1), None, False, 30, False),
        (NOW - 31 * DAY, None, False, 30, False),
        # A check-out later than the scheduled end counts from the check-out.
        (NOW - 31 * DAY, NOW - 29 * DAY, False, 30, True),
        # An early check-out does not shorten the window.
        (NOW - 29 * DAY, NOW - 31 * DAY, False, 30, True),
        (NOW + 3 * DAY, None, True, 30, False),  # cancelled: nothing
        (NOW - HOUR, None, False, 0, False),  # no window: only current and upcoming
        (NOW + HOUR, None, False, 0, True),
        (NOW - 10 * DAY, None, False, 14, True),  # the policy decides
        (NOW - 10 * DAY, None, False, 7, False),
        (NOW - HOUR, None, False, -5, False),  # a negative window counts as 0
    ],
)
def test_visit_opens_elder(
    end: dt.datetime, check_out: dt.datetime | None, cancelled: bool, days: float, expected: bool
) -> None:
    assert (
        visit_opens_elder(
            scheduled_end_at=end, check_out_at=check_out, cancelled=cancelled, now=NOW, recent_days=days
        )
        is expected
    )


def test_the_scope_names_real_dispatch_and_device_columns() -> None:
    """The registry may not import dispatch or the ingest, so scope.py names the columns it reads;
    they must exist with the same types in dispatch.models and iot_ingest.models."""
    tables = (
        (service_order_t, ServiceOrder.__table__),
        (visit_t, Visit.__table__),
        (service_agreement_t, ServiceAgreement.__table__),
        (device_t, Device.__table__),
    )
    for light, model in tables:
        assert isinstance(model, Table)
        assert light.name == model.name
        for col in light.c:
            real = model.c[col.name]
            assert type(col.type)._type_affinity is type(real.type)._type_affinity, col.name
    assert OrderState.CANCELLED.value == ORDER_CANCELLED
    assert {OrderState.EN_ROUTE.value, OrderState.CHECKED_IN.value} == set(VISIT_UNDER_WAY)


CAREGIVER = Principal(user_id=1, username="cg", role=Role.CAREGIVER, provider_id=3, caregiver_id=30)
PROVIDER = Principal(user_id=2, username="pa", role=Role.PROVIDER_ADMIN, provider_id=3)
OPERATOR = Principal(user_id=3, username="op", role=Role.OPERATOR)


@pytest.mark.parametrize(
    ("who", "state", "caregiver_id", "provider_id", "expected"),
    [
        (CAREGIVER, "en_route", 30, 3, True),
        (CAREGIVER, "checked_in", 30, 3, True),
        (CAREGIVER, "accepted", 30, 3, False),  # upcoming: not yet
        (CAREGIVER, "checked_out", 30, 3, False),  # over
        (CAREGIVER, "checked_in", 31, 3, False),  # a colleague's visit
        (PROVIDER, "checked_in", 31, 3, True),  # any visit of its provider
        (PROVIDER, "checked_in", 31, 4, False),
        (PROVIDER, "verified", 30, 3, False),
        (OPERATOR, "checked_in", 30, 3, False),  # not a care-view role: not this rule's business
    ],
)
def test_contacts_during_a_visit_under_way(
    who: Principal, state: str, caregiver_id: int, provider_id: int, expected: bool
) -> None:
    shown = shows_contacts_during_visit(
        who, order_state=state, caregiver_id=caregiver_id, provider_id=provider_id
    )
    assert shown is expected


def test_the_recent_visit_window_is_seeded_as_policy() -> None:
    rows = [p for p in POLICY_DEFAULTS if p.key == RECENT_VISITS_POLICY]
    assert [(p.scope, p.value) for p in rows] == [("*", {"days": 30})]


XIAONAN_ID, HANCHUAN_ID = 1, 2
CIVIL = Principal(user_id=5, username="ca", role=Role.CIVIL_AFFAIRS, district_ids=frozenset({XIAONAN_ID}))
FAMILY = Principal(user_id=6, username="f", role=Role.FAMILY, elder_ids=frozenset({40}))


@pytest.mark.parametrize(
    ("who", "elder_id", "district_id", "provider_id", "expected"),
    [
        (OPERATOR, 40, HANCHUAN_ID, 3, True),
        (Principal(user_id=7, username="ad", role=Role.ADMIN), 40, HANCHUAN_ID, 3, True),
        (CIVIL, 40, XIAONAN_ID, 9, True),
        (CIVIL, 40, HANCHUAN_ID, 9, False),
        (PROVIDER, 40, XIAONAN_ID, 3, True),  # its own provider's
        (PROVIDER, 40, XIAONAN_ID, 4, False),
        (FAMILY, 40, XIAONAN_ID, 4, True),  # its elder's, whichever provider
        (FAMILY, 41, XIAONAN_ID, 4, False),
        (CAREGIVER, 40, XIAONAN_ID, 3, False),  # not even its provider's
        (Principal(user_id=8, username="su", role=Role.SUPERVISOR), 40, XIAONAN_ID, 3, False),
    ],
)
def test_who_sees_a_service_agreement(
    who: Principal, elder_id: int, district_id: int, provider_id: int, expected: bool
) -> None:
    assert (
        can_see_agreement(who, elder_id=elder_id, district_id=district_id, provider_id=provider_id)
        is expected
    )
