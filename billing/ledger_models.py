"""The ledger's tables: double-entry accounts and transfers in integer fen, after TigerBeetle.

* ``ledger_account``: one row per account (a payer's fund in a district, a provider's receivable, an
  elder's co-pay, the bank that pays out), with its running totals ``debits_posted`` and
  ``credits_posted``. The totals change only together with the transfers that move them, in the
  same transaction, under the account's row lock (taken in ascending id order: see
  :mod:`billing.ledger`).
* ``ledger_batch``: transfers committed together (a visit's whole waterfall, a period's close, a
  payment): all or none. Its idempotency key names the request that made it.
* ``ledger_transfer``: one movement of ``amount_fen`` from a debit account to a credit account.
  Append-only: a trigger (migration 0020) refuses UPDATE, DELETE and TRUNCATE; a correction is a
  reversal (``reverses_id``, at most one per transfer) plus new transfers. Every transfer has an
  idempotency key, unique.
* ``ledger_balance``: each account's totals after each batch that moved it (append-only too), so a
  balance reads as it stood at any past instant (``posted_at``).
* ``ledger_check``: what each run of the consistency check found (it reports, never repairs).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, enum_check, now_column


class AccountKind(enum.StrEnum):
    PAYER_FUND = "payer_fund"  # a payer's (ltc, voucher, local) money for one district's elders
    PROVIDER_RECEIVABLE = "provider_receivable"  # what a provider is owed
    ELDER_COPAY = "elder_copay"  # what an elder owes as co-pay
    BANK = "bank"  # the settlement bank account payments leave from (one per payer)
    MANUAL = "manual"  # an account opened by an admin for corrections


class TransferKind(enum.StrEnum):
    SHARE = "share"  # payers' shares of a close's lines: payer fund → provider receivable
    COPAY = "copay"  # the elders' co-pays of a close's lines: elder co-pay → provider receivable
    # Takes a settled line's parts back (a line rejected at review, or superseded by a re-close):
    # provider receivable → payer fund / elder co-pay.
    CORRECTION = "correction"
    REVERSAL = "reversal"  # undoes one earlier transfer (same accounts, swapped)
    PAYMENT = "payment"  # a paid period: provider receivable → bank
    MANUAL = "manual"  # posted by an admin through the API


class LedgerAccount(Base):
    """An account. Exactly one of (payer with district), provider, elder names its owner, as ``kind``
    says; ``code`` is its stable name (``payer_fund:ltc:420902``, ``provider_receivable:17``)."""

    __tablename__ = "ledger_account"
    __table_args__ = (
        enum_check("kind", AccountKind),
        CheckConstraint("debits_posted >= 0 AND credits_posted >= 0", name="totals_nonnegative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(60), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    payer: Mapped[str | None] = mapped_column(String(10))
    district_id: Mapped[int | None] = mapped_column(ForeignKey("district.id"))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("provider.id"))
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elder.id"))
    name: Mapped[str] = mapped_column(String(80), default="")
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    created_at: Mapped[dt.datetime] = now_column()


class LedgerBatch(Base):
    """Transfers committed as one (TigerBeetle's linked events)."""

    __tablename__ = "ledger_batch"
    __table_args__ = (CheckConstraint("transfer_count >= 0 AND amount_fen >= 0", name="totals_nonnegative"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    period_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_period.id"), index=True)
    posted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    posted_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    transfer_count: Mapped[int] = mapped_column(Integer)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    memo: Mapped[str] = mapped_column(String(200), default="")


class LedgerTransfer(Base):
    """One movement of money. Never changed: a correction reverses it and posts anew.

    A close posts one transfer per pair of accounts (a payer fund and a provider; an elder's co-pay and
    a provider) with the sum of its lines' parts: the lines (``settlement_line``) are the sub-ledger
    of each visit, the transfers its postings. Corrections of single lines name the line.

    No foreign keys on this high-volume, append-only table (row triggers would cost a close more than
    the posting itself): posting locks every account it names first and refuses unknown ones
    (:func:`billing.ledger.lock_accounts`), and the ledger check reports any transfer whose accounts or
    batch do not exist."""

    __tablename__ = "ledger_transfer"
    __table_args__ = (
        enum_check("kind", TransferKind),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="accounts_differ"),
        CheckConstraint("(kind = 'reversal') = (reverses_id IS NOT NULL)", name="reversal_linked"),
        Index("ix_ledger_transfer_line_id", "line_id", postgresql_where=text("line_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, index=True)
    debit_account_id: Mapped[int] = mapped_column(Integer)
    credit_account_id: Mapped[int] = mapped_column(Integer)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(10))
    # The payer whose share this is (ltc, voucher, local), ``copay``, or NULL (payments, manual).
    part: Mapped[str | None] = mapped_column(String(8))
    period_id: Mapped[int | None] = mapped_column(Integer)
    # The settlement line it corrects (NULL for a close's aggregated postings).
    line_id: Mapped[int | None] = mapped_column(BigInteger)
    reverses_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    posted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    memo: Mapped[str] = mapped_column(String(200), default="")


class LedgerBalance(Base):
    """An account's totals right after a batch that moved it: the history as-of reads use."""

    __tablename__ = "ledger_balance"
    __table_args__ = (Index("ix_ledger_balance_account_posted", "account_id", "posted_at", "batch_id"),)

    # Written only by billing.ledger.apply_batch_totals, from the accounts it just updated (no foreign
    # keys: a close writes one row per account it moved, 100,000 and more).
    account_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    debits_posted: Mapped[int] = mapped_column(BigInteger)
    credits_posted: Mapped[int] = mapped_column(BigInteger)
    posted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class LedgerCheck(Base):
    """One run of the consistency check (:mod:`billing.ledger_check`): whether the ledger balances and
    every paid line links to exactly one verified visit, with what it found otherwise."""

    __tablename__ = "ledger_check"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    ran_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    debits_fen: Mapped[int] = mapped_column(BigInteger)
    credits_fen: Mapped[int] = mapped_column(BigInteger)
    transfers: Mapped[int] = mapped_column(BigInteger)
    problems: Mapped[int] = mapped_column(Integer)
    # Up to a few examples per kind of problem (account ids, line ids), for whoever investigates.
    findings: Mapped[dict[str, Any]] = mapped_column(JSONB)
