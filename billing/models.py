"""Billing's tables for vouchers: one issue of the national care voucher (养老服务消费补贴) per elder and
month. (The ledger, settlement and allowance tables are in their own model modules.)

Conventions (see :mod:`core.db`): singular snake_case table names, ``_at`` for UTC ``timestamptz``,
``_on`` for dates, money in integer fen.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class VoucherIssue(Base):
    """A month's care voucher issued to an elder: ``amount_fen`` for the month starting ``month_on``
    (its 1st), issued at ``issued_at`` to an elder eligible that day (assessed at ``level``, under the
    policy row ``policy_ref``), usable until ``expires_at`` (the month's end, Asia/Shanghai, plus the
    grace of policy ``subsidy.voucher_expiry``). What it pays is the voucher payer's shares of the
    month's priced visits (:mod:`billing.vouchers`).

    One row per elder and month (unique): issuing is idempotent. Rows are only inserted; the ledger
    posts each issue and expiry with this row's ``id`` as its reference."""

    __tablename__ = "voucher_issue"
    __table_args__ = (
        UniqueConstraint("elder_id", "month_on", name="uq_voucher_issue_elder_month"),
        Index("ix_voucher_issue_month_on", "month_on"),
        CheckConstraint("amount_fen >= 0", name="amount_nonnegative"),
        CheckConstraint("extract(day FROM month_on) = 1", name="month_first_day"),
        CheckConstraint("expires_at > issued_at", name="expiry_after_issue"),
        CheckConstraint("level BETWEEN 0 AND 4", name="level_range"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id"))
    month_on: Mapped[dt.date] = mapped_column(Date)
    amount_fen: Mapped[int] = mapped_column(Integer)
    level: Mapped[int] = mapped_column(SmallInteger)
    policy_ref: Mapped[str] = mapped_column(String(120))
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
