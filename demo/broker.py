"""Finding an MQTT broker, or starting one: the ``mosquitto`` binary with our config, else ``amqtt``.

``amqtt`` (pure Python, in our process) is good enough for a demo, but it has no MQTT 5 and no shared
subscriptions, and it queues nothing for anonymous sessions. So every broker we start ourselves
requires a user name and password, generated once per checkout in ``.eldercare/mqtt_password``, and
the URL we hand to the platform's clients carries them (``mqtt://eldercare:…@127.0.0.1:PORT``).
A Mosquitto we start runs the deploy config's two listeners (services, devices), so the demo's
simulator gets a URL of its own (:attr:`BrokerChoice.devices_url`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import pwd
import secrets
import shutil
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlsplit

import structlog

from core.settings import PROJECT_ROOT
from demo.net import free_port
from demo.supervisor import die_with_parent

log = structlog.get_logger()

LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 1883
MQTT_USER = "eldercare"
CONNACK_ACCEPTED = 0
CONNACK_NOT_AUTHORIZED = 5

BrokerOrigin = Literal["environment", "local", "mosquitto", "amqtt"]
EmbeddedKind = Literal["auto", "mosquitto", "amqtt"]


class BrokerUnavailable(RuntimeError):
    """No usable MQTT broker could be found or started; the message says what was tried."""


# --- a minimal MQTT 3.1.1 handshake, to tell a broker from any other listener -----------------------


def _utf8(value: str) -> bytes:
    data = value.encode()
    return struct.pack("!H", len(data)) + data


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(
    client_id: str, username: str | None, password: str | None, keepalive_s: int = 10
) -> bytes:
    """An MQTT 3.1.1 CONNECT packet with a clean session."""
    flags = 0x02
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    variable = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive_s)
    body = variable + payload
    return bytes([0x10]) + _remaining_length(len(body)) + body


async def mqtt_connack(
    host: str, port: int, *, username: str | None = None, password: str | None = None, timeout_s: float = 2.0
) -> int | None:
    """Connect, read CONNACK, disconnect. Returns the CONNACK return code (0 = accepted, 5 = not
    authorised), or ``None`` when nothing MQTT-like answers within ``timeout_s`` seconds."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(connect_packet(f"eldercare-probe-{secrets.token_hex(4)}", username, password))
        await writer.drain()
        ack = await asyncio.wait_for(reader.readexactly(4), timeout_s)
        if ack[0] != 0x20 or ack[1] != 0x02:
            return None
        if ack[3] == CONNACK_ACCEPTED:
            writer.write(b"\xe0\x00")  # DISCONNECT
            await writer.drain()
        return ack[3]
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def split_mqtt_url(url: str) -> tuple[str, int, str | None, str | None]:
    """``mqtt://user:password@host:port`` → host, port, user, password (port defaults to 1883)."""
    parts = urlsplit(url)
    if parts.scheme not in {"mqtt", "tcp"} or not parts.hostname:
        raise BrokerUnavailable(f"Not an MQTT URL (expected mqtt://host:port): {url!r}")
    return parts.hostname, parts.port or LOCAL_PORT, parts.username, parts.password


def mqtt_url(host: str, port: int, username: str | None = None, password: str | None = None) -> str:
    auth = ""
    if username is not None:
        auth = quote(username, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        auth += "@"
    return f"mqtt://{auth}{host}:{port}"


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``, for printing."""
    host, port, user, password = split_mqtt_url(url)
    if user is None:
        return mqtt_url(host, port)
    return f"mqtt://{quote(user, safe='')}{':***' if password is not None else ''}@{host}:{port}"


def demo_password(state_dir: Path) -> str:
    """The broker password for this checkout, created on first use (file mode 0600)."""
    path = state_dir / "mqtt_password"
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    path.write_text(password)
    path.chmod(0o600)
    return password


# --- brokers we start ------------------------------------------------------------------------------


class EmbeddedBroker(Protocol):
    port: int

    async def stop(self) -> None: ...


def mosquitto_password_line(username: str, password: str, *, iterations: int = 101) -> str:
    """A Mosquitto 2 password-file line (``$7$`` = PBKDF2-SHA512, as ``mosquitto_passwd`` writes)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    encode = base64.b64encode
    return f"{username}:$7${iterations}${encode(salt).decode()}${encode(digest).decode()}\n"


# The deploy config (deploy/mosquitto/mosquitto.conf) has two listeners. Devices and gateways connect
# to DEVICE_PORT, where ``use_username_as_clientid`` makes every client id the account's username, so
# a device can never present another client's id. The platform's services (the ingest workers, which
# need client ids of their own: several workers and sessions share one account) connect to
# SERVICE_PORT, which has its own password file: device accounts do not exist there.
DEVICE_PORT = 1883
SERVICE_PORT = 1884
# Where the deploy config keeps its password and ACL files; local brokers take them from their workdir.
DEPLOY_FILES_DIR = "/etc/mosquitto/eldercare/"
DEVICE_PASSWORD_FILE = "passwd"  # noqa: S105 - file names
SERVICE_PASSWORD_FILE = "service-passwd"  # noqa: S105
# The demo's account on the device listener: the simulator publishes for every simulated device.
DEMO_DEVICES_USER = "eldercare-simulator"
DEPLOY_CONFIG = PROJECT_ROOT / "deploy" / "mosquitto" / "mosquitto.conf"

# Directives of the deploy config that say where the broker's own files go: a local broker puts
# them in its workdir.
_LOCAL_OVERRIDES = frozenset({"pid_file", "user", "persistence_location", "log_dest", "include_dir"})


def local_mosquitto_config(
    base: str,
    *,
    workdir: Path,
    ports: Mapping[int, int],
    run_as: str | None = None,
    log_dest: str = "stderr",
    drop: Collection[str] = (),
    extra: Sequence[str] = (),
) -> str:
    """The deploy config ``base`` made runnable from ``workdir`` on loopback: each ``listener PORT``
    becomes ``listener ports[PORT] 127.0.0.1`` (every listener must be in ``ports``), files under
    ``/etc/mosquitto/eldercare/`` are taken from ``workdir``, and the pid file, persistence and log go
    there too. ``run_as``: the ``user`` to run as (None: Mosquitto's default, ``mosquitto`` when
    started as root). Directives in ``drop`` are left out; ``extra`` lines are added as global
    settings. Everything else (per-listener security, queue sizes, in-flight window, session
    expiry) is kept, so the local broker behaves like the deployed one."""
    out = [
        f"pid_file {workdir / 'mosquitto.pid'}",
        f"persistence_location {workdir}/",
        f"log_dest {log_dest}",
        *([f"user {run_as}"] if run_as else []),
        *extra,
    ]
    for raw in base.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key in _LOCAL_OVERRIDES or key in drop:
            continue
        if key == "listener":
            deployed = int(value.split()[0])
            if deployed not in ports:
                raise ValueError(f"no local port given for the deploy config's listener {deployed}")
            out.append(f"listener {ports[deployed]} {LOCAL_HOST}")
            continue
        value = value.strip()
        if value.startswith(DEPLOY_FILES_DIR):
            value = str(workdir / value.removeprefix(DEPLOY_FILES_DIR))
        out.append(f"{key} {value}")
    return "\n".join(out) + "\n"


@dataclass
class MosquittoBroker:
    """The ``mosquitto`` binary with the deploy config (:func:`local_mosquitto_config`) on two free
    loopback ports, config, files and log in ``workdir``. The device listener (``device_port``) takes
    ``devices_user``, the service listener (``port``) ``username``, both with ``password``. The demo
    runs without the ACL: its simulator publishes for every simulated device under one account."""

    binary: str
    workdir: Path
    username: str
    password: str
    base_config: Path = DEPLOY_CONFIG
    devices_user: str = DEMO_DEVICES_USER
    port: int = 0
    device_port: int = 0
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)

    async def start(self, *, timeout_s: float = 10.0) -> None:
        if not self.base_config.exists():
            raise BrokerUnavailable(f"the broker config {self.base_config} is missing")
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(LOCAL_HOST)
        self.device_port = free_port(LOCAL_HOST)
        password_files = {
            self.workdir / SERVICE_PASSWORD_FILE: self.username,
            self.workdir / DEVICE_PASSWORD_FILE: self.devices_user,
        }
        for path, user in password_files.items():
            path.write_text(mosquitto_password_line(user, self.password))
            path.chmod(0o600)
        if os.geteuid() == 0:
            # Started as root, mosquitto switches to its own user before reading the password files
            # and writing its persistence file.
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam("mosquitto")
                for path in (self.workdir, *password_files):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
        config = self.workdir / "mosquitto.conf"
        header = (
            "# Generated by `eldercare demo`; edits are overwritten.\n"
            f"# {self.base_config}, except where it listens and keeps its files; no ACL.\n"
        )
        config.write_text(
            header
            + local_mosquitto_config(
                self.base_config.read_text(),
                workdir=self.workdir,
                ports={DEVICE_PORT: self.device_port, SERVICE_PORT: self.port},
                drop={"acl_file"},
            )
        )
        with (self.workdir / "mosquitto.log").open("ab") as logfile:
            self.process = await asyncio.create_subprocess_exec(
                self.binary,
                "-c",
                str(config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logfile,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            if self.process.returncode is not None:
                break
            code = await mqtt_connack(LOCAL_HOST, self.port, username=self.username, password=self.password)
            if code == CONNACK_ACCEPTED:
                log.info(
                    "platform.mosquitto_started",
                    port=self.port,
                    device_port=self.device_port,
                    pid=self.process.pid,
                )
                return
            await asyncio.sleep(0.1)
        await self.stop()
        tail = (self.workdir / "mosquitto.log").read_text(errors="replace")[-1500:]
        raise BrokerUnavailable(f"mosquitto did not accept connections on port {self.port}:\n{tail}")

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 5.0)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        log.info("platform.mosquitto_stopped", port=self.port)


@dataclass
class AmqttBroker:
    """The pure-Python ``amqtt`` broker, run inside this process's event loop."""

    workdir: Path
    username: str
    password: str
    port: int = 0
    _broker: Any = field(default=None, repr=False)

    async def start(self) -> None:
        from amqtt.broker import Broker  # imported here: it is heavy and only the fallback needs it
        from argon2 import PasswordHasher

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.workdir.mkdir(parents=True, exist_ok=True)
        password_file = self.workdir / "passwords"
        password_file.write_text(f"{self.username}:{PasswordHasher().hash(self.password)}\n")
        password_file.chmod(0o600)
        self.port = free_port(LOCAL_HOST)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{LOCAL_HOST}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(password_file)},
            },
        }
        self._broker = Broker(config)
        await self._broker.start()
        log.info("platform.amqtt_started", port=self.port)

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
            log.info("platform.amqtt_stopped", port=self.port)


# --- discovery -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerChoice:
    """The broker the platform will use, and how it was found.

    ``url`` is for the platform's services (the ingest); ``device_url``, when the broker has a
    listener of its own for devices, is for device clients (the simulator), else they use ``url``.
    """

    url: str
    origin: BrokerOrigin
    embedded: EmbeddedBroker | None = None
    device_url: str | None = None

    @property
    def devices_url(self) -> str:
        return self.device_url or self.url

    @property
    def description(self) -> str:
        where = {
            "environment": "from ELDERCARE_MQTT_URL",
            "local": f"local broker on {LOCAL_HOST}:{LOCAL_PORT}",
            "mosquitto": "mosquitto started by eldercare",
            "amqtt": "embedded amqtt broker (MQTT 3.1.1 only, no shared subscriptions)",
        }[self.origin]
        devices = f", devices {redact(self.device_url)}" if self.device_url else ""
        return f"{redact(self.url)}{devices} ({where})"


async def find_broker(
    *,
    env: Mapping[str, str],
    state_dir: Path,
    force_embedded: bool = False,
    embedded: EmbeddedKind = "auto",
    local_port: int = LOCAL_PORT,
    mosquitto_base: Path = DEPLOY_CONFIG,
) -> BrokerChoice:
    """ELDERCARE_MQTT_URL if set (it must accept a connection; devices use ELDERCARE_DEVICE_MQTT_URL
    if set); else a broker on 127.0.0.1:``local_port`` that accepts an anonymous connection; else
    ``mosquitto`` (if on PATH) with the deploy config ``mosquitto_base`` made local under
    ``state_dir/mosquitto`` (see :class:`MosquittoBroker`); else ``amqtt`` in this process.
    ``force_embedded`` skips the first two; ``embedded`` picks the fallback.

    amqtt has no ``use_username_as_clientid``: any of its accounts could take another client's
    session. The demo runs neither the ingest nor the simulator on it (they need MQTT 5)."""
    if not force_embedded:
        configured = env.get("ELDERCARE_MQTT_URL")
        if configured:
            host, port, user, password = split_mqtt_url(configured)
            code = await mqtt_connack(host, port, username=user, password=password)
            if code != CONNACK_ACCEPTED:
                reason = "no MQTT broker answers" if code is None else f"CONNACK return code {code}"
                raise BrokerUnavailable(f"ELDERCARE_MQTT_URL={redact(configured)}: {reason}")
            return BrokerChoice(configured, "environment", device_url=env.get("ELDERCARE_DEVICE_MQTT_URL"))
        if await mqtt_connack(LOCAL_HOST, local_port) == CONNACK_ACCEPTED:
            return BrokerChoice(mqtt_url(LOCAL_HOST, local_port), "local")
    password = demo_password(state_dir)
    binary = shutil.which("mosquitto")
    if embedded == "mosquitto" and binary is None:
        raise BrokerUnavailable("`mosquitto` is not installed (Debian/Ubuntu package: mosquitto).")
    if binary is not None and embedded != "amqtt":
        mosquitto = MosquittoBroker(binary, state_dir / "mosquitto", MQTT_USER, password, mosquitto_base)
        await mosquitto.start()
        return BrokerChoice(
            mqtt_url(LOCAL_HOST, mosquitto.port, MQTT_USER, password),
            "mosquitto",
            mosquitto,
            device_url=mqtt_url(LOCAL_HOST, mosquitto.device_port, mosquitto.devices_user, password),
        )
    amqtt = AmqttBroker(state_dir / "amqtt", MQTT_USER, password)
    await amqtt.start()
    return BrokerChoice(mqtt_url(LOCAL_HOST, amqtt.port, MQTT_USER, password), "amqtt", amqtt)
