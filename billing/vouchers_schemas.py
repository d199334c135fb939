"""Wire types of the voucher accounts (``GET /api/v1/billing/vouchers``): amounts in integer fen,
months ``YYYY-MM``, dates Asia/Shanghai, instants ISO 8601 with a time zone."""

from __future__ import annotations

import datetime as dt

import msgspec

from billing.vouchers import VoucherAccount


class VoucherUseRead(msgspec.Struct):
    """A verified visit of the month and what the voucher paid of it."""

    visit_id: int
    day: dt.date
    service: str
    amount_fen: int
    voucher_fen: int


class VoucherAccountRead(msgspec.Struct):
    """An elder's care voucher (养老服务消费补贴) for a month: ``issued_fen`` (0 when none was issued:
    not entitled on the 1st nor since), ``consumed_fen`` (the voucher's shares of the month's verified
    visits, listed in ``uses``), ``balance_fen`` = issued − consumed. The voucher expires at
    ``expires_at`` (the month's end, Asia/Shanghai, plus any grace of policy
    ``subsidy.voucher_expiry``); after it, ``expired`` is true and the balance is no longer usable."""

    elder_id: int
    month: str
    issue_id: int | None
    issued_at: dt.datetime | None
    level: int | None
    issued_fen: int
    consumed_fen: int
    balance_fen: int
    expires_at: dt.datetime
    expired: bool
    uses: list[VoucherUseRead]


def voucher_account_read(a: VoucherAccount) -> VoucherAccountRead:
    issue = a.issue
    return VoucherAccountRead(
        elder_id=a.elder_id,
        month=a.month_on.strftime("%Y-%m"),
        issue_id=None if issue is None else issue.id,
        issued_at=None if issue is None else issue.issued_at,
        level=None if issue is None else issue.level,
        issued_fen=a.issued_fen,
        consumed_fen=a.consumed_fen,
        balance_fen=a.balance_fen,
        expires_at=a.expires_at,
        expired=a.expired,
        uses=[VoucherUseRead(u.visit_id, u.day, u.service, u.amount_fen, u.voucher_fen) for u in a.uses],
    )
