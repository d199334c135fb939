"""callcentre (escalation): chains frozen on alarms, the next step's due time, the return to the queue,
storms, and the escalation jobs' heartbeat

* ``alarm.escalation_chain`` (jsonb: the chain frozen on the alarm, with its policy ``ref``),
  ``escalation_cycle``/``escalation_round``/``escalation_step`` (the pending step) and
  ``escalation_due_at`` (when the runner must look at the alarm next; a new alarm is due at once, so
  the runner freezes its chain), indexed for active alarms. Alarms open at the upgrade are due at once.
* ``alarm.requeued_at``, ``first_acknowledged_at``/``_by``: an acknowledged alarm still open past its
  chain's limit returns to the queue (acknowledgement and assignee reset); its first acknowledgement
  stays on the row for the service levels.
* ``alarm_storm`` and ``alarm.storm_id``: a device raising more alarms than ``alarm.storm`` allows is in
  a storm, its alarms grouped under it; ``ix_alarm_event_at`` finds the recent events that count.
* ``escalation_heartbeat``: the runner's and the auditor's last beats, for ``/metrics``.

Revision ID: 0024_cc_escalation
Revises: 0023_allowance
Create Date: 2026-12-03 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0024_cc_escalation"
down_revision: str | Sequence[str] | None = "0023_allowance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alarm_storm",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("peak_events", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["device.id"], name=op.f("fk_alarm_storm_device_id_device"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_storm")),
    )
    op.create_index(
        "uq_alarm_storm_open",
        "alarm_storm",
        ["device_id"],
        unique=True,
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.create_table(
        "escalation_heartbeat",
        sa.Column("job", sa.String(length=20), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("alarms", sa.Integer(), nullable=False),
        sa.Column("problems", sa.Integer(), nullable=False),
        sa.Column(
            "details", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_escalation_heartbeat")),
    )
    op.add_column(
        "alarm", sa.Column("escalation_chain", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column(
        "alarm", sa.Column("escalation_cycle", sa.SmallInteger(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column(
        "alarm", sa.Column("escalation_round", sa.SmallInteger(), server_default=sa.text("1"), nullable=False)
    )
    op.add_column(
        "alarm", sa.Column("escalation_step", sa.SmallInteger(), server_default=sa.text("0"), nullable=False)
    )
    # now() is stable: the existing rows get the upgrade's instant without a table rewrite, i.e. the
    # alarms open at the upgrade are due at once and get their chains on the runner's first pass.
    op.add_column(
        "alarm",
        sa.Column(
            "escalation_due_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True
        ),
    )
    op.add_column("alarm", sa.Column("requeued_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("alarm", sa.Column("first_acknowledged_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("alarm", sa.Column("first_acknowledged_by", sa.BigInteger(), nullable=True))
    op.add_column("alarm", sa.Column("storm_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_alarm_first_acknowledged_by_app_user"),
        "alarm",
        "app_user",
        ["first_acknowledged_by"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        op.f("fk_alarm_storm_id_alarm_storm"),
        "alarm",
        "alarm_storm",
        ["storm_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        "ix_alarm_escalation_due",
        "alarm",
        ["escalation_due_at"],
        unique=False,
        postgresql_where=sa.text("cleared_at IS NULL"),
    )
    op.create_index(
        "ix_alarm_storm",
        "alarm",
        ["storm_id"],
        unique=False,
        postgresql_where=sa.text("storm_id IS NOT NULL"),
    )
    op.create_index("ix_alarm_event_at", "alarm_event", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alarm_event_at", table_name="alarm_event")
    op.drop_index("ix_alarm_storm", table_name="alarm")
    op.drop_index("ix_alarm_escalation_due", table_name="alarm")
    op.drop_constraint(op.f("fk_alarm_storm_id_alarm_storm"), "alarm", type_="foreignkey")
    op.drop_constraint(op.f("fk_alarm_first_acknowledged_by_app_user"), "alarm", type_="foreignkey")
    for column in (
        "storm_id",
        "first_acknowledged_by",
        "first_acknowledged_at",
        "requeued_at",
        "escalation_due_at",
        "escalation_step",
        "escalation_round",
        "escalation_cycle",
        "escalation_chain",
    ):
        op.drop_column("alarm", column)
    op.drop_table("escalation_heartbeat")
    op.drop_index("uq_alarm_storm_open", table_name="alarm_storm")
    op.drop_table("alarm_storm")
