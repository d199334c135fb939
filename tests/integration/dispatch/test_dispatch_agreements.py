"""Service agreements (服务协议) through HTTP on the real app and database: a provider admin drafts one,
the elder (or the guardian named in it) and the provider sign it, it is terminated; who may do what,
who sees which, what is checked, that signed terms never change (in the service and in the database),
that two signers racing each other are both counted and one party is never counted twice, and that
every change is audited.

The clock is ``TEST_NOW`` (Friday 2026-11-20 10:00 in Xiaogan).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.audit import AuditLog
from core.errors import Conflict
from core.identity.authz import Principal
from core.identity.models import AppUser, Role
from dispatch import agreements
from dispatch.models import (
    AgreementItem,
    AgreementParty,
    AgreementSignature,
    AgreementState,
    ServiceAgreement,
)
from registry.models import Elder, Guardian, Provider
from tests.conftest import TEST_NOW
from tests.factories import HANCHUAN, TODAY, XIAONAN, Account, Factory
from tests.support import dispatch as support

pytestmark = pytest.mark.integration

A_YEAR = dt.timedelta(days=364)


@dataclass(frozen=True, slots=True)
class Sides:
    """An elder in Xiaonan with a guardian, a provider serving Xiaonan contracted for VISIT, CARE and
    MEAL, and the accounts of the elder, the guardian (family) and the provider's admin."""

    elder: Elder
    guardian: Guardian
    provider: Provider
    elder_acc: Account
    family: Account
    admin_of_provider: Account


@pytest.fixture
async def sides(make: Factory) -> Sides:
    provider = await make.provider(XIAONAN)
    await make.contract(provider, "VISIT", "CARE", "MEAL")
    elder = await make.elder(XIAONAN)
    guardian = await make.guardian(elder)
    return Sides(
        elder,
        guardian,
        provider,
        await make.account(Role.ELDER, elder=elder),
        await make.account(Role.FAMILY, guardian=guardian),
        await make.account(Role.PROVIDER_ADMIN, provider=provider),
    )


def _draft(s: Sides, **over: Any) -> dict[str, Any]:
    return {
        "elder_id": s.elder.id,
        "services": ["CARE", "VISIT"],
        "valid_from": TODAY.isoformat(),
        "valid_to": (TODAY + A_YEAR).isoformat(),
    } | over


async def _drafted(client: httpx.AsyncClient, s: Sides, **over: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/agreements", json=_draft(s, **over), headers=s.admin_of_provider.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _sign(
    client: httpx.AsyncClient, agreement_id: int, who: Account, party: str, **paper: str
) -> httpx.Response:
    body = {"party": party, **({"method": "paper_scan", **paper} if paper else {})}
    return await client.post(f"/api/v1/agreements/{agreement_id}/signatures", json=body, headers=who.headers)


async def _audit(db: AsyncSession, agreement_id: int) -> list[tuple[str, str | None]]:
    rows = await db.execute(
        select(AuditLog.action, AuditLog.actor_role)
        .where(AuditLog.entity == "service_agreement", AuditLog.entity_id == str(agreement_id))
        .order_by(AuditLog.id)
    )
    return [(a, r) for a, r in rows]


async def test_a_draft_is_priced_and_signed_by_the_elder_and_the_provider(
    client: httpx.AsyncClient, db: AsyncSession, sides: Sides
) -> None:
    a = await _drafted(client, sides)
    assert (a["state"], a["provider_id"], a["guardian_id"]) == ("draft", sides.provider.id, None)
    assert a["price_list_on"] == TODAY.isoformat()
    # The catalogue prices valid on the first day, with the policy row each was quoted from.
    assert [tuple(i.values()) for i in a["items"]] == [
        ("CARE", 6000, "hour", "service.price_fen[CARE]@2026-01-01"),
        ("VISIT", 3000, "visit", "service.price_fen[VISIT]@2026-01-01"),
    ]
    assert (a["required_parties"], a["missing_parties"]) == (["elder", "provider"], ["elder", "provider"])

    r = await _sign(client, a["id"], sides.elder_acc, "elder")
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["missing_parties"]) == ("draft", ["provider"])
    [sig] = r.json()["signatures"]
    assert sig | {"signed_at": None} == {
        "party": "elder",
        "signer_name": "测试用户",  # the signed-in account's name
        "user_id": sides.elder_acc.user_id,
        "method": "in_app",
        "document_ref": None,
        "recorded_by_user_id": sides.elder_acc.user_id,
        "signed_at": None,
    }
    r = await _sign(client, a["id"], sides.admin_of_provider, "provider")
    assert r.status_code == 200, r.text
    signed = r.json()
    assert (signed["state"], signed["missing_parties"]) == ("signed", [])
    assert signed["signed_at"] is not None
    assert [s["party"] for s in signed["signatures"]] == ["elder", "provider"]
    # A signed agreement takes no more signatures.
    r = await _sign(client, a["id"], sides.elder_acc, "elder")
    assert (r.status_code, r.json()["code"]) == (409, "agreement.not_draft")
    assert await _audit(db, a["id"]) == [
        ("create", "provider_admin"),
        ("sign", "elder"),
        ("sign", "provider_admin"),
    ]


async def test_a_guardian_signs_for_the_elder_and_the_provider_records_paper(
    client: httpx.AsyncClient, make: Factory, sides: Sides
) -> None:
    a = await _drafted(client, sides, guardian_id=sides.guardian.id)
    assert a["required_parties"] == ["guardian", "provider"]
    # The elder does not sign an agreement a guardian signs for them.
    r = await _sign(client, a["id"], sides.elder_acc, "elder")
    assert (r.status_code, r.json()["code"]) == (422, "agreement.party_not_required")
    # Another guardian of the same elder is family too, but not the one named.
    other = await make.account(Role.FAMILY, guardian=await make.guardian(sides.elder, name="另一位家属"))
    r = await _sign(client, a["id"], other, "guardian")
    assert (r.status_code, r.json()["code"]) == (403, "agreement.not_your_party")
    # The provider signs only for itself in the app; the guardian's signature it records from paper.
    r = await _sign(client, a["id"], sides.admin_of_provider, "guardian")
    assert (r.status_code, r.json()["code"]) == (403, "agreement.not_your_party")
    r = await _sign(client, a["id"], sides.admin_of_provider, "guardian", signer_name="测试家属")
    assert (r.status_code, r.json()["code"]) == (422, "agreement.paper_incomplete")
    r = await _sign(
        client,
        a["id"],
        sides.admin_of_provider,
        "guardian",
        signer_name="测试家属",
        document_ref="scan/2026/0042.pdf",
    )
    assert r.status_code == 200, r.text
    [paper] = r.json()["signatures"]
    assert (paper["method"], paper["signer_name"], paper["document_ref"]) == (
        "paper_scan",
        "测试家属",
        "scan/2026/0042.pdf",
    )
    assert (paper["user_id"], paper["recorded_by_user_id"]) == (None, sides.admin_of_provider.user_id)
    # Signed already: the named guardian cannot sign again.
    r = await _sign(client, a["id"], sides.family, "guardian")
    assert (r.status_code, r.json()["code"]) == (409, "agreement.already_signed")
    r = await client.post(
        f"/api/v1/agreements/{a['id']}/signatures",
        json={"party": "provider", "signer_name": "x"},
        headers=sides.admin_of_provider.headers,
    )
    assert (r.status_code, r.json()["code"]) == (422, "agreement.in_app_extra")
    r = await _sign(client, a["id"], sides.admin_of_provider, "provider")
    assert r.json()["state"] == "signed"


async def test_the_named_guardian_signs_in_the_app(client: httpx.AsyncClient, sides: Sides) -> None:
    a = await _drafted(client, sides, guardian_id=sides.guardian.id)
    r = await _sign(client, a["id"], sides.family, "guardian")
    assert r.status_code == 200, r.text
    assert r.json()["signatures"][0]["user_id"] == sides.family.user_id


async def test_a_draft_is_checked(client: httpx.AsyncClient, make: Factory, sides: Sides) -> None:
    elsewhere = await make.elder(HANCHUAN)  # not in a district the provider serves
    moved = await make.elder(XIAONAN, status="moved")
    stranger = await make.guardian()
    yesterday = (TODAY - dt.timedelta(days=1)).isoformat()
    cases: list[tuple[dict[str, Any], tuple[int, str]]] = [
        ({"elder_id": elsewhere.id}, (422, "reference.unknown")),
        ({"elder_id": moved.id}, (422, "agreement.elder_inactive")),
        ({"guardian_id": stranger.id}, (422, "reference.unknown")),
        ({"services": ["ESCORT"]}, (422, "agreement.service_not_contracted")),
        ({"services": ["NOPE"]}, (422, "agreement.service_unknown")),
        ({"services": ["VISIT", "VISIT"]}, (422, "agreement.services_invalid")),
        ({"services": []}, (422, "validation.invalid")),
        ({"valid_from": yesterday}, (422, "agreement.starts_in_past")),
        ({"valid_to": yesterday}, (422, "date_range.invalid")),
        ({"provider_id": 1}, (422, "validation.invalid")),  # the provider is the admin's own
    ]
    for over, expected in cases:
        r = await client.post(
            "/api/v1/agreements", json=_draft(sides, **over), headers=sides.admin_of_provider.headers
        )
        assert (r.status_code, r.json()["code"]) == expected, (over, r.text)
    # Only a provider admin drafts.
    for who in (sides.elder_acc, sides.family, await make.account(Role.OPERATOR), await make.admin()):
        r = await client.post("/api/v1/agreements", json=_draft(sides), headers=who.headers)
        assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden")


async def test_agreements_are_read_in_scope(client: httpx.AsyncClient, make: Factory, sides: Sides) -> None:
    a = await _drafted(client, sides)
    rival = await make.account(Role.PROVIDER_ADMIN, provider=await make.provider(XIAONAN))
    readers = {
        "elder": sides.elder_acc,
        "family": sides.family,
        "provider admin": sides.admin_of_provider,
        "civil affairs of Xiaonan": await make.civil_affairs(XIAONAN),
        "operator": await make.account(Role.OPERATOR),
        "admin": await make.admin(),
    }
    for name, who in readers.items():
        r = await client.get(f"/api/v1/agreements/{a['id']}", headers=who.headers)
        assert r.status_code == 200, (name, r.text)
        r = await client.get("/api/v1/agreements", params={"elder_id": sides.elder.id}, headers=who.headers)
        assert [x["id"] for x in r.json()["items"]] == [a["id"]], name
    others = {
        "civil affairs of Hanchuan": await make.civil_affairs(HANCHUAN),
        "another provider's admin": rival,
        "another elder": await make.account(Role.ELDER),
        "another family": await make.account(Role.FAMILY),
    }
    for name, who in others.items():
        r = await client.get(f"/api/v1/agreements/{a['id']}", headers=who.headers)
        assert (r.status_code, r.json()["code"]) == (404, "service_agreement.not_found"), name
        r = await client.get("/api/v1/agreements", params={"elder_id": sides.elder.id}, headers=who.headers)
        assert r.json()["items"] == [], name
    for role in (Role.SUPERVISOR, Role.CAREGIVER):
        who = await make.account(role)
        r = await client.get(f"/api/v1/agreements/{a['id']}", headers=who.headers)
        assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden"), role
    r = await client.get(
        "/api/v1/agreements", params={"state": "signed"}, headers=sides.admin_of_provider.headers
    )
    assert r.json()["total"] == 0
    # Signing it is for the parties: others are refused by role, or do not see it.
    r = await _sign(client, a["id"], await make.admin(), "provider")
    assert r.status_code == 403
    r = await _sign(client, a["id"], rival, "provider")
    assert (r.status_code, r.json()["code"]) == (404, "service_agreement.not_found")


async def test_signed_terms_never_change(client: httpx.AsyncClient, db: AsyncSession, sides: Sides) -> None:
    a = await _drafted(client, sides)
    path = f"/api/v1/agreements/{a['id']}"
    # A draft nobody has signed is revised, and priced again.
    r = await client.patch(
        path, json={"services": ["MEAL"], "valid_to": "2027-05-31"}, headers=sides.admin_of_provider.headers
    )
    assert r.status_code == 200, r.text
    assert [(i["service_code"], i["price_fen"]) for i in r.json()["items"]] == [("MEAL", 1200)]
    assert r.json()["valid_to"] == "2027-05-31"
    assert await _audit(db, a["id"]) == [("create", "provider_admin"), ("update", "provider_admin")]
    # Once a party has signed, the terms are what was signed.
    assert (await _sign(client, a["id"], sides.elder_acc, "elder")).status_code == 200
    r = await client.patch(path, json={"valid_to": "2027-06-30"}, headers=sides.admin_of_provider.headers)
    assert (r.status_code, r.json()["code"]) == (409, "agreement.not_editable")
    assert (await _sign(client, a["id"], sides.admin_of_provider, "provider")).json()["state"] == "signed"
    r = await client.patch(path, json={"services": ["VISIT"]}, headers=sides.admin_of_provider.headers)
    assert (r.status_code, r.json()["code"]) == (409, "agreement.not_editable")
    # The database refuses it too, whoever writes.
    for statement in (
        update(ServiceAgreement).where(ServiceAgreement.id == a["id"]).values(valid_to=dt.date(2030, 1, 1)),
        update(AgreementItem).where(AgreementItem.agreement_id == a["id"]).values(price_fen=1),
        delete(AgreementItem).where(AgreementItem.agreement_id == a["id"]),
        insert(AgreementItem).values(
            agreement_id=a["id"], service_code="VISIT", price_fen=1, unit="visit", price_ref="x"
        ),
    ):
        with pytest.raises(IntegrityError, match="cannot change"):
            async with db.begin_nested():
                await db.execute(statement)
    r = await client.get(path, headers=sides.elder_acc.headers)
    assert (r.json()["valid_to"], [i["price_fen"] for i in r.json()["items"]]) == ("2027-05-31", [1200])


async def test_termination(client: httpx.AsyncClient, db: AsyncSession, make: Factory, sides: Sides) -> None:
    a = await _drafted(client, sides)
    path = f"/api/v1/agreements/{a['id']}/terminate"
    for party in ("elder", "provider"):
        who = sides.elder_acc if party == "elder" else sides.admin_of_provider
        assert (await _sign(client, a["id"], who, party)).status_code == 200
    r = await client.post(path, json={"reason": "x"}, headers=(await make.account(Role.OPERATOR)).headers)
    assert (r.status_code, r.json()["code"]) == (403, "auth.forbidden")
    cases = [
        ({"reason": "迁居", "effective_on": "2026-11-19"}, "agreement.termination_in_past"),
        ({"reason": "迁居", "effective_on": "2030-01-01"}, "agreement.termination_after_end"),
    ]
    for body, code in cases:
        r = await client.post(path, json=body, headers=sides.family.headers)
        assert (r.status_code, r.json()["code"]) == (422, code)
    r = await client.post(
        path, json={"reason": "迁居", "effective_on": "2026-12-01"}, headers=sides.family.headers
    )
    assert r.status_code == 200, r.text
    ended = r.json()
    assert (ended["cancelled_order_ids"], ended["kept_order_ids"]) == ([], [])
    got = ended["agreement"]
    assert (got["state"], got["terminated_on"], got["termination_reason"]) == (
        "terminated",
        "2026-12-01",
        "迁居",
    )
    assert got["terminated_by_user_id"] == sides.family.user_id
    r = await client.post(path, json={"reason": "again"}, headers=sides.admin_of_provider.headers)
    assert (r.status_code, r.json()["code"]) == (409, "agreement.invalid_transition")
    assert [x for x, _ in await _audit(db, a["id"])] == ["create", "sign", "sign", "terminate"]
    # A draft is withdrawn the same way, at once.
    b = await _drafted(client, sides)
    r = await client.post(
        f"/api/v1/agreements/{b['id']}/terminate",
        json={"reason": "drafted by mistake", "effective_on": "2026-12-24"},
        headers=sides.admin_of_provider.headers,
    )
    assert (r.json()["agreement"]["state"], r.json()["agreement"]["terminated_on"]) == (
        "terminated",
        "2026-11-20",
    )
    assert r.json()["agreement"]["signed_at"] is None


# --- Racing signers (committed rows, two connections) ------------------------------------------------


@pytest.fixture
async def committed_draft(
    engine: AsyncEngine, seeded: dict[str, object]
) -> AsyncIterator[tuple[int, Principal, Principal]]:
    """A committed draft between an elder and a provider of their own, and the principals of the
    elder and of the provider's admin (demo accounts' ids, scoped to these); removed afterwards."""
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as s, s.begin():
        place = await support.add_place(s, n=4, id_number="420902194005049991", birth_on=dt.date(1940, 5, 4))
        users = dict(
            (
                await s.execute(select(AppUser.username, AppUser.id).where(AppUser.username.like("demo_%")))
            ).all()
        )
        draft = ServiceAgreement(
            elder_id=place.elder.id,
            provider_id=place.provider.id,
            valid_from=TODAY,
            valid_to=TODAY + A_YEAR,
            price_list_on=TODAY,
            state=AgreementState.DRAFT.value,
            items=[AgreementItem(service_code="VISIT", price_fen=3000, unit="visit", price_ref="test")],
        )
        s.add(draft)
        await s.flush()
    elder = Principal(
        user_id=users["demo_elder"],
        username="e",
        role=Role.ELDER,
        elder_id=place.elder.id,
        elder_ids=frozenset({place.elder.id}),
    )
    admin = Principal(
        user_id=users["demo_provider_admin"],
        username="p",
        role=Role.PROVIDER_ADMIN,
        provider_id=place.provider.id,
    )
    yield draft.id, elder, admin
    async with factory() as s, s.begin():
        await s.execute(delete(ServiceAgreement).where(ServiceAgreement.id == draft.id))
        await support.remove_place(s, place)


async def _sign_in_own_session(
    engine: AsyncEngine, agreement_id: int, who: Principal, party: AgreementParty
) -> str:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with factory() as s, s.begin():
            await agreements.sign_agreement(
                session=s,
                actor=who,
                agreement_id=agreement_id,
                signature=agreements.SignatureIn(party),
                now=TEST_NOW,
            )
        return "signed"
    except Conflict as exc:
        return exc.code


async def test_one_party_signing_four_times_at_once_is_counted_once(
    engine: AsyncEngine, committed_draft: tuple[int, Principal, Principal]
) -> None:
    agreement_id, _, admin = committed_draft
    outcomes = await asyncio.gather(
        *(_sign_in_own_session(engine, agreement_id, admin, AgreementParty.PROVIDER) for _ in range(4))
    )
    assert sorted(outcomes) == ["agreement.already_signed"] * 3 + ["signed"]
    async with async_sessionmaker(engine)() as s:
        parties = list(
            await s.scalars(
                select(AgreementSignature.party).where(AgreementSignature.agreement_id == agreement_id)
            )
        )
        state = await s.scalar(select(ServiceAgreement.state).where(ServiceAgreement.id == agreement_id))
    assert (parties, state) == (["provider"], "draft")


async def test_both_parties_signing_at_once_make_it_signed(
    engine: AsyncEngine, committed_draft: tuple[int, Principal, Principal]
) -> None:
    """Each signer counts the signatures after adding its own. The elder has signed but not committed
    when the provider signs: the provider waits for the elder's row lock, then counts both, so the
    agreement is signed (without the lock it would count only its own and stay a draft)."""
    agreement_id, elder, admin = committed_draft
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as first, first.begin():
        await agreements.sign_agreement(
            session=first,
            actor=elder,
            agreement_id=agreement_id,
            signature=agreements.SignatureIn(AgreementParty.ELDER),
            now=TEST_NOW,
        )
        racing = asyncio.create_task(
            _sign_in_own_session(engine, agreement_id, admin, AgreementParty.PROVIDER)
        )
        await asyncio.sleep(0.3)
        assert not racing.done()  # the elder's signing holds the agreement
    assert await racing == "signed"
    async with factory() as s:
        row = (
            await s.execute(
                select(ServiceAgreement.state, ServiceAgreement.signed_at).where(
                    ServiceAgreement.id == agreement_id
                )
            )
        ).one()
        parties = list(
            await s.scalars(
                select(AgreementSignature.party)
                .where(AgreementSignature.agreement_id == agreement_id)
                .order_by(AgreementSignature.id)
            )
        )
    assert (row.state, parties) == ("signed", ["elder", "provider"])
    assert row.signed_at == TEST_NOW
