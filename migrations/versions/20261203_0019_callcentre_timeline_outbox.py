"""callcentre: the alarm's timeline (``alarm_event``), its district, and the notification outbox

* ``alarm.district_id``: the elder's district when the alarm is raised (a BEFORE INSERT trigger, so
  the ingest's one-statement write is unchanged), for the operators' district scoping and the queue's
  index. ``alarm.assigned_at``: when the current assignee took it.
* ``alarm_event``: append-only, one row per change of an alarm, with user and time (DOMAIN §7: what a
  telecare regulator asks for — received, presented, acknowledged, each call-back and its result, the
  responder sent, the outcome, cleared). Its ``id`` is the live feed's event id. Triggers on ``alarm``
  write the events nobody else can: ``raised`` (a new alarm) and ``repeated`` (a repeat folded in);
  the call centre writes the rest (``callcentre.timeline``). Every new event is NOTIFYed on channel
  ``alarm_event`` as ``{"id", "alarm_id", "district_id", "kind"}``.
* ``notification_outbox``: a notification to deliver, written in the same transaction as the change
  that causes it (``core.outbox.enqueue``); a dispatcher delivers it at least once, with retries and
  back-off, under its ``idempotency_key``. NOTIFYed on channel ``outbox``.

Revision ID: 0019_cc_timeline
Revises: 0018_agreement
Create Date: 2026-12-03 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019_cc_timeline"
down_revision: str | Sequence[str] | None = "0018_agreement"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = (
    """
CREATE FUNCTION alarm_set_district() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.district_id IS NULL AND NEW.elder_id IS NOT NULL THEN
        NEW.district_id := (SELECT district_id FROM elder WHERE id = NEW.elder_id);
    END IF;
    RETURN NEW;
END $$""",
    """CREATE TRIGGER alarm_set_district BEFORE INSERT ON alarm
    FOR EACH ROW EXECUTE FUNCTION alarm_set_district()""",
    """
CREATE FUNCTION alarm_event_from_alarm() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO alarm_event (alarm_id, at, kind, district_id, data)
        VALUES (NEW.id, NEW.received_at, 'raised', NEW.district_id, jsonb_build_object(
            'type', NEW.type, 'severity', NEW.severity, 'count', NEW.count,
            'device_id', NEW.device_id, 'elder_id', NEW.elder_id));
    ELSIF NEW.count > OLD.count THEN
        INSERT INTO alarm_event (alarm_id, kind, district_id, data)
        VALUES (NEW.id, 'repeated', NEW.district_id, jsonb_build_object(
            'type', NEW.type, 'severity', NEW.severity, 'count', NEW.count,
            'last_seen_at', NEW.last_seen_at));
    END IF;
    RETURN NULL;
END $$""",
    """CREATE TRIGGER alarm_event_raised AFTER INSERT ON alarm
    FOR EACH ROW EXECUTE FUNCTION alarm_event_from_alarm()""",
    """CREATE TRIGGER alarm_event_repeated AFTER UPDATE OF count ON alarm
    FOR EACH ROW WHEN (NEW.count > OLD.count) EXECUTE FUNCTION alarm_event_from_alarm()""",
    """
CREATE FUNCTION alarm_event_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('alarm_event', json_build_object(
        'id', NEW.id, 'alarm_id', NEW.alarm_id, 'district_id', NEW.district_id, 'kind', NEW.kind)::text);
    RETURN NULL;
END $$""",
    """CREATE TRIGGER alarm_event_notify AFTER INSERT ON alarm_event
    FOR EACH ROW EXECUTE FUNCTION alarm_event_notify()""",
    """
CREATE FUNCTION alarm_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alarm_event is append-only' USING ERRCODE = 'restrict_violation';
END $$""",
    """CREATE TRIGGER alarm_event_append_only BEFORE UPDATE ON alarm_event
    FOR EACH ROW EXECUTE FUNCTION alarm_event_append_only()""",
    """
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', NEW.id::text);
    RETURN NULL;
END $$""",
    """CREATE TRIGGER outbox_notify AFTER INSERT ON notification_outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_notify()""",
)

DOWNGRADE = (
    "DROP TRIGGER IF EXISTS outbox_notify ON notification_outbox",
    "DROP FUNCTION IF EXISTS outbox_notify()",
    "DROP TRIGGER IF EXISTS alarm_event_append_only ON alarm_event",
    "DROP FUNCTION IF EXISTS alarm_event_append_only()",
    "DROP TRIGGER IF EXISTS alarm_event_notify ON alarm_event",
    "DROP FUNCTION IF EXISTS alarm_event_notify()",
    "DROP TRIGGER IF EXISTS alarm_event_repeated ON alarm",
    "DROP TRIGGER IF EXISTS alarm_event_raised ON alarm",
    "DROP FUNCTION IF EXISTS alarm_event_from_alarm()",
    "DROP TRIGGER IF EXISTS alarm_set_district ON alarm",
    "DROP FUNCTION IF EXISTS alarm_set_district()",
)


def upgrade() -> None:
    op.add_column("alarm", sa.Column("district_id", sa.Integer(), nullable=True))
    op.add_column("alarm", sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(op.f("fk_alarm_district_id_district"), "alarm", "district", ["district_id"], ["id"])
    op.execute("UPDATE alarm a SET district_id = e.district_id FROM elder e WHERE e.id = a.elder_id")
    op.create_index(
        "ix_alarm_queue",
        "alarm",
        ["district_id", "received_at"],
        unique=False,
        postgresql_where=sa.text("cleared_at IS NULL"),
    )
    op.create_table(
        "alarm_event",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("alarm_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("district_id", sa.Integer(), nullable=True),
        sa.Column(
            "data", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["alarm_id"], ["alarm.id"], name=op.f("fk_alarm_event_alarm_id_alarm"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["app_user.id"], name=op.f("fk_alarm_event_actor_id_app_user"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_event")),
    )
    op.create_index("ix_alarm_event_alarm", "alarm_event", ["alarm_id", "id"], unique=False)
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("ref", sa.String(length=60), nullable=True),
        sa.Column(
            "payload", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=10), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'dead')", name=op.f("ck_notification_outbox_status_valid")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_notification_outbox_idempotency_key")),
    )
    op.create_index(
        "ix_notification_outbox_due",
        "notification_outbox",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
    op.drop_index("ix_notification_outbox_due", table_name="notification_outbox")
    op.drop_table("notification_outbox")
    op.drop_index("ix_alarm_event_alarm", table_name="alarm_event")
    op.drop_table("alarm_event")
    op.drop_index("ix_alarm_queue", table_name="alarm")
    op.drop_constraint(op.f("fk_alarm_district_id_district"), "alarm", type_="foreignkey")
    op.drop_column("alarm", "assigned_at")
    op.drop_column("alarm", "district_id")
