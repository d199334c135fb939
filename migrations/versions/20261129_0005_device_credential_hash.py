"""device_credential.password_hash: the broker's hash of a device or gateway password

The password itself is returned once at provisioning and never stored; the hash is in Mosquitto's
own ``$7$`` format (PBKDF2-SHA512), so the broker's password file can be rebuilt from the database
and a deployment without a password file still records which secret was issued.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("device_credential", sa.Column("password_hash", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("device_credential", "password_hash")
