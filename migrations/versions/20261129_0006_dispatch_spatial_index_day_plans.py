"""dispatch: GiST indexes for nearest-caregiver search; persisted day plans

* ``ix_caregiver_position_on_shift_point``: GiST over ``point(lon, lat)`` of caregivers on shift, so
  the order → offer path finds the nearest ones by a KNN index scan (``<->``) instead of scanning
  every position (no PostGIS here: the built-in ``point`` type and its GiST operator class).
* ``ix_caregiver_home_point``: the same over caregivers' homes, for scheduled same-day orders where a
  caregiver off shift counts from home.
* ``day_plan`` / ``day_plan_stop``: a provider's plan of one Asia/Shanghai day (which caregiver
  serves which order, in what sequence, starting when), rebuilt in place by a re-plan.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_caregiver_position_on_shift_point",
        "caregiver_position",
        [sa.text("point(lon, lat)")],
        postgresql_using="gist",
        postgresql_where=sa.text("on_shift"),
    )
    op.create_index(
        "ix_caregiver_home_point",
        "caregiver",
        [sa.text("point(home_lon, home_lat)")],
        postgresql_using="gist",
    )
    op.create_table(
        "day_plan",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=False),
        sa.Column("plan_on", sa.Date(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replanned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revision", sa.SmallInteger(), nullable=False),
        sa.Column("travel_s", sa.Integer(), nullable=False),
        sa.Column("unassigned_order_ids", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("unavailable_caregiver_ids", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.CheckConstraint("revision >= 1", name=op.f("ck_day_plan_revision_positive")),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["provider.id"],
            name=op.f("fk_day_plan_provider_id_provider"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_day_plan")),
        sa.UniqueConstraint("provider_id", "plan_on", name="uq_day_plan_provider_day"),
    )
    op.create_index("ix_day_plan_plan_on", "day_plan", ["plan_on"], unique=False)
    op.create_table(
        "day_plan_stop",
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("caregiver_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.SmallInteger(), nullable=False),
        sa.Column("planned_start_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_day_plan_stop_seq_positive")),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["day_plan.id"], name=op.f("fk_day_plan_stop_plan_id_day_plan"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["service_order.id"],
            name=op.f("fk_day_plan_stop_order_id_service_order"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["caregiver_id"], ["caregiver.id"], name=op.f("fk_day_plan_stop_caregiver_id_caregiver")
        ),
        sa.PrimaryKeyConstraint("plan_id", "order_id", name=op.f("pk_day_plan_stop")),
        sa.UniqueConstraint("plan_id", "caregiver_id", "seq", name="uq_day_plan_stop_route_seq"),
    )
    op.create_index("ix_day_plan_stop_caregiver_start", "day_plan_stop", ["caregiver_id", "planned_start_at"])
    op.create_index("ix_day_plan_stop_order_id", "day_plan_stop", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_day_plan_stop_order_id", table_name="day_plan_stop")
    op.drop_index("ix_day_plan_stop_caregiver_start", table_name="day_plan_stop")
    op.drop_table("day_plan_stop")
    op.drop_index("ix_day_plan_plan_on", table_name="day_plan")
    op.drop_table("day_plan")
    op.drop_index("ix_caregiver_home_point", table_name="caregiver")
    op.drop_index("ix_caregiver_position_on_shift_point", table_name="caregiver_position")
