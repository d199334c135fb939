"""billing (allowances): monthly allowance rosters and their lines

* ``allowance_roster``: one per (month, allowance: ``old_age`` 高龄津贴 | ``disability`` 护理补贴), with
  its state (``open`` while the month is current, ``closed`` after), the facts day it follows, its
  totals in fen, the checksum of its lines, the policy rows applied, who generated it and how often.
* ``allowance_line``: one per (roster, elder): change since the month before (added / changed /
  continued / stopped) and its reason, the band or level, the month's amount, the back-pay (months,
  fen, the policy of each month), the cause's date of a stop, the elder's district.
* Triggers: a closed roster and its lines cannot change (a past month is never recomputed); only
  the generating account may be cleared from it (when that account is deleted).

Revision ID: 0023_allowance
Revises: 0022_settle
Create Date: 2026-12-03 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0023_allowance"
down_revision: str | Sequence[str] | None = "0022_settle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROSTER_FROZEN = """
CREATE OR REPLACE FUNCTION allowance_roster_frozen() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Only the generator's account may still go (deleting an account sets it NULL).
    IF OLD.state = 'closed' AND (TG_OP = 'DELETE'
        OR to_jsonb(NEW) - 'generated_by_user_id' <> to_jsonb(OLD) - 'generated_by_user_id') THEN
        RAISE EXCEPTION 'allowance roster % (%, %) is closed: it cannot change', OLD.id, OLD.kind, OLD.month
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
"""

# Lines of a closed roster cannot be added, changed or removed.
_LINE_FROZEN = """
CREATE OR REPLACE FUNCTION allowance_line_frozen() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    roster bigint := CASE WHEN TG_OP = 'INSERT' THEN NEW.roster_id ELSE OLD.roster_id END;
    current_state text;
BEGIN
    SELECT state INTO current_state FROM allowance_roster WHERE id = roster;
    IF current_state = 'closed' THEN
        RAISE EXCEPTION 'allowance roster % is closed: its lines cannot change', roster
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
"""

_KINDS = "'old_age', 'disability'"
_CHANGES = "'added', 'changed', 'continued', 'stopped'"
_REASONS = (
    "'continued', 'turned_age', 'registered', 'late_registration', 'assessed', 'category_granted', "
    "'resumed', 'band_changed', 'level_changed', 'deceased', 'moved', 'assessment_expired', "
    "'level_not_paid', 'category_ended', 'no_longer_eligible'"
)


def upgrade() -> None:
    op.create_table(
        "allowance_roster",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("facts_on", sa.Date(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("paid", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("stopped", sa.Integer(), nullable=False),
        sa.Column("monthly_fen", sa.BigInteger(), nullable=False),
        sa.Column("backpay_fen", sa.BigInteger(), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("policy_refs", postgresql.ARRAY(sa.String(length=120)), nullable=False),
        sa.Column("generations", sa.Integer(), nullable=False),
        sa.Column("generated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("generated_by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(f"kind IN ({_KINDS})", name=op.f("ck_allowance_roster_kind_valid")),
        sa.CheckConstraint("state IN ('open', 'closed')", name=op.f("ck_allowance_roster_state_valid")),
        sa.CheckConstraint("extract(day from month) = 1", name=op.f("ck_allowance_roster_month_first_day")),
        sa.CheckConstraint(
            "total_fen = monthly_fen + backpay_fen", name=op.f("ck_allowance_roster_total_sums")
        ),
        sa.CheckConstraint(
            "monthly_fen >= 0 AND backpay_fen >= 0", name=op.f("ck_allowance_roster_amounts_non_negative")
        ),
        sa.CheckConstraint(
            "(state = 'closed') = (closed_at IS NOT NULL)", name=op.f("ck_allowance_roster_closed_dated")
        ),
        sa.ForeignKeyConstraint(
            ["generated_by_user_id"],
            ["app_user.id"],
            name=op.f("fk_allowance_roster_generated_by_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allowance_roster")),
        sa.UniqueConstraint("month", "kind", name=op.f("uq_allowance_roster_month")),
    )
    op.create_table(
        "allowance_line",
        sa.Column("roster_id", sa.BigInteger(), nullable=False),
        sa.Column("elder_id", sa.BigInteger(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("change", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("band", sa.String(length=40), nullable=False),
        sa.Column("previous_band", sa.String(length=40), nullable=True),
        sa.Column("monthly_fen", sa.Integer(), nullable=False),
        sa.Column("backpay_months", sa.SmallInteger(), nullable=False),
        sa.Column("backpay_fen", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("event_on", sa.Date(), nullable=True),
        sa.Column("policy_ref", sa.String(length=120), nullable=True),
        sa.Column("backpay_refs", postgresql.ARRAY(sa.String(length=130)), nullable=False),
        sa.CheckConstraint(f"change IN ({_CHANGES})", name=op.f("ck_allowance_line_change_valid")),
        sa.CheckConstraint(f"reason IN ({_REASONS})", name=op.f("ck_allowance_line_reason_valid")),
        sa.CheckConstraint(
            "amount_fen = monthly_fen + backpay_fen", name=op.f("ck_allowance_line_amount_sums")
        ),
        sa.CheckConstraint(
            "monthly_fen >= 0 AND backpay_fen >= 0 AND backpay_months >= 0",
            name=op.f("ck_allowance_line_amounts_non_negative"),
        ),
        sa.CheckConstraint(
            "change <> 'stopped' OR amount_fen = 0", name=op.f("ck_allowance_line_stopped_pays_nothing")
        ),
        sa.CheckConstraint(
            "(backpay_months = 0) = (backpay_fen = 0)", name=op.f("ck_allowance_line_backpay_consistent")
        ),
        sa.ForeignKeyConstraint(
            ["roster_id"],
            ["allowance_roster.id"],
            name=op.f("fk_allowance_line_roster_id_allowance_roster"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["elder_id"], ["elder.id"], name=op.f("fk_allowance_line_elder_id_elder")),
        sa.ForeignKeyConstraint(
            ["district_id"], ["district.id"], name=op.f("fk_allowance_line_district_id_district")
        ),
        sa.PrimaryKeyConstraint("roster_id", "elder_id", name=op.f("pk_allowance_line")),
    )
    op.create_index(op.f("ix_allowance_line_elder_id"), "allowance_line", ["elder_id"], unique=False)
    op.create_index(
        "ix_allowance_line_roster_district",
        "allowance_line",
        ["roster_id", "district_id", "elder_id"],
        unique=False,
    )
    op.execute(_ROSTER_FROZEN)
    op.execute(
        "CREATE TRIGGER allowance_roster_frozen BEFORE UPDATE OR DELETE ON allowance_roster "
        "FOR EACH ROW EXECUTE FUNCTION allowance_roster_frozen()"
    )
    op.execute(_LINE_FROZEN)
    op.execute(
        "CREATE TRIGGER allowance_line_frozen BEFORE INSERT OR UPDATE OR DELETE ON allowance_line "
        "FOR EACH ROW EXECUTE FUNCTION allowance_line_frozen()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS allowance_line_frozen ON allowance_line")
    op.execute("DROP FUNCTION IF EXISTS allowance_line_frozen()")
    op.execute("DROP TRIGGER IF EXISTS allowance_roster_frozen ON allowance_roster")
    op.execute("DROP FUNCTION IF EXISTS allowance_roster_frozen()")
    op.drop_index("ix_allowance_line_roster_district", table_name="allowance_line")
    op.drop_index(op.f("ix_allowance_line_elder_id"), table_name="allowance_line")
    op.drop_table("allowance_line")
    op.drop_table("allowance_roster")
