"""Small factories for the integration tests: the rows a test needs, inserted through the ORM into
the test's own rolled-back transaction, each valid by default and shaped by keyword overrides.

The reference geography (the districts of Xiaogan, their streets and communities) is seeded once per
session and shared: a factory places its rows there by district code. Everything else a test makes
for itself, so what it asserts does not hang on the demo data (a demo user's elders, the first
caregiver by id, a district's head count).

Accounts come with bearer headers through a session row, not the login route, so a test pays for
Argon2 only when it asks for a real password (``password=``, to sign in through the API).

Use it through the ``make`` fixture of a package's ``conftest.py``::

    elder = await make.elder(HANCHUAN, categories=["subsistence"])
    family = await make.account(Role.FAMILY, guardian=await make.guardian(elder))
    r = await client.get(f"/api/v1/elders/{elder.id}", headers=family.headers)
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import local_date
from core.identity.models import AppUser, AuthSession, Role, UserDistrict
from core.identity.passwords import hash_password
from core.identity.sessions import token_hash
from core.policy import POLICY_EPOCH
from dispatch.models import (
    AgreementItem,
    AgreementParty,
    AgreementSignature,
    AgreementState,
    ProviderService,
    ServiceAgreement,
    SignatureMethod,
)
from dispatch.seed import CONTRACTS_FROM, SERVICES
from registry.idcard import make_id_number
from registry.models import (
    Assessment,
    Caregiver,
    Certificate,
    Community,
    District,
    Elder,
    ElderCategory,
    ElderGuardian,
    EmergencyContact,
    Guardian,
    Provider,
    ProviderDistrict,
    Street,
)
from tests.conftest import TEST_NOW

XIAONAN: Final = "420902"  # 孝南区, urban: the district most tests work in
HANCHUAN: Final = "420984"  # 汉川市: "another district"
TODAY: Final = local_date(TEST_NOW)
# Nobody the demo seed creates was born on this day (it draws ages 60-100), so ID numbers built on
# it do not collide with the demo's; the factory still checks, since a test may pass its own date.
BIRTH: Final = dt.date(1925, 5, 6)
# A certificate valid around TEST_NOW, by kind (the eldercare worker's at level 4, 中级).
_CERTIFICATE_LEVEL: Final = {"health": None, "eldercare_worker": 4, "nurse": None}

_serial = itertools.count(1)


def _next() -> int:
    return next(_serial)


@functools.cache
def _password_hash(password: str) -> str:
    """One Argon2 hash per password for the whole run (hashing costs a sixth of a second)."""
    return hash_password(password)


async def open_session(
    db: AsyncSession, user_id: int, *, now: dt.datetime = TEST_NOW, ttl_s: int = 3600
) -> dict[str, str]:
    """Bearer headers for the account ``user_id`` through a new session row, opened at ``now`` and
    valid ``ttl_s`` seconds: what a sign-in leaves behind, without its Argon2 check (the sign-in
    itself is tested in ``tests/integration/core/test_api_auth.py``)."""
    token = secrets.token_urlsafe(32)
    db.add(
        AuthSession(
            token_hash=token_hash(token),
            user_id=user_id,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=ttl_s),
        )
    )
    await db.flush()
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True, slots=True)
class Account:
    """A signed-in user: the row and the headers that carry its bearer token."""

    user: AppUser
    headers: dict[str, str]

    @property
    def user_id(self) -> int:
        return self.user.id


class Factory:
    """The factories, bound to one test's session. They flush (the app's requests run on the same
    connection and see the rows) and never commit; the test's rollback removes them."""

    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    # --- Reference geography (seeded once per session) ---------------------------------------------

    async def district(self, code: str = XIAONAN) -> District:
        row = await self.db.scalar(select(District).where(District.code == code))
        assert row is not None, f"no district {code} in the reference data"
        return row

    async def community(self, district: str = XIAONAN) -> Community:
        """The first community (by code) of the district with this code."""
        row = await self.db.scalar(
            select(Community)
            .join(Street, Street.id == Community.street_id)
            .join(District, District.id == Street.district_id)
            .where(District.code == district)
            .order_by(Community.code)
            .limit(1)
        )
        assert row is not None, f"no community in district {district}"
        return row

    # --- Registry rows ------------------------------------------------------------------------------

    async def id_number(self, region: str = XIAONAN, birth_on: dt.date = BIRTH, *, male: bool = True) -> str:
        """A valid resident ID number that no elder has yet."""
        while True:
            number = make_id_number(region, birth_on, 2 * (_next() % 500) + (1 if male else 0))
            if await self.db.scalar(select(Elder.id).where(Elder.id_number == number)) is None:
                return number

    async def elder(
        self,
        district: str = XIAONAN,
        *,
        community: Community | None = None,
        name: str = "测试老人",
        gender: str = "M",
        birth_on: dt.date = BIRTH,
        living_situation: str = "alone",
        status: str = "active",
        status_on: dt.date | None = None,
        contacts: Sequence[tuple[str, str, str]] = (),
        categories: Sequence[str] = (),
        **columns: Any,
    ) -> Elder:
        """An elder living in the first community of ``district`` (or in ``community``), at its
        centre; ``contacts`` are (name, relation, phone) in calling order, ``categories`` subsidy
        categories held since 2026-01-01 with no end. Other columns by keyword."""
        place = community or await self.community(district)
        district_id = await self.db.scalar(select(Street.district_id).where(Street.id == place.street_id))
        assert district_id is not None
        region = await self.db.scalar(select(District.code).where(District.id == district_id))
        assert region is not None
        row = Elder(
            name=name,
            gender=gender,
            birth_on=birth_on,
            id_number=await self.id_number(region, birth_on, male=gender == "M"),
            address="孝感市测试路1号",
            lat=place.lat,
            lon=place.lon,
            community_id=place.id,
            district_id=district_id,
            living_situation=living_situation,
            status=status,
            status_on=status_on or (None if status == "active" else TODAY),
            contacts=[
                EmergencyContact(position=i, name=n, relation=r, phone=p)
                for i, (n, r, p) in enumerate(contacts, start=1)
            ],
            categories=[ElderCategory(category=c, valid_from=dt.date(2026, 1, 1)) for c in categories],
            **columns,
        )
        self.db.add(row)
        await self.db.flush()
        return row

    async def assessment(self, elder: Elder, *, level: int, assessed_on: dt.date = TODAY) -> Assessment:
        """An assessment of ``elder`` with final level ``level``, valid for a year from ``assessed_on``
        (the item scores are not what such a test is about: all zero)."""
        return await add_assessment(self.db, elder.id, level=level, assessed_on=assessed_on)

    async def agreement(
        self,
        elder: Elder,
        provider: Provider,
        *services: str,
        valid_from: dt.date = TODAY,
        valid_to: dt.date | None = None,
        guardian: Guardian | None = None,
    ) -> ServiceAgreement:
        """A service agreement both sides signed (on paper) between ``elder`` and ``provider`` for
        ``services`` (default VISIT), from ``valid_from`` for a year unless ``valid_to``."""
        return await add_signed_agreement(
            self.db,
            elder_id=elder.id,
            provider_id=provider.id,
            services=services or ("VISIT",),
            valid_from=valid_from,
            valid_to=valid_to,
            guardian_id=None if guardian is None else guardian.id,
        )

    async def contract(
        self, provider: Provider, *services: str, valid_from: dt.date = CONTRACTS_FROM
    ) -> None:
        """Contract ``provider`` for ``services``, open-ended from ``valid_from``."""
        for code in services:
            self.db.add(ProviderService(provider_id=provider.id, service_code=code, valid_from=valid_from))
        await self.db.flush()

    async def guardian(
        self,
        *elders: Elder,
        name: str = "测试家属",
        phone: str = "13900000000",
        relation: str = "son",
        primary: bool = False,
    ) -> Guardian:
        """A guardian linked to each of ``elders`` (none: a guardian of nobody yet)."""
        row = Guardian(name=name, phone=phone)
        self.db.add(row)
        await self.db.flush()
        for elder in elders:
            self.db.add(
                ElderGuardian(elder_id=elder.id, guardian_id=row.id, relation=relation, is_primary=primary)
            )
        await self.db.flush()
        return row

    async def provider(self, *districts: str, name: str | None = None, **columns: Any) -> Provider:
        """A provider under contract since 2026-01-01, serving the districts with these codes
        (by default Xiaonan)."""
        n = _next()
        defaults: dict[str, Any] = {
            "licence_no": f"T-LIC-{n}",
            "contract_no": f"T-CON-{n}",
            "contract_from": dt.date(2026, 1, 1),
            "phone": "07120000000",
            "address": "孝感市测试路2号",
        }
        row = Provider(name=name or f"测试服务机构{n}", **(defaults | columns))
        self.db.add(row)
        await self.db.flush()
        for code in districts or (XIAONAN,):
            self.db.add(ProviderDistrict(provider_id=row.id, district_id=(await self.district(code)).id))
        await self.db.flush()
        return row

    async def caregiver(
        self,
        provider: Provider,
        *,
        name: str | None = None,
        gender: str = "F",
        certificates: Sequence[str] = (),
        **columns: Any,
    ) -> Caregiver:
        """A caregiver of ``provider`` working 07:00-20:00 on weekdays from near Xiaonan's centre;
        ``certificates`` are kinds (``health``, ``eldercare_worker``, ``nurse``) valid around TEST_NOW."""
        n = _next()
        defaults: dict[str, Any] = {
            "phone": "13800000000",
            "shift_start": dt.time(7),
            "shift_end": dt.time(20),
            "home_lat": 30.92,
            "home_lon": 113.91,
        }
        row = Caregiver(
            provider_id=provider.id,
            name=name or f"测试护理员{n}",
            gender=gender,
            certificates=[
                Certificate(
                    kind=kind,
                    level=_CERTIFICATE_LEVEL[kind],
                    number=f"T-CERT-{n}-{i}",
                    issued_on=dt.date(2025, 1, 1),
                    expires_on=dt.date(2028, 1, 1),
                )
                for i, kind in enumerate(certificates)
            ],
            **(defaults | columns),
        )
        self.db.add(row)
        await self.db.flush()
        return row

    # --- Accounts -----------------------------------------------------------------------------------

    async def account(
        self,
        role: Role,
        *,
        districts: Sequence[str] = (),
        provider: Provider | None = None,
        caregiver: Caregiver | None = None,
        elder: Elder | None = None,
        guardian: Guardian | None = None,
        password: str | None = None,
        username: str | None = None,
    ) -> Account:
        """A user in ``role`` with the scope the role takes: ``districts`` (codes) for civil affairs
        (default Xiaonan), operators and supervisors; the ``provider`` of a provider admin, the
        ``caregiver`` of a caregiver (the provider follows), the ``elder`` of an elder, the
        ``guardian`` of a family member. A scope the role needs and is not given is made (a provider,
        a caregiver of a new provider, an elder in Xiaonan, a guardian of one).

        Without ``password`` the account cannot sign in through the API; it does not need to, its
        headers carry a session token."""
        if role == Role.CIVIL_AFFAIRS and not districts:
            districts = (XIAONAN,)
        if role == Role.PROVIDER_ADMIN and provider is None:
            provider = await self.provider()
        if role == Role.CAREGIVER and caregiver is None:
            caregiver = await self.caregiver(await self.provider())
        if role == Role.ELDER and elder is None:
            elder = await self.elder()
        if role == Role.FAMILY and guardian is None:
            guardian = await self.guardian(await self.elder())
        user = AppUser(
            username=username or f"t_{role.value}_{_next()}",
            display_name="测试用户",
            password_hash=_password_hash(password) if password else "not-a-hash",
            role=role.value,
            provider_id=provider.id if provider else caregiver.provider_id if caregiver else None,
            caregiver_id=caregiver.id if caregiver else None,
            elder_id=elder.id if elder else None,
            guardian_id=guardian.id if guardian else None,
        )
        self.db.add(user)
        await self.db.flush()
        for code in districts:
            self.db.add(UserDistrict(user_id=user.id, district_id=(await self.district(code)).id))
        return Account(user, await self.headers(user))

    async def admin(self) -> Account:
        return await self.account(Role.ADMIN)

    async def civil_affairs(self, *districts: str) -> Account:
        """A civil-affairs officer of these districts (by default Xiaonan)."""
        return await self.account(Role.CIVIL_AFFAIRS, districts=districts or (XIAONAN,))

    async def headers(self, user: AppUser) -> dict[str, str]:
        """Bearer headers for ``user`` through a new session row (valid for an hour from TEST_NOW)."""
        return await open_session(self.db, user.id)


# --- Rows a session of its own may need too (committed fixtures) ------------------------------------


async def add_assessment(
    db: AsyncSession, elder_id: int, *, level: int = 2, assessed_on: dt.date = TODAY
) -> Assessment:
    """An ability assessment of the elder with final level ``level``, valid for a year from
    ``assessed_on`` (item scores all zero: not what such a test is about); flushed."""
    row = Assessment(
        elder_id=elder_id,
        items={},
        total=0,
        preliminary_level=level,
        final_level=level,
        assessor="测试评估员",
        assessed_on=assessed_on,
        valid_until=assessed_on + dt.timedelta(days=364),
    )
    db.add(row)
    await db.flush()
    return row


async def add_signed_agreement(
    db: AsyncSession,
    *,
    elder_id: int,
    provider_id: int,
    services: Sequence[str],
    valid_from: dt.date = TODAY,
    valid_to: dt.date | None = None,
    guardian_id: int | None = None,
    signed_at: dt.datetime = TEST_NOW,
) -> ServiceAgreement:
    """A service agreement between the elder (or ``guardian_id`` for them) and the provider, signed on
    paper by both sides at ``signed_at``, for ``services`` at the seeded catalogue prices, from
    ``valid_from`` to ``valid_to`` (default: a year); flushed. What the API's draft-and-sign makes,
    without its checks (a test of those drives the API)."""
    prices = {s.code: s for s in SERVICES}
    elder_side = AgreementParty.GUARDIAN if guardian_id is not None else AgreementParty.ELDER
    row = ServiceAgreement(
        elder_id=elder_id,
        provider_id=provider_id,
        guardian_id=guardian_id,
        valid_from=valid_from,
        valid_to=valid_to or valid_from + dt.timedelta(days=364),
        price_list_on=valid_from,
        state=AgreementState.DRAFT.value,
        created_at=signed_at,
        updated_at=signed_at,
        items=[
            AgreementItem(
                service_code=code,
                price_fen=prices[code].price_fen,
                unit=prices[code].unit,
                price_ref=f"service.price_fen[{code}]@{POLICY_EPOCH.isoformat()}",
            )
            for code in sorted(set(services))
        ],
        signatures=[
            AgreementSignature(
                party=party.value,
                signer_name="测试签署人",
                method=SignatureMethod.PAPER_SCAN.value,
                document_ref=f"scan/test-{_next()}.pdf",
                signed_at=signed_at,
            )
            for party in (elder_side, AgreementParty.PROVIDER)
        ],
    )
    db.add(row)
    await db.flush()  # a draft with its items (the terms are frozen once it is signed)
    row.state, row.signed_at = AgreementState.SIGNED.value, signed_at
    await db.flush()
    return row
