"""merge the login-failure (0009_auth) and visit-exception history (0009_dispa) branches

Revision ID: 0010
Revises: 0009_auth, 0009_dispa
Create Date: 2026-12-03 09:20:00
"""

from collections.abc import Sequence

revision: str = "0010"
down_revision: str | Sequence[str] | None = ("0009_auth", "0009_dispa")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
