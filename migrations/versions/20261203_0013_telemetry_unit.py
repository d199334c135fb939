"""ingest: ``telemetry.unit``, the unit a SenML reading came with

SenML (RFC 8428) readings keep their unit as given (an RFC 8428 §12.1 symbol such as ``Cel``, ``V``,
``%RH``); every other reading is in its metric's own unit and leaves the column NULL. A nullable
column without a default: on the partitioned table it is added to every partition without a rewrite,
and TimescaleDB adds it to a hypertable, compressed chunks included.

Revision ID: 0013_telemetry_unit
Revises: 0012_dispc
Create Date: 2026-12-03 12:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_telemetry_unit"
down_revision: str | Sequence[str] | None = "0012_dispc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE telemetry ADD COLUMN unit varchar(32)")


def downgrade() -> None:
    op.execute("ALTER TABLE telemetry DROP COLUMN unit")
