"""IoT ingest tables: the device and gateway inventory, telemetry, device events, dead letters,
de-duplication keys, rollups, monitoring.

``telemetry`` is declared as a plain Core table here; migration 0002 creates it either as a native
range-partitioned table (one partition per UTC day) or as a TimescaleDB hypertable (1-day chunks),
depending on whether the extension is available. Both have the same columns, so readers and the
COPY writer never need to know which back end is in use.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, enum_check, now_column
from iot_ingest.normalise import METRIC_MAX_CHARS, UNIT_MAX_CHARS

# --- Devices and gateways (the inventory) ------------------------------------------------------


class DeviceKind(enum.StrEnum):
    SOS_BUTTON = "sos_button"
    FALL_SENSOR = "fall_sensor"
    SMOKE = "smoke"
    GAS = "gas"
    WATER_LEAK = "water_leak"
    DOOR = "door"
    MOTION = "motion"
    BED = "bed"
    GPS_WATCH = "gps_watch"
    VITALS_BAND = "vitals_band"
    GATEWAY = "gateway"


class Gateway(Base):
    """A home gateway (Zigbee2MQTT hub); its id appears in ``eldercare/v1/z2m/{uid}``."""

    __tablename__ = "gateway"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    uid: Mapped[str] = mapped_column(String(40), unique=True)
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elder.id", ondelete="SET NULL"), index=True)
    model: Mapped[str] = mapped_column(String(60))
    serial: Mapped[str] = mapped_column(String(60), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="active")
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = now_column()


class Device(Base):
    """A home device; ``uid`` is the id used in its MQTT topic and username."""

    __tablename__ = "device"
    __table_args__ = (
        enum_check("kind", DeviceKind),
        CheckConstraint("power IN ('mains', 'battery')", name="power_valid"),
        CheckConstraint("status IN ('active', 'inactive', 'revoked')", name="status_valid"),
        UniqueConstraint("gateway_id", "friendly_name", name="uq_device_gateway_friendly_name"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    uid: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    model: Mapped[str] = mapped_column(String(60))
    serial: Mapped[str] = mapped_column(String(60), unique=True)
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elder.id", ondelete="SET NULL"), index=True)
    gateway_id: Mapped[int | None] = mapped_column(ForeignKey("gateway.id", ondelete="SET NULL"), index=True)
    friendly_name: Mapped[str | None] = mapped_column(String(60))
    power: Mapped[str] = mapped_column(String(8), default="battery")
    status: Mapped[str] = mapped_column(String(12), default="active")
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    online: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = now_column()


# One row per (device, metric, instant). ``unit`` is the unit a SenML reading came with (RFC 8428
# §12.1 symbol, as given); NULL means the metric's own unit (``iot_ingest.normalise.METRIC_UNITS``
# and the units beside ``METRIC_RANGES``). ``seq`` is the device's message sequence number if it sent one.
telemetry = Table(
    "telemetry",
    Base.metadata,
    Column("device_id", BigInteger, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("metric", String(METRIC_MAX_CHARS), nullable=False),
    Column("value", Double, nullable=False),
    Column("seq", BigInteger),
    Column("unit", String(UNIT_MAX_CHARS)),
    Index("ix_telemetry_device_metric_at", "device_id", "metric", "at"),
    info={"partitioned": True},
)


def _rollup(name: str) -> Table:
    """Per-bucket aggregates; plain tables maintained by a job, or TimescaleDB continuous aggregates."""
    return Table(
        name,
        Base.metadata,
        Column("device_id", BigInteger, primary_key=True),
        Column("metric", String(METRIC_MAX_CHARS), primary_key=True),
        Column("bucket", DateTime(timezone=True), primary_key=True),
        Column("n", BigInteger, nullable=False),
        Column("sum", Double, nullable=False),
        Column("min", Double, nullable=False),
        Column("max", Double, nullable=False),
        info={"rollup": True},
    )


telemetry_1m = _rollup("telemetry_1m")
telemetry_1h = _rollup("telemetry_1h")


class DeviceEvent(Base):
    """A discrete device event (SOS press, fall, leak, door contact, availability change...)."""

    __tablename__ = "device_event"
    __table_args__ = (Index("ix_device_event_device_at", "device_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DeadLetter(Base):
    """A message we could not accept, kept byte for byte with a stable reason code."""

    __tablename__ = "dead_letter"
    __table_args__ = (Index("ix_dead_letter_received_at", "received_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class IngestDedup(Base):
    """Keys of messages already stored, for the de-duplication window.

    ``msg_key`` is a signed 64-bit digest of (sequence number, device timestamp) when the device sends
    them, else of the raw topic and payload. Rows older than the window are deleted by a job.
    """

    __tablename__ = "ingest_dedup"

    device_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    msg_key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ElderMonitoring(Base):
    """An elder's own monitoring settings, used by the alarm rules; each part is optional, and a part
    not set falls back to dated policy (:mod:`iot_ingest.monitoring.rules`).

    - daytime watch: ``day_start_minute``/``day_end_minute`` bound the waking day (Asia/Shanghai,
      minutes after midnight, end up to 1440) in which ``inactivity_hours`` without motion or door
      events raises INACTIVITY; all three or none;
    - night window for doors (DOOR_OPEN_NIGHT for elders with dementia): ``night_start_minute`` /
      ``night_end_minute``, may span midnight; both or none;
    - ``safe_zone`` is ``{"circle": {"lat", "lon", "radius_m"}}`` or ``{"polygon": [[lat, lon], ...]}``
      (WANDERING when a position fix leaves it);
    - ``vital_overrides``: ``{name: {"value", "reason"}}`` for the names in
      :data:`iot_ingest.monitoring.rules.VITALS`, each with the reason it departs from the policy.

    ``updated_by``/``reason`` say who made the last change and why (the audit trail has them all).
    """

    __tablename__ = "elder_monitoring"
    __table_args__ = (
        CheckConstraint(
            "(day_start_minute IS NULL) = (day_end_minute IS NULL)"
            " AND (day_start_minute IS NULL) = (inactivity_hours IS NULL)",
            name="daytime_whole",
        ),
        CheckConstraint(
            "day_start_minute IS NULL OR (day_start_minute >= 0 AND day_start_minute < day_end_minute"
            " AND day_end_minute <= 1440 AND inactivity_hours BETWEEN 1 AND 168)",
            name="daytime_valid",
        ),
        CheckConstraint("(night_start_minute IS NULL) = (night_end_minute IS NULL)", name="night_whole"),
        CheckConstraint(
            "night_start_minute IS NULL OR (night_start_minute BETWEEN 0 AND 1439"
            " AND night_end_minute BETWEEN 0 AND 1439 AND night_start_minute <> night_end_minute)",
            name="night_valid",
        ),
        CheckConstraint("jsonb_typeof(vital_overrides) = 'object'", name="vital_overrides_object"),
    )

    elder_id: Mapped[int] = mapped_column(ForeignKey("elder.id", ondelete="CASCADE"), primary_key=True)
    safe_zone: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    inactivity_hours: Mapped[int | None] = mapped_column(SmallInteger)
    day_start_minute: Mapped[int | None] = mapped_column(Integer)
    day_end_minute: Mapped[int | None] = mapped_column(Integer)
    night_start_minute: Mapped[int | None] = mapped_column(SmallInteger)
    night_end_minute: Mapped[int | None] = mapped_column(SmallInteger)
    vital_overrides: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    reason: Mapped[str] = mapped_column(Text, server_default=text("''"))
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DeviceCredential(Base):
    """The broker account of a device or gateway. The password is never stored, only its hash and
    whether it is live."""

    __tablename__ = "device_credential"

    username: Mapped[str] = mapped_column(String(60), primary_key=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"), index=True)
    gateway_id: Mapped[int | None] = mapped_column(ForeignKey("gateway.id", ondelete="CASCADE"), index=True)
    # Mosquitto ``$7$`` PBKDF2-SHA512 hash of the issued password (the password is never stored).
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
