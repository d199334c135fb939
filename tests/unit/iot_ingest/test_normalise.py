"""Table-driven tests of the pure normaliser (DOMAIN §8 formats and rejection reasons); SenML has
its own, ``test_senml.py``."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from iot_ingest.normalise import (
    MAX_PAYLOAD_BYTES,
    REASONS,
    DeviceInfo,
    Event,
    Ignored,
    Message,
    Rejection,
    SourceRef,
    check_device,
    dedup_key,
    normalise,
)

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 29, 8, 0, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def _ok(topic: str, payload: bytes | str | object) -> Message:
    raw = (
        payload
        if isinstance(payload, bytes)
        else (payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
    )
    out = normalise(topic, raw, now=NOW)
    assert isinstance(out, Message), out
    return out


def _metrics(m: Message) -> dict[str, float]:
    return {r.metric: r.value for r in m.readings}


def test_native_telemetry() -> None:
    m = _ok(
        "eldercare/v1/dev/d1/telemetry", {"ts": NOW_MS - 1000, "seq": 7, "values": {"hr": 72, "spo2": 97}}
    )
    assert m.source == SourceRef("dev", "d1")
    assert _metrics(m) == {"hr": 72.0, "spo2": 97.0}
    assert m.seq == 7
    assert m.readings[0].at == NOW - dt.timedelta(seconds=1)
    assert m.device_ts == NOW - dt.timedelta(seconds=1)


def test_native_telemetry_without_ts_uses_receive_time() -> None:
    m = _ok("eldercare/v1/dev/d1/telemetry", {"values": {"hr": 60}})
    assert m.readings[0].at == NOW
    assert m.device_ts is None
    assert m.seq is None


def test_native_event_and_status() -> None:
    m = _ok("eldercare/v1/dev/d1/event", {"ts": NOW_MS, "seq": 3, "type": "sos", "data": {"button": 1}})
    assert m.events == (Event("sos", NOW, {"button": 1}),)
    s = _ok("eldercare/v1/dev/d1/status", {"state": "offline"})
    assert s.availability == "offline"
    assert not s.readings


@pytest.mark.parametrize(
    ("payload", "readings", "events"),
    [
        (
            {"water_leak": True, "battery_low": False, "battery": 91, "voltage": 3005, "linkquality": 87},
            {"water_leak": 1, "battery_low": 0, "battery": 91, "voltage": 3005, "linkquality": 87},
            ["water_leak"],
        ),
        ({"smoke": True, "battery": 80}, {"smoke": 1, "battery": 80}, ["smoke"]),
        ({"gas": True}, {"gas": 1}, ["gas"]),
        ({"occupancy": True, "linkquality": 20}, {"occupancy": 1, "linkquality": 20}, ["motion"]),
        ({"contact": False}, {"contact": 0}, ["door_open"]),
        ({"contact": True}, {"contact": 1}, []),
        ({"tamper": True}, {"tamper": 1}, ["tamper"]),
        ({"battery_low": True}, {"battery_low": 1}, ["low_battery"]),
        ({"action": "emergency"}, {}, ["sos"]),
        ({"action": "drop"}, {}, ["fall"]),
        ({"action": "vibration"}, {}, ["vibration"]),
        ({"action": "tilt"}, {}, ["tilt"]),
        ({"action": "single"}, {}, ["button"]),
        ({"action": "double"}, {}, ["button"]),
        ({"action": "hold"}, {}, ["button"]),
        ({"action": ""}, {}, []),
        ({"presence": True, "fall_down_status": "fall"}, {"presence": 1}, ["fall"]),
        ({"fall_down_status": "maybe_fall"}, {}, ["maybe_fall"]),
        ({"fall_down_status": "none"}, {}, []),
        ({"temperature": 21.5, "humidity": 40}, {"temperature": 21.5, "humidity": 40}, []),
        ({"update": {"state": "idle"}, "battery": 50, "power_on_behavior": "on"}, {"battery": 50}, []),
    ],
)
def test_zigbee2mqtt_fields(
    payload: dict[str, object], readings: dict[str, float], events: list[str]
) -> None:
    m = _ok("eldercare/v1/z2m/gw1/kitchen_leak", payload)
    assert m.source == SourceRef("z2m", "gw1", "kitchen_leak")
    assert _metrics(m) == readings
    assert [e.type for e in m.events] == events


def test_zigbee2mqtt_availability_bridge_and_commands() -> None:
    a = _ok("eldercare/v1/z2m/gw1/hall/door/availability", {"state": "online"})
    assert a.source == SourceRef("z2m", "gw1", "hall/door")
    assert a.availability == "online"
    b = _ok("eldercare/v1/z2m/gw1/bridge/state", b"online")
    assert b.source == SourceRef("z2m", "gw1", None)
    assert b.availability == "online"
    assert isinstance(normalise("eldercare/v1/z2m/gw1/bridge/devices", b"[]", now=NOW), Ignored)
    assert isinstance(normalise("eldercare/v1/z2m/gw1/lamp/set", b"{}", now=NOW), Ignored)


def test_zigbee2mqtt_last_seen_sets_time() -> None:
    m = _ok("eldercare/v1/z2m/gw1/motion", {"occupancy": True, "last_seen": "2026-11-29T07:59:00+00:00"})
    assert m.readings[0].at == NOW - dt.timedelta(minutes=1)


def test_owntracks_location() -> None:
    m = _ok(
        "eldercare/v1/owntracks/watch7/phone",
        {
            "_type": "location",
            "lat": 30.92,
            "lon": 113.91,
            "tst": int(NOW.timestamp()),
            "acc": 10,
            "batt": 80,
        },
    )
    assert m.source == SourceRef("owntracks", "watch7", "phone")
    assert _metrics(m) == {"lat": 30.92, "lon": 113.91, "acc": 10, "battery": 80}
    assert isinstance(normalise("eldercare/v1/owntracks/watch7/phone", b'{"_type":"lwt"}', now=NOW), Ignored)


DEV = "eldercare/v1/dev/d1/telemetry"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (DEV, b"{not json", "bad_json"),
        (DEV, b"\xff\xfe\x00", "bad_json"),
        (DEV, b'{"values": {"hr": NaN}}', "nan"),
        (DEV, b'{"values": {"hr": Infinity}}', "nan"),
        (DEV, b'{"values": {"x": 1e400}}', "impossible_value"),
        (DEV, b'{"values": {"x": 123456789012345678901234567890}}', "impossible_value"),
        (DEV, b'{"values": {"hr": 900}}', "impossible_value"),
        (DEV, b'{"values": {"spo2": -3}}', "impossible_value"),
        (DEV, b'{"values": {"hr": "72"}}', "wrong_type"),
        (DEV, b'{"values": [72]}', "wrong_type"),
        (DEV, b"[1, 2]", "wrong_type"),
        (DEV, b'{"seq": "7", "values": {}}', "wrong_type"),
        (DEV, b'{"ts": "yesterday", "values": {}}', "wrong_type"),
        (DEV, b'{"values": {}, "device_id": 5}', "wrong_type"),
        (DEV, ("[" * 50 + "]" * 50).encode(), "too_deep"),
        (DEV, ("[" * 60_000).encode(), "too_deep"),
        (DEV, b'{"values": {"hr": 1}, "pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}', "too_large"),
        (DEV, json.dumps({"ts": NOW_MS + 3_600_000, "values": {"hr": 70}}).encode(), "future_timestamp"),
        (DEV, json.dumps({"ts": NOW_MS - 90 * 86_400_000, "values": {"hr": 70}}).encode(), "too_old"),
        ("eldercare/v1/dev/d1/event", b'{"type": "SOS!"}', "wrong_type"),
        (
            "eldercare/v1/dev/d1/event",
            b'{"type": "sos", "data": {"n": 99999999999999999999}}',
            "impossible_value",
        ),
        ("eldercare/v1/dev/d1/status", b'{"state": "maybe"}', "wrong_type"),
        ("eldercare/v1/dev/d1/whatever", b"{}", "unknown_topic"),
        ("eldercare/v1/dev/bad id/telemetry", b"{}", "unknown_topic"),
        ("other/topic", b"{}", "unknown_topic"),
        ("eldercare/v1/z2m/gw1/door", b'{"contact": "open"}', "wrong_type"),
        ("eldercare/v1/z2m/gw1/door", b'{"fall_down_status": "yes"}', "wrong_type"),
        ("eldercare/v1/z2m/gw1/door", b'{"linkquality": 999}', "impossible_value"),
        (
            "eldercare/v1/owntracks/w1/p",
            json.dumps({"_type": "location", "lat": 91, "lon": 0, "tst": NOW_MS // 1000}).encode(),
            "impossible_value",
        ),
        ("eldercare/v1/owntracks/w1/p", b'{"_type": "location", "lat": 1, "lon": 0}', "wrong_type"),
    ],
)
def test_rejections(topic: str, payload: bytes, reason: str) -> None:
    out = normalise(topic, payload, now=NOW)
    assert isinstance(out, Rejection), out
    assert out.reason == reason, out
    assert out.reason in REASONS


ACTIVE = DeviceInfo(id=1, uid="d1", serial="SN-1", status="active")


@pytest.mark.parametrize(
    ("message", "device", "reason"),
    [
        (Message(SourceRef("dev", "d1")), ACTIVE, None),
        (Message(SourceRef("dev", "d1")), None, "unknown_device"),
        (Message(SourceRef("dev", "d1")), DeviceInfo(1, "d1", "SN-1", "revoked"), "unknown_device"),
        (Message(SourceRef("dev", "d1"), claimed_id="d2"), ACTIVE, "topic_mismatch"),
        (Message(SourceRef("dev", "d1"), claimed_id="sn-1"), ACTIVE, None),
        (Message(SourceRef("z2m", "gw1", "x")), DeviceInfo(2, "z1", "S2", "active", "gw1"), None),
        (Message(SourceRef("z2m", "gw1", "x")), DeviceInfo(2, "z1", "S2", "active", "gw9"), "topic_mismatch"),
    ],
)
def test_check_device(message: Message, device: DeviceInfo | None, reason: str | None) -> None:
    out = check_device(message, device)
    assert (out.reason if out else None) == reason


def test_dedup_key_stable_for_retries() -> None:
    a = _ok(DEV, {"ts": NOW_MS, "seq": 1, "values": {"hr": 70}})
    b_raw = b'{"values":{"hr":70},"seq":1,"ts":' + str(NOW_MS).encode() + b"}"
    b = _ok(DEV, b_raw)
    assert dedup_key(DEV, b"x", a) == dedup_key(DEV, b_raw, b)
    c = _ok(DEV, {"ts": NOW_MS, "seq": 2, "values": {"hr": 70}})
    assert dedup_key(DEV, b"x", a) != dedup_key(DEV, b"x", c)
    z = _ok("eldercare/v1/z2m/g/x", {"battery": 1})
    assert dedup_key("eldercare/v1/z2m/g/x", b'{"battery":1}', z) != dedup_key(
        "eldercare/v1/z2m/g/x", b'{"battery":2}', z
    )


# The fast path for plain native telemetry must agree with the general path on everything it accepts,
# and hand everything else over (so that rejections keep their reasons).
FAST_CASES = [
    {"ts": NOW_MS - 1000, "seq": 7, "values": {"hr": 72, "spo2": 97.5}},
    {"values": {"hr": 60}},
    {"seq": 0, "values": {}},
    {"ts": NOW_MS, "values": {"temperature": -12.5, "x_custom": 1e11}, "extra": {"a": [1, 2]}},
    {"ts": float(NOW_MS) - 0.5, "values": {"battery": 100}},
    {"values": {"hr": True}},  # booleans: general path (0/1)
    {"values": {"hr": "72"}},
    {"values": {"hr": 900}},
    {"values": {"bad name!": 1}},
    {"values": {"x": 123456789012345678901234567890}},
    {"seq": -1, "values": {"hr": 70}},
    {"seq": 2**63, "values": {"hr": 70}},
    {"ts": NOW_MS + 3_600_000, "values": {"hr": 70}},
    {"ts": NOW_MS - 90 * 86_400_000, "values": {"hr": 70}},
    {"ts": True, "values": {"hr": 70}},
    {"ts": -5, "values": {"hr": 70}},
    {"device_id": "d1", "values": {"hr": 70}},
    {"device_id": "other", "values": {"hr": 70}},
    {"device": None, "device_id": None, "values": {"hr": 70}},
    {"values": {f"m{i}": i for i in range(501)}},
    {"values": {"hr": 70}, "deep": [[[[[[[[[[1]]]]]]]]]]},
    {"seq": 3},
    [1, 2],
]


@pytest.mark.parametrize("body", FAST_CASES)
def test_fast_telemetry_agrees_with_the_general_path(body: object) -> None:
    from iot_ingest.normalise import SourceRef as Src
    from iot_ingest.normalise import _decode, _fast_telemetry, _native_telemetry, _Reject

    payload = json.dumps(body).encode()
    src = Src("dev", "d1")
    age = dt.timedelta(days=30)
    fast = _fast_telemetry(src, payload, NOW, age)
    try:
        general: Message | str = _native_telemetry(src, _decode(payload), NOW, age)
    except _Reject as r:
        general = r.reason
    if fast is not None:
        assert fast == general
    out = normalise(DEV, payload, now=NOW)
    if isinstance(general, Message):
        assert out == general
    else:
        assert isinstance(out, Rejection)
        assert out.reason == general


def test_fast_telemetry_takes_the_common_shape() -> None:
    from iot_ingest.normalise import _fast_telemetry

    payload = json.dumps({"ts": NOW_MS, "seq": 9, "values": {"hr": 70, "spo2": 98}}).encode()
    fast = _fast_telemetry(SourceRef("dev", "d1"), payload, NOW, dt.timedelta(days=30))
    assert fast is not None
    assert fast.seq == 9
    assert _metrics(fast) == {"hr": 70.0, "spo2": 98.0}
