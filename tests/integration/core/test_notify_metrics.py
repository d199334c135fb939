"""The outbox's figures on ``/metrics``, read from the database at each scrape (in the test's
rolled-back transaction, at the app's clock)."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import TEST_NOW

pytestmark = pytest.mark.integration


async def test_metrics_show_the_outbox_by_status_its_backlog_and_oldest_pending_age(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await db.execute(text("DELETE FROM notification_outbox"))
    rows = [
        ("a", "pending", TEST_NOW - dt.timedelta(seconds=300), TEST_NOW - dt.timedelta(seconds=10)),
        ("b", "pending", TEST_NOW - dt.timedelta(seconds=60), TEST_NOW + dt.timedelta(seconds=100)),
        ("c", "sent", TEST_NOW - dt.timedelta(hours=5), TEST_NOW),
        ("d", "sent", TEST_NOW - dt.timedelta(hours=5), TEST_NOW),
        ("e", "dead", TEST_NOW - dt.timedelta(days=2), TEST_NOW),
    ]
    for key, status, created, next_at in rows:
        await db.execute(
            text(
                """INSERT INTO notification_outbox
                   (channel, recipient, kind, idempotency_key, status, created_at, next_attempt_at)
                   VALUES ('webhook', 'http://127.0.0.1:9/h', 'alarm.raised', :k, :s, :c, :n)"""
            ),
            {"k": key, "s": status, "c": created, "n": next_at},
        )
    await db.commit()

    response = await client.get("/metrics")
    assert response.status_code == 200
    lines = set(response.text.splitlines())
    assert 'eldercare_notify_outbox_rows{status="pending"} 2.0' in lines
    assert 'eldercare_notify_outbox_rows{status="sent"} 2.0' in lines
    assert 'eldercare_notify_outbox_rows{status="dead"} 1.0' in lines
    assert "eldercare_notify_outbox_due 1.0" in lines
    assert "eldercare_notify_outbox_oldest_pending_age_seconds 300.0" in lines
