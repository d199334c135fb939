"""The notification outbox: a notification is a row written in the same transaction as the change that
causes it, so it is sent if and only if the change commits.

A dispatcher (``core.notify``) delivers each pending row at least once, with retries and back-off, and
sends its ``idempotency_key`` so that an idempotent receiver acts on it once. Every insert is NOTIFYed
on channel :data:`OUTBOX_CHANNEL` (migration 0019), so the dispatcher wakes at once.
``enqueue`` with a key already present does nothing and returns the existing row's id.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, Final

import asyncpg
from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

OUTBOX_CHANNEL: Final = "outbox"


class NotificationOutbox(Base):
    """One notification to deliver: ``pending`` until ``sent``, or ``dead`` after its last attempt."""

    __tablename__ = "notification_outbox"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'dead')", name="status_valid"),
        Index("ix_notification_outbox_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
    channel: Mapped[str] = mapped_column(String(20))  # webhook | sms | wechat
    recipient: Mapped[str] = mapped_column(String(200))  # a URL, a phone number, an open id
    kind: Mapped[str] = mapped_column(String(40))  # e.g. alarm.raised, alarm.escalated
    ref: Mapped[str | None] = mapped_column(String(60))  # what it is about, e.g. alarm:123
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'"))
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    status: Mapped[str] = mapped_column(String(10), server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


_ENQUEUE: Final = """WITH ins AS (
    INSERT INTO notification_outbox (channel, recipient, kind, ref, payload, idempotency_key)
    VALUES ($1, $2, $3, $4, $5::jsonb, $6)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id)
SELECT id FROM ins UNION ALL SELECT id FROM notification_outbox WHERE idempotency_key = $6 LIMIT 1"""


async def enqueue(
    conn: asyncpg.Connection,
    *,
    channel: str,
    recipient: str,
    kind: str,
    payload: Mapping[str, Any],
    idempotency_key: str,
    ref: str | None = None,
) -> int:
    """Write one notification in the caller's transaction; returns its id (the existing row's for a
    key already enqueued, which is left unchanged)."""
    row_id = await conn.fetchval(
        _ENQUEUE, channel, recipient, kind, ref, json.dumps(dict(payload), default=str), idempotency_key
    )
    assert row_id is not None
    return int(row_id)


def enqueue_sql() -> str:
    """The statement :func:`enqueue` runs (``$1`` channel, ``$2`` recipient, ``$3`` kind, ``$4`` ref,
    ``$5`` payload JSON, ``$6`` idempotency key), for callers on SQLAlchemy's ``text()``."""
    return _ENQUEUE
