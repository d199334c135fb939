"""Least privilege over elders (DOMAIN §9) through HTTP, with the roles' own logins.

A caregiver sees the elders of their current, upcoming and recent visits (a dated policy window),
a provider admin the elders with an order or visit with its provider, or a service agreement both
sides signed (not a draft it wrote alone); both get the care view only
(no ID number, birth date or subsidy categories) and may not search by ID number. Whoever gets a
masked ID number gets no birth date that would rebuild it, and the mask hides what encodes it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, union, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.identity.models import Role
from core.policy import PolicyValue
from dispatch.models import ServiceAgreement, ServiceOrder, Visit
from registry.idcard import age_on, mask_id_number
from registry.models import Assessment, Elder, Provider
from registry.scope import RECENT_VISITS_POLICY
from tests.conftest import TEST_NOW
from tests.factories import TODAY, XIAONAN, Factory
from tests.support.registry import headers_for, principal_of, problem_code

pytestmark = pytest.mark.integration

DAY = dt.timedelta(days=1)
# Exactly the fields of the care view (DOMAIN §9: what a visit needs).
CARE_FIELDS = {
    "view", "id", "name", "gender", "age", "phone", "address", "lat", "lon", "community_id",
    "district_id", "living_situation", "has_dementia", "allows_any_gender_bathing", "medical_notes",
    "status", "level", "contacts",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Account:
    headers: dict[str, str]
    provider: Provider
    caregiver_id: int | None = None

    @property
    def provider_id(self) -> int:
        return self.provider.id


async def new_provider_admin(make: Factory, *, serves: str = XIAONAN) -> Account:
    """A provider contracted to serve the district ``serves`` (hundreds of elders), with no orders."""
    provider = await make.provider(serves)
    return Account((await make.account(Role.PROVIDER_ADMIN, provider=provider)).headers, provider)


async def new_caregiver(make: Factory, provider: Provider) -> Account:
    cg = await make.caregiver(provider)
    return Account((await make.account(Role.CAREGIVER, caregiver=cg)).headers, provider, cg.id)


async def add_order(
    db: AsyncSession,
    elder: Elder,
    *,
    provider_id: int | None,
    caregiver_id: int | None = None,
    start: dt.datetime = TEST_NOW + DAY,
    state: str = "accepted",
    visit: bool = True,
) -> ServiceOrder:
    """An order (and, by default, its visit) of one hour from ``start``."""
    order = ServiceOrder(
        elder_id=elder.id, service_code="VISIT", provider_id=provider_id, caregiver_id=caregiver_id,
        state=state, window_start_at=start, window_end_at=start + dt.timedelta(minutes=30),
        duration_s=3600, price_fen=3000, created_by_role="operator",
    )  # fmt: skip
    db.add(order)
    await db.flush()
    if visit:
        assert caregiver_id is not None
        db.add(
            Visit(
                order_id=order.id, service_code="VISIT", elder_id=elder.id, caregiver_id=caregiver_id,
                provider_id=provider_id, scheduled_start_at=start,
                scheduled_end_at=start + dt.timedelta(hours=1),
            )
        )  # fmt: skip
    await db.commit()
    return order


async def listed_ids(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> set[int]:
    r = await client.get("/api/v1/elders", params={"limit": 200, **params}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(body["items"])
    return {e["id"] for e in body["items"]}


def nested_paths(elder_id: int) -> list[str]:
    """Every read of an elder's record and of what hangs on it that a caregiver or provider may call."""
    return [
        f"/api/v1/elders/{elder_id}",
        f"/api/v1/elders/{elder_id}/assessments",
        f"/api/v1/elders/{elder_id}/vitals?metric=hr",
    ]


async def assert_hidden(
    client: httpx.AsyncClient, db: AsyncSession, headers: dict[str, str], elder_id: int
) -> None:
    for path in nested_paths(elder_id):
        r = await client.get(path, headers=headers)
        assert (r.status_code, problem_code(r)) == (404, "elder.not_found"), path
    assessment = await db.scalar(select(Assessment.id).where(Assessment.elder_id == elder_id).limit(1))
    if assessment is not None:
        r = await client.get(f"/api/v1/assessments/{assessment}", headers=headers)
        assert (r.status_code, problem_code(r)) == (404, "assessment.not_found")


async def assert_care_view(client: httpx.AsyncClient, headers: dict[str, str], elder: Elder) -> None:
    r = await client.get(f"/api/v1/elders/{elder.id}", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == CARE_FIELDS
    assert body["view"] == "care"
    assert body["age"] == age_on(elder.birth_on, TODAY)
    assert body["contacts"] is None, "emergency contacts only during a visit under way"
    # Nothing that carries the ID number, the birth date or a subsidy category, anywhere in it.
    assert elder.id_number[6:14] not in r.text
    assert elder.birth_on.isoformat() not in r.text
    for path in nested_paths(elder.id)[1:]:
        assert (await client.get(path, headers=headers)).status_code == 200, path


# --- Caregivers -------------------------------------------------------------------------------------


async def test_a_new_caregiver_sees_no_elder(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    provider = await new_provider_admin(make)
    cg = await new_caregiver(make, provider.provider)
    neighbour = await make.elder(XIAONAN)
    assert await listed_ids(client, cg.headers) == set()
    await assert_hidden(client, db, cg.headers, neighbour.id)
    # The demo caregiver, too, sees only the elders of their own visits (the test data has none).
    demo = await principal_of(db, "demo_caregiver")
    assert await listed_ids(client, await headers_for(db, "demo_caregiver")) == set(demo.served_elder_ids)


async def test_a_caregiver_sees_the_elder_of_an_upcoming_visit_in_the_care_view(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    provider = await new_provider_admin(make)
    cg = await new_caregiver(make, provider.provider)
    other_cg = await new_caregiver(make, provider.provider)
    elder = await make.elder(XIAONAN)
    neighbour = await make.elder(XIAONAN)
    await add_order(db, elder, provider_id=provider.provider_id, caregiver_id=cg.caregiver_id)
    # An order of the same provider taken by a colleague opens nothing to this caregiver.
    await add_order(db, neighbour, provider_id=provider.provider_id, caregiver_id=other_cg.caregiver_id)

    assert await listed_ids(client, cg.headers) == {elder.id}
    page = (await client.get("/api/v1/elders", headers=cg.headers)).json()
    assert set(page["items"][0]) == CARE_FIELDS
    await assert_care_view(client, cg.headers, elder)
    await assert_hidden(client, db, cg.headers, neighbour.id)
    # Filters work inside the scope and never widen it.
    assert await listed_ids(client, cg.headers, district_code=XIAONAN) == {elder.id}
    assert await listed_ids(client, cg.headers, name=neighbour.name[:1]) <= {elder.id}


async def test_recent_visits_count_for_the_policy_window(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    provider = await new_provider_admin(make)
    cg = await new_caregiver(make, provider.provider)
    recent = await make.elder(XIAONAN)
    old = await make.elder(XIAONAN)
    cancelled = await make.elder(XIAONAN)
    hour = dt.timedelta(hours=1)
    # Visits of an hour that ended 29 and 31 days ago; an upcoming visit whose order was cancelled.
    await add_order(
        db, recent, provider_id=provider.provider_id, caregiver_id=cg.caregiver_id,
        start=TEST_NOW - 29 * DAY - hour, state="verified",
    )  # fmt: skip
    await add_order(
        db, old, provider_id=provider.provider_id, caregiver_id=cg.caregiver_id,
        start=TEST_NOW - 31 * DAY - hour, state="verified",
    )  # fmt: skip
    await add_order(
        db, cancelled, provider_id=provider.provider_id, caregiver_id=cg.caregiver_id, state="cancelled"
    )
    assert await listed_ids(client, cg.headers) == {recent.id}
    await assert_care_view(client, cg.headers, recent)
    await assert_hidden(client, db, cg.headers, old.id)
    await assert_hidden(client, db, cg.headers, cancelled.id)

    # The window is dated policy: a longer one from yesterday on brings the older visit back.
    db.add(PolicyValue(key=RECENT_VISITS_POLICY, scope="*", value={"days": 45}, valid_from=TODAY - DAY))
    await db.commit()
    assert await listed_ids(client, cg.headers) == {recent.id, old.id}


async def test_emergency_contacts_only_while_a_visit_is_under_way(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    provider = await new_provider_admin(make)
    cg = await new_caregiver(make, provider.provider)
    elder = await make.elder(XIAONAN)
    contacts = [{"name": "王五", "relation": "son", "phone": "13911112222"}]
    admin = (await make.admin()).headers
    r = await client.put(f"/api/v1/elders/{elder.id}/contacts", json={"contacts": contacts}, headers=admin)
    assert r.status_code == 200, r.text
    order = await add_order(db, elder, provider_id=provider.provider_id, caregiver_id=cg.caregiver_id)
    for headers in (cg.headers, provider.headers):
        assert (await client.get(f"/api/v1/elders/{elder.id}", headers=headers)).json()["contacts"] is None
    for state in ("en_route", "checked_in"):
        await db.execute(update(ServiceOrder).where(ServiceOrder.id == order.id).values(state=state))
        await db.commit()
        for headers in (cg.headers, provider.headers):
            detail = (await client.get(f"/api/v1/elders/{elder.id}", headers=headers)).json()
            assert detail["contacts"] == [{"position": 1, **contacts[0]}], state
            (item,) = (await client.get("/api/v1/elders", headers=headers)).json()["items"]
            assert item["contacts"] == detail["contacts"]
    await db.execute(update(ServiceOrder).where(ServiceOrder.id == order.id).values(state="checked_out"))
    await db.commit()
    assert (await client.get(f"/api/v1/elders/{elder.id}", headers=cg.headers)).json()["contacts"] is None


# --- Provider admins --------------------------------------------------------------------------------


async def test_a_provider_admin_sees_the_elders_of_its_orders_and_visits_only(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    provider = await new_provider_admin(make)
    rival = await new_provider_admin(make)
    cg = await new_caregiver(make, provider.provider)
    ordered = await make.elder(XIAONAN)
    visited = await make.elder(XIAONAN)
    rivals = await make.elder(XIAONAN)
    neighbour = await make.elder(XIAONAN)
    # An order not yet dispatched but placed with the provider, and a visit long past (history).
    await add_order(db, ordered, provider_id=provider.provider_id, state="created", visit=False)
    await add_order(
        db, visited, provider_id=provider.provider_id, caregiver_id=cg.caregiver_id,
        start=TEST_NOW - 200 * DAY, state="rated",
    )  # fmt: skip
    rival_cg = await new_caregiver(make, rival.provider)
    await add_order(db, rivals, provider_id=rival.provider_id, caregiver_id=rival_cg.caregiver_id)

    assert await listed_ids(client, provider.headers) == {ordered.id, visited.id}
    await assert_care_view(client, provider.headers, ordered)
    await assert_care_view(client, provider.headers, visited)
    for outsider in (rivals, neighbour):
        await assert_hidden(client, db, provider.headers, outsider.id)
        r = await client.get(f"/api/v1/elders/{outsider.id}/blocked-caregivers", headers=provider.headers)
        assert (r.status_code, problem_code(r)) == (404, "elder.not_found")
    r = await client.get(f"/api/v1/elders/{ordered.id}/blocked-caregivers", headers=provider.headers)
    assert r.status_code == 200
    # Guardians' names and phones are not in the care view, even of an elder it serves.
    r = await client.get(f"/api/v1/elders/{ordered.id}/guardians", headers=provider.headers)
    assert (r.status_code, problem_code(r)) == (403, "auth.forbidden")


async def test_a_provider_admin_sees_the_elders_of_its_signed_agreements_not_of_its_drafts(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    provider = await new_provider_admin(make)
    agreed = await make.elder(XIAONAN)
    drafted = await make.elder(XIAONAN)
    await make.agreement(agreed, provider.provider, "VISIT")
    await make.agreement(drafted, provider.provider, "VISIT")
    await db.execute(
        update(ServiceAgreement)
        .where(ServiceAgreement.elder_id == drafted.id)
        .values(signed_at=None, state="draft")
    )
    assert await listed_ids(client, provider.headers) == {agreed.id}
    await assert_care_view(client, provider.headers, agreed)
    await assert_hidden(client, db, provider.headers, drafted.id)


async def test_the_demo_provider_admin_sees_exactly_the_elders_of_its_orders_and_agreements(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    p = await principal_of(db, "demo_provider_admin")
    headers = await headers_for(db, "demo_provider_admin")
    elder = await make.elder(XIAONAN)
    await add_order(db, elder, provider_id=p.provider_id, state="created", visit=False)
    ids = union(
        select(ServiceOrder.elder_id).where(ServiceOrder.provider_id == p.provider_id),
        select(Visit.elder_id).where(Visit.provider_id == p.provider_id),
        select(ServiceAgreement.elder_id).where(
            ServiceAgreement.provider_id == p.provider_id, ServiceAgreement.signed_at.is_not(None)
        ),
    ).subquery()
    expected = await db.scalar(select(func.count()).select_from(ids))
    total = (await client.get("/api/v1/elders", params={"limit": 1}, headers=headers)).json()["total"]
    assert total == expected
    assert elder.id in await listed_ids(client, headers, district_code=XIAONAN)


async def test_caregivers_and_providers_cannot_look_up_an_id_number(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    provider = await new_provider_admin(make)
    cg = await new_caregiver(make, provider.provider)
    elder = await make.elder(XIAONAN)
    await add_order(db, elder, provider_id=provider.provider_id, caregiver_id=cg.caregiver_id)
    stranger = await new_caregiver(make, (await new_provider_admin(make)).provider)
    for headers in (provider.headers, cg.headers, stranger.headers):
        # Not even for an elder they see: a match would confirm a number they may not read.
        r = await client.get("/api/v1/elders", params={"id_number": elder.id_number}, headers=headers)
        assert (r.status_code, problem_code(r)) == (403, "elder.id_number_filter")
    # The call centre still finds a caller by their number.
    operator = (await make.account(Role.OPERATOR)).headers
    assert await listed_ids(client, operator, id_number=elder.id_number) == {elder.id}


# --- The masked number cannot be rebuilt --------------------------------------------------------------


def _assert_not_rebuildable(body: dict[str, object], text: str, elder: Elder) -> None:
    assert body["id_number_masked"] is True
    assert body["id_number"] == mask_id_number(elder.id_number)
    assert body["birth_on"] is None
    assert body["age"] == age_on(elder.birth_on, TODAY)
    # Neither the birth date nor the check character (a function of it) is in the response.
    assert elder.id_number[6:14] not in text
    assert elder.birth_on.isoformat() not in text
    assert str(body["id_number"]).endswith("*")


async def test_whoever_gets_a_masked_id_number_gets_no_birth_date(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    own, me, civil_own = await make.elder(XIAONAN), await make.elder(XIAONAN), await make.elder(XIAONAN)
    family = await make.account(Role.FAMILY, guardian=await make.guardian(own))
    cases = [
        ("operator", (await make.account(Role.OPERATOR)).headers, civil_own),
        ("supervisor", (await make.account(Role.SUPERVISOR)).headers, civil_own),
        ("family", family.headers, own),
        ("elder", (await make.account(Role.ELDER, elder=me)).headers, me),
    ]
    for role, headers, elder in cases:
        r = await client.get(f"/api/v1/elders/{elder.id}", headers=headers)
        assert r.status_code == 200, (role, r.text)
        assert r.json()["view"] == "full"
        _assert_not_rebuildable(r.json(), r.text, elder)
    # Lists are masked for every role, the unmasking roles included, so they carry no birth date.
    civil = (await make.civil_affairs(XIAONAN)).headers
    for headers in ((await make.admin()).headers, civil, cases[0][1]):
        r = await client.get("/api/v1/elders", params={"id_number": civil_own.id_number}, headers=headers)
        (item,) = r.json()["items"]
        _assert_not_rebuildable(item, r.text, civil_own)
    # The audited unmasked read shows the number and, with it, the birth date.
    full = (await client.get(f"/api/v1/elders/{civil_own.id}", headers=civil)).json()
    assert (full["id_number"], full["birth_on"]) == (civil_own.id_number, civil_own.birth_on.isoformat())
