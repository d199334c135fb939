"""billing (vouchers): ``voucher_issue``, one national care voucher (养老服务消费补贴) per elder and month

* ``voucher_issue``: elder, month (its 1st), amount (fen), the ability level and the policy row it was
  issued under, when it was issued and when it expires (the month's end, Asia/Shanghai, plus the grace
  of policy ``subsidy.voucher_expiry``). Unique per (elder, month): issuing is idempotent. Rows are only
  inserted; the ledger posts issue and expiry with the row's id as reference.

Revision ID: 0021_vouchers
Revises: 0020_cc_console
Create Date: 2026-12-03 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_vouchers"
down_revision: str | Sequence[str] | None = "0020_cc_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voucher_issue",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("elder_id", sa.BigInteger(), nullable=False),
        sa.Column("month_on", sa.Date(), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("policy_ref", sa.String(length=120), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_fen >= 0", name=op.f("ck_voucher_issue_amount_nonnegative")),
        sa.CheckConstraint("extract(day FROM month_on) = 1", name=op.f("ck_voucher_issue_month_first_day")),
        sa.CheckConstraint("expires_at > issued_at", name=op.f("ck_voucher_issue_expiry_after_issue")),
        sa.CheckConstraint("level BETWEEN 0 AND 4", name=op.f("ck_voucher_issue_level_range")),
        sa.ForeignKeyConstraint(["elder_id"], ["elder.id"], name=op.f("fk_voucher_issue_elder_id_elder")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_issue")),
        sa.UniqueConstraint("elder_id", "month_on", name="uq_voucher_issue_elder_month"),
    )
    op.create_index("ix_voucher_issue_month_on", "voucher_issue", ["month_on"])


def downgrade() -> None:
    op.drop_index("ix_voucher_issue_month_on", table_name="voucher_issue")
    op.drop_table("voucher_issue")
