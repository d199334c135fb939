"""Our broker configuration (deploy/mosquitto) on a private Mosquitto: per-device ACL and revocation."""

from __future__ import annotations

import asyncio
import getpass
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from iot_ingest.provisioning import BrokerFiles, new_password

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto binary not installed"),
]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
OVERRIDDEN = ("pid_file", "user", "persistence_location", "listener", "password_file", "acl_file", "log_dest")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, BrokerFiles, dict[str, str]]]:
    """Mosquitto with deploy/mosquitto.conf (paths and port rewritten) and deploy/acl as is."""
    port = _free_port()
    files = BrokerFiles(password_file=tmp_path / "passwd", pid_file=tmp_path / "mosquitto.pid")
    accounts = {name: new_password() for name in ("devA", "devB", "eldercare-ingest")}
    for name, password in accounts.items():
        asyncio.run(files.set_password(name, password))
    kept = [
        line
        for line in (DEPLOY / "mosquitto.conf").read_text().splitlines()
        if not line.strip().startswith(OVERRIDDEN)
    ]
    kept += [
        f"pid_file {tmp_path / 'mosquitto.pid'}",
        f"user {getpass.getuser()}",
        f"persistence_location {tmp_path}/",
        f"listener {port} 127.0.0.1",
        f"password_file {files.password_file}",
        f"acl_file {DEPLOY / 'acl'}",
        f"log_dest file {tmp_path / 'mosquitto.log'}",
    ]
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("\n".join(kept) + "\n")
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        ["mosquitto", "-c", str(conf)],  # noqa: S607 - found on PATH, see skipif
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        assert "max_queued_messages 2000000" in conf.read_text()
        yield port, files, accounts
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Conn:
    """A small synchronous MQTT 5 client for the test: connect result, received messages, PUBACK codes."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.connected = threading.Event()
        self.result: mqtt.ReasonCode | None = None
        self.received: list[tuple[str, bytes]] = []
        self.pubacks: dict[int, mqtt.ReasonCode] = {}
        self.disconnected = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload))
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(mid, rc)
        self.client.on_disconnect = lambda *_a: self.disconnected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connected.wait(5)

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object) -> None:
        self.result = rc
        self.connected.set()

    @property
    def ok(self) -> bool:
        return self.result is not None and not self.result.is_failure

    def publish(self, topic: str, payload: bytes) -> mqtt.ReasonCode:
        info = self.client.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 5
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_device_cannot_publish_to_another_devices_topic(
    broker: tuple[int, BrokerFiles, dict[str, str]],
) -> None:
    port, _files, accounts = broker
    ingest = Conn(port, "eldercare-ingest", accounts["eldercare-ingest"])
    device = Conn(port, "devA", accounts["devA"])
    anonymous = Conn(port, None, None)
    wrong = Conn(port, "devA", "not-the-password")
    try:
        assert ingest.ok
        assert device.ok
        assert not anonymous.ok
        assert not wrong.ok
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
        for c in (ingest, device, anonymous, wrong):
            c.close()


def test_revoked_device_is_locked_out(broker: tuple[int, BrokerFiles, dict[str, str]]) -> None:
    port, files, accounts = broker
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
