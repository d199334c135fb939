"""Pure normaliser: one MQTT message (topic, raw bytes) → canonical readings and events, or a rejection.

Formats (DOMAIN §8; topics and native payloads in :mod:`iot_ingest.wire`): native
``{root}/dev/{uid}/telemetry|event|status``, SenML (RFC 8428) on ``{root}/dev/{uid}/senml``, Zigbee2MQTT
flat JSON on ``{root}/z2m/{gateway}/{friendly_name}`` (plus ``…/availability`` and ``…/bridge/state``),
and OwnTracks on ``{root}/owntracks/{user}/{device}``.

Nothing here touches the database, the clock or the network: ``now`` is passed in, and the device
registry lookup happens in :func:`check_device` with the device record handed over by the caller.

Rejections carry a stable ``reason`` code (stored in ``dead_letter.reason``):

``too_large`` payload above 64 KiB · ``bad_json`` not JSON / not UTF-8 · ``too_deep`` nesting above
:data:`MAX_DEPTH` · ``wrong_type`` a field of the wrong JSON type or shape · ``nan`` NaN or infinity ·
``impossible_value`` outside the physical range of the metric · ``future_timestamp`` more than
:data:`MAX_CLOCK_SKEW` ahead of ``now`` · ``too_old`` older than the accepted age · ``unknown_topic``
a topic we do not read · ``unknown_device`` no such (active) device · ``topic_mismatch`` the payload
names another device than its topic · ``senml`` a SenML pack RFC 8428 does not let us use (the detail
names the rule, ``RFC 8428 §4.5.1: …``) · ``wrong_unit`` a SenML reading of a metric we keep in one
unit (:data:`METRIC_UNITS`) given in another.

SenML packs are resolved by :mod:`iot_ingest.senml` and mapped here (:func:`_senml`): a numeric value
is a reading (with its unit, as given), a sum a reading of ``<metric>#sum``, and a string, boolean or
data value a ``senml`` event holding the resolved record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from iot_ingest import senml
from iot_ingest.wire import TOPIC_ROOT, NativeTelemetry

MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_DEPTH: Final = 8
MAX_READINGS: Final = 500
MAX_CLOCK_SKEW: Final = dt.timedelta(minutes=5)
METRIC_MAX_CHARS: Final = 40  # telemetry.metric
UNIT_MAX_CHARS: Final = 32  # telemetry.unit
DEFAULT_MAX_AGE: Final = dt.timedelta(days=30)
_ROOT: Final = TOPIC_ROOT + "/"

REASONS: Final = frozenset(
    {
        "too_large",
        "bad_json",
        "too_deep",
        "wrong_type",
        "nan",
        "impossible_value",
        "future_timestamp",
        "too_old",
        "unknown_topic",
        "unknown_device",
        "topic_mismatch",
        "senml",
        "wrong_unit",
    }
)

# Physical ranges per canonical metric; anything outside is ``impossible_value``. Units: hr bpm,
# spo2 %, body_temp/temperature °C, humidity %, battery %, voltage mV (Zigbee2MQTT), linkquality 0–255,
# lat/lon degrees, acc metres, bp_* mmHg, resp_rate breaths/min.
METRIC_RANGES: Final[Mapping[str, tuple[float, float]]] = {
    "hr": (0, 300),
    "spo2": (0, 100),
    "body_temp": (20, 45),
    "temperature": (-60, 100),
    "humidity": (0, 100),
    "battery": (0, 100),
    "voltage": (0, 100_000),
    "linkquality": (0, 255),
    "lat": (-90, 90),
    "lon": (-180, 180),
    "acc": (0, 1_000_000),
    "bp_sys": (0, 300),
    "bp_dia": (0, 300),
    "resp_rate": (0, 100),
}
# The unit a metric is kept in, as an RFC 8428 §12.1 symbol, for the metrics the alarm rules and the
# vitals charts read (None: kept in a unit SenML has no symbol for, so a SenML record gives it with no
# unit; SenML's "%" is a ratio, not a percentage, §12.1 note 2). Other readings keep the unit they came
# with (``telemetry.unit``; NULL for native, Zigbee2MQTT and OwnTracks readings, in the units above).
METRIC_UNITS: Final[Mapping[str, str | None]] = {
    "hr": "beat/min",
    "spo2": None,
    "body_temp": "Cel",
    "bp_sys": None,
    "bp_dia": None,
    "resp_rate": None,
    "battery": "%EL",
    "lat": "lat",
    "lon": "lon",
    "acc": "m",
    "temperature": "Cel",
    "humidity": "%RH",
}
# Any other metric: |value| must stay below this.
GENERIC_LIMIT: Final = 1e12
_GENERIC_RANGE: Final = (-GENERIC_LIMIT, GENERIC_LIMIT)
# Integers in free-form event data must be exact in JSON/double (epoch milliseconds are fine).
MAX_SAFE_INT: Final = 2**53

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# Zigbee2MQTT booleans stored as 0/1 readings, and the events some of their values mean (DOMAIN §8).
Z2M_BOOL_EVENTS: Final[Mapping[str, tuple[bool, str]]] = {
    "water_leak": (True, "water_leak"),
    "smoke": (True, "smoke"),
    "gas": (True, "gas"),
    "tamper": (True, "tamper"),
    "battery_low": (True, "low_battery"),
    "occupancy": (True, "motion"),
    "contact": (False, "door_open"),  # contact false = open
}
Z2M_ACTION_EVENTS: Final[Mapping[str, str]] = {
    "emergency": "sos",
    "drop": "fall",
    "vibration": "vibration",
    "tilt": "tilt",
    "single": "button",
    "double": "button",
    "hold": "button",
}


# --- Canonical form --------------------------------------------------------------------------------
# msgspec Structs rather than frozen dataclasses: the hot path builds several per message, and a
# Struct is built about seven times faster.


class SourceRef(msgspec.Struct, frozen=True):
    """Who the topic says sent the message.

    ``scheme`` ``dev``: ``uid`` is the device uid; ``z2m``: ``uid`` is the gateway uid and
    ``friendly_name`` the Zigbee device (``None`` for the gateway's own bridge state); ``owntracks``:
    ``uid`` is the device uid (the OwnTracks user), ``friendly_name`` the OwnTracks device name.
    """

    scheme: Literal["dev", "z2m", "owntracks"]
    uid: str
    friendly_name: str | None = None


class Reading(msgspec.Struct, frozen=True):
    """``unit`` is the SenML unit as given; None for the metric's own unit (:data:`METRIC_UNITS`)."""

    metric: str
    value: float
    at: dt.datetime
    unit: str | None = None


class Event(msgspec.Struct, frozen=True):
    type: str
    at: dt.datetime
    data: Mapping[str, Any] = msgspec.field(default_factory=dict)


class Message(msgspec.Struct, frozen=True):
    """A normalised message. ``availability`` is ``online``/``offline`` for status messages."""

    source: SourceRef
    readings: tuple[Reading, ...] = ()
    events: tuple[Event, ...] = ()
    availability: str | None = None
    seq: int | None = None
    device_ts: dt.datetime | None = None
    claimed_id: str | None = None  # a device id named inside the payload (native ``device_id``, SenML ``bn``)


class Rejection(msgspec.Struct, frozen=True):
    reason: str
    detail: str = ""


class Ignored(msgspec.Struct, frozen=True):
    """A message we read but do not store (our own commands, Zigbee2MQTT bridge chatter)."""

    why: str


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What :func:`check_device` needs to know about the registered device."""

    id: int
    uid: str
    serial: str
    status: str  # active | inactive | revoked
    gateway_uid: str | None = None


class _Reject(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


# --- Entry points ----------------------------------------------------------------------------------


def normalise(
    topic: str,
    payload: bytes,
    *,
    now: dt.datetime,
    max_age: dt.timedelta = DEFAULT_MAX_AGE,
) -> Message | Rejection | Ignored:
    """Parse one message. ``now`` is the UTC receive time, used for missing and relative timestamps."""
    try:
        return _normalise(topic, payload, now, max_age)
    except _Reject as r:
        return Rejection(r.reason, r.detail)


def check_device(message: Message, device: DeviceInfo | None) -> Rejection | None:
    """Registry checks: the device exists and is active, and the payload does not claim another device."""
    if device is None or device.status != "active":
        return Rejection("unknown_device", f"{message.source.scheme}:{message.source.uid}")
    src = message.source
    if src.scheme == "z2m" and device.gateway_uid != src.uid:
        return Rejection("topic_mismatch", f"device belongs to gateway {device.gateway_uid}")
    if message.claimed_id is not None:
        claimed = message.claimed_id.lower()
        if claimed not in (device.uid.lower(), device.serial.lower()):
            return Rejection("topic_mismatch", f"payload names {message.claimed_id!r}")
    return None


def dedup_key(topic: str, payload: bytes, message: Message) -> int:
    """A signed 64-bit key identifying the message for de-duplication.

    With a device sequence number and timestamp the key is derived from those (a retry with
    re-encoded JSON is still a duplicate); otherwise from the exact topic and payload bytes.
    """
    if message.seq is not None and message.device_ts is not None:
        material = b"s|%d|%.3f" % (message.seq, message.device_ts.timestamp())
        return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big", signed=True)
    return raw_key(topic, payload)


def raw_key(topic: str, payload: bytes) -> int:
    """A signed 64-bit key of the exact topic and payload bytes."""
    digest = hashlib.blake2b(topic.encode() + b"\x00" + payload, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# --- Implementation --------------------------------------------------------------------------------


def _normalise(topic: str, payload: bytes, now: dt.datetime, max_age: dt.timedelta) -> Message | Ignored:  # noqa: C901 - one branch per native field check (DOMAIN §8); the dead-letter reasons read in order
    if not topic.startswith(_ROOT):
        raise _Reject("unknown_topic", topic[:200])
    parts = topic[len(_ROOT) :].split("/")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _Reject("too_large", f"{len(payload)} bytes")
    head = parts[0]
    if head == "dev" and len(parts) >= 3:
        uid, kind = parts[1], "/".join(parts[2:])
        _check_name(uid)
        if kind in ("cmd", "cmd/set") or kind.startswith("cmd/"):
            return Ignored("command")
        src = SourceRef("dev", uid)
        if kind == "telemetry":
            return _fast_telemetry(src, payload, now, max_age) or _native_telemetry(
                src, _decode(payload), now, max_age
            )
        if kind == "event":
            return _native_event(src, _decode(payload), now, max_age)
        if kind == "status":
            return _status(src, _decode(payload))
        if kind == "senml":
            if senml.is_cbor_pack(payload):
                raise _Reject("senml", f"{senml.RFC}§6: a CBOR pack; this topic carries SenML JSON (§5)")
            return _senml(src, _decode(payload), now, max_age)
        raise _Reject("unknown_topic", topic[:200])
    if head == "z2m" and len(parts) >= 3:
        gateway, rest = parts[1], parts[2:]
        _check_name(gateway)
        if rest[0] == "bridge":
            if rest[1:] == ["state"]:
                return _bridge_state(SourceRef("z2m", gateway), payload)
            return Ignored("z2m_bridge")
        if rest[-1] in ("set", "get"):
            return Ignored("command")
        if rest[-1] == "availability" and len(rest) > 1:
            return _status(SourceRef("z2m", gateway, "/".join(rest[:-1])), _decode(payload))
        return _z2m(SourceRef("z2m", gateway, "/".join(rest)), _decode(payload), now, max_age)
    if head == "owntracks" and len(parts) >= 3:
        _check_name(parts[1])
        src = SourceRef("owntracks", parts[1], "/".join(parts[2:]))
        if len(parts) > 3:
            return Ignored("owntracks_subtopic")
        return _owntracks(src, _decode(payload), now, max_age)
    raise _Reject("unknown_topic", topic[:200])


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise _Reject("unknown_topic", f"bad id segment {name[:60]!r}")


def _decode(payload: bytes) -> Any:
    try:
        obj = msgspec.json.decode(payload)
    except RecursionError as e:
        raise _Reject("too_deep", "nesting exceeds decoder limit") from e
    except msgspec.ValidationError as e:  # e.g. 1e400: number out of range
        raise _Reject("impossible_value", str(e)[:200]) from e
    except msgspec.DecodeError as e:
        low = payload.lower()
        if b"nan" in low or b"infinity" in low:
            raise _Reject("nan", "NaN/Infinity is not JSON") from e
        raise _Reject("bad_json", str(e)[:200]) from e
    # Every level of nesting opens a bracket: with few brackets in the bytes, no walk is needed.
    if payload.count(b"{") + payload.count(b"[") > MAX_DEPTH and _depth(obj) > MAX_DEPTH:
        raise _Reject("too_deep", f"nesting above {MAX_DEPTH}")
    return obj


def _depth(obj: Any, level: int = 1) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(obj, dict):
        return max((_depth(v, level + 1) for v in obj.values()), default=level)
    if isinstance(obj, list):
        return max((_depth(v, level + 1) for v in obj), default=level)
    return level - 1 if level > 1 else 0


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Reject("wrong_type", f"{what} must be an object")
    return value


def _number(value: Any, what: str) -> float:
    """A JSON number (booleans count as 0/1) as a finite float."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float):
        raise _Reject("wrong_type", f"{what} must be a number")
    if isinstance(value, int) and abs(value) > GENERIC_LIMIT:
        raise _Reject("impossible_value", f"{what}={value}")
    f = float(value)
    if not math.isfinite(f):
        raise _Reject("nan", what)
    return f


def _reading(metric: str, value: Any, at: dt.datetime) -> Reading:
    if not _NAME.match(metric):
        raise _Reject("wrong_type", f"bad metric name {metric[:60]!r}")
    v = _number(value, metric)
    lo, hi = METRIC_RANGES.get(metric, _GENERIC_RANGE)
    if not lo <= v <= hi:
        raise _Reject("impossible_value", f"{metric}={v}")
    return Reading(metric, v, at)


def _check_time(at: dt.datetime, now: dt.datetime, max_age: dt.timedelta) -> dt.datetime:
    if at > now + MAX_CLOCK_SKEW:
        raise _Reject("future_timestamp", at.isoformat())
    if at < now - max_age:
        raise _Reject("too_old", at.isoformat())
    return at


def _epoch(value: Any, what: str, *, scale: float) -> dt.datetime:
    """Epoch ``value`` × ``scale`` seconds → UTC datetime."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Reject("wrong_type", f"{what} must be a number")
    seconds = value * scale
    if not math.isfinite(seconds) or seconds < 0:
        raise _Reject("impossible_value", f"{what}={value}")
    if seconds >= 32_503_680_000:  # year 3000: far in the future, beyond what datetime should hold
        raise _Reject("future_timestamp", f"{what}={value}")
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _seq(body: dict[str, Any]) -> int | None:
    seq = body.get("seq")
    if seq is None:
        return None
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        raise _Reject("wrong_type", "seq must be a non-negative integer")
    return seq


def _native_ts(body: dict[str, Any], now: dt.datetime, max_age: dt.timedelta) -> tuple[dt.datetime, bool]:
    if body.get("ts") is None:
        return now, False
    return _check_time(_epoch(body["ts"], "ts", scale=0.001), now, max_age), True


def _claimed(body: dict[str, Any]) -> str | None:
    claimed = body.get("device_id", body.get("device"))
    if claimed is None:
        return None
    if not isinstance(claimed, str):
        raise _Reject("wrong_type", "device_id must be a string")
    return claimed


def _native_telemetry(src: SourceRef, raw: Any, now: dt.datetime, max_age: dt.timedelta) -> Message:
    body = _obj(raw, "telemetry")
    at, has_ts = _native_ts(body, now, max_age)
    values = _obj(body.get("values"), "values")
    if len(values) > MAX_READINGS:
        raise _Reject("too_large", f"{len(values)} values")
    readings = tuple(_reading(k, v, at) for k, v in values.items())
    return Message(
        src, readings=readings, seq=_seq(body), device_ts=at if has_ts else None, claimed_id=_claimed(body)
    )


# The common native telemetry body, decoded and type-checked by msgspec in one pass.
_telemetry_decoder = msgspec.json.Decoder(NativeTelemetry)


def _fast_telemetry(
    src: SourceRef, payload: bytes, now: dt.datetime, max_age: dt.timedelta
) -> Message | None:
    """Native telemetry in its common shape, or None to leave the message to the general path.

    The general path (:func:`_native_telemetry`) gives the same result for every payload accepted
    here, and is the one that names the reason of a rejection, so anything unusual goes there:
    brackets enough for deep nesting, types msgspec refuses (booleans, strings), a claimed device id,
    odd names or values out of range. ``tests/unit/iot_ingest/test_normalise.py`` checks the two agree.
    """
    if payload.count(b"{") + payload.count(b"[") > MAX_DEPTH:
        return None
    try:
        body = _telemetry_decoder.decode(payload)
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        return None
    values, ts, seq = body.values, body.ts, body.seq
    if body.device_id is not None or body.device is not None or len(values) > MAX_READINGS:
        return None
    if seq is not None and not 0 <= seq < 2**63:
        return None
    if ts is None:
        at, device_ts = now, None
    else:
        if not 0 <= ts < 32_503_680_000_000 or ts != ts:
            return None
        at = device_ts = dt.datetime.fromtimestamp(ts * 0.001, dt.UTC)
        if at > now + MAX_CLOCK_SKEW or at < now - max_age:
            return None
    readings = []
    for metric, v in values.items():
        lo, hi = METRIC_RANGES.get(metric, _GENERIC_RANGE)
        if not lo <= v <= hi or not _NAME.match(metric):
            return None
        readings.append(Reading(metric, v, at))
    return Message(src, readings=tuple(readings), seq=seq, device_ts=device_ts)


def _native_event(src: SourceRef, raw: Any, now: dt.datetime, max_age: dt.timedelta) -> Message:
    body = _obj(raw, "event")
    at, has_ts = _native_ts(body, now, max_age)
    etype = body.get("type")
    if not isinstance(etype, str) or not _EVENT_TYPE.match(etype):
        raise _Reject("wrong_type", "type must be a lower-case event name")
    data = body.get("data", {})
    if not isinstance(data, dict):
        raise _Reject("wrong_type", "data must be an object")
    _scan_numbers(data, "data")
    return Message(
        src,
        events=(Event(etype, at, data),),
        seq=_seq(body),
        device_ts=at if has_ts else None,
        claimed_id=_claimed(body),
    )


def _scan_numbers(obj: Any, where: str) -> None:
    """Reject huge integers inside free-form event data (they would not fit JSONB numerics sensibly)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _scan_numbers(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for v in obj:
            _scan_numbers(v, where)
    elif isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) > MAX_SAFE_INT:
        raise _Reject("impossible_value", f"{where}={obj}")


def _status(src: SourceRef, raw: Any) -> Message:
    body = _obj(raw, "status")
    state = body.get("state")
    if state not in ("online", "offline"):
        raise _Reject("wrong_type", "state must be 'online' or 'offline'")
    return Message(src, availability=state)


def _bridge_state(src: SourceRef, payload: bytes) -> Message:
    # Zigbee2MQTT ≥1.29 publishes {"state":"online"}; older versions the bare string.
    text = payload.strip()
    if text in (b"online", b"offline"):
        return Message(src, availability=text.decode())
    return _status(src, _decode(payload))


def _z2m(src: SourceRef, raw: Any, now: dt.datetime, max_age: dt.timedelta) -> Message:  # noqa: C901 - one branch per Zigbee2MQTT property (DOMAIN §8)
    body = _obj(raw, "zigbee2mqtt state")
    at = now
    last_seen = body.get("last_seen")
    if isinstance(last_seen, int | float) and not isinstance(last_seen, bool):
        at = _check_time(_epoch(last_seen, "last_seen", scale=0.001), now, max_age)
    elif isinstance(last_seen, str):
        try:
            parsed = dt.datetime.fromisoformat(last_seen)
        except ValueError as e:
            raise _Reject("wrong_type", "last_seen must be ISO 8601 or epoch ms") from e
        if parsed.tzinfo is None:
            raise _Reject("wrong_type", "last_seen needs a UTC offset")
        at = _check_time(parsed.astimezone(dt.UTC), now, max_age)
    readings: list[Reading] = []
    events: list[Event] = []
    for key, value in body.items():
        if key == "last_seen" or value is None or isinstance(value, dict | list):
            continue  # nested attributes (update, color...) are not telemetry
        if key in Z2M_BOOL_EVENTS:
            if not isinstance(value, bool):
                raise _Reject("wrong_type", f"{key} must be a boolean")
            readings.append(Reading(key, 1.0 if value else 0.0, at))
            trigger, etype = Z2M_BOOL_EVENTS[key]
            if value is trigger:
                events.append(Event(etype, at, {key: value}))
        elif key == "action":
            if not isinstance(value, str):
                raise _Reject("wrong_type", "action must be a string")
            if value:
                events.append(Event(Z2M_ACTION_EVENTS.get(value, "action"), at, {"action": value}))
        elif key == "fall_down_status":
            if value not in ("none", "maybe_fall", "fall"):
                raise _Reject("wrong_type", "fall_down_status must be none, maybe_fall or fall")
            if value != "none":
                events.append(Event("fall" if value == "fall" else "maybe_fall", at, {key: value}))
        elif isinstance(value, bool | int | float):
            readings.append(_reading(key, value, at))
        # Other strings (e.g. "power_outage_memory") carry no telemetry value; they are ignored.
    if len(readings) > MAX_READINGS:
        raise _Reject("too_large", f"{len(readings)} values")
    return Message(src, readings=tuple(readings), events=tuple(events))


def _owntracks(src: SourceRef, raw: Any, now: dt.datetime, max_age: dt.timedelta) -> Message | Ignored:
    body = _obj(raw, "owntracks")
    kind = body.get("_type")
    if kind != "location":
        if isinstance(kind, str):
            return Ignored(f"owntracks_{kind[:20]}")
        raise _Reject("wrong_type", "_type must be a string")
    at = _check_time(_epoch(body.get("tst"), "tst", scale=1.0), now, max_age)
    readings = [_reading("lat", body.get("lat"), at), _reading("lon", body.get("lon"), at)]
    for src_key, metric in (("acc", "acc"), ("batt", "battery"), ("vel", "speed"), ("alt", "altitude")):
        if body.get(src_key) is not None:
            readings.append(_reading(metric, body[src_key], at))
    return Message(src, readings=tuple(readings), device_ts=at)


def _senml(src: SourceRef, raw: Any, now: dt.datetime, max_age: dt.timedelta) -> Message:
    """Resolved SenML records (:func:`senml.resolve`) as readings and events of the topic's device.

    The metric is the resource part of the resolved name (:func:`senml.split_name`), or, when the
    name names only the device, the metric of its unit (:data:`senml.UNIT_METRICS`), else the unit.
    """
    try:
        records = senml.resolve(raw, now=now, max_records=MAX_READINGS)
    except senml.SenMLError as e:
        raise _Reject(e.reason, e.detail) from None
    readings: list[Reading] = []
    events: list[Event] = []
    devices: dict[str, str] = {}
    now_s, lo = now.timestamp(), (now - max_age).timestamp()
    hi = now_s + MAX_CLOCK_SKEW.total_seconds()
    for rec in records:
        device, resource = senml.split_name(rec.n, src.uid)
        if device is not None:
            devices.setdefault(device.lower(), device)
        unit = rec.u or None
        metric = resource or senml.UNIT_METRICS.get(unit or "") or unit or "value"
        if unit is not None and len(unit) > UNIT_MAX_CHARS:
            raise _Reject("too_large", f"unit {unit[:60]!r} above {UNIT_MAX_CHARS} characters")
        if rec.t > hi:
            raise _Reject("future_timestamp", f"t={rec.t}")
        if rec.t < lo:
            raise _Reject("too_old", f"t={rec.t}")
        at = dt.datetime.fromtimestamp(rec.t, dt.UTC)
        if rec.v is not None:
            readings.append(_senml_reading(metric, rec.v, unit, at))
        if rec.s is not None:
            readings.append(_senml_reading(metric + _SUM_SUFFIX, rec.s, unit, at))
        if rec.vs is not None or rec.vb is not None or rec.vd is not None:
            events.append(Event("senml", at, _senml_event_data(rec, metric)))
    if len(devices) > 1:
        raise _Reject(
            "topic_mismatch",
            f"the pack names devices {', '.join(sorted(devices.values()))} (a collection of resources,"
            f" {senml.RFC}§5.1.6); a device's topic carries that device's records only",
        )
    claimed = next(iter(devices.values()), None)
    return Message(src, readings=tuple(readings), events=tuple(events), claimed_id=claimed)


# A sum (RFC 8428 §4.2, in unit × seconds) is kept as the reading ``<metric>#sum``: '#' is outside the
# SenML name characters, so it meets no real name.
_SUM_SUFFIX: Final = "#sum"


def _senml_reading(metric: str, value: float, unit: str | None, at: dt.datetime) -> Reading:
    if len(metric) > METRIC_MAX_CHARS:
        raise _Reject("too_large", f"metric {metric[:60]!r} above {METRIC_MAX_CHARS} characters")
    if metric in METRIC_UNITS:
        own = METRIC_UNITS[metric]
        if unit is not None and unit != own:
            raise _Reject(
                "wrong_unit",
                f"{metric} is kept in {own or 'a unit SenML has no symbol for (send no u)'}, not {unit!r};"
                " units are stored as given, never converted",
            )
    # The physical range is in the metric's own unit: a reading in another unit gets the generic limit.
    lo, hi = (
        _GENERIC_RANGE
        if unit is not None and metric not in METRIC_UNITS
        else METRIC_RANGES.get(metric, _GENERIC_RANGE)
    )
    if not lo <= value <= hi:
        raise _Reject("impossible_value", f"{metric}={value}")
    return Reading(metric, value, at, unit)


def _senml_event_data(rec: senml.Record, metric: str) -> dict[str, Any]:
    """The resolved record of a string, boolean or data value (``n``, its value, ``u``, ``ut``) and
    the metric it is stored under."""
    data: dict[str, Any] = {"n": rec.n, "metric": metric}
    if rec.vs is not None:
        data["vs"] = rec.vs
    elif rec.vb is not None:
        data["vb"] = rec.vb
    else:
        data["vd"] = rec.vd
    if rec.u:
        data["u"] = rec.u
    if rec.ut is not None:
        data["ut"] = rec.ut
    return data
