"""Pieces for the ingest fault tests: a private Mosquitto, a cuttable PostgreSQL proxy, ingest
worker processes and a publisher that retries until the broker acknowledged every message."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from demo.broker import (
    DEPLOY_CONFIG,
    DEVICE_PASSWORD_FILE,
    DEVICE_PORT,
    SERVICE_PASSWORD_FILE,
    SERVICE_PORT,
    local_mosquitto_config,
)
from iot_ingest.provisioning import BrokerFiles, new_password

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = DEPLOY_CONFIG.parent


# MQTT 5 PUBACK reason: accepted, but nobody subscribed (not a failure code).
NO_MATCHING_SUBSCRIBERS = 0x10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, *, up: bool, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            is_up = True
        except OSError:
            is_up = False
        if is_up == up:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} did not become {'reachable' if up else 'free'}")


# A test-only service account that may read the broker's $SYS statistics (published every second).
MONITOR_USER = "t-monitor"
_MONITOR_ACL = f"\nuser {MONITOR_USER}\ntopic read $SYS/#\n"


class PrivateBroker:
    """Mosquitto with deploy/mosquitto.conf, acl and service-acl (ports and paths rewritten by
    :func:`local_mosquitto_config`), persistence in ``workdir``: the device listener on ``port``, the
    service listener on ``service_port``. It can be stopped and started again on the same ports with
    the same persistence. Test additions: ``sys_interval 1`` and the ``MONITOR_USER`` ACL entry."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.service_port = free_port()
        self.files = BrokerFiles(
            password_file=workdir / DEVICE_PASSWORD_FILE, pid_file=workdir / "mosquitto.pid"
        )
        self.service_files = BrokerFiles(password_file=workdir / SERVICE_PASSWORD_FILE)
        self.passwords: dict[str, str] = {}
        self._ports: dict[str, int] = {}
        for acl in ("acl", "service-acl"):
            (workdir / acl).write_text(
                (DEPLOY / acl).read_text() + (_MONITOR_ACL if acl == "service-acl" else "")
            )
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            local_mosquitto_config(
                (DEPLOY / "mosquitto.conf").read_text(),
                workdir=workdir,
                ports={DEVICE_PORT: self.port, SERVICE_PORT: self.service_port},
                run_as=getpass.getuser(),
                log_dest=f"file {workdir / 'mosquitto.log'}",
                extra=["sys_interval 1"],
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    async def add_account(self, username: str, *, service: bool = False) -> str:
        """Create a device account, or with ``service`` one on the service listener (before
        :meth:`start`, or followed by a restart or :meth:`BrokerFiles.reload`); returns its password."""
        password = new_password()
        await (self.service_files if service else self.files).set_password(username, password)
        self.passwords[username] = password
        self._ports[username] = self.service_port if service else self.port
        return password

    def port_of(self, username: str) -> int:
        """The port of the listener that has this account."""
        return self._ports[username]

    def url(self, username: str) -> str:
        return f"mqtt://{username}:{self.passwords[username]}@127.0.0.1:{self.port_of(username)}"

    def start(self) -> None:
        assert self.proc is None
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            ["mosquitto", "-c", str(self.conf)],  # noqa: S607 - found on PATH (the tests skip without it)
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, up=True)
        _wait_port(self.service_port, up=True)

    def stop(self) -> None:
        """SIGTERM: Mosquitto writes its persistence file and exits."""
        if self.proc is None:
            return
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.proc = None
        _wait_port(self.port, up=False)


class BrokerStats:
    """Follows one numeric $SYS topic of a broker (e.g. ``$SYS/broker/store/messages/count``)."""

    def __init__(self, port: int, password: str, topic: str) -> None:
        self.values: list[tuple[float, int]] = []  # (time.monotonic(), value)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(MONITOR_USER, password)
        self.client.on_message = lambda _c, _u, m: self.values.append((time.monotonic(), int(m.payload)))
        self.client.on_connect = lambda c, *_a: c.subscribe(topic)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def latest_since(self, since: float) -> int | None:
        """The newest value published after ``since`` (a ``time.monotonic()`` reading)."""
        fresh = [v for t, v in list(self.values) if t > since]
        return fresh[-1] if fresh else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class PgProxy:
    """A TCP forwarder to PostgreSQL whose listener and open connections can be cut and restored.

    Cutting closes the listening socket (new connections are refused) and aborts every forwarded
    connection in both directions, which is what a client sees when the database host vanishes.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            self._pipes.discard(writer)
            writer.transport.abort()


def spawn_ingest(
    *, database_url: str, mqtt_url: str, client_id: str, subscription: str, log: Path
) -> subprocess.Popen[bytes]:
    """One ``python -m iot_ingest`` worker with a persistent session (expiry 300 s)."""
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "iot_ingest",
                "--database-url",
                database_url,
                "--mqtt-url",
                mqtt_url,
                "--client-id",
                client_id,
                "--subscription",
                subscription,
                "--session-expiry",
                "300",
                "--batch-max-ms",
                "100",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_ingest(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (graceful: in-hand messages are written and acknowledged), SIGKILL if it hangs for
    20 s; returns the exit status (0 after a graceful stop)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class PublishReport:
    acked: int = 0  # messages the broker acknowledged (each counted once)
    sends: int = 0  # PUBLISH packets sent, retries included
    connections: int = 0
    unmatched: int = 0  # PUBACKs "no matching subscribers" (0x10), each sent again later
    seconds: float = 0.0


class _Attempt:
    """One connection of :func:`publish_with_retry`: packet ids in flight and PUBACKs received."""

    def __init__(self, acked: list[bool], report: PublishReport, window: int, retry_unmatched: bool) -> None:
        self.acked, self.report, self.window = acked, report, window
        self.retry_unmatched = retry_unmatched
        self.lock = threading.Condition()
        self.inflight: dict[int, int] = {}  # packet id -> message index
        self.early: dict[int, ReasonCode] = {}  # PUBACKs that beat the bookkeeping of their send
        self.refused: list[ReasonCode] = []
        self.connected = threading.Event()
        self.lost = threading.Event()

    def _settle(self, index: int, rc: ReasonCode) -> None:
        if rc.is_failure:
            self.refused.append(rc)
        elif rc.value == NO_MATCHING_SUBSCRIBERS and self.retry_unmatched:
            self.report.unmatched += 1
        elif not self.acked[index]:
            self.acked[index] = True
            self.report.acked += 1

    def on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        with self.lock:
            index = self.inflight.pop(mid, None)
            if index is None:
                self.early[mid] = rc
            else:
                self._settle(index, rc)
            self.lock.notify_all()

    def on_disconnect(self, *_a: object) -> None:
        self.lost.set()
        with self.lock:
            self.lock.notify_all()

    def sent(self, mid: int, index: int) -> None:
        """Record a send (never while paho runs: its thread holds its own locks in on_publish)."""
        with self.lock:
            rc = self.early.pop(mid, None)
            if rc is None:
                self.inflight[mid] = index
            else:
                self._settle(index, rc)
        if self.refused:
            raise AssertionError(f"broker refused a message: {self.refused[0]}")

    def wait_room(self) -> bool:
        """Wait until fewer than ``window`` messages are in flight; False if the connection is gone."""
        with self.lock:
            self.lock.wait_for(lambda: len(self.inflight) < self.window or self.lost.is_set(), timeout=5)
            return not self.lost.is_set() and len(self.inflight) < self.window

    def wait_drained(self) -> None:
        with self.lock:
            self.lock.wait_for(lambda: not self.inflight or self.lost.is_set(), timeout=5)
        if self.refused:
            raise AssertionError(f"broker refused a message: {self.refused[0]}")


def publish_with_retry(
    messages: Sequence[tuple[str, bytes]],
    *,
    port: int,
    username: str,
    password: str,
    window: int = 100,
    rate: float | None = None,
    timeout_s: float = 60.0,
    retry_unmatched: bool = False,
) -> PublishReport:
    """Publish at QoS 1 until the broker acknowledged every message, like a device that retries.

    ``rate`` (messages/s) paces the first sends. When the connection drops, a new client connects
    (retrying every 0.2 s) and sends again every message not yet acknowledged, so the broker may get
    some twice. A PUBACK with a failure reason raises: it would never succeed on retry. With
    ``retry_unmatched``, a message the broker had no subscriber for (MQTT 5 PUBACK reason 0x10) is
    sent again too.
    """
    n = len(messages)
    acked = [False] * n
    report = PublishReport()
    started = time.monotonic()
    deadline = started + timeout_s
    next_at = started
    first_sent = 0
    while report.acked < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"broker acknowledged {report.acked} of {n} messages")
        attempt = _Attempt(acked, report, window, retry_unmatched)
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
        )
        client.username_pw_set(username, password)
        client.on_publish = attempt.on_publish
        client.on_connect = lambda *_a, ev=attempt.connected: ev.set()
        client.on_disconnect = attempt.on_disconnect
        client.max_inflight_messages_set(window)
        client.max_queued_messages_set(0)
        try:
            client.connect("127.0.0.1", port, keepalive=5)
        except OSError:
            time.sleep(0.2)
            continue
        report.connections += 1
        client.loop_start()
        try:
            if not attempt.connected.wait(5):
                continue
            for index in [i for i in range(n) if not acked[i]]:
                if rate is not None and index >= first_sent:
                    next_at = max(next_at + 1 / rate, time.monotonic() - 0.5)
                    pause = next_at - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                if not attempt.wait_room():
                    break
                topic, payload = messages[index]
                info = client.publish(topic, payload, qos=1)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
                report.sends += 1
                first_sent = max(first_sent, index + 1)
                attempt.sent(info.mid, index)
            attempt.wait_drained()
        finally:
            with contextlib.suppress(Exception):
                client.disconnect()
            client.loop_stop()
        if report.acked < n:
            time.sleep(0.2)
    report.seconds = time.monotonic() - started
    return report
