"""Pages: ``total`` as before, ``has_more`` added, and the count run only when rows follow the page."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.crud import Window, page_of
from registry.models import District, Elder
from tests.factories import Factory

pytestmark = pytest.mark.integration


async def test_page_of_counts_only_when_rows_follow_the_page(db: AsyncSession) -> None:
    total = await db.scalar(select(func.count()).select_from(District))
    assert total is not None
    assert total > 2
    stmt = select(District).order_by(District.id)

    first = await page_of(db, stmt, Window(limit=2, offset=0))
    assert (len(first.items), first.total, first.has_more) == (2, total, True)
    last = await page_of(db, stmt, Window(limit=2, offset=total - 1))
    assert (len(last.items), last.total, last.has_more) == (1, total, False)
    whole = await page_of(db, stmt, Window(limit=200, offset=0))
    assert (len(whole.items), whole.total, whole.has_more) == (total, total, False)
    past = await page_of(db, stmt, Window(limit=2, offset=total + 5))
    assert (past.items, past.total, past.has_more) == ([], total, False)
    empty = await page_of(db, stmt.where(District.id < 0), Window(limit=2, offset=0))
    assert (empty.items, empty.total, empty.has_more) == ([], 0, False)


async def test_an_api_page_has_the_same_total_and_says_whether_more_follow(
    client: httpx.AsyncClient, db: AsyncSession, make: Factory
) -> None:
    admin = await make.admin()
    total = await db.scalar(select(func.count()).select_from(Elder))
    assert total is not None
    assert total > 3
    for offset, count, more in ((0, 2, True), (total - 1, 1, False), (total + 3, 0, False)):
        r = await client.get(f"/api/v1/elders?limit=2&offset={offset}", headers=admin.headers)
        assert r.status_code == 200
        body = r.json()
        assert (len(body["items"]), body["total"], body["has_more"]) == (count, total, more)
        assert (body["limit"], body["offset"]) == (2, offset)
