"""dispatch: day plans published as visits

* ``day_plan.published_at``: when the plan's stops became assignments (each order accepted with a
  visit). Plans stored before this revision keep NULL: they were proposals, and the next run of the
  ``dispatch.plan_tomorrow`` job (or a re-plan) publishes them.
* ``day_plan_stop.visit_id``: the visit that publishing the stop created. The link tells a visit of
  the plan from one the order got elsewhere (withdrawn and dispatched again); it becomes NULL when
  the visit is withdrawn (deleted).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("day_plan", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("day_plan_stop", sa.Column("visit_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_day_plan_stop_visit_id_visit"),
        "day_plan_stop",
        "visit",
        ["visit_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_unique_constraint(op.f("uq_day_plan_stop_visit_id"), "day_plan_stop", ["visit_id"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_day_plan_stop_visit_id"), "day_plan_stop", type_="unique")
    op.drop_constraint(op.f("fk_day_plan_stop_visit_id_visit"), "day_plan_stop", type_="foreignkey")
    op.drop_column("day_plan_stop", "visit_id")
    op.drop_column("day_plan", "published_at")
