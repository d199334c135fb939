"""callcentre (console): the operators' queue in one index scan, the figures by time received

* ``alarm.severity_rank``: 0 (CRITICAL) … 3 (WARNING), a stored generated column
  (``callcentre.contract.severity_rank_sql``), so the queue's order — severity, then age — is an index.
* ``ix_alarm_queue_rank`` (city-wide) and ``ix_alarm_queue_district`` (per district) over the open
  alarms, ``(severity_rank, received_at, id)``: the queue and its keyset pages. They replace 0019's
  ``ix_alarm_queue`` (district, received_at), which could not give that order.
* ``ix_alarm_cleared``: cleared alarms, newest first (the queue's ``cleared`` view).
* ``ix_alarm_received_at``: the service-level figures select alarms by the time they were received.

Revision ID: 0020_cc_console
Revises: 0019_cc_timeline
Create Date: 2026-12-03 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_cc_console"
down_revision: str | Sequence[str] | None = "0019_cc_timeline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As callcentre.contract.severity_rank_sql() gives it today (a migration keeps its own copy).
SEVERITY_RANK = (
    "CASE severity WHEN 'CRITICAL' THEN 0 WHEN 'MAJOR' THEN 1 WHEN 'MINOR' THEN 2 WHEN 'WARNING' THEN 3 END"
)
OPEN = sa.text("cleared_at IS NULL")


def upgrade() -> None:
    op.add_column(
        "alarm",
        sa.Column(
            "severity_rank", sa.SmallInteger(), sa.Computed(SEVERITY_RANK, persisted=True), nullable=False
        ),
    )
    op.drop_index("ix_alarm_queue", table_name="alarm", postgresql_where=OPEN)
    op.create_index(
        "ix_alarm_queue_rank", "alarm", ["severity_rank", "received_at", "id"], postgresql_where=OPEN
    )
    op.create_index(
        "ix_alarm_queue_district",
        "alarm",
        ["district_id", "severity_rank", "received_at", "id"],
        postgresql_where=OPEN,
    )
    op.create_index(
        "ix_alarm_cleared", "alarm", ["cleared_at", "id"], postgresql_where=sa.text("cleared_at IS NOT NULL")
    )
    op.create_index("ix_alarm_received_at", "alarm", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_alarm_received_at", table_name="alarm")
    op.drop_index("ix_alarm_cleared", table_name="alarm")
    op.drop_index("ix_alarm_queue_district", table_name="alarm")
    op.drop_index("ix_alarm_queue_rank", table_name="alarm")
    op.create_index("ix_alarm_queue", "alarm", ["district_id", "received_at"], postgresql_where=OPEN)
    op.drop_column("alarm", "severity_rank")
