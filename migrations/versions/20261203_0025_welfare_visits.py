"""callcentre: welfare visits (探访关爱) — officers' tier overrides and the visits placed as orders

* ``welfare_override``: an officer's risk tier for one elder, dated (``valid_to`` inclusive); at most
  one open override per elder.
* ``welfare_visit``: marks a dispatch order as a welfare visit (reason ``cadence`` or
  ``after_alarm``). Unique per (elder, due day) for cadence visits and per alarm for after-alarm
  visits, so the scheduled job never places one twice.

Revision ID: 0025_welfare
Revises: 0024_cc_escalation
Create Date: 2026-12-03 18:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025_welfare"
down_revision: str | Sequence[str] | None = "0024_cc_escalation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "welfare_override",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("elder_id", sa.BigInteger(), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("set_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "tier IN ('high', 'medium', 'low', 'none')", name=op.f("ck_welfare_override_tier_valid")
        ),
        sa.CheckConstraint(
            "valid_to IS NULL OR valid_to >= valid_from", name=op.f("ck_welfare_override_range_valid")
        ),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elder.id"], name=op.f("fk_welfare_override_elder_id_elder"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["set_by"], ["app_user.id"], name=op.f("fk_welfare_override_set_by_app_user"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_welfare_override")),
    )
    op.create_index(op.f("ix_welfare_override_elder_id"), "welfare_override", ["elder_id"])
    op.create_index(
        "uq_welfare_override_open",
        "welfare_override",
        ["elder_id"],
        unique=True,
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    op.create_table(
        "welfare_visit",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("elder_id", sa.BigInteger(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=12), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("alarm_id", sa.BigInteger(), nullable=True),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "reason IN ('cadence', 'after_alarm')", name=op.f("ck_welfare_visit_reason_valid")
        ),
        sa.CheckConstraint(
            "(reason = 'after_alarm') = (alarm_id IS NOT NULL)",
            name=op.f("ck_welfare_visit_alarm_iff_after_alarm"),
        ),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elder.id"], name=op.f("fk_welfare_visit_elder_id_elder"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["alarm_id"], ["alarm.id"], name=op.f("fk_welfare_visit_alarm_id_alarm"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["service_order.id"],
            name=op.f("fk_welfare_visit_order_id_service_order"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_welfare_visit")),
        sa.UniqueConstraint("order_id", name=op.f("uq_welfare_visit_order_id")),
    )
    op.create_index(
        "uq_welfare_visit_cadence",
        "welfare_visit",
        ["elder_id", "due_on"],
        unique=True,
        postgresql_where=sa.text("reason = 'cadence'"),
    )
    op.create_index(
        "uq_welfare_visit_alarm",
        "welfare_visit",
        ["alarm_id"],
        unique=True,
        postgresql_where=sa.text("alarm_id IS NOT NULL"),
    )
    op.create_index("ix_welfare_visit_elder_due", "welfare_visit", ["elder_id", "due_on"])


def downgrade() -> None:
    op.drop_table("welfare_visit")
    op.drop_table("welfare_override")
