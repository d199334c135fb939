"""dispatch: wrong sign-off PIN attempts per visit (rate limit)

* ``visit.pin_failures``: wrong PINs entered for the visit since its last lock or right PIN.
* ``visit.pin_locked_until``: PIN sign-off of the visit is refused until then (policy
  ``verification.signoff_pin``: after ``max_failures`` wrong PINs, for ``lock_minutes``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "visit", sa.Column("pin_failures", sa.SmallInteger(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("visit", sa.Column("pin_locked_until", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(op.f("ck_visit_pin_failures_nonnegative"), "visit", "pin_failures >= 0")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_visit_pin_failures_nonnegative"), "visit", type_="check")
    op.drop_column("visit", "pin_locked_until")
    op.drop_column("visit", "pin_failures")
