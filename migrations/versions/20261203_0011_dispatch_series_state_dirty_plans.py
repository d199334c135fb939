"""dispatch: recurring series can be paused and cancelled, refused when duplicated; dirty day plans

* ``recurring_order.state`` (``active`` / ``paused`` / ``cancelled``) replaces ``is_active``
  (inactive series become ``cancelled``), with ``updated_at`` for its last change.
* ``uq_recurring_order_series``: one series that is not cancelled per elder, service, rule and first
  start, so two identical requests cannot both create one (a partial unique index, race-safe).
  Existing duplicates keep their oldest series active; the later copies are cancelled.
* ``uq_service_order_occurrence`` becomes a partial unique index over orders not cancelled: an
  occurrence cancelled by pausing its series gets a new order when the series is resumed.
* ``day_plan_dirty``: days whose stored plans an order placed or cancelled after the build has made
  stale; the ``dispatch.rebuild_dirty_plans`` job re-plans them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "recurring_order",
        sa.Column("state", sa.String(length=12), nullable=False, server_default="active"),
    )
    op.add_column("recurring_order", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE recurring_order SET state = 'cancelled' WHERE NOT is_active")
    op.execute(
        """
        UPDATE recurring_order r SET state = 'cancelled'
        WHERE r.state <> 'cancelled' AND EXISTS (
            SELECT 1 FROM recurring_order o
            WHERE o.state <> 'cancelled' AND o.id < r.id AND o.elder_id = r.elder_id
              AND o.service_code = r.service_code AND o.rrule = r.rrule
              AND o.first_start_at = r.first_start_at)
        """
    )
    op.alter_column("recurring_order", "state", server_default=None)
    op.drop_column("recurring_order", "is_active")
    op.create_check_constraint(
        op.f("ck_recurring_order_state_valid"),
        "recurring_order",
        "state IN ('active', 'paused', 'cancelled')",
    )
    op.create_index(
        "uq_recurring_order_series",
        "recurring_order",
        ["elder_id", "service_code", "rrule", "first_start_at"],
        unique=True,
        postgresql_where=sa.text("state <> 'cancelled'"),
    )
    op.drop_constraint("uq_service_order_occurrence", "service_order", type_="unique")
    op.create_index(
        "uq_service_order_occurrence",
        "service_order",
        ["recurring_order_id", "window_start_at"],
        unique=True,
        postgresql_where=sa.text("state <> 'cancelled'"),
    )
    op.create_table(
        "day_plan_dirty",
        sa.Column("plan_on", sa.Date(), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("plan_on", name=op.f("pk_day_plan_dirty")),
    )


def downgrade() -> None:
    op.drop_table("day_plan_dirty")
    op.drop_index("uq_service_order_occurrence", table_name="service_order")
    op.create_unique_constraint(
        "uq_service_order_occurrence", "service_order", ["recurring_order_id", "window_start_at"]
    )
    op.drop_index("uq_recurring_order_series", table_name="recurring_order")
    op.drop_constraint(op.f("ck_recurring_order_state_valid"), "recurring_order", type_="check")
    op.add_column(
        "recurring_order",
        sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.execute("UPDATE recurring_order SET is_active = (state = 'active')")
    op.alter_column("recurring_order", "is_active", server_default=None)
    op.drop_column("recurring_order", "updated_at")
    op.drop_column("recurring_order", "state")
