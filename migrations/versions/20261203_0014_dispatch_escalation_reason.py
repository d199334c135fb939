"""dispatch (startrisk): why an order is in the operator queue

``service_order.escalation_reason`` (``dispatch.states.EscalationReason``) is set by every move into
``escalated``: real-time dispatch found nobody (``no_caregiver``), no day plan placed it
(``unplanned``), a re-plan withdrew its visit (``plan_withdrawn``), or its caregiver had not set off in
time (``start_at_risk``, the new start-at-risk job). Orders in the queue now get theirs from the note of
the transition that put them there.

Revision ID: 0014_srisk
Revises: 0013_telemetry_unit
Create Date: 2026-12-03 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_srisk"
down_revision: str | Sequence[str] | None = "0013_telemetry_unit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASONS = ("no_caregiver", "unplanned", "plan_withdrawn", "start_at_risk")


def upgrade() -> None:
    op.add_column("service_order", sa.Column("escalation_reason", sa.String(length=20), nullable=True))
    allowed = ", ".join(f"'{r}'" for r in REASONS)
    op.create_check_constraint(
        op.f("ck_service_order_escalation_reason_valid"), "service_order", f"escalation_reason IN ({allowed})"
    )
    # The notes each path has written so far (dispatch.offers, dispatch.dayplans.plan / publish).
    op.execute(
        """
        UPDATE service_order o SET escalation_reason = CASE
            WHEN t.note LIKE 'after % offers' THEN 'no_caregiver'
            WHEN t.note = 'no day plan could place it' THEN 'unplanned'
            WHEN t.note LIKE 'day plan:%' THEN 'plan_withdrawn'
        END
        FROM (
            SELECT DISTINCT ON (order_id) order_id, note FROM order_transition
            WHERE to_state = 'escalated' ORDER BY order_id, id DESC
        ) t
        WHERE t.order_id = o.id AND o.state = 'escalated'
        """
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_service_order_escalation_reason_valid"), "service_order", type_="check")
    op.drop_column("service_order", "escalation_reason")
