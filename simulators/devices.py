"""Device simulator: realistic native, Zigbee2MQTT, SenML and OwnTracks traffic with injected incidents.

``eldercare simulate devices --homes N --rate R`` (wired by the CLI to :func:`main`) publishes for a
number of simulated homes; every incident injected (SOS, fall, leak, vitals excursion, wandering) is
written to a ground-truth JSON-lines log so tests and the benchmark can check what the platform did.

The simulator depends only on the wire formats (DOMAIN §8): of our packages it imports
:mod:`iot_ingest.wire` and nothing else (an import-linter contract in ``pyproject.toml`` holds it to that).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from iot_ingest import wire

XIAOGAN = (30.9246, 113.9169)  # 孝感 city centre


# --- Message builders ------------------------------------------------------------------------------


def native_telemetry(uid: str, *, seq: int, ts_ms: int, values: dict[str, float]) -> tuple[str, bytes]:
    body = wire.NativeTelemetry(ts=ts_ms, seq=seq, values=values)
    return wire.device_topic(uid, "telemetry"), wire.encode(body)


def native_event(
    uid: str, *, seq: int, ts_ms: int, type: str, data: dict[str, Any] | None = None
) -> tuple[str, bytes]:
    body = wire.NativeEvent(ts=ts_ms, seq=seq, type=type, data=data or {})
    return wire.device_topic(uid, "event"), wire.encode(body)


def native_status(uid: str, state: Literal["online", "offline"]) -> tuple[str, bytes]:
    return wire.device_topic(uid, "status"), wire.encode(wire.NativeStatus(state))


def z2m_state(gateway: str, friendly_name: str, state: dict[str, Any]) -> tuple[str, bytes]:
    return wire.z2m_topic(gateway, friendly_name), json.dumps(state).encode()


def z2m_availability(
    gateway: str, friendly_name: str, state: Literal["online", "offline"]
) -> tuple[str, bytes]:
    return wire.z2m_topic(gateway, friendly_name, availability=True), wire.encode(wire.NativeStatus(state))


def senml(uid: str, records: list[dict[str, Any]]) -> tuple[str, bytes]:
    return wire.device_topic(uid, "senml"), json.dumps(records).encode()


def owntracks(
    uid: str, *, lat: float, lon: float, tst: int, acc: float = 10, batt: int = 80, device: str = "watch"
) -> tuple[str, bytes]:
    body = {"_type": "location", "lat": lat, "lon": lon, "tst": tst, "acc": acc, "batt": batt}
    return wire.owntracks_topic(uid, device), json.dumps(body).encode()


# --- Publishing ------------------------------------------------------------------------------------


def mqtt_target(url: str) -> tuple[str, int, str | None, str | None]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883, parts.username, parts.password


@dataclass
class PublishResult:
    sent: int = 0
    acked: int = 0
    seconds: float = 0.0
    failed: int = 0  # refused by the broker (e.g. an ACL denial reported with an MQTT 5 reason code)


def publish(
    messages: Iterable[tuple[str, bytes]],
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    username: str | None = None,
    password: str | None = None,
    qos: int = 1,
    client_id: str = "",
    window: int = 1000,
    timeout_s: float = 60.0,
) -> PublishResult:
    """Publish and wait until the broker acknowledged every QoS 1 message (PUBACK).

    At most ``window`` messages are unacknowledged at any time. The condition lock is never held
    while calling into paho, whose network thread holds its own locks when it runs ``on_publish``.
    """
    result = PublishResult()
    done = threading.Condition()

    def on_publish(_c: mqtt.Client, _ud: object, _mid: int, rc: ReasonCode, _p: object) -> None:
        with done:
            if rc.is_failure:
                result.failed += 1
            else:
                result.acked += 1
            done.notify_all()

    def outstanding() -> int:
        return result.sent - result.acked - result.failed

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    if username:
        client.username_pw_set(username, password)
    client.on_publish = on_publish
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    started = time.monotonic()
    try:
        for topic, payload in messages:
            with done:
                if not done.wait_for(lambda: outstanding() < window, timeout=timeout_s):
                    raise TimeoutError("broker stopped acknowledging")
                result.sent += 1
            client.publish(topic, payload, qos=qos)
        with done:
            done.wait_for(lambda: outstanding() <= 0, timeout=timeout_s)
        if qos == 0:
            result.acked = result.sent
    finally:
        result.seconds = time.monotonic() - started
        client.disconnect()
        client.loop_stop()
    return result


class RawPublisher:
    """A lean MQTT 5 QoS 1 publisher over a plain socket, for floods (benchmarks, load tests).

    paho spends tens of microseconds per message in Python; this encodes PUBLISH packets directly,
    writes them in chunks, and reads PUBACKs, keeping at most ``window`` messages unacknowledged.
    Every packet id is tracked until its PUBACK arrives, so ``acked`` counts exactly what the broker
    accepted; a PUBACK with a failure reason code (MQTT 5, e.g. an ACL denial) counts as ``failed``.
    Not thread-safe: one publisher per thread or process.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
        window: int = 10_000,
        timeout_s: float = 60.0,
    ) -> None:
        self.result = PublishResult()
        self._timeout_s = timeout_s
        self._inflight = bytearray(65536)  # 1 = packet id awaiting its PUBACK
        self._next_mid = 0
        self._buf = bytearray()
        self._started = time.monotonic()
        self._sock = socket.create_connection((host, port), timeout=timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
        body = b"\x00\x04MQTT\x05" + bytes([flags]) + struct.pack("!H", 60) + b"\x00" + _mqtt_str(client_id)
        if username:
            body += _mqtt_str(username)
        if password:
            body += _mqtt_str(password)
        self._sock.sendall(b"\x10" + _varint(len(body)) + body)
        cmd, pkt = self._read_packet()
        if cmd != 0x20 or len(pkt) < 2 or pkt[1] >= 0x80:
            raise ConnectionError(f"broker refused the connection: {pkt[1:2].hex()}")
        self.window = min(window, _receive_maximum(pkt[2:]) or 65535, 65000)

    def _read_packet(self) -> tuple[int, bytes]:
        """Block until one whole packet is buffered; return (first byte, variable part)."""
        while True:
            parsed = _split_packet(self._buf)
            if parsed is not None:
                cmd, start, end = parsed
                pkt = bytes(self._buf[start:end])
                del self._buf[:end]
                return cmd, pkt
            self._recv(block=True)

    def _recv(self, *, block: bool) -> None:
        self._sock.settimeout(self._timeout_s if block else 0.0)
        try:
            data = self._sock.recv(1 << 18)
        except BlockingIOError:
            return
        except TimeoutError as e:
            raise TimeoutError("broker stopped acknowledging") from e
        if not data:
            raise ConnectionError("broker closed the connection")
        self._buf += data

    def _drain_acks(self, *, block: bool) -> None:
        self._recv(block=block)
        buf, res, inflight = self._buf, self.result, self._inflight
        pos = 0
        while True:
            parsed = _split_packet(buf, pos)
            if parsed is None:
                break
            cmd, start, end = parsed
            if cmd == 0x40:
                mid = (buf[start] << 8) | buf[start + 1]
                if not inflight[mid]:
                    raise ConnectionError(f"PUBACK for a packet id not in flight: {mid}")
                inflight[mid] = 0
                if end - start > 2 and buf[start + 2] >= 0x80:
                    res.failed += 1
                else:
                    res.acked += 1
            elif cmd == 0xE0:
                raise ConnectionError(f"broker disconnected us: {bytes(buf[start:end]).hex()}")
            pos = end
        del buf[:pos]

    def outstanding(self) -> int:
        return self.result.sent - self.result.acked - self.result.failed

    def send(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish these at QoS 1 in one write (after waiting for room in the window)."""
        if len(messages) > self.window:
            for i in range(0, len(messages), self.window):
                self.send(messages[i : i + self.window])
            return
        while self.outstanding() + len(messages) > self.window:
            self._drain_acks(block=True)
        inflight, mid = self._inflight, self._next_mid
        parts: list[bytes] = []
        pack = struct.pack
        for topic, payload in messages:
            mid = mid % 65535 + 1
            if inflight[mid]:
                raise RuntimeError("packet id still in flight")  # window < 65535 makes this impossible
            inflight[mid] = 1
            t = topic.encode()
            n = len(t) + len(payload) + 5
            parts.append(b"\x32" + _varint(n) + pack("!H", len(t)) + t + pack("!HB", mid, 0) + payload)
        self._next_mid = mid
        self._sock.settimeout(self._timeout_s)
        self._sock.sendall(b"".join(parts))
        self.result.sent += len(messages)
        self._drain_acks(block=False)

    def close(self) -> PublishResult:
        """Wait for every outstanding PUBACK, disconnect, and return the counts."""
        try:
            while self.outstanding() > 0:
                self._drain_acks(block=True)
            self._sock.sendall(b"\xe0\x00")
        finally:
            self._sock.close()
            self.result.seconds = time.monotonic() - self._started
        return self.result


def _mqtt_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _split_packet(buf: bytearray, pos: int = 0) -> tuple[int, int, int] | None:
    """(command byte, start, end) of the whole packet at ``pos`` in ``buf``, or None if incomplete."""
    if len(buf) - pos < 2:
        return None
    length, mult, i = 0, 1, pos + 1
    while True:
        if i >= len(buf):
            return None
        b = buf[i]
        length += (b & 0x7F) * mult
        mult <<= 7
        i += 1
        if not b & 0x80:
            break
    if len(buf) < i + length:
        return None
    return buf[pos], i, i + length


_PROP_SIZES = {0x01: 1, 0x02: 4, 0x11: 4, 0x13: 2, 0x17: 1, 0x19: 1, 0x21: 2, 0x22: 2, 0x23: 2}
_PROP_SIZES |= {0x24: 1, 0x25: 1, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1}


def _receive_maximum(props: bytes) -> int | None:
    """The Receive Maximum a broker sets in CONNACK properties (``props`` starts at their length)."""
    if not props:
        return None
    length, mult, i = 0, 1, 0
    while True:
        b = props[i]
        length += (b & 0x7F) * mult
        mult <<= 7
        i += 1
        if not b & 0x80:
            break
    end = i + length
    while i < end:
        pid = props[i]
        i += 1
        if pid == 0x21:
            return int(struct.unpack_from("!H", props, i)[0])
        if pid in _PROP_SIZES:
            i += _PROP_SIZES[pid]
        elif pid == 0x26:  # user property: two strings
            i += 2 + struct.unpack_from("!H", props, i)[0]
            i += 2 + struct.unpack_from("!H", props, i)[0]
        else:  # strings and binary data: two-byte length prefix
            i += 2 + struct.unpack_from("!H", props, i)[0]
    return None


# --- Simulated homes -------------------------------------------------------------------------------


@dataclass
class Home:
    """One simulated home: a vitals band (native), a Zigbee gateway with sensors, a SenML meter, a watch.

    Homes made by :meth:`make` use invented ids (for tests and benchmarks, which register them);
    :meth:`from_spec` takes the ids of devices that exist in a database (the demo's seeded homes),
    where a home may lack a band, meter or watch and its Zigbee names differ."""

    index: int
    band: str | None
    gateway: str
    meter: str | None
    watch: str | None
    lat: float
    lon: float
    seq: int = 0
    motion_name: str = "hall_motion"
    leak_name: str = "bath_leak"
    fall_name: str = "bed_radar"
    fall_device: str | None = None  # a native fall sensor, used instead of the Zigbee radar

    @classmethod
    def make(cls, index: int, prefix: str, rng: random.Random) -> Home:
        return cls(
            index,
            band=f"{prefix}band{index}",
            gateway=f"{prefix}gw{index}",
            meter=f"{prefix}meter{index}",
            watch=f"{prefix}watch{index}",
            lat=XIAOGAN[0] + rng.uniform(-0.05, 0.05),
            lon=XIAOGAN[1] + rng.uniform(-0.05, 0.05),
        )

    @classmethod
    def from_spec(cls, index: int, spec: dict[str, Any]) -> Home:
        """A home from a JSON object: ``gateway`` (uid), ``motion``/``leak`` (Zigbee friendly names),
        ``band``/``watch``/``fall`` (native device uids or null), ``lat``, ``lon``."""
        return cls(
            index,
            band=spec.get("band"),
            gateway=str(spec["gateway"]),
            meter=None,
            watch=spec.get("watch"),
            lat=float(spec["lat"]),
            lon=float(spec["lon"]),
            motion_name=str(spec.get("motion") or "motion"),
            leak_name=str(spec.get("leak") or "water_leak"),
            fall_device=spec.get("fall"),
        )

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


def home_messages(home: Home, now_s: float, rng: random.Random) -> list[tuple[str, bytes]]:
    """One round of ordinary traffic from a home."""
    ts_ms = int(now_s * 1000)
    out: list[tuple[str, bytes]] = []
    if home.band:
        out.append(
            native_telemetry(
                home.band,
                seq=home.next_seq(),
                ts_ms=ts_ms,
                values={
                    "hr": rng.randint(58, 95),
                    "spo2": rng.randint(94, 99),
                    "battery": rng.randint(40, 100),
                },
            )
        )
    out += [
        z2m_state(
            home.gateway,
            home.motion_name,
            {
                "occupancy": rng.random() < 0.2,
                "battery": rng.randint(50, 100),
                "linkquality": rng.randint(20, 200),
            },
        ),
        z2m_state(
            home.gateway,
            home.leak_name,
            {"water_leak": False, "battery_low": False, "battery": 91, "voltage": 3005, "linkquality": 87},
        ),
    ]
    if home.meter:
        out.append(
            senml(
                home.meter,
                [{"bn": f"urn:dev:ow:{home.meter}:", "n": "voltage", "u": "V", "v": 220.0 + rng.random()}],
            )
        )
    if home.watch:
        out.append(
            owntracks(
                home.watch, lat=home.lat, lon=home.lon, tst=int(now_s), acc=10, batt=rng.randint(30, 100)
            )
        )
    return out


INCIDENTS = ("sos", "fall", "water_leak", "hr_high", "wandering")


def incident_messages(home: Home, kind: str, now_s: float) -> list[tuple[str, bytes]]:
    """The messages of one injected incident; ``[]`` when the home lacks the device for it."""
    ts_ms = int(now_s * 1000)
    if kind == "sos":
        if home.band is None:
            return [z2m_state(home.gateway, "sos_button", {"action": "emergency", "battery": 90})]
        return [
            native_event(home.band, seq=home.next_seq(), ts_ms=ts_ms, type="sos", data={"sim_ts_ms": ts_ms})
        ]
    if kind == "fall":
        if home.fall_device is not None:
            return [native_event(home.fall_device, seq=home.next_seq(), ts_ms=ts_ms, type="fall")]
        return [z2m_state(home.gateway, home.fall_name, {"presence": True, "fall_down_status": "fall"})]
    if kind == "water_leak":
        return [
            z2m_state(home.gateway, home.leak_name, {"water_leak": True, "battery": 90, "linkquality": 80})
        ]
    if kind == "hr_high":
        if home.band is None:
            return []
        return [
            native_telemetry(home.band, seq=home.next_seq(), ts_ms=ts_ms + i * 60_000, values={"hr": 150})
            for i in range(3)
        ]
    if kind == "wandering":
        if home.watch is None:
            return []
        return [owntracks(home.watch, lat=home.lat + 0.05, lon=home.lon, tst=int(now_s))]
    raise ValueError(kind)


def simulate(
    *,
    homes: int,
    rate: float,
    duration_s: float,
    mqtt_url: str,
    truth_log: Path | None,
    prefix: str = "sim",
    incident_every: int = 200,
    seed: int = 1,
    home_specs: Sequence[dict[str, Any]] = (),
) -> PublishResult:
    """Publish about ``rate`` messages per second for ``duration_s`` from ``homes`` homes (or from the
    homes described by ``home_specs``, when given)."""
    rng = random.Random(seed)
    if home_specs:
        fleet = [Home.from_spec(i, spec) for i, spec in enumerate(home_specs)]
    else:
        fleet = [Home.make(i, prefix, rng) for i in range(homes)]
    host, port, user, password = mqtt_target(mqtt_url)
    truth = truth_log.open("a") if truth_log else None

    def stream() -> Iterator[tuple[str, bytes]]:
        started = time.time()
        sent = 0
        rounds = 0
        while time.time() - started < duration_s:
            for home in fleet:
                now_s = time.time()
                batch = home_messages(home, now_s, rng)
                rounds += 1
                if rounds % incident_every == 0:
                    kind = rng.choice(INCIDENTS)
                    batch += incident_messages(home, kind, now_s)
                    if truth:
                        truth.write(json.dumps({"at": now_s, "home": home.index, "incident": kind}) + "\n")
                for m in batch:
                    yield m
                    sent += 1
                ahead = sent / rate - (time.time() - started)
                if ahead > 0:
                    time.sleep(ahead)
                if time.time() - started >= duration_s:
                    return

    try:
        return publish(stream(), host=host, port=port, username=user, password=password)
    finally:
        if truth:
            truth.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eldercare simulate devices")
    parser.add_argument("--homes", type=int, default=100)
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument(
        "--mqtt-url",
        default=os.environ.get("ELDERCARE_DEVICE_MQTT_URL")
        or os.environ.get("ELDERCARE_MQTT_URL", "mqtt://127.0.0.1:1883"),
        help="broker URL of the device listener (default: ELDERCARE_DEVICE_MQTT_URL, else ELDERCARE_MQTT_URL,"
        " so a password need not appear in the process list)",
    )
    parser.add_argument("--truth-log", type=Path, default=None)
    parser.add_argument("--prefix", default="sim")
    parser.add_argument(
        "--homes-file",
        type=Path,
        default=None,
        help="JSON list of homes with the uids of existing devices (see Home.from_spec); overrides --homes",
    )
    args = parser.parse_args(argv)
    specs = json.loads(args.homes_file.read_text()) if args.homes_file else []
    res = simulate(
        homes=args.homes,
        rate=args.rate,
        duration_s=args.duration,
        mqtt_url=args.mqtt_url,
        truth_log=args.truth_log,
        prefix=args.prefix,
        home_specs=specs,
    )
    print(json.dumps({"sent": res.sent, "acked": res.acked, "seconds": round(res.seconds, 2)}))
    return 0 if res.acked == res.sent else 1


if __name__ == "__main__":
    raise SystemExit(main())
