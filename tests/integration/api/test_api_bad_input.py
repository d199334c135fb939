"""Bad input never reaches the database as a 500: wrong types, missing fields, invalid ID numbers,
over-long strings, unknown references, bad pagination → 4xx RFC 9457 problems with a ``code``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from litestar import post
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.http import Db
from core.identity.authz import allow
from core.identity.models import AppUser, Role
from core.policy import PolicyValue
from core.settings import Settings
from registry.idcard import make_id_number
from registry.models import EmergencyContact
from tests.conftest import TEST_NOW, asgi_transport
from tests.support.registry import (
    community_in,
    elder_body,
    elder_in,
    headers_for,
    principal_of,
)

pytestmark = pytest.mark.integration

INVALID = (422, "validation.invalid")
UNKNOWN = (422, "reference.unknown")
NOT_FOUND = 404
X = "\u00a0"  # any non-NUL filler

# (method, path, body or query, expected (status, code) or status). ``{c}``/``{e}`` are filled with
# a community id and an elder id from the demo data; bodies for elders start from a valid one.
CASES: list[tuple[str, str, Any, Any]] = [
    # Wrong types.
    ("POST", "/api/v1/elders", {"name": 123}, INVALID),
    ("POST", "/api/v1/elders", {"community_id": "abc"}, INVALID),
    ("POST", "/api/v1/elders", {"has_dementia": "yes"}, INVALID),
    ("POST", "/api/v1/elders", {"lat": "north"}, INVALID),
    ("POST", "/api/v1/elders", {"contacts": {"name": "x"}}, INVALID),
    ("PATCH", "/api/v1/elders/{e}", {"phone": 13800001111}, INVALID),
    ("POST", "/api/v1/providers", {"name": ["x"]}, INVALID),
    # Missing fields.
    ("POST", "/api/v1/elders", {"name": None}, INVALID),
    ("POST", "/api/v1/districts", {"code": "420999"}, INVALID),
    ("POST", "/api/v1/elders/{e}/assessments", {"assessor": "x", "assessed_on": "2026-11-01"}, INVALID),
    ("POST", "/api/v1/users", {"username": "someone"}, INVALID),
    ("PUT", "/api/v1/elders/{e}/contacts", {}, INVALID),
    # Invalid values.
    ("POST", "/api/v1/elders", {"id_number": "420902192505069999"}, (422, "id_number.check_digit")),
    ("POST", "/api/v1/elders", {"id_number": "ABCDEFGHIJKLMNOPQR"}, (422, "id_number.format")),
    ("POST", "/api/v1/elders", {"id_number": "990902192505060000"}, (422, "id_number.region")),
    ("PATCH", "/api/v1/elders/{e}", {"id_number": "42090219250506"}, (422, "id_number.length")),
    ("POST", "/api/v1/elders", {"living_situation": "commune"}, INVALID),
    ("POST", "/api/v1/elders", {"gender": "X"}, INVALID),
    ("POST", "/api/v1/elders", {"lat": 91}, INVALID),
    ("POST", "/api/v1/elders", {"categories": [{"category": "rich", "valid_from": "2026-01-01"}]},
     INVALID),
    ("POST", "/api/v1/elders", {"categories": [{"category": "veteran", "valid_from": "2026-13-01"}]},
     INVALID),
    ("POST", "/api/v1/elders/{e}/status", {"status": "alive", "on": "2026-11-01"}, INVALID),
    ("POST", "/api/v1/elders/{e}/status", {"status": "moved", "on": "yesterday"}, INVALID),
    ("POST", "/api/v1/districts",
     {"code": "42", "name": "x", "name_en": "x", "kind": "urban", "lat": 1, "lon": 1}, INVALID),
    ("POST", "/api/v1/caregivers", {"shift_start": "08:00:00+08:00"}, INVALID),
    # Over-long strings and NUL characters.
    ("POST", "/api/v1/elders", {"name": "名" * 41}, INVALID),
    ("POST", "/api/v1/elders", {"address": X * 201}, INVALID),
    ("POST", "/api/v1/elders", {"medical_notes": X * 2001}, INVALID),
    ("POST", "/api/v1/elders", {"name": "a\u0000b"}, INVALID),
    ("POST", "/api/v1/elders", {"id_number": "4" * 31}, INVALID),
    ("PATCH", "/api/v1/elders/{e}", {"address": X * 201}, INVALID),
    ("POST", "/api/v1/guardians", {"name": "x" * 41, "phone": "13800001111", "elder_id": 1}, INVALID),
    ("POST", "/api/v1/users",
     {"username": "a" * 41, "display_name": "x", "password": "p" * 12, "role": "admin"}, INVALID),
    ("POST", "/api/v1/users",
     {"username": "abc", "display_name": "x", "password": "p" * 201, "role": "admin"}, INVALID),
    ("POST", "/api/v1/elders/{e}/blocked-caregivers", {"caregiver_id": 1, "reason": X * 201}, INVALID),
    # Unknown references.
    ("POST", "/api/v1/elders", {"community_id": 999_999}, UNKNOWN),
    ("PATCH", "/api/v1/elders/{e}", {"community_id": 999_999}, UNKNOWN),
    ("POST", "/api/v1/streets", {"district_id": 999_999, "code": "420999001000", "name": "x"}, UNKNOWN),
    ("POST", "/api/v1/communities",
     {"street_id": 999_999, "code": "420999001001", "name": "x", "lat": 1, "lon": 1}, UNKNOWN),
    ("POST", "/api/v1/users",
     {"username": "someone", "display_name": "x", "password": "p" * 12, "role": "family",
      "guardian_id": 999_999_999}, UNKNOWN),
    ("POST", "/api/v1/elders/{e}/guardians", {"guardian_id": 999_999_999, "relation": "son"}, UNKNOWN),
    ("POST", "/api/v1/elders/{e}/blocked-caregivers", {"caregiver_id": 999_999_999}, UNKNOWN),
    ("PATCH", "/api/v1/devices/1", {"elder_id": 999_999_999}, UNKNOWN),
    ("PATCH", "/api/v1/devices/1", {"gateway_id": 999_999_999}, UNKNOWN),
    ("POST", "/api/v1/elders", {"community_id": 2**31}, INVALID),  # beyond the column's range
    # Unknown ids in paths, including ones no column can hold.
    ("GET", "/api/v1/elders/99999999999999999999", None, NOT_FOUND),
    ("GET", "/api/v1/districts/3000000000", None, NOT_FOUND),
    ("PATCH", "/api/v1/caregivers/9223372036854775808", {"name": "x"}, NOT_FOUND),
    ("DELETE", "/api/v1/elders/{e}/categories/0", None, NOT_FOUND),
    # Bad pagination and filters.
    ("GET", "/api/v1/elders", {"limit": 0}, INVALID),
    ("GET", "/api/v1/elders", {"limit": 201}, INVALID),
    ("GET", "/api/v1/elders", {"limit": -1}, INVALID),
    ("GET", "/api/v1/elders", {"limit": "abc"}, INVALID),
    ("GET", "/api/v1/elders", {"offset": -1}, INVALID),
    ("GET", "/api/v1/elders", {"offset": 10**7}, INVALID),
    ("GET", "/api/v1/caregivers", {"offset": "x"}, INVALID),
    ("GET", "/api/v1/elders", {"district_code": "abc"}, INVALID),
    ("GET", "/api/v1/elders", {"level": 5}, INVALID),
    ("GET", "/api/v1/elders", {"status": "alive"}, INVALID),
    ("GET", "/api/v1/elders", {"has_dementia": "maybe"}, INVALID),
    ("GET", "/api/v1/elders", {"community_id": 99_999_999_999}, INVALID),
    ("GET", "/api/v1/elders", {"name": "x" * 41}, INVALID),
    ("GET", "/api/v1/elders", {"name": "a\u0000"}, INVALID),
    ("GET", "/api/v1/devices", {"kind": "toaster"}, INVALID),
    ("GET", "/api/v1/caregivers", {"skill": "bath"}, INVALID),
]  # fmt: skip


async def test_bad_input_gets_problem_details(client: httpx.AsyncClient, db: AsyncSession) -> None:
    admin = await headers_for(db, "demo_admin")
    community = await community_in(db, "420902")
    elder = await elder_in(db, "420902")
    failures = []
    for method, template, payload, expected in CASES:
        path = template.format(c=community.id, e=elder.id)
        kwargs: dict[str, Any] = {"headers": admin}
        if method == "GET":
            kwargs["params"] = payload
        elif method == "POST" and path == "/api/v1/elders":
            kwargs["json"] = {**elder_body(community.id), **payload}
        elif payload is not None:
            kwargs["json"] = payload
        r = await client.request(method, path, **kwargs)
        ok = 400 <= r.status_code < 500 and r.headers.get("content-type", "").startswith(
            "application/problem+json"
        )
        body = r.json() if ok else {}
        got = (r.status_code, body.get("code"))
        want = expected if isinstance(expected, tuple) else (expected, got[1])
        if not ok or not body.get("code") or got != want:
            failures.append(
                f"{method} {path} {payload!r:.80}: got {r.status_code} {r.text[:160]}, want {want}"
            )
    assert failures == [], "\n".join(failures)


async def test_malformed_bodies(client: httpx.AsyncClient, db: AsyncSession) -> None:
    admin = await headers_for(db, "demo_admin") | {"content-type": "application/json"}
    for raw in (b"{not json", b"[1, 2]", b"", b'"text"', b'{"name": "x", "unexpected": 1}'):
        r = await client.post("/api/v1/districts", content=raw, headers=admin)
        assert 400 <= r.status_code < 500, (raw, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"], raw


async def test_a_foreign_key_the_services_missed_is_still_a_422(
    test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    """Services check references explicitly; the database's own check is the safety net, and it
    surfaces as the same ``reference.unknown`` problem (e.g. when a row vanishes concurrently)."""
    from api.app import create_app

    @post("/api/v1/test-dangling-reference", opt=allow(Role.ADMIN))
    async def dangling(db: Db) -> None:
        db.add(
            EmergencyContact(elder_id=999_999_999, position=1, name="x", relation="x", phone="13800001111")
        )
        await db.flush()

    app = create_app(
        test_settings, sessionmaker=sessionmaker, clock=lambda: TEST_NOW, extra_handlers=[dangling]
    )
    admin = await headers_for(db, "demo_admin")
    transport = asgi_transport(app, client=("testclient", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.post("/api/v1/test-dangling-reference", headers=admin)
        assert (r.status_code, r.json()["code"]) == (422, "reference.unknown")
        # The failed unit of work was rolled back cleanly: the next request works.
        assert (await c.get("/api/v1/districts", headers=admin)).status_code == 200


# Out-of-range values that once reached the database (500) or were accepted: (who, method, path, query,
# body, expected (status, code)). ``{e}`` is the demo elder's id.
OUT_OF_RANGE: list[tuple[str, str, str, Any, Any, tuple[int, str]]] = [
    # A NUL character no text column can hold, where no length or pattern rule caught it.
    ("demo_admin", "POST", "/api/v1/auth/login", None, {"login": "a\u0000b", "password": "x"}, INVALID),
    # Dates no schedule can hold: refused by the shared date type, before any arithmetic on them.
    ("demo_caregiver", "GET", "/api/v1/caregiver/plan", {"day": "9999-12-31"}, None, INVALID),
    ("demo_caregiver", "GET", "/api/v1/caregiver/plan", {"day": "0001-01-01"}, None, INVALID),
    ("demo_elder", "POST", "/api/v1/orders", None,
     {"elder_id": "{e}", "service_code": "CLEAN", "window_start_at": "0001-01-01T00:00:00+08:00"}, INVALID),
    ("demo_admin", "GET", "/api/v1/elders/{e}/vitals", {"from": "0001-01-01T00:00:00+08:00"}, None, INVALID),
    ("demo_admin", "GET", "/api/v1/devices/1/history", {"to": "9999-12-31T23:00:00-08:00"}, None, INVALID),
    ("demo_admin", "GET", "/api/v1/services", {"on": "9999-12-31"}, None, (422, "catalogue.date_invalid")),
    # Ids in paths beyond any column: not found (or, for an offer, not open), never a 500.
    ("demo_caregiver", "POST", f"/api/v1/caregiver/offers/{2**80}/accept", None, None,
     (409, "dispatch.offer_not_open")),
    ("demo_caregiver", "POST", f"/api/v1/caregiver/offers/{2**80}/decline", None, None,
     (409, "dispatch.offer_not_open")),
    # A provider id beyond the provider column's range (int4).
    ("demo_admin", "GET", "/api/v1/dayplans/2026-11-21", {"provider_id": 2**62}, None, INVALID),
    ("demo_admin", "POST", "/api/v1/dayplans/2026-11-21/replan", None, {"provider_id": 2**62}, INVALID),
    # Domain bounds (dated policy): too young to register, a category from the far future, a series
    # starting years ago, an order window beyond the ordering horizon.
    ("demo_admin", "POST", "/api/v1/elders", None, {"birth_on": "2020-05-06"}, (422, "elder.too_young")),
    ("demo_admin", "PATCH", "/api/v1/elders/{e}", None,
     {"id_number": make_id_number("420902", dt.date(2012, 5, 6), 123), "gender": "M",
      "birth_on": "2012-05-06"}, (422, "elder.too_young")),
    ("demo_admin", "POST", "/api/v1/elders/{e}/categories", None,
     {"category": "veteran", "valid_from": "9999-12-31"}, INVALID),
    ("demo_elder", "POST", "/api/v1/recurring-orders", None,
     {"elder_id": "{e}", "service_code": "CLEAN", "rrule": "FREQ=WEEKLY;COUNT=4",
      "first_start_at": "2020-01-06T09:00:00+08:00", "duration_minutes": 60},
     (422, "dispatch.series_start_too_early")),
    ("demo_elder", "POST", "/api/v1/orders", None,
     {"elder_id": "{e}", "service_code": "CLEAN", "window_start_at": "9999-06-01T09:00:00+08:00"},
     INVALID),
    ("demo_elder", "POST", "/api/v1/orders", None,
     {"elder_id": "{e}", "service_code": "CLEAN", "window_start_at": "2027-12-01T09:00:00+08:00"},
     (422, "dispatch.window_too_far")),
    ("demo_elder", "POST", "/api/v1/recurring-orders", None,
     {"elder_id": "{e}", "service_code": "CLEAN", "rrule": "FREQ=WEEKLY;COUNT=4",
      "first_start_at": "2028-01-03T09:00:00+08:00", "duration_minutes": 60},
     (422, "dispatch.window_too_far")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("who", "method", "path", "query", "body", "expected"),
    OUT_OF_RANGE,
    ids=[f"{c[1]} {c[2]} {c[3] or ''}{str(c[4])[:60] if c[4] else ''}" for c in OUT_OF_RANGE],
)
async def test_out_of_range_values_are_refused(
    client: httpx.AsyncClient,
    db: AsyncSession,
    who: str,
    method: str,
    path: str,
    query: Any,
    body: Any,
    expected: tuple[int, str],
) -> None:
    elder = await principal_of(db, "demo_elder")
    community = await community_in(db, "420902")
    headers = await headers_for(db, who)

    def fill(value: Any) -> Any:
        return elder.elder_id if value == "{e}" else value

    if body is not None:
        body = {k: fill(v) for k, v in body.items()}
        if path == "/api/v1/elders":
            birth = dt.date.fromisoformat(body["birth_on"])
            body = elder_body(community.id, **body, id_number=make_id_number("420902", birth, 123))
    r = await client.request(method, path.format(e=elder.elder_id), params=query, json=body, headers=headers)
    assert r.headers.get("content-type", "").startswith("application/problem+json"), r.text
    assert (r.status_code, r.json()["code"]) == expected, r.text


async def test_the_minimum_age_has_a_disability_exception(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    """Policy ``registry.min_age``: a 26-year-old with long-term-care coverage (assessed disability)
    is registered; without it, refused (the refusal is the case in OUT_OF_RANGE)."""
    admin = await headers_for(db, "demo_admin")
    community = await community_in(db, "420902")
    body = elder_body(
        community.id,
        id_number=make_id_number("420902", dt.date(2000, 5, 6), 125),
        ltc_coverages=[{"policy_no": "CQX-9", "valid_from": "2026-01-01"}],
    )
    r = await client.post("/api/v1/elders", json=body, headers=admin)
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/v1/elders",
        json={**body, "id_number": make_id_number("420902", dt.date(2012, 5, 6), 127)},
        headers=admin,
    )
    assert (r.status_code, r.json()["code"]) == (422, "elder.too_young"), r.text


async def test_a_nul_in_the_sign_in_form_is_refused(client: httpx.AsyncClient) -> None:
    await client.get("/login")
    csrf = client.cookies.get("ec_csrf") or ""
    r = await client.post(
        "/login", data={"login": "a\u0000b", "password": "x"}, headers={"x-csrf-token": csrf}
    )
    assert r.status_code == 422, r.text[:300]


async def test_a_nul_the_edge_missed_is_still_a_422(
    test_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    """The database refusing a NUL character (SQLSTATE 22021) is a ``validation.value`` problem."""
    from api.app import create_app

    @post("/api/v1/test-nul", opt=allow(Role.ADMIN), status_code=200)
    async def nul(db: Db) -> None:
        await db.scalar(select(AppUser.id).where(AppUser.username == "a\u0000b"))

    app = create_app(test_settings, sessionmaker=sessionmaker, clock=lambda: TEST_NOW, extra_handlers=[nul])
    admin = await headers_for(db, "demo_admin")
    transport = asgi_transport(app, client=("testclient", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.post("/api/v1/test-nul", headers=admin)
        assert (r.status_code, r.json()["code"]) == (422, "validation.value"), r.text


async def test_the_order_window_bounds_are_dated_policy(client: httpx.AsyncClient, db: AsyncSession) -> None:
    """A newer ``dispatch.order_window`` row (max 2 hours from today) replaces the seeded 12 hours."""
    db.add(
        PolicyValue(
            key="dispatch.order_window",
            scope="*",
            value={"past_grace_minutes": 5, "max_hours": 2},
            valid_from=TEST_NOW.date(),
            source="test",
        )
    )
    await db.commit()
    elder = await principal_of(db, "demo_elder")
    body = {
        "elder_id": elder.elder_id,
        "service_code": "CLEAN",
        "window_start_at": "2026-11-25T09:00:00+08:00",
        "window_end_at": "2026-11-25T12:00:00+08:00",
    }
    r = await client.post("/api/v1/orders", json=body, headers=await headers_for(db, "demo_elder"))
    assert (r.status_code, r.json()["code"]) == (422, "dispatch.window_too_long"), r.text
