"""Shared helpers for the API tests: an in-loop HTTP client (and the ``client`` fixture that the
packages' ``conftest.py`` files expose), request bodies, problem codes, and lookups of the demo data
for the tests that are about it (a test that only needs some elder or some account makes its own
with :mod:`tests.factories`).

The client runs the app in the test's own event loop (``httpx.ASGITransport``), so its requests
share the test's rolled-back connection. (Litestar's ``AsyncTestClient`` runs the app on a portal
thread with its own loop, where the test's asyncpg connection cannot be used.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.identity.authz import Principal
from core.identity.models import AppUser
from core.identity.sessions import principal_for_user
from core.settings import Settings
from registry.idcard import make_id_number
from registry.models import Community, District, Elder, Street
from registry.scope import SCOPE_LOADERS
from tests.conftest import TEST_NOW, asgi_transport
from tests.factories import open_session

# Not an IP address: the app then sees no client address and applies no per-address login limit.
IN_PROCESS_CLIENT = ("testclient", 50000)


def make_client(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    client_addr: tuple[str, int] = IN_PROCESS_CLIENT,
    clock: Callable[[], dt.datetime] = lambda: TEST_NOW,
) -> httpx.AsyncClient:
    from api.app import create_app

    app = create_app(settings, sessionmaker=sessionmaker, clock=clock)
    transport = asgi_transport(app, client=client_addr)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(
    test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app in the test's transaction, from a client with no IP address: the per-address
    sign-in limit never applies."""
    async with make_client(test_settings, sessionmaker) as c:
        yield c


async def principal_of(db: AsyncSession, username: str) -> Principal:
    user = await db.scalar(select(AppUser).where(AppUser.username == username))
    assert user is not None, username
    return await principal_for_user(session=db, user=user, now=TEST_NOW, scope_loaders=SCOPE_LOADERS)


async def headers_for(db: AsyncSession, username: str) -> dict[str, str]:
    """Bearer headers for a demo user through a real session row, without paying for Argon2 on
    every test (the login route itself is covered in test_api_auth)."""
    user_id = await db.scalar(select(AppUser.id).where(AppUser.username == username))
    assert user_id is not None, username
    headers = await open_session(db, user_id)
    await db.commit()
    return headers


async def district_id(db: AsyncSession, code: str) -> int:
    value = await db.scalar(select(District.id).where(District.code == code))
    assert value is not None, code
    return value


async def community_in(db: AsyncSession, code: str) -> Community:
    """The first community (by code) of the district with this code."""
    row = await db.scalar(
        select(Community)
        .join(Street, Street.id == Community.street_id)
        .join(District, District.id == Street.district_id)
        .where(District.code == code)
        .order_by(Community.code)
        .limit(1)
    )
    assert row is not None, code
    return row


async def elder_in(db: AsyncSession, code: str, *, exclude: set[int] | None = None) -> Elder:
    """An active elder (lowest id) living in the district with this code."""
    stmt = (
        select(Elder)
        .join(District, District.id == Elder.district_id)
        .where(District.code == code, Elder.status == "active")
        .order_by(Elder.id)
    )
    if exclude:
        stmt = stmt.where(Elder.id.not_in(exclude))
    row = await db.scalar(stmt.limit(1))
    assert row is not None, code
    return row


_seq = iter(range(1, 10**6))
# The seed draws ages 60-100, so nobody it creates was born in 1925: these numbers never collide.
TEST_BIRTH = dt.date(1925, 5, 6)


def new_id_number(region: str = "420902", birth_on: dt.date = TEST_BIRTH, *, male: bool = True) -> str:
    """A valid ID number not used by the demo data (and not by an earlier call)."""
    n = next(_seq) % 500
    return make_id_number(region, birth_on, 2 * n + (1 if male else 0))


def elder_body(community_id: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "测试老人",
        "id_number": new_id_number(),
        "address": "湖北省孝感市孝南区测试路1号",
        "community_id": community_id,
        "living_situation": "alone",
        "phone": "+86 138-0000-1234",
        "has_dementia": False,
        "contacts": [
            {"name": "张三", "relation": "son", "phone": "13900001111"},
            {"name": "李四", "relation": "daughter", "phone": "13900002222"},
        ],
        "categories": [{"category": "subsistence", "valid_from": "2026-01-01"}],
    }
    body.update(overrides)
    return body


def problem_code(response: httpx.Response) -> str:
    """The stable ``code`` of an RFC 9457 problem response (asserts the media type)."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    code: str = response.json()["code"]
    return code
