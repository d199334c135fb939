"""The service catalogue: every signed-in user reads it, with the unit price valid on the asked day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.policy import PolicyValue
from tests.conftest import Client

pytestmark = pytest.mark.integration


async def test_catalogue_lists_services_with_dated_prices(
    client: Client, db: AsyncSession, login: Callable[..., Awaitable[dict[str, str]]]
) -> None:
    assert (await client.get("/api/v1/services")).status_code == 401
    headers = await login("demo_family")

    r = await client.get("/api/v1/services", headers=headers)
    assert r.status_code == 200
    by_code = {s["code"]: s for s in r.json()}
    assert set(by_code) >= {"MEAL", "CLEAN", "BATH", "ESCORT", "MEDESC", "VISIT", "ERRAND", "CARE"}
    assert (by_code["MEAL"]["price_fen"], by_code["MEAL"]["unit"]) == (1200, "meal")
    assert by_code["BATH"]["same_gender"] is True
    assert by_code["CLEAN"]["min_minutes"] == 60

    # A new price from a later date is policy data: it applies from that day on, not before.
    db.add(
        PolicyValue(
            key="service.price_fen",
            scope="MEAL",
            value={"fen": 1300, "unit": "meal"},
            valid_from=dt.date(2027, 1, 1),
            source="test",
        )
    )
    await db.flush()
    before = await client.get("/api/v1/services", params={"on": "2026-12-31"}, headers=headers)
    after = await client.get("/api/v1/services", params={"on": "2027-01-01"}, headers=headers)
    assert {s["code"]: s["price_fen"] for s in before.json()}["MEAL"] == 1200
    assert {s["code"]: s["price_fen"] for s in after.json()}["MEAL"] == 1300

    bad = await client.get("/api/v1/services", params={"on": "2027-02-30"}, headers=headers)
    assert (bad.status_code, bad.json()["code"]) == (422, "catalogue.date_invalid")
