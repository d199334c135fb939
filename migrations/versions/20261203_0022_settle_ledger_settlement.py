"""billing (settle): the double-entry ledger, monthly settlement periods, lines, statements; elder absences

* ``ledger_account`` (running totals), ``ledger_batch`` (transfers committed as one),
  ``ledger_transfer`` (double-entry, idempotency key unique, a reversal names the transfer it undoes,
  at most once), ``ledger_balance`` (each account's totals after each batch: as-of reads),
  ``ledger_check`` (what the consistency check found).
* ``settlement_period`` (one per month: open → closed → reviewed → approved → paid → locked),
  ``settlement_period_event``, ``settlement_line`` (a visit adjudicated in a close, with its shares),
  ``settlement_line_decision`` (review), ``settlement_statement`` (canonical JSON + SHA-256, versioned),
  ``settlement_district_review``.
* ``elder_absence``: dated hospital stays (and other absences) of an elder, for the review signals.
* Triggers: ``ledger_transfer``, ``ledger_balance``, ``ledger_batch`` and ``settlement_line`` are
  append-only (UPDATE, DELETE and TRUNCATE refused; a correction is a reversal plus new entries); a
  locked period, its lines' decisions and its statements cannot change.

Revision ID: 0022_settle
Revises: 0021_vouchers
Create Date: 2026-12-03 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0022_settle"
down_revision: str | Sequence[str] | None = "0021_vouchers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("ledger_transfer", "ledger_balance", "ledger_batch", "settlement_line")

_APPEND_ONLY_FN = """
CREATE OR REPLACE FUNCTION append_only_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused (a correction is a reversal plus new entries)',
        TG_TABLE_NAME, TG_OP USING ERRCODE = 'check_violation';
END
$$;
"""

# A locked period never changes, nor do the decisions and statements that hang on it.
_LOCKED_PERIOD_FN = """
CREATE OR REPLACE FUNCTION settlement_period_locked_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'settlement_period' THEN
        IF OLD.state = 'locked' THEN
            RAISE EXCEPTION 'settlement period % is locked: % refused', OLD.id, TG_OP
                USING ERRCODE = 'check_violation';
        END IF;
    ELSIF EXISTS (
        SELECT 1 FROM settlement_period p
        WHERE p.id = CASE WHEN TG_OP = 'DELETE' THEN OLD.period_id ELSE NEW.period_id END
          AND p.state = 'locked'
    ) THEN
        RAISE EXCEPTION '% of a locked settlement period: % refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
"""

_TRIGGERS = [
    _APPEND_ONLY_FN,
    *(
        f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
        "FOR EACH ROW EXECUTE FUNCTION append_only_refuse()"
        for t in APPEND_ONLY
    ),
    *(
        f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
        "FOR EACH STATEMENT EXECUTE FUNCTION append_only_refuse()"
        for t in APPEND_ONLY
    ),
    _LOCKED_PERIOD_FN,
    "CREATE TRIGGER settlement_period_locked BEFORE UPDATE OR DELETE ON settlement_period "
    "FOR EACH ROW EXECUTE FUNCTION settlement_period_locked_refuse()",
    *(
        f"CREATE TRIGGER {t}_period_locked BEFORE INSERT OR UPDATE OR DELETE ON {t} "
        "FOR EACH ROW EXECUTE FUNCTION settlement_period_locked_refuse()"
        for t in ("settlement_line_decision", "settlement_statement", "settlement_district_review")
    ),
]

_DROP_TRIGGERS = [
    *(f"DROP TRIGGER {t}_append_only ON {t}" for t in APPEND_ONLY),
    *(f"DROP TRIGGER {t}_no_truncate ON {t}" for t in APPEND_ONLY),
    "DROP TRIGGER settlement_period_locked ON settlement_period",
    *(
        f"DROP TRIGGER {t}_period_locked ON {t}"
        for t in ("settlement_line_decision", "settlement_statement", "settlement_district_review")
    ),
    "DROP FUNCTION append_only_refuse()",
    "DROP FUNCTION settlement_period_locked_refuse()",
]


def upgrade() -> None:
    op.create_table(
        "ledger_balance",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "batch_id", name=op.f("pk_ledger_balance")),
    )
    op.create_index(
        "ix_ledger_balance_account_posted",
        "ledger_balance",
        ["account_id", "posted_at", "batch_id"],
        unique=False,
    )
    op.create_table(
        "ledger_check",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("debits_fen", sa.BigInteger(), nullable=False),
        sa.Column("credits_fen", sa.BigInteger(), nullable=False),
        sa.Column("transfers", sa.BigInteger(), nullable=False),
        sa.Column("problems", sa.Integer(), nullable=False),
        sa.Column("findings", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_check")),
    )
    op.create_index(op.f("ix_ledger_check_ran_at"), "ledger_check", ["ran_at"], unique=False)
    op.create_table(
        "ledger_transfer",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("debit_account_id", sa.Integer(), nullable=False),
        sa.Column("credit_account_id", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("part", sa.String(length=8), nullable=True),
        sa.Column("period_id", sa.Integer(), nullable=True),
        sa.Column("line_id", sa.BigInteger(), nullable=True),
        sa.Column("reverses_id", sa.BigInteger(), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("memo", sa.String(length=200), nullable=False),
        sa.CheckConstraint(
            "(kind = 'reversal') = (reverses_id IS NOT NULL)", name=op.f("ck_ledger_transfer_reversal_linked")
        ),
        sa.CheckConstraint(
            "kind IN ('share', 'copay', 'correction', 'reversal', 'payment', 'manual')",
            name=op.f("ck_ledger_transfer_kind_valid"),
        ),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_ledger_transfer_amount_positive")),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name=op.f("ck_ledger_transfer_accounts_differ")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transfer")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_transfer_idempotency_key")),
        sa.UniqueConstraint("reverses_id", name=op.f("uq_ledger_transfer_reverses_id")),
    )
    op.create_index(op.f("ix_ledger_transfer_batch_id"), "ledger_transfer", ["batch_id"], unique=False)
    op.create_index(
        "ix_ledger_transfer_line_id",
        "ledger_transfer",
        ["line_id"],
        unique=False,
        postgresql_where=sa.text("line_id IS NOT NULL"),
    )
    op.create_table(
        "settlement_line",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("period_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.SmallInteger(), nullable=False),
        sa.Column("visit_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("service_month", sa.Date(), nullable=False),
        sa.Column("service_on", sa.Date(), nullable=False),
        sa.Column("service_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("elder_id", sa.BigInteger(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("caregiver_id", sa.BigInteger(), nullable=False),
        sa.Column("service_code", sa.String(length=10), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("unit_price_fen", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.SmallInteger(), nullable=True),
        sa.Column("payable", sa.Boolean(), nullable=False),
        sa.Column("ltc_fen", sa.Integer(), nullable=False),
        sa.Column("voucher_fen", sa.Integer(), nullable=False),
        sa.Column("local_fen", sa.Integer(), nullable=False),
        sa.Column("copay_fen", sa.Integer(), nullable=False),
        sa.Column("signals", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(outcome = 'passed') = (reason IS NULL)", name=op.f("ck_settlement_line_reason_iff_rejected")
        ),
        sa.CheckConstraint("kind IN ('regular', 'adjustment')", name=op.f("ck_settlement_line_kind_valid")),
        sa.CheckConstraint(
            "outcome IN ('passed', 'rejected')", name=op.f("ck_settlement_line_outcome_valid")
        ),
        sa.CheckConstraint(
            "NOT payable OR ltc_fen + voucher_fen + local_fen + copay_fen = amount_fen",
            name=op.f("ck_settlement_line_parts_sum"),
        ),
        sa.CheckConstraint(
            "ltc_fen >= 0 AND voucher_fen >= 0 AND local_fen >= 0 AND copay_fen >= 0",
            name=op.f("ck_settlement_line_shares_nonnegative"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_line")),
        sa.UniqueConstraint("visit_id", "period_id", "revision", name="uq_settlement_line_visit_period_rev"),
    )
    op.create_index(
        "ix_settlement_line_period_district", "settlement_line", ["period_id", "district_id"], unique=False
    )
    op.create_index(
        "ix_settlement_line_period_provider", "settlement_line", ["period_id", "provider_id"], unique=False
    )
    op.create_table(
        "settlement_period",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("cutoff_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("close_revision", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payment_reference", sa.String(length=60), nullable=True),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "state <> 'paid' OR payment_reference IS NOT NULL",
            name=op.f("ck_settlement_period_paid_has_reference"),
        ),
        sa.CheckConstraint(
            "state IN ('open', 'closed', 'reviewed', 'approved', 'paid', 'locked')",
            name=op.f("ck_settlement_period_state_valid"),
        ),
        sa.CheckConstraint("extract(day FROM month) = 1", name=op.f("ck_settlement_period_month_first_day")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_period")),
        sa.UniqueConstraint("month", name=op.f("uq_settlement_period_month")),
    )
    op.create_table(
        "settlement_statement",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("period_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.SmallInteger(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("public_fen", sa.BigInteger(), nullable=False),
        sa.Column("copay_fen", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('provider', 'district')", name=op.f("ck_settlement_statement_kind_valid")
        ),
        sa.ForeignKeyConstraint(
            ["period_id"],
            ["settlement_period.id"],
            name=op.f("fk_settlement_statement_period_id_settlement_period"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_statement")),
        sa.UniqueConstraint(
            "period_id", "kind", "subject_id", "version", name="uq_settlement_statement_version"
        ),
    )
    op.create_table(
        "elder_absence",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("elder_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("from_on", sa.Date(), nullable=False),
        sa.Column("to_on", sa.Date(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('hospital', 'away')", name=op.f("ck_elder_absence_kind_valid")),
        sa.CheckConstraint("to_on IS NULL OR to_on >= from_on", name=op.f("ck_elder_absence_range_valid")),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elder.id"], name=op.f("fk_elder_absence_elder_id_elder"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_elder_absence")),
    )
    op.create_index("ix_elder_absence_elder_from", "elder_absence", ["elder_id", "from_on"], unique=False)
    op.create_table(
        "ledger_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=60), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("payer", sa.String(length=10), nullable=True),
        sa.Column("district_id", sa.Integer(), nullable=True),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("elder_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "kind IN ('payer_fund', 'provider_receivable', 'elder_copay', 'bank', 'manual')",
            name=op.f("ck_ledger_account_kind_valid"),
        ),
        sa.CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0", name=op.f("ck_ledger_account_totals_nonnegative")
        ),
        sa.ForeignKeyConstraint(
            ["district_id"], ["district.id"], name=op.f("fk_ledger_account_district_id_district")
        ),
        sa.ForeignKeyConstraint(["elder_id"], ["elder.id"], name=op.f("fk_ledger_account_elder_id_elder")),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["provider.id"], name=op.f("fk_ledger_account_provider_id_provider")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_account")),
        sa.UniqueConstraint("code", name=op.f("uq_ledger_account_code")),
    )
    op.create_table(
        "ledger_batch",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("period_id", sa.Integer(), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("posted_by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("transfer_count", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("memo", sa.String(length=200), nullable=False),
        sa.CheckConstraint(
            "transfer_count >= 0 AND amount_fen >= 0", name=op.f("ck_ledger_batch_totals_nonnegative")
        ),
        sa.ForeignKeyConstraint(
            ["period_id"], ["settlement_period.id"], name=op.f("fk_ledger_batch_period_id_settlement_period")
        ),
        sa.ForeignKeyConstraint(
            ["posted_by_user_id"],
            ["app_user.id"],
            name=op.f("fk_ledger_batch_posted_by_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_batch")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_batch_idempotency_key")),
    )
    op.create_index(op.f("ix_ledger_batch_period_id"), "ledger_batch", ["period_id"], unique=False)
    op.create_table(
        "settlement_district_review",
        sa.Column("period_id", sa.Integer(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("by_role", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["by_user_id"],
            ["app_user.id"],
            name=op.f("fk_settlement_district_review_by_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["district_id"], ["district.id"], name=op.f("fk_settlement_district_review_district_id_district")
        ),
        sa.ForeignKeyConstraint(
            ["period_id"],
            ["settlement_period.id"],
            name=op.f("fk_settlement_district_review_period_id_settlement_period"),
        ),
        sa.PrimaryKeyConstraint("period_id", "district_id", name=op.f("pk_settlement_district_review")),
    )
    op.create_table(
        "settlement_line_decision",
        sa.Column("line_id", sa.BigInteger(), nullable=False),
        sa.Column("period_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("by_role", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "decision IN ('approved', 'rejected')", name=op.f("ck_settlement_line_decision_decision_valid")
        ),
        sa.ForeignKeyConstraint(
            ["by_user_id"],
            ["app_user.id"],
            name=op.f("fk_settlement_line_decision_by_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["settlement_line.id"],
            name=op.f("fk_settlement_line_decision_line_id_settlement_line"),
        ),
        sa.ForeignKeyConstraint(
            ["period_id"],
            ["settlement_period.id"],
            name=op.f("fk_settlement_line_decision_period_id_settlement_period"),
        ),
        sa.PrimaryKeyConstraint("line_id", name=op.f("pk_settlement_line_decision")),
    )
    op.create_index(
        op.f("ix_settlement_line_decision_period_id"), "settlement_line_decision", ["period_id"], unique=False
    )
    op.create_table(
        "settlement_period_event",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("period_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=12), nullable=False),
        sa.Column("from_state", sa.String(length=10), nullable=False),
        sa.Column("to_state", sa.String(length=10), nullable=False),
        sa.Column("by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("by_role", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["by_user_id"],
            ["app_user.id"],
            name=op.f("fk_settlement_period_event_by_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["period_id"],
            ["settlement_period.id"],
            name=op.f("fk_settlement_period_event_period_id_settlement_period"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_period_event")),
    )
    op.create_index(
        op.f("ix_settlement_period_event_period_id"), "settlement_period_event", ["period_id"], unique=False
    )
    for statement in _TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DROP_TRIGGERS:
        op.execute(statement)
    op.drop_index(op.f("ix_settlement_period_event_period_id"), table_name="settlement_period_event")
    op.drop_table("settlement_period_event")
    op.drop_index(op.f("ix_settlement_line_decision_period_id"), table_name="settlement_line_decision")
    op.drop_table("settlement_line_decision")
    op.drop_table("settlement_district_review")
    op.drop_index(op.f("ix_ledger_batch_period_id"), table_name="ledger_batch")
    op.drop_table("ledger_batch")
    op.drop_table("ledger_account")
    op.drop_index("ix_elder_absence_elder_from", table_name="elder_absence")
    op.drop_table("elder_absence")
    op.drop_table("settlement_statement")
    op.drop_table("settlement_period")
    op.drop_index("ix_settlement_line_period_provider", table_name="settlement_line")
    op.drop_index("ix_settlement_line_period_district", table_name="settlement_line")
    op.drop_table("settlement_line")
    op.drop_index(
        "ix_ledger_transfer_line_id",
        table_name="ledger_transfer",
        postgresql_where=sa.text("line_id IS NOT NULL"),
    )
    op.drop_index(op.f("ix_ledger_transfer_batch_id"), table_name="ledger_transfer")
    op.drop_table("ledger_transfer")
    op.drop_index(op.f("ix_ledger_check_ran_at"), table_name="ledger_check")
    op.drop_table("ledger_check")
    op.drop_index("ix_ledger_balance_account_posted", table_name="ledger_balance")
    op.drop_table("ledger_balance")
