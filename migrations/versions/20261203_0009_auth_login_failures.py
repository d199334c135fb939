"""auth: sign-in failures are forgotten after a while; an admin reset can require a new password

* ``app_user.failed_login_at``: when the last failed sign-in (or wrong current password) of the
  running count was; a count idle longer than policy ``auth.login_failures`` / ``account`` /
  ``forget_after_seconds`` starts again.
* ``app_user.password_change_required``: set by an admin password reset; until the user chooses a
  password of their own, the API serves them only their profile, password change and sign-out.

Revision ID: 0009_auth
Revises: 0008
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_auth"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("app_user", sa.Column("failed_login_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "app_user",
        sa.Column("password_change_required", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("app_user", "password_change_required")
    op.drop_column("app_user", "failed_login_at")
