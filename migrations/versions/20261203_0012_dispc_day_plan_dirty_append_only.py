"""dispatch (dispc): day-plan dirty marks are append-only

``day_plan_dirty`` had one row per day (primary key ``plan_on``), written with ``ON CONFLICT DO
NOTHING`` and claimed by the rebuild job with a ``DELETE`` before it re-planned. A request changing an
order of that day while the job ran then waited on the job's deleted row while holding the order's row,
which the re-plan locks next: a deadlock. Now every change appends a row (``id``), the job deletes
only the rows it read, after the re-plan.

Revision ID: 0012_dispc
Revises: 0011
Create Date: 2026-12-03 09:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_dispc"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("pk_day_plan_dirty"), "day_plan_dirty", type_="primary")
    op.add_column("day_plan_dirty", sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False))
    op.create_primary_key(op.f("pk_day_plan_dirty"), "day_plan_dirty", ["id"])
    op.create_index(op.f("ix_day_plan_dirty_plan_on"), "day_plan_dirty", ["plan_on"])


def downgrade() -> None:
    op.drop_index(op.f("ix_day_plan_dirty_plan_on"), table_name="day_plan_dirty")
    op.drop_constraint(op.f("pk_day_plan_dirty"), "day_plan_dirty", type_="primary")
    # One mark per day again: keep the earliest of each day.
    op.execute(
        "DELETE FROM day_plan_dirty d USING day_plan_dirty e WHERE d.plan_on = e.plan_on AND d.id > e.id"
    )
    op.drop_column("day_plan_dirty", "id")
    op.create_primary_key(op.f("pk_day_plan_dirty"), "day_plan_dirty", ["plan_on"])
