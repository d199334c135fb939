"""Dated policy data (``policy_value``), and reading it in SQL, for every domain.

The row valid on a day is the one with the latest ``valid_from`` not after it and ``valid_to``
(inclusive) not before it. The defaults are seeded rows (each domain's ``seed.py``, written by
:mod:`core.seed`); the ``default`` a caller passes is what to do when no row is valid at all, not a
second copy of the policy.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Date,
    Double,
    String,
    UniqueConstraint,
    case,
    cast,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, now_column


class PolicyValue(Base):
    """Dated policy data (prices, subsidy rates, caps, thresholds): never constants in code.

    ``key`` names the policy (e.g. ``subsidy.voucher.rate_bp``), ``scope`` narrows it (a service code,
    a category, a district code or ``*``); the row valid on a date is the one with the latest
    ``valid_from`` not after it and ``valid_to`` (inclusive) not before it.
    """

    __tablename__ = "policy_value"
    __table_args__ = (
        UniqueConstraint("key", "scope", "valid_from", name="uq_policy_value_key_scope_from"),
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="range_valid"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(80))
    scope: Mapped[str] = mapped_column(String(40), server_default=text("'*'"))
    value: Mapped[dict[str, Any]] = mapped_column(JSONB)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = now_column()


def valid_on(day: Any) -> tuple[ColumnElement[bool], ...]:
    """Conditions on ``policy_value`` for rows valid on ``day`` (a date or a date expression)."""
    return PolicyValue.valid_from <= day, (PolicyValue.valid_to.is_(None)) | (PolicyValue.valid_to >= day)


def policy_number(key: str, scope: str, name: str, day: Any, default: float) -> ColumnElement[float]:
    """``value[name]`` of the latest row of (``key``, ``scope``) valid on ``day`` if that is a JSON
    number, else ``default``. A scalar expression, so a statement reads its policy in the same round
    trip as its data."""
    item = PolicyValue.value[name]
    latest = (
        select(case((func.jsonb_typeof(item) == "number", cast(item, Double))))
        .where(PolicyValue.key == key, PolicyValue.scope == scope, *valid_on(day))
        .order_by(PolicyValue.valid_from.desc())
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(latest, literal(default, Double), type_=Double)
