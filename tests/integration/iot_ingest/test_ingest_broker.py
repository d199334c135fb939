"""Our broker configuration (deploy/mosquitto) on a private Mosquitto: separate device and service
listeners, per-device ACL and revocation."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.ingest_faults import PrivateBroker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto binary not installed"),
]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """Mosquitto with the deploy configuration (ports and paths rewritten): device accounts devA and
    devB, the service account eldercare-ingest."""
    b = PrivateBroker(tmp_path)
    for name in ("devA", "devB"):
        asyncio.run(b.add_account(name))
    asyncio.run(b.add_account("eldercare-ingest", service=True))
    b.start()
    try:
        assert "max_queued_messages 2000000" in b.conf.read_text()
        yield b
    finally:
        b.stop()


class Conn:
    """A small synchronous MQTT 5 client for the test: connect result, received messages, PUBACK codes."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.connected = threading.Event()
        self.result: ReasonCode | None = None
        self.received: list[tuple[str, bytes]] = []
        self.pubacks: dict[int, ReasonCode] = {}
        self.disconnected = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, bytes(m.payload)))
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(mid, rc)
        self.client.on_disconnect = lambda *_a: self.disconnected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connected.wait(5)

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.result = rc
        self.connected.set()

    @property
    def ok(self) -> bool:
        return self.result is not None and not self.result.is_failure

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 5
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_device_cannot_publish_to_another_devices_topic(broker: PrivateBroker) -> None:
    port, accounts = broker.port, broker.passwords
    ingest = Conn(broker.service_port, "eldercare-ingest", accounts["eldercare-ingest"])
    device = Conn(port, "devA", accounts["devA"])
    anonymous = Conn(port, None, None)
    wrong = Conn(port, "devA", "not-the-password")
    device_on_service_listener = Conn(broker.service_port, "devA", accounts["devA"])
    ingest_on_device_listener = Conn(port, "eldercare-ingest", accounts["eldercare-ingest"])
    try:
        assert ingest.ok
        assert device.ok
        assert not anonymous.ok
        assert not wrong.ok
        # Each listener knows only its own accounts.
        assert not device_on_service_listener.ok
        assert not ingest_on_device_listener.ok
        ingest.client.subscribe("$share/ingest/eldercare/v1/#", qos=1)
        time.sleep(0.3)
        assert not device.publish("eldercare/v1/dev/devA/telemetry", b"own").is_failure
        denied = device.publish("eldercare/v1/dev/devB/telemetry", b"spoofed")
        device.publish("eldercare/v1/z2m/devB/x", b"spoofed-z2m")
        device.publish("eldercare/v1/owntracks/devB/w", b"spoofed-owntracks")
        time.sleep(0.5)
        assert ingest.received == [("eldercare/v1/dev/devA/telemetry", b"own")]
        assert denied.is_failure  # MQTT 5 PUBACK "Not authorized"
    finally:
        for c in (ingest, device, anonymous, wrong, device_on_service_listener, ingest_on_device_listener):
            c.close()


def test_revoked_device_is_locked_out(broker: PrivateBroker) -> None:
    port, files, accounts = broker.port, broker.files, broker.passwords
    online = Conn(port, "devB", accounts["devB"])
    assert online.ok
    asyncio.run(files.delete("devB"))
    assert files.reload()
    try:
        assert online.disconnected.wait(5), "the connected, revoked device is dropped on reload"
        again = Conn(port, "devB", accounts["devB"])
        assert not again.ok
        again.close()
    finally:
        online.close()
