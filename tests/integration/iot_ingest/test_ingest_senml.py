"""SenML (RFC 8428) through the real Mosquitto and ingest: packs land as the RFC reads them, and a
pack the RFC does not let us use lands in ``dead_letter`` with the rule that refused it.

Uses the broker, database and fixtures of tests/integration/iot_ingest/test_ingest.py.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import asyncpg
import pytest

from iot_ingest.consumer import IngestConsumer
from tests.integration.iot_ingest.test_ingest import (  # noqa: F401 - fixtures
    ingest,
    ingest_db,
    pg,
    publish,
    seed_home,
    wait_for,
)
from tests.support.rfc8428 import EX_6_CBOR

pytestmark = pytest.mark.integration


def _at(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


async def test_senml_packs_are_stored_as_resolved_and_bad_ones_dead_lettered(
    pg: asyncpg.Connection,  # noqa: F811
    ingest: IngestConsumer,  # noqa: F811
) -> None:
    home = await seed_home(pg)
    meter = home.uid("meter")
    device = home.ids[meter]
    topic = f"eldercare/v1/dev/{meter}/senml"
    urn = f"urn:dev:ow:{meter}"
    bt = float(int(time.time()) - 120)  # an absolute base time, two minutes ago
    packs: list[Any] = [
        # §5.1.2: base name, base time, base unit, version 5; times relative to the base time
        [
            {"bn": f"{urn}:", "bt": bt, "bu": "A", "bver": 5, "n": "voltage", "u": "V", "v": 120.1},
            {"n": "current", "t": -5, "v": 1.2},
            {"n": "current", "t": -4, "v": 1.3},
            {"n": "current", "v": 1.7},
        ],
        # §5.1.5: every kind of value, 30 s before the message was received (a relative time)
        [
            {"bn": f"{urn}:", "n": "temp", "u": "Cel", "v": 23.1, "t": -30},
            {"n": "label", "vs": "Machine Room", "t": -30},
            {"n": "open", "vb": False, "t": -30},
            {"n": "nfv-reader", "vd": "aGkgCg", "t": -30},
        ],
        # §5.1.3: a name naming only the device, the unit telling the measurement
        [{"bn": urn, "bt": bt, "bu": "%RH", "v": 20}, {"u": "%EL", "t": 30, "v": 98}, {"t": 60, "v": 20.3}],
        # a draft-era gateway: the object form, a sum, a string value as "sv"
        {
            "bn": f"{meter}:",
            "bt": bt,
            "e": [{"n": "energy", "u": "W", "v": 40, "s": 7200}, {"n": "fw", "sv": "1.2"}],
        },
    ]
    bad: list[tuple[bytes, str, str]] = [
        (json.dumps([{"bn": f"{urn}:", "n": "room temp", "v": 1}]).encode(), "senml", "RFC 8428 §4.5.1"),
        (json.dumps([{"bver": 11, "n": "a", "v": 1}]).encode(), "senml", "RFC 8428 §4.4: version 11"),
        (json.dumps([{"bn": f"{urn}:", "n": "a"}]).encode(), "senml", "RFC 8428 §4.2"),
        (json.dumps([{"n": "hr", "u": "Hz", "v": 1.2}]).encode(), "wrong_unit", "hr is kept in beat/min"),
        (
            json.dumps([{"n": "urn:dev:ow:someone-else:a", "v": 1}]).encode(),
            "topic_mismatch",
            "payload names",
        ),
        (EX_6_CBOR, "senml", "RFC 8428 §6"),
    ]
    sent_at = time.time()
    await publish([(topic, json.dumps(p).encode()) for p in packs] + [(topic, b) for b, _, _ in bad])
    received_by = time.time()

    expected = [
        ("voltage", 120.1, "V", _at(bt)),
        ("current", 1.2, "A", _at(bt - 5)),
        ("current", 1.3, "A", _at(bt - 4)),
        ("current", 1.7, "A", _at(bt)),
        ("humidity", 20.0, "%RH", _at(bt)),
        ("battery", 98.0, "%EL", _at(bt + 30)),
        ("humidity", 20.3, "%RH", _at(bt + 60)),
        ("energy", 40.0, "W", _at(bt)),
        ("energy#sum", 7200.0, "W", _at(bt)),
    ]
    count = "SELECT count(*) FROM telemetry WHERE device_id = $1"
    assert await wait_for(pg, count, device, expect=len(expected) + 1) == len(expected) + 1
    rows = await pg.fetch(
        "SELECT metric, value, unit, at FROM telemetry WHERE device_id = $1 ORDER BY metric, at", device
    )
    stored = [(r["metric"], r["value"], r["unit"], r["at"]) for r in rows]
    temp = [r for r in stored if r[0] == "temp"]
    assert sorted(r for r in stored if r[0] != "temp") == sorted(expected)
    # Relative to the receive time: 30 s before the ingest received the pack.
    assert len(temp) == 1
    assert temp[0][:3] == ("temp", 23.1, "Cel")
    assert _at(sent_at - 31) <= temp[0][3] <= _at(received_by - 29)

    events = await wait_for(
        pg, "SELECT count(*) FROM device_event WHERE device_id = $1 AND type = 'senml'", device, expect=4
    )
    assert events == 4
    data = [
        json.loads(r["data"])
        for r in await pg.fetch(
            "SELECT data FROM device_event WHERE device_id = $1 AND type = 'senml' ORDER BY data->>'n'",
            device,
        )
    ]
    assert data == [
        {"n": f"{meter}:fw", "metric": "fw", "vs": "1.2"},
        {"n": f"{urn}:label", "metric": "label", "vs": "Machine Room"},
        {"n": f"{urn}:nfv-reader", "metric": "nfv-reader", "vd": "aGkgCg"},
        {"n": f"{urn}:open", "metric": "open", "vb": False},
    ]

    dead = "SELECT count(*) FROM dead_letter WHERE topic = $1"
    assert await wait_for(pg, dead, topic, expect=len(bad)) == len(bad)
    letters = {
        bytes(r["payload"]): (r["reason"], r["detail"])
        for r in await pg.fetch("SELECT payload, reason, detail FROM dead_letter WHERE topic = $1", topic)
    }
    for payload, reason, detail in bad:
        assert letters[payload][0] == reason
        assert letters[payload][1].startswith(detail), letters[payload]
    assert ingest.stats.dead_letters >= len(bad)
