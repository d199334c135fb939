"""ingest (monitor): elder monitoring settings people can edit

Every part of ``elder_monitoring`` becomes optional (a part not set falls back to dated policy: the
living-alone default ``alarm.monitoring_default``, the door rule's ``alarm.door_open_night``, the
``alarm.vitals.*`` thresholds), so the daytime columns lose their NOT NULL; added are the night window
for doors, vital-sign overrides (each with its reason), and who changed the settings last and why.

Revision ID: 0015_monit
Revises: 0014_srisk
Create Date: 2026-12-03 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015_monit"
down_revision: str | Sequence[str] | None = "0014_srisk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "elder_monitoring"
CHECKS = {
    "daytime_whole": "(day_start_minute IS NULL) = (day_end_minute IS NULL)"
    " AND (day_start_minute IS NULL) = (inactivity_hours IS NULL)",
    "daytime_valid": "day_start_minute IS NULL OR (day_start_minute >= 0 AND day_start_minute < day_end_minute"
    " AND day_end_minute <= 1440 AND inactivity_hours BETWEEN 1 AND 168)",
    "night_whole": "(night_start_minute IS NULL) = (night_end_minute IS NULL)",
    "night_valid": "night_start_minute IS NULL OR (night_start_minute BETWEEN 0 AND 1439"
    " AND night_end_minute BETWEEN 0 AND 1439 AND night_start_minute <> night_end_minute)",
    "vital_overrides_object": "jsonb_typeof(vital_overrides) = 'object'",
}


def upgrade() -> None:
    for column in ("inactivity_hours", "day_start_minute", "day_end_minute"):
        op.alter_column(T, column, nullable=True)
    op.add_column(T, sa.Column("night_start_minute", sa.SmallInteger(), nullable=True))
    op.add_column(T, sa.Column("night_end_minute", sa.SmallInteger(), nullable=True))
    op.add_column(
        T,
        sa.Column(
            "vital_overrides",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(T, sa.Column("reason", sa.Text(), server_default=sa.text("''"), nullable=False))
    op.add_column(T, sa.Column("updated_by", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_elder_monitoring_updated_by_app_user"),
        T,
        "app_user",
        ["updated_by"],
        ["id"],
        ondelete="SET NULL",
    )
    for name, condition in CHECKS.items():
        op.create_check_constraint(op.f(f"ck_elder_monitoring_{name}"), T, condition)


def downgrade() -> None:
    for name in CHECKS:
        op.drop_constraint(op.f(f"ck_elder_monitoring_{name}"), T, type_="check")
    op.drop_constraint(op.f("fk_elder_monitoring_updated_by_app_user"), T, type_="foreignkey")
    for column in ("updated_by", "reason", "vital_overrides", "night_end_minute", "night_start_minute"):
        op.drop_column(T, column)
    # The old schema had a daytime watch on every row: rows without one get the values the old model
    # filled in (12 h between 07:00 and 22:00).
    op.execute(
        "UPDATE elder_monitoring SET inactivity_hours = 12, day_start_minute = 420, day_end_minute = 1320"
        " WHERE day_start_minute IS NULL"
    )
    for column in ("inactivity_hours", "day_start_minute", "day_end_minute"):
        op.alter_column(T, column, nullable=False)
