"""SenML (RFC 8428) in the ingest: every example of the RFC's §5 and §6, table-driven, then the rules.

Each RFC example (``tests/support/rfc8428.py``, as the RFC prints it) is either stored as the RFC's
resolved form reads it (names, times, units, values: checked on :func:`iot_ingest.senml.resolve` and
on the readings and events the normaliser makes of them), or refused with a reason whose detail
names the rule. The resolved form of §5.1.3 is checked against the RFC's own, §5.1.4.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from iot_ingest import senml
from iot_ingest.normalise import (
    REASONS,
    DeviceInfo,
    Message,
    Rejection,
    check_device,
    normalise,
)
from tests.support.rfc8428 import (
    BT_512,
    BT_516,
    BT_STREAM,
    EX_6_CBOR,
    EX_511_SINGLE,
    EX_512_CURRENT_SERIES,
    EX_512_MULTIPLE,
    EX_512_STREAM_AS_PRINTED,
    EX_512_STREAM_RECORDS,
    EX_513_MEASUREMENTS,
    EX_514_RESOLVED,
    EX_515_DATA_TYPES,
    EX_516_COLLECTION,
    EX_517_LIGHTS_OFF,
    EX_517_LIGHTS_ON,
    EX_517_THERMOSTAT,
    STREAM,
)

pytestmark = pytest.mark.unit

TOPIC = "eldercare/v1/dev/ow1/senml"
NOW = dt.datetime(2026, 11, 29, 8, 0, 0, tzinfo=dt.UTC)


def _at(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


def _now_s(at: dt.datetime) -> float:
    return at.timestamp()


@dataclass(frozen=True)
class Example:
    id: str
    payload: bytes
    now: dt.datetime
    # The RFC's resolved records (None: the text is no pack, there is nothing to resolve).
    resolved: list[senml.Record] | None
    # Stored: (metric, value, unit, t) per reading, (t, data) per event; the device named.
    readings: list[tuple[str, float, str | None, float]] = field(default_factory=list)
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    claimed: str | None = None
    # Refused: the reason and the start of its detail (the rule).
    rejected: tuple[str, str] | None = None


def _rec(n: str, t: float, u: str | None = None, **value: Any) -> senml.Record:
    return senml.Record(n, t, u, **value)


URN = "urn:dev:ow:10e2073a01080063"
URN_512 = "urn:dev:ow:10e2073a0108006"
T0 = _now_s(NOW)
NOW_512 = _at(BT_512 + 1)
NOW_513 = _at(1.320067644e09 + 60)
NOW_516 = _at(BT_516 + 1)


def _513_readings() -> list[tuple[str, float, str | None, float]]:
    metric = {"%RH": "humidity", "lon": "lon", "lat": "lat", "%EL": "battery"}
    return [(metric[r["u"]], r["v"], r["u"], r["t"]) for r in json.loads(EX_514_RESOLVED)]


EXAMPLES = [
    Example(
        "5.1.1 single data point",
        EX_511_SINGLE.encode(),
        NOW,
        [_rec(URN, T0, "Cel", v=23.1)],
        readings=[("temperature", 23.1, "Cel", T0)],
        claimed="10e2073a01080063",
    ),
    Example(
        "5.1.2 multiple data points",
        EX_512_MULTIPLE.encode(),
        NOW,
        [_rec(f"{URN}:voltage", T0, "V", v=120.1), _rec(f"{URN}:current", T0, "A", v=1.2)],
        readings=[("voltage", 120.1, "V", T0), ("current", 1.2, "A", T0)],
        claimed="10e2073a01080063",
    ),
    Example(
        "5.1.2 current at each second (bt, bu, bver 5)",
        EX_512_CURRENT_SERIES.encode(),
        NOW_512,
        [
            _rec(f"{URN_512}:voltage", BT_512, "V", v=120.1),
            *(
                _rec(f"{URN_512}:current", BT_512 + t, "A", v=v)
                for t, v in [(-5, 1.2), (-4, 1.3), (-3, 1.4), (-2, 1.5), (-1, 1.6)]
            ),
            _rec(f"{URN_512}:current", BT_512, "A", v=1.7),
        ],
        readings=[
            ("voltage", 120.1, "V", BT_512),
            *(("current", v, "A", BT_512 + t) for t, v in [(-5, 1.2), (-4, 1.3), (-3, 1.4), (-2, 1.5)]),
            ("current", 1.6, "A", BT_512 + -1),
            ("current", 1.7, "A", BT_512),
        ],
        claimed="10e2073a0108006",
    ),
    Example(
        "5.1.2 SensML stream as printed (it goes on: '...')",
        EX_512_STREAM_AS_PRINTED.encode(),
        _at(BT_STREAM + 100),
        None,
        rejected=("bad_json", ""),
    ),
    Example(
        "5.1.2 SensML stream, the records shown",
        EX_512_STREAM_RECORDS.encode(),
        _at(BT_STREAM + 100),
        [_rec(URN, BT_STREAM + t, "%RH", v=v) for t, v in STREAM],
        readings=[("humidity", v, "%RH", BT_STREAM + t) for t, v in STREAM],
        claimed="10e2073a01080063",
    ),
    Example(
        "5.1.3 multiple measurements (resolves to 5.1.4)",
        EX_513_MEASUREMENTS.encode(),
        NOW_513,
        [senml.Record(**r) for r in json.loads(EX_514_RESOLVED)],
        readings=_513_readings(),
        claimed="10e2073a01080063",
    ),
    Example(
        "5.1.4 resolved data (resolves to itself)",
        EX_514_RESOLVED.encode(),
        NOW_513,
        [senml.Record(**r) for r in json.loads(EX_514_RESOLVED)],
        readings=_513_readings(),
        claimed="10e2073a01080063",
    ),
    Example(
        "5.1.5 multiple data types",
        EX_515_DATA_TYPES.encode(),
        NOW,
        [
            _rec(f"{URN}:temp", T0, "Cel", v=23.1),
            _rec(f"{URN}:label", T0, vs="Machine Room"),
            _rec(f"{URN}:open", T0, vb=False),
            _rec(f"{URN}:nfv-reader", T0, vd="aGkgCg"),
        ],
        readings=[("temp", 23.1, "Cel", T0)],
        events=[
            (T0, {"n": f"{URN}:label", "metric": "label", "vs": "Machine Room"}),
            (T0, {"n": f"{URN}:open", "metric": "open", "vb": False}),
            (T0, {"n": f"{URN}:nfv-reader", "metric": "nfv-reader", "vd": "aGkgCg"}),
        ],
        claimed="10e2073a01080063",
    ),
    Example(
        "5.1.6 collection of resources (two devices)",
        EX_516_COLLECTION.encode(),
        NOW_516,
        [
            _rec("2001:db8::2/temperature", BT_516, "Cel", v=25.2),
            _rec("2001:db8::2/humidity", BT_516, "%RH", v=30),
            _rec("2001:db8::1/temperature", BT_516, "Cel", v=12.3),
            _rec("2001:db8::1/humidity", BT_516, "%RH", v=67),
        ],
        rejected=("topic_mismatch", "the pack names devices 2001:db8::1, 2001:db8::2 (a collection"),
    ),
    Example(
        "5.1.7 setting an actuator (a record of base fields only)",
        EX_517_THERMOSTAT.encode(),
        NOW,
        [
            _rec(f"{URN}:temp", T0, "Cel", v=23.1),
            _rec(f"{URN}:heat", T0, "/", v=1),
            _rec(f"{URN}:fan", T0, "/", v=0),
        ],
        readings=[("temp", 23.1, "Cel", T0), ("heat", 1, "/", T0), ("fan", 0, "/", T0)],
        claimed="10e2073a01080063",
    ),
    Example(
        "5.1.7 two lights on",
        EX_517_LIGHTS_ON.encode(),
        NOW_516,
        [_rec("2001:db8::3", BT_516, "/", v=1), _rec("2001:db8::4", BT_516, "/", v=1)],
        readings=[("2001:db8::3", 1, "/", BT_516), ("2001:db8::4", 1, "/", BT_516)],
    ),
    Example(
        "5.1.7 two lights dimmed, then off 100 ms later",
        EX_517_LIGHTS_OFF.encode(),
        NOW_516,
        [
            _rec("2001:db8::3", BT_516, "/", v=0.5),
            _rec("2001:db8::4", BT_516, "/", v=0.5),
            _rec("2001:db8::3", BT_516 + 0.1, "/", v=0),
            _rec("2001:db8::4", BT_516 + 0.1, "/", v=0),
        ],
        readings=[
            ("2001:db8::3", 0.5, "/", BT_516),
            ("2001:db8::4", 0.5, "/", BT_516),
            ("2001:db8::3", 0, "/", BT_516 + 0.1),
            ("2001:db8::4", 0, "/", BT_516 + 0.1),
        ],
    ),
    Example(
        "6 CBOR representation",
        EX_6_CBOR,
        NOW_512,
        None,
        rejected=("senml", "RFC 8428 §6: a CBOR pack"),
    ),
]


@pytest.mark.parametrize("ex", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_rfc_8428_examples(ex: Example) -> None:
    if ex.resolved is not None:
        assert senml.resolve(json.loads(ex.payload), now=ex.now) == ex.resolved
    out = normalise(TOPIC, ex.payload, now=ex.now)
    if ex.rejected is not None:
        assert isinstance(out, Rejection), out
        assert (out.reason, out.detail[: len(ex.rejected[1])]) == ex.rejected
        return
    assert isinstance(out, Message), out
    assert [(r.metric, r.value, r.unit, r.at) for r in out.readings] == [
        (m, v, u, _at(t)) for m, v, u, t in ex.readings
    ]
    assert [(e.type, e.at, e.data) for e in out.events] == [("senml", _at(t), d) for t, d in ex.events]
    assert out.claimed_id == ex.claimed
    # The device the pack names is the topic's (its uid or serial): the registry check lets it in.
    device = DeviceInfo(id=1, uid="ow1", serial=ex.claimed or "SN-1", status="active")
    assert check_device(out, device) is None


def test_the_cbor_example_is_the_rfc_dump() -> None:
    """The bytes transcribed above are the RFC's: 0xc3 bytes, an array of 7 maps, the base name inside."""
    assert len(EX_6_CBOR) == 0xC3
    assert EX_6_CBOR[0] == 0x87
    assert b"urn:dev:ow:10e2073a0108006:" in EX_6_CBOR
    assert senml.is_cbor_pack(EX_6_CBOR)
    assert not senml.is_cbor_pack(EX_512_MULTIPLE.encode())


def test_the_domain_example_is_stored() -> None:
    """DOMAIN §8's example, on the topic of the device it names."""
    payload = (
        b'[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},'
        b'{"n":"current","u":"A","v":1.2}]'
    )
    out = normalise("eldercare/v1/dev/10e2073a01080063/senml", payload, now=NOW)
    assert isinstance(out, Message)
    assert [(r.metric, r.value, r.unit) for r in out.readings] == [
        ("voltage", 120.1, "V"),
        ("current", 1.2, "A"),
    ]
    assert check_device(out, DeviceInfo(1, "10e2073a01080063", "SN", "active")) is None
    assert check_device(out, DeviceInfo(1, "other", "SN", "active")) == Rejection(
        "topic_mismatch", "payload names '10e2073a01080063'"
    )


# --- Resolution rules, one by one ------------------------------------------------------------------


def _resolve(pack: object, now: dt.datetime = NOW) -> list[senml.Record]:
    return senml.resolve(json.loads(json.dumps(pack)), now=now)


def _stored(pack: object, topic: str = TOPIC, now: dt.datetime = NOW) -> Message:
    out = normalise(topic, json.dumps(pack).encode(), now=now)
    assert isinstance(out, Message), out
    return out


ABS = T0 - 100  # an absolute time (>= 2**28): 100 s before NOW


@pytest.mark.parametrize(
    ("pack", "expected"),
    [
        # §4.5.1 base name + name, with every character a name may hold
        (
            [{"bn": "urn:dev:mac:0024befffe804ff1:", "n": "room-1/temp_2.avg:max", "v": 1}],
            [_rec("urn:dev:mac:0024befffe804ff1:room-1/temp_2.avg:max", T0, v=1)],
        ),
        # a name is optional when there is a base name; the base name carries forward, then changes
        (
            [{"bn": "a:", "v": 1}, {"n": "b", "v": 2}, {"bn": "c/", "n": "d", "v": 3}, {"v": 4}],
            [_rec("a:", T0, v=1), _rec("a:b", T0, v=2), _rec("c/d", T0, v=3), _rec("c/", T0, v=4)],
        ),
        # §4.5.3 time: bt + t; below 2**28 relative to now (negative = past), else since the epoch
        (
            [
                {"n": "x", "t": -30, "v": 1},
                {"n": "x", "t": ABS, "v": 2},
                {"bt": ABS, "n": "x", "t": -5, "v": 3},
            ],
            [_rec("x", T0 - 30, v=1), _rec("x", ABS, v=2), _rec("x", ABS - 5, v=3)],
        ),
        (
            [{"bt": -60, "n": "x", "v": 1}, {"n": "x", "t": 30, "v": 2}],
            [_rec("x", T0 - 60, v=1), _rec("x", T0 - 30, v=2)],
        ),
        # §4.5.2 the base unit where a record has none; a record's own unit wins
        (
            [{"bu": "A", "n": "i", "v": 1}, {"n": "u", "u": "V", "v": 2}, {"n": "i", "v": 3}],
            [_rec("i", T0, "A", v=1), _rec("u", T0, "V", v=2), _rec("i", T0, "A", v=3)],
        ),
        # §4.5.4 base value added to each value, base sum to each sum (and a sum of bs alone)
        (
            [{"bv": 100, "bs": 1000, "n": "e", "v": 5, "s": 7}, {"n": "e", "v": -1}, {"n": "e", "s": 1}],
            [_rec("e", T0, v=105, s=1007), _rec("e", T0, v=99, s=1000), _rec("e", T0, s=1001)],
        ),
        # value and sum in one record; a sum alone; ut kept
        (
            [{"n": "p", "u": "W", "v": 50, "s": 3600, "ut": 60}, {"n": "q", "u": "W", "s": 10}],
            [_rec("p", T0, "W", v=50, s=3600, ut=60), _rec("q", T0, "W", s=10)],
        ),
        # string, boolean and data values; bv does not touch them
        (
            [{"bv": 5, "n": "s", "vs": ""}, {"n": "b", "vb": True}, {"n": "d", "vd": "AQID_-8"}],
            [_rec("s", T0, vs=""), _rec("b", T0, vb=True), _rec("d", T0, vd="AQID_-8")],
        ),
        # §4.4 version 10 is the default, an older one is used, unknown fields are ignored
        (
            [{"bver": 10, "n": "a", "v": 1, "foo": "bar"}, {"bver": 10, "n": "b", "v": 2}],
            [_rec("a", T0, v=1), _rec("b", T0, v=2)],
        ),
        ([{"bver": 3, "n": "a", "v": 1}, {"n": "b", "v": 2}], [_rec("a", T0, v=1), _rec("b", T0, v=2)]),
    ],
)
def test_resolution(pack: list[dict[str, Any]], expected: list[senml.Record]) -> None:
    assert _resolve(pack) == expected


def test_draft_object_form_resolves_like_the_array() -> None:
    """The draft-era object (base fields on the object, ``e`` the entries, ``sv``/``bv`` string and
    boolean values, ``ver`` the version) gives the same records as the RFC's array."""
    draft = {
        "bn": "urn:dev:ow:10e2073a01080063:",
        "bt": ABS,
        "bu": "Cel",
        "ver": 2,
        "e": [
            {"n": "temp", "v": 23.1, "t": -10},
            {"n": "label", "sv": "Machine Room"},
            {"n": "open", "bv": False},
            {"n": "hum", "u": "%RH", "v": 40},
        ],
    }
    array = [
        {
            "bn": "urn:dev:ow:10e2073a01080063:",
            "bt": ABS,
            "bu": "Cel",
            "bver": 2,
            "n": "temp",
            "v": 23.1,
            "t": -10,
        },
        {"n": "label", "vs": "Machine Room"},
        {"n": "open", "vb": False},
        {"n": "hum", "u": "%RH", "v": 40},
    ]
    assert _resolve(draft) == _resolve(array)
    assert _resolve(draft)[0] == _rec(f"{URN}:temp", ABS - 10, "Cel", v=23.1)
    assert _stored(draft) == _stored(array)


def test_draft_object_form_without_bases() -> None:
    """An OMA LwM2M 1.0 style object: a base name on the object, string values as ``sv``."""
    m = _stored({"bn": "ow1/", "e": [{"n": "fw", "sv": "1.0"}, {"n": "bat", "v": 80}]})
    assert [(e.data["n"], e.data["vs"]) for e in m.events] == [("ow1/fw", "1.0")]
    assert [(r.metric, r.value) for r in m.readings] == [("bat", 80)]


REJECTED: list[tuple[str, object, str, str]] = [
    # (what, pack, reason, detail starts with)
    ("empty pack", [], "senml", "RFC 8428 §3"),
    ("not an array", {"bn": "x"}, "senml", "RFC 8428 §5: a pack is a JSON array"),
    ("a number", 5, "senml", "RFC 8428 §5"),
    ("a record not an object", [1], "senml", "RFC 8428 §5: record 0 must be a JSON object"),
    ("draft e not an array", {"e": {}}, "senml", "RFC 8428 §5: 'e'"),
    ("draft e empty", {"e": []}, "senml", "RFC 8428 §5: 'e'"),
    ("draft bv a number in an entry", {"e": [{"n": "x", "bv": 1}]}, "senml", "RFC 8428 §5: record 0: bv"),
    ("draft sv and vs", {"e": [{"n": "x", "sv": "a", "vs": "b"}]}, "senml", "RFC 8428 §4.2"),
    (
        "name starts with '/' (LwM2M path)",
        [{"bn": "/3303/0/", "n": "5700", "v": 1}],
        "senml",
        "RFC 8428 §4.5.1",
    ),
    ("name with a space", [{"n": "room temp", "v": 1}], "senml", "RFC 8428 §4.5.1"),
    ("name with '#'", [{"n": "a#b", "v": 1}], "senml", "RFC 8428 §4.5.1"),
    ("name starts with '-'", [{"bn": "-x", "v": 1}], "senml", "RFC 8428 §4.5.1"),
    ("no name at all", [{"v": 1}], "senml", "RFC 8428 §4.5.1: record 0 has no name"),
    ("no value, no sum", [{"n": "a"}], "senml", "RFC 8428 §4.2: record 0 has no value"),
    ("only a time", [{"bn": "a", "t": 5}], "senml", "RFC 8428 §4.2"),
    ("two values", [{"n": "a", "v": 1, "vs": "x"}], "senml", "RFC 8428 §4.2: record 0 has v, vs"),
    ("vb and vd", [{"n": "a", "vb": True, "vd": "AA"}], "senml", "RFC 8428 §4.2"),
    ("version above 10", [{"bver": 11, "n": "a", "v": 1}], "senml", "RFC 8428 §4.4: version 11"),
    (
        "version above 10 later",
        [{"n": "a", "v": 1}, {"bver": 12, "n": "b", "v": 1}],
        "senml",
        "RFC 8428 §4.4",
    ),
    (
        "versions differ",
        [{"bver": 5, "n": "a", "v": 1}, {"bver": 6, "n": "b", "v": 1}],
        "senml",
        "RFC 8428 §4.4",
    ),
    ("default then 5", [{"n": "a", "v": 1}, {"bver": 5, "n": "b", "v": 1}], "senml", "RFC 8428 §4.4"),
    ("version not an integer", [{"bver": 2.5, "n": "a", "v": 1}], "senml", "RFC 8428 §4.1"),
    ("version zero", [{"bver": 0, "n": "a", "v": 1}], "senml", "RFC 8428 §4.1"),
    ("version a string", [{"bver": "10", "n": "a", "v": 1}], "senml", "RFC 8428 §4.1"),
    ("must-understand field", [{"n": "a", "v": 1, "foo_": 1}], "senml", "RFC 8428 §4.4: record 0 has 'foo_'"),
    ("draft must-understand field", {"x_": 1, "e": [{"n": "a", "v": 1}]}, "senml", "RFC 8428 §4.4"),
    (
        "bn a number",
        [{"bn": 5, "n": "a", "v": 1}],
        "senml",
        "RFC 8428 §5: record 0: bn must be a JSON String",
    ),
    ("n a number", [{"n": 5, "v": 1}], "senml", "RFC 8428 §5: record 0: n"),
    ("u a number", [{"n": "a", "u": 1, "v": 1}], "senml", "RFC 8428 §5: record 0: u"),
    ("bu a list", [{"bu": [], "n": "a", "v": 1}], "senml", "RFC 8428 §5: record 0: bu"),
    ("v a string", [{"n": "a", "v": "1"}], "senml", "RFC 8428 §5: record 0: v must be a JSON Number"),
    ("v a boolean", [{"n": "a", "v": True}], "senml", "RFC 8428 §5: record 0: v"),
    ("t a string", [{"n": "a", "v": 1, "t": "now"}], "senml", "RFC 8428 §5: record 0: t"),
    ("bt a boolean", [{"bt": True, "n": "a", "v": 1}], "senml", "RFC 8428 §5: record 0: bt"),
    ("bv null", [{"bv": None, "n": "a", "v": 1}], "senml", "RFC 8428 §5: record 0: bv"),
    ("s a string", [{"n": "a", "s": "1"}], "senml", "RFC 8428 §5: record 0: s"),
    ("ut a string", [{"n": "a", "v": 1, "ut": "x"}], "senml", "RFC 8428 §5: record 0: ut"),
    ("vs a number", [{"n": "a", "vs": 1}], "senml", "RFC 8428 §5: record 0: vs"),
    ("vb a string", [{"n": "a", "vb": "true"}], "senml", "RFC 8428 §5: record 0: vb must be a JSON Boolean"),
    ("vd not base64url", [{"n": "a", "vd": "a+b/"}], "senml", "RFC 8428 §5: record 0: vd must be base64url"),
    ("vd padded", [{"n": "a", "vd": "aGk="}], "senml", "RFC 8428 §5: record 0: vd"),
    ("vd impossible length", [{"n": "a", "vd": "aGkgC"}], "senml", "RFC 8428 §5: record 0: vd"),
    # ours: the platform's own limits and checks
    ("a time in the future", [{"n": "a", "v": 1, "t": 600}], "future_timestamp", ""),
    ("actuation far ahead (t < 2**28)", [{"n": "a", "v": 1, "t": 2**27}], "future_timestamp", ""),
    ("a time long ago", [{"n": "a", "v": 1, "t": ABS - 90 * 86400}], "too_old", ""),
    ("a huge negative relative time", [{"n": "a", "v": 1, "t": -1e300}], "too_old", ""),
    ("a huge base time", [{"bt": 1e300, "n": "a", "v": 1}], "future_timestamp", ""),
    ("a value beyond any sensor", [{"n": "a", "v": 1e13}], "impossible_value", "a="),
    ("an integer beyond a double", [{"n": "a", "v": 10**400}], "impossible_value", ""),
    ("heart rate 900", [{"n": "hr", "u": "beat/min", "v": 900}], "impossible_value", "hr="),
    (
        "heart rate in Hz",
        [{"n": "hr", "u": "Hz", "v": 1.2}],
        "wrong_unit",
        "hr is kept in beat/min, not 'Hz'",
    ),
    (
        "SpO2 as SenML's '%' (a ratio)",
        [{"n": "spo2", "u": "%", "v": 97}],
        "wrong_unit",
        "spo2 is kept in a unit",
    ),
    ("battery as '/'", [{"n": "battery", "u": "/", "v": 0.5}], "wrong_unit", "battery is kept in %EL"),
    ("temperature in K", [{"n": "temperature", "u": "K", "v": 293}], "wrong_unit", "temperature"),
    ("a metric above 40 characters", [{"n": "m" * 41, "v": 1}], "too_large", "metric"),
    ("a sum metric above 40 characters", [{"n": "m" * 37, "s": 1}], "too_large", "metric"),
    ("a unit above 32 characters", [{"n": "a", "u": "u" * 33, "v": 1}], "too_large", "unit"),
    ("too many records", [{"n": "a", "v": 1}] * 501, "too_large", "501 records"),
    ("two devices", [{"n": "urn:dev:ow:1:a", "v": 1}, {"n": "urn:dev:ow:2:a", "v": 1}], "topic_mismatch", ""),
]


@pytest.mark.parametrize(("what", "pack", "reason", "detail"), REJECTED, ids=[r[0] for r in REJECTED])
def test_rejections(what: str, pack: object, reason: str, detail: str) -> None:
    out = normalise(TOPIC, json.dumps(pack).encode(), now=NOW)
    assert isinstance(out, Rejection), out
    assert out.reason in REASONS
    assert (out.reason, out.detail[: len(detail)]) == (reason, detail), out.detail


def test_truncated_json_and_cbor_are_named() -> None:
    out = normalise(TOPIC, b'[{"n":"a","v":1}', now=NOW)
    assert isinstance(out, Rejection)
    assert out.reason == "bad_json"
    out = normalise(TOPIC, b"\x81\xa2\x00\x61a\x02\x01", now=NOW)  # [{0: "a", 2: 1}] in CBOR
    assert isinstance(out, Rejection)
    assert out.reason == "senml"
    assert out.detail.startswith("RFC 8428 §6")


# --- From resolved records to readings and events -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "uid", "expected"),
    [
        ("urn:dev:ow:10e2073a01080063:temp", "ow1", ("10e2073a01080063", "temp")),
        ("urn:dev:ow:10e2073a01080063", "ow1", ("10e2073a01080063", "")),
        ("urn:dev:ow:10e2073a01080063:", "ow1", ("10e2073a01080063", "")),
        ("urn:dev:mac:0024befffe804ff1/heart/hr", "ow1", ("0024befffe804ff1", "heart/hr")),
        ("urn:dev:org:32473-foo:a:b", "ow1", ("32473-foo", "a:b")),
        ("urn:dev:ow", "ow1", (None, "urn:dev:ow")),
        ("2001:db8::2/temperature", "ow1", ("2001:db8::2", "temperature")),
        ("192.0.2.7/temp", "ow1", ("192.0.2.7", "temp")),
        ("2001:db8::3", "ow1", (None, "2001:db8::3")),
        ("ow1:hr", "ow1", (None, "hr")),
        ("OW1/hr", "ow1", (None, "hr")),
        ("ow1", "ow1", (None, "")),
        ("ow10", "ow1", (None, "ow10")),
        ("3303/0/5700", "ow1", (None, "3303/0/5700")),
        ("room.1/temp", "ow1", (None, "room.1/temp")),
        ("hr", "ow1", (None, "hr")),
        ("voltage:phase-1", "ow1", (None, "voltage:phase-1")),
    ],
)
def test_split_name(name: str, uid: str, expected: tuple[str | None, str]) -> None:
    assert senml.split_name(name, uid) == expected


def test_readings_carry_units_sums_and_the_rules_metrics() -> None:
    m = _stored(
        [
            {"bn": "ow1:", "n": "hr", "u": "beat/min", "v": 72},
            {"n": "spo2", "v": 97},
            {"n": "energy", "u": "W", "v": 40, "s": 7200},
            {"n": "voltage", "u": "V", "v": 230},
            {"n": "water", "u": "l", "s": 12},
            {"bn": "urn:dev:ow:ow1", "u": "beat/min", "v": 70},
            {"u": "lat", "v": 30.92},
            {"u": "lon", "v": 113.91},
            {"u": "A", "v": 2},
            {"v": 3},
        ]
    )
    assert [(r.metric, r.value, r.unit) for r in m.readings] == [
        ("hr", 72, "beat/min"),
        ("spo2", 97, None),
        ("energy", 40, "W"),
        ("energy#sum", 7200, "W"),
        ("voltage", 230, "V"),
        ("water#sum", 12, "l"),
        ("hr", 70, "beat/min"),
        ("lat", 30.92, "lat"),
        ("lon", 113.91, "lon"),
        ("A", 2, "A"),
        ("value", 3, None),
    ]
    assert m.claimed_id == "ow1"


def test_string_boolean_and_data_values_are_events_holding_the_resolved_record() -> None:
    m = _stored(
        [
            {"bn": "urn:dev:ow:ow1:", "bt": ABS, "n": "door", "vb": True, "t": -2},
            {"n": "fw", "vs": "1.2.3", "ut": 3600},
            {"n": "blob", "u": "count", "vd": "AQID", "s": 3},
        ]
    )
    assert [(e.type, e.at, e.data) for e in m.events] == [
        ("senml", _at(ABS - 2), {"n": "urn:dev:ow:ow1:door", "metric": "door", "vb": True}),
        ("senml", _at(ABS), {"n": "urn:dev:ow:ow1:fw", "metric": "fw", "vs": "1.2.3", "ut": 3600}),
        ("senml", _at(ABS), {"n": "urn:dev:ow:ow1:blob", "metric": "blob", "vd": "AQID", "u": "count"}),
    ]
    assert [(r.metric, r.value, r.unit) for r in m.readings] == [("blob#sum", 3, "count")]


def test_relative_times_are_taken_from_the_receive_time() -> None:
    received = NOW + dt.timedelta(microseconds=123_457)
    m = _stored(
        [{"n": "hr", "v": 70, "t": -30}, {"n": "hr", "v": 71, "t": -0.5}, {"n": "hr", "v": 72}], now=received
    )
    assert [r.at for r in m.readings] == [
        received - dt.timedelta(seconds=30),
        received - dt.timedelta(seconds=0.5),
        received,
    ]
    assert m.claimed_id is None


# --- Malformed input never crashes the normaliser ---------------------------------------------------

_ODD_VALUES: list[object] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**28,
    -(2**60),
    10**30,
    "",
    "x",
    "urn:dev:",
    [],
    {},
    [1],
    {"a": 1},
]


def _mutations() -> list[bytes]:
    """Every field of every RFC example set to each odd value, and each field dropped."""
    out: list[bytes] = []
    for text in (
        EX_512_CURRENT_SERIES,
        EX_513_MEASUREMENTS,
        EX_515_DATA_TYPES,
        EX_516_COLLECTION,
        EX_517_THERMOSTAT,
    ):
        pack = json.loads(text)
        for i, rec in enumerate(pack):
            for label in [*rec, "bver", "ut", "s", "vd", "x_"]:
                for value in [*_ODD_VALUES, "drop"]:
                    copy = [dict(r) for r in pack]
                    if value == "drop":
                        copy[i].pop(label, None)
                    else:
                        copy[i][label] = value
                    out.append(json.dumps(copy).encode())
        out.append(json.dumps({"e": pack, "bn": 1}).encode())
    return out


def test_malformed_packs_are_rejected_with_a_known_reason_never_raised() -> None:
    outcomes = {"stored": 0, "rejected": 0}
    for payload in itertools.chain(_mutations(), [b"", b"[", b"null", b"[[]]", b"[{}]", b'{"e":[{}]}']):
        out = normalise(TOPIC, payload, now=NOW)  # raises nothing
        if isinstance(out, Rejection):
            assert out.reason in REASONS, out
            outcomes["rejected"] += 1
        else:
            assert isinstance(out, Message)
            outcomes["stored"] += 1
    assert outcomes["rejected"] > 500
    assert outcomes["stored"] > 100
