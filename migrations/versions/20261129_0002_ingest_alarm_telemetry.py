"""ingest and alarm tables; telemetry storage on native partitions or TimescaleDB

The telemetry back end is chosen here, once: ``-x telemetry_backend=timescale|partitioned`` forces it,
otherwise TimescaleDB is used when the extension is available on the server. Telemetry retention in
days is ``-x telemetry_retention_days=N`` (default 400).

- partitioned: ``telemetry`` is range-partitioned by ``at`` with one partition per UTC day, named
  ``telemetry_pYYYYMMDD``; ``ensure_telemetry_partitions(from, to)`` creates them ahead (called here and by
  the ingest job), old ones are dropped by the retention job; BRIN on ``at`` per partition, btree on
  (device_id, metric, at); ``telemetry_1m``/``telemetry_1h`` are rollup tables maintained by a job.
- timescale: ``telemetry`` is a hypertable with 1-day chunks, compressed after 7 days, retention policy,
  and ``telemetry_1m``/``telemetry_1h`` are continuous aggregates with refresh policies.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TELEMETRY_COLUMNS = """
    device_id bigint NOT NULL,
    at timestamptz NOT NULL,
    metric varchar(40) NOT NULL,
    value double precision NOT NULL,
    seq bigint
"""

ENSURE_PARTITIONS_FN = """
CREATE OR REPLACE FUNCTION ensure_telemetry_partitions(from_day date, to_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date := from_day;
    made integer := 0;
    part text;
BEGIN
    WHILE d <= to_day LOOP
        part := 'telemetry_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                part, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
            EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I USING brin (at)', part || '_at_brin', part);
            made := made + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN made;
END
$$;
"""

ALARM_NOTIFY_FN = """
CREATE OR REPLACE FUNCTION alarm_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('alarm', json_build_object(
        'id', NEW.id, 'type', NEW.type, 'severity', NEW.severity,
        'device_id', NEW.device_id, 'elder_id', NEW.elder_id)::text);
    RETURN NEW;
END
$$;
"""


def _backend() -> str:
    forced = context.get_x_argument(as_dictionary=True).get("telemetry_backend")
    if forced:
        if forced not in ("timescale", "partitioned"):
            raise ValueError("telemetry_backend must be 'timescale' or 'partitioned'")
        return forced
    available = (
        op.get_bind()
        # Installed files alone are not enough: the library must also be preloaded by the server.
        .execute(
            sa.text(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb' "
                "AND current_setting('shared_preload_libraries') LIKE '%timescaledb%'"
            )
        )
        .first()
    )
    return "timescale" if available else "partitioned"


def _retention_days() -> int:
    return int(context.get_x_argument(as_dictionary=True).get("telemetry_retention_days", "400"))


def _rollup(name: str) -> None:
    op.execute(
        f"""CREATE TABLE {name} (
            device_id bigint NOT NULL, metric varchar(40) NOT NULL, bucket timestamptz NOT NULL,
            n bigint NOT NULL, sum double precision NOT NULL,
            min double precision NOT NULL, max double precision NOT NULL,
            CONSTRAINT pk_{name} PRIMARY KEY (device_id, metric, bucket))"""
    )


def _partitioned() -> None:
    op.execute(f"CREATE TABLE telemetry ({TELEMETRY_COLUMNS}) PARTITION BY RANGE (at)")
    op.execute("CREATE INDEX ix_telemetry_device_metric_at ON telemetry (device_id, metric, at)")
    op.execute(ENSURE_PARTITIONS_FN)
    op.execute("SELECT ensure_telemetry_partitions(current_date - 2, current_date + 7)")
    _rollup("telemetry_1m")
    _rollup("telemetry_1h")


def _timescale(retention_days: int) -> None:
    # TimescaleDB 2.x documented API: create_hypertable with by_range (2.13+), compression settings
    # via ALTER TABLE, add_compression_policy, add_retention_policy, continuous aggregates.
    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    op.execute(f"CREATE TABLE telemetry ({TELEMETRY_COLUMNS})")
    op.execute("SELECT create_hypertable('telemetry', by_range('at', INTERVAL '1 day'))")
    op.execute("CREATE INDEX ix_telemetry_device_metric_at ON telemetry (device_id, metric, at)")
    op.execute(
        "ALTER TABLE telemetry SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'device_id, metric', timescaledb.compress_orderby = 'at DESC')"
    )
    op.execute("SELECT add_compression_policy('telemetry', compress_after => INTERVAL '7 days')")
    op.execute(
        f"SELECT add_retention_policy('telemetry', drop_after => INTERVAL '{int(retention_days)} days')"
    )
    # Continuous aggregates cannot be created inside a transaction block.
    with op.get_context().autocommit_block():
        for name, width, start, end, every in (
            ("telemetry_1m", "1 minute", "2 hours", "1 minute", "1 minute"),
            ("telemetry_1h", "1 hour", "3 days", "1 hour", "30 minutes"),
        ):
            op.execute(
                f"""CREATE MATERIALIZED VIEW {name} WITH (timescaledb.continuous) AS
                SELECT device_id, metric, time_bucket(INTERVAL '{width}', at) AS bucket,
                       count(*) AS n, sum(value) AS sum, min(value) AS min, max(value) AS max
                FROM telemetry GROUP BY device_id, metric, time_bucket(INTERVAL '{width}', at)
                WITH NO DATA"""  # noqa: S608 - identifiers are constants above
            )
            op.execute(
                f"""SELECT add_continuous_aggregate_policy('{name}',
                    start_offset => INTERVAL '{start}', end_offset => INTERVAL '{end}',
                    schedule_interval => INTERVAL '{every}')"""
            )
            op.execute(
                f"SELECT add_retention_policy('{name}', drop_after => INTERVAL '{int(retention_days)} days')"
            )


def upgrade() -> None:
    op.create_table(
        "dead_letter",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter")),
    )
    op.create_index(op.f("ix_dead_letter_reason"), "dead_letter", ["reason"], unique=False)
    op.create_index("ix_dead_letter_received_at", "dead_letter", ["received_at"], unique=False)
    op.create_table(
        "ingest_dedup",
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("msg_key", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "msg_key", name=op.f("pk_ingest_dedup")),
    )
    op.create_table(
        "elder_monitoring",
        sa.Column("elder_id", sa.BigInteger(), nullable=False),
        sa.Column("safe_zone", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("inactivity_hours", sa.SmallInteger(), nullable=False),
        sa.Column("day_start_minute", sa.Integer(), nullable=False),
        sa.Column("day_end_minute", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elder.id"], name=op.f("fk_elder_monitoring_elder_id_elder"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("elder_id", name=op.f("pk_elder_monitoring")),
    )
    op.create_table(
        "alarm",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=True),
        sa.Column("elder_id", sa.BigInteger(), nullable=True),
        sa.Column("count", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("presented_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.BigInteger(), nullable=True),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_by", sa.BigInteger(), nullable=True),
        sa.Column("assignee_id", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=30), nullable=True),
        sa.Column(
            "details", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.CheckConstraint(
            "severity IN ('CRITICAL', 'MAJOR', 'MINOR', 'WARNING')", name=op.f("ck_alarm_severity_valid")
        ),
        sa.CheckConstraint(
            "type IN ('SOS', 'FALL', 'SMOKE', 'GAS', 'WANDERING', 'WATER_LEAK', 'VITALS', 'INACTIVITY', "
            "'DOOR_OPEN_NIGHT', 'TAMPER', 'DEVICE_OFFLINE', 'LOW_BATTERY')",
            name=op.f("ck_alarm_type_valid"),
        ),
        sa.CheckConstraint("count >= 1", name=op.f("ck_alarm_count_positive")),
        sa.CheckConstraint(
            "device_id IS NOT NULL OR elder_id IS NOT NULL", name=op.f("ck_alarm_has_subject")
        ),
        sa.ForeignKeyConstraint(
            ["acknowledged_by"],
            ["app_user.id"],
            name=op.f("fk_alarm_acknowledged_by_app_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["app_user.id"], name=op.f("fk_alarm_assignee_id_app_user"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["cleared_by"], ["app_user.id"], name=op.f("fk_alarm_cleared_by_app_user"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["device.id"], name=op.f("fk_alarm_device_id_device"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elder.id"], name=op.f("fk_alarm_elder_id_elder"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm")),
    )
    op.create_index("ix_alarm_elder_received", "alarm", ["elder_id", "received_at"], unique=False)
    op.create_index(
        "ix_alarm_open",
        "alarm",
        ["received_at"],
        unique=False,
        postgresql_where=sa.text("cleared_at IS NULL"),
    )
    op.create_index(
        "uq_alarm_active_device_type",
        "alarm",
        ["device_id", "type"],
        unique=True,
        postgresql_where=sa.text("cleared_at IS NULL AND device_id IS NOT NULL"),
    )
    op.create_index(
        "uq_alarm_active_elder_type",
        "alarm",
        ["elder_id", "type"],
        unique=True,
        postgresql_where=sa.text("cleared_at IS NULL AND device_id IS NULL"),
    )
    op.create_table(
        "device_credential",
        sa.Column("username", sa.String(length=60), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=True),
        sa.Column("gateway_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["device.id"],
            name=op.f("fk_device_credential_device_id_device"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateway.id"],
            name=op.f("fk_device_credential_gateway_id_gateway"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_device_credential")),
    )
    op.create_index(op.f("ix_device_credential_device_id"), "device_credential", ["device_id"], unique=False)
    op.create_index(
        op.f("ix_device_credential_gateway_id"), "device_credential", ["gateway_id"], unique=False
    )
    op.create_table(
        "device_event",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["device.id"], name=op.f("fk_device_event_device_id_device"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_event")),
    )
    op.create_index("ix_device_event_device_at", "device_event", ["device_id", "at"], unique=False)
    op.create_index("ix_ingest_dedup_seen_at", "ingest_dedup", ["seen_at"], postgresql_using="brin")
    op.execute(ALARM_NOTIFY_FN)
    op.execute(
        "CREATE TRIGGER trg_alarm_notify AFTER INSERT ON alarm FOR EACH ROW EXECUTE FUNCTION alarm_notify()"
    )
    if _backend() == "timescale":
        _timescale(_retention_days())
    else:
        _partitioned()


def downgrade() -> None:
    # TimescaleDB continuous aggregates appear as views in pg_class; the plain rollups are tables.
    is_cagg = (
        op.get_bind()
        .execute(sa.text("SELECT 1 FROM pg_class WHERE relname = 'telemetry_1m' AND relkind IN ('v', 'm')"))
        .first()
    )
    if is_cagg:
        with op.get_context().autocommit_block():
            op.execute("DROP MATERIALIZED VIEW IF EXISTS telemetry_1h")
            op.execute("DROP MATERIALIZED VIEW IF EXISTS telemetry_1m")
    else:
        op.execute("DROP TABLE IF EXISTS telemetry_1h")
        op.execute("DROP TABLE IF EXISTS telemetry_1m")
    op.execute("DROP TABLE IF EXISTS telemetry CASCADE")
    op.execute("DROP FUNCTION IF EXISTS ensure_telemetry_partitions(date, date)")
    op.execute("DROP TRIGGER IF EXISTS trg_alarm_notify ON alarm")
    op.execute("DROP FUNCTION IF EXISTS alarm_notify()")
    op.drop_table("device_event")
    op.drop_table("device_credential")
    op.drop_table("alarm")
    op.drop_table("elder_monitoring")
    op.drop_table("ingest_dedup")
    op.drop_table("dead_letter")
