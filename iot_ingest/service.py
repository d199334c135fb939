"""The ingest service: MQTT 5 shared subscription → normalise → rules → PostgreSQL, ack after commit.

Everything runs on one thread, in one asyncio loop: paho is driven as an external event loop
(``add_reader``/``add_writer`` on its socket, ``loop_misc`` on a timer, reconnects by
:meth:`IngestService._keep_connected`), so no network thread competes with the router and the
writers for the GIL. Flow per message: a read of the socket appends it to an inbox and wakes the
router, which normalises it (pure), looks the device up in an in-memory cache, runs the alarm
rules, and routes it:

- plain telemetry goes to the batch writer (COPY, flushed at ``batch_max_msgs`` or ``batch_max_ms``);
- events, availability changes and anything that raised an alarm go to the priority writer, which has
  its own connection and never waits behind a telemetry batch. Event and status topics also reach
  the service through a second MQTT session (``…-prio``, see :func:`priority_filters`), so that an
  SOS does not queue in the broker behind a telemetry backlog either; the router takes that
  session's messages first, and the copy that arrives through the main session is acknowledged as
  a duplicate;
- rejected input goes to ``dead_letter`` (with the batch writer) and the service carries on.

QoS 1 messages are acknowledged (paho ``manual_ack``) only after the transaction holding their rows
commits. The session is persistent (clean start off, session expiry set) so messages published while
the service is down are queued by the broker; duplicates from redelivery are dropped by
``ingest_dedup`` inside the same transaction that stores the rows. If the connection to the broker
drops, packet ids of messages not yet acknowledged are void: the broker redelivers them, so acks
from an older connection are discarded (they would acknowledge someone else's packet id).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import functools
import json
import os
import re
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.platform.broker import INGEST_CLIENT_ID_PREFIX
from core.settings import Settings
from iot_ingest import storage
from iot_ingest.normalise import (
    TOPIC_ROOT,
    DeviceInfo,
    Ignored,
    Message,
    Rejection,
    check_device,
    dedup_key,
    normalise,
    raw_key,
)
from iot_ingest.rules import (
    AlarmCandidate,
    AlarmThresholds,
    DeviceContext,
    VitalsTrack,
    alarms_for_event,
    alarms_for_readings,
    geofence_alarm,
    vitals_step,
)

log = structlog.get_logger("iot_ingest")

SUBSCRIPTION = "$share/ingest/eldercare/v1/#"
_DB_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)
# The transaction was rolled back and may simply be run again (the connection is fine).
_TRANSIENT = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """Tuning of the consumer. Times in seconds unless the name says ms."""

    # The broker keys persistent sessions on it; the priority session adds "-prio". It must start
    # with INGEST_CLIENT_ID_PREFIX, which no device account can present (deploy/mosquitto/README.md).
    client_id: str = field(default_factory=lambda: f"{INGEST_CLIENT_ID_PREFIX}-{os.getpid()}")
    subscription: str = SUBSCRIPTION
    # A second session, subscribed only to event and status topics, so that an SOS never queues
    # in the broker behind a telemetry backlog. Its filters are derived from ``subscription``.
    priority_session: bool = True
    session_expiry_s: int = 7 * 24 * 3600
    # QoS 1 messages the broker may have in flight to us (MQTT 5 caps it at 65535). Acks wait for
    # the commit, so this must cover several batches or it, not the database, caps throughput.
    receive_maximum: int = 65_535
    keepalive_s: int = 30
    batch_max_msgs: int = 5_000
    batch_max_ms: int = 200
    priority_max_msgs: int = 500
    touch_interval_s: float = 2.0
    # A device's stored last-seen time is moved on only when it has advanced this much (or the device
    # changed availability meanwhile): offline limits are minutes (mains) and hours (battery), and
    # rewriting 10,000 device rows every few seconds cost the database more than the telemetry did.
    touch_min_advance_s: float = 30.0
    cache_refresh_s: float = 60.0
    max_age: dt.timedelta = dt.timedelta(days=30)
    retry_backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.client_id.startswith(INGEST_CLIENT_ID_PREFIX):
            raise ValueError(
                f"the ingest's client id {self.client_id!r} must start with {INGEST_CLIENT_ID_PREFIX!r},"
                " so that no device account can take over its session"
            )


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    info: DeviceInfo
    ctx: DeviceContext
    safe_zone: dict[str, Any] | None


@dataclass(slots=True)
class _Raw:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: dt.datetime
    session: int = 0  # 0: the main session, 1: the priority session


@dataclass(slots=True)
class _Item:
    raw: _Raw
    device: DeviceRecord | None = None
    message: Message | None = None
    key: int = 0
    alarms: list[AlarmCandidate] = field(default_factory=list)
    dead: tuple[str, str] | None = None


@dataclass
class IngestStats:
    received: int = 0
    telemetry_msgs: int = 0
    priority_msgs: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    alarms_new: int = 0
    alarms_repeat: int = 0
    db_errors: int = 0


_DEVICE_QUERY = """
    SELECT d.id, d.uid, d.serial, d.status, g.uid AS gateway_uid, d.friendly_name, d.elder_id, d.kind,
           d.power, coalesce(e.has_dementia, false) AS has_dementia, m.safe_zone
    FROM device d
    LEFT JOIN gateway g ON g.id = d.gateway_id
    LEFT JOIN elder e ON e.id = d.elder_id
    LEFT JOIN elder_monitoring m ON m.elder_id = d.elder_id
"""


def _record(row: asyncpg.Record) -> DeviceRecord:
    zone = row["safe_zone"]
    if isinstance(zone, str):
        zone = json.loads(zone)
    info = DeviceInfo(row["id"], row["uid"], row["serial"], row["status"], row["gateway_uid"])
    ctx = DeviceContext(row["id"], row["elder_id"], row["kind"], row["power"], row["has_dementia"])
    return DeviceRecord(info, ctx, zone)


class DeviceCache:
    """Devices by uid and by (gateway uid, friendly name); misses are looked up once and remembered."""

    def __init__(self) -> None:
        self.by_uid: dict[str, DeviceRecord] = {}
        self.by_z2m: dict[tuple[str, str], DeviceRecord] = {}
        self._misses: dict[tuple[str, str, str | None], float] = {}

    def _add(self, row: asyncpg.Record) -> DeviceRecord:
        rec = _record(row)
        self.by_uid[rec.info.uid] = rec
        if row["gateway_uid"] and row["friendly_name"]:
            self.by_z2m[(row["gateway_uid"], row["friendly_name"])] = rec
        return rec

    async def load(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(_DEVICE_QUERY)
        self.by_uid.clear()
        self.by_z2m.clear()
        self._misses.clear()
        for row in rows:
            self._add(row)

    def peek(self, message: Message) -> DeviceRecord | None:
        src = message.source
        if src.scheme == "z2m":
            if src.friendly_name is None:
                return None
            return self.by_z2m.get((src.uid, src.friendly_name))
        return self.by_uid.get(src.uid)

    async def get(self, conn: asyncpg.Connection, message: Message) -> DeviceRecord | None:
        found = self.peek(message)
        if found is not None:
            return found
        src = message.source
        miss_key = (src.scheme, src.uid, src.friendly_name)
        if time.monotonic() - self._misses.get(miss_key, -1e9) < 30.0:
            return None
        if src.scheme == "z2m":
            row = await conn.fetchrow(
                _DEVICE_QUERY + " WHERE g.uid = $1 AND d.friendly_name = $2", src.uid, src.friendly_name
            )
        else:
            row = await conn.fetchrow(_DEVICE_QUERY + " WHERE d.uid = $1", src.uid)
        if row is None:
            self._misses[miss_key] = time.monotonic()
            return None
        return self._add(row)


_RECV_BYTES = 64 * 1024
_ROUTER_SLICE_S = 0.001
_REMEMBER_KEYS = 100_000  # longest the router runs before letting the writers in
_PUBACK_HEAD = b"\x40\x02"


class _IngestClient(mqtt.Client):
    """paho's MQTT 5 client with the consumer's hot path made lean.

    Stock paho reads each packet with three ``recv`` calls (type, length, body) and returns to
    ``select`` after every packet, then builds an ``MQTTMessage`` with its ``Properties``: tens of
    microseconds per message. Here one ``recv`` fetches up to 256 KiB and every complete packet in
    it is handled at once; a QoS 1 PUBLISH is decoded in place and handed to ``on_raw(topic,
    payload, mid, qos, received_at)``. Every other packet (CONNACK, SUBACK, pings, DISCONNECT,
    QoS 0/2) goes to paho's own handler unchanged. :meth:`ack_many` queues the PUBACKs of a
    committed batch as one write instead of one packet each.

    These overrides use paho 2.x internals (``_in_packet``, ``_packet_handle``, ``_packet_queue``);
    ``tests/integration/iot_ingest/test_ingest.py`` exercises them end to end.
    """

    on_raw: Callable[[str, bytes, int, int, dt.datetime], None]
    _rbuf: bytes = b""  # bytes of an incomplete packet, kept for the next read
    split_packets: int = 0  # reads that ended inside a packet (its rest came with a later read)

    def _create_socket(self) -> Any:
        self._rbuf = b""  # never carry a partial packet over to a new connection
        return super()._create_socket()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        for _ in range(1):  # one recv of up to 64 KiB (~1,000 messages); then the router gets its turn
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _packet_read(self) -> MQTTErrorCode:
        try:
            data = self._sock_recv(_RECV_BYTES)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:
            log.warning("ingest.mqtt_read_failed", error=repr(err)[:200])
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        received_at = _utcnow()  # one clock reading per read: they are microseconds apart
        buf = self._rbuf + data if self._rbuf else data
        fast = self._protocol == mqtt.MQTTv5
        on_raw = self.on_raw
        pos, n = 0, len(buf)
        while n - pos >= 2:
            cmd = buf[pos]
            length, mult, i, whole = 0, 1, pos + 1, False
            while i < n and i - pos <= 4:
                b = buf[i]
                i += 1
                length += (b & 0x7F) * mult
                mult <<= 7
                if not b & 0x80:
                    whole = True
                    break
            if not whole:
                if i - pos > 4:
                    return MQTTErrorCode.MQTT_ERR_PROTOCOL  # more than 4 length bytes
                break  # the fixed header is incomplete: wait for more bytes
            end = i + length
            if end > n:
                break  # the body is incomplete
            if fast and cmd & 0xF6 == 0x32:  # PUBLISH at QoS 1 (dup and retain flags allowed)
                raw = self._fast_publish(buf, i, end)
                if raw is not None:
                    on_raw(raw[0], raw[1], raw[2], 1, received_at)
                    pos = end
                    continue
            rc = self._handle_one(cmd, buf[i:end])
            pos = end
            if rc:
                self._rbuf = b""
                return rc
        self._rbuf = buf[pos:]
        if pos < n:
            self.split_packets += 1
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    @staticmethod
    def _fast_publish(buf: bytes, i: int, end: int) -> tuple[str, bytes, int] | None:
        """(topic, payload, packet id) of an MQTT 5 QoS 1 PUBLISH in ``buf[i:end]``; None if odd."""
        if end - i < 5:
            return None
        t_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
        if t_end == i + 2 or t_end + 3 > end:
            return None  # empty topic (topic alias, never enabled) or malformed: paho decides
        mid = (buf[t_end] << 8) | buf[t_end + 1]
        j, props, mult = t_end + 2, 0, 1
        while j < end:
            b = buf[j]
            j += 1
            props += (b & 0x7F) * mult
            mult <<= 7
            if not b & 0x80:
                break
        j += props
        if j > end:
            return None
        try:
            topic = buf[i + 2 : t_end].decode()
        except UnicodeDecodeError:
            return None
        return topic, buf[j:end], mid

    def _handle_one(self, cmd: int, body: bytes) -> MQTTErrorCode:
        """Hand one whole packet to paho's own dispatcher."""
        self._in_packet = {
            "command": cmd,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": len(body),
            "packet": bytearray(body),
            "to_process": 0,
            "pos": 0,
        }
        try:
            return self._packet_handle()
        except (MalformedPacket, IndexError, struct.error):
            return MQTTErrorCode.MQTT_ERR_PROTOCOL

    def ack_many(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages by packet id, all in one write."""
        if mids:
            blob = b"".join([_PUBACK_HEAD + m.to_bytes(2, "big") for m in mids])
            self._packet_queue(PacketTypes.PUBACK << 4, blob, 0, 0)


PRIORITY_TOPICS = ("dev/+/event", "dev/+/status")  # under the root; rare, and may raise alarms


def priority_filters(subscription: str) -> list[str]:
    """Filters of the priority session for a main subscription of ``[$share/GROUP/]ROOT/#``.

    ``$share/ingest/eldercare/v1/#`` gives ``$share/ingest-prio/eldercare/v1/dev/+/event`` and
    ``…/dev/+/status``: a group of its own, so that every worker's priority session shares the
    events. Any other subscription gets no priority session ([]).
    Events reach both sessions; whichever copy is committed first is stored, the other is a
    duplicate (``ingest_dedup``) and is only acknowledged.
    """
    prefix = ""
    rest = subscription
    if subscription.startswith("$share/"):
        parts = subscription.split("/", 2)
        if len(parts) < 3:
            return []
        prefix, rest = f"$share/{parts[1]}-prio/", parts[2]
    if rest != TOPIC_ROOT.rstrip("/") + "/#":
        return []
    return [f"{prefix}{TOPIC_ROOT.rstrip('/')}/{t}" for t in PRIORITY_TOPICS]


def _mqtt_target(url: str) -> tuple[str, int, str | None, str | None]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883, parts.username, parts.password


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class IngestService:
    """One ingest worker. Start several with distinct ``client_id``s to share the subscription."""

    def __init__(self, settings: Settings, config: IngestConfig | None = None) -> None:
        self.settings = settings
        if config is None:
            config = (
                IngestConfig(client_id=settings.ingest_client_id)
                if settings.ingest_client_id
                else IngestConfig()
            )
        self.config = config
        self.stats = IngestStats()
        self.cache = DeviceCache()
        self.thresholds = AlarmThresholds()
        self._inbox: collections.deque[_Raw] = collections.deque()
        self._wake = asyncio.Event()
        self._pinbox: collections.deque[_Raw] = collections.deque()
        self._priority_topic: re.Pattern[str] | None = None  # set when the priority session runs
        # Keys of events committed from the priority session, so that the main session's copies
        # (usually later, behind the telemetry) are acknowledged without another transaction.
        self._stored_by_priority: dict[storage.MsgKey, None] = {}
        self._generations = [0, 0]  # per session, bumped on every connect and disconnect
        self._stopping = asyncio.Event()
        self._writers_stop = asyncio.Event()
        self._accepting = True
        self._vitals: dict[tuple[int, str], VitalsTrack] = {}
        self._batch: list[_Item] = []
        self._batch_started = 0.0
        self._batch_ready = asyncio.Event()
        # The priority lane: a thread of its own running the priority writer on its own loop, so
        # that an alarm's round trips to the database never queue behind the routing of a flood
        # on the main loop (they only wait for the GIL, see :func:`run`).
        self._priority: collections.deque[_Item] = collections.deque()  # appended by the router
        self._lane: threading.Thread | None = None
        self._lane_loop: asyncio.AbstractEventLoop | None = None
        self._priority_ready: asyncio.Event | None = None  # bound to the lane's loop
        self._priority_busy = False  # a priority transaction is in flight
        self._last_seen: dict[int, dt.datetime] = {}
        self._seen_written: dict[int, dt.datetime] = {}  # the last-seen time last stored per device
        self._gateway_seen: dict[str, dt.datetime] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[_IngestClient] = []
        self._connectors: list[asyncio.Task[None]] = []
        self._socket_closed: list[asyncio.Event] = []
        self._misc: dict[int, asyncio.Task[None]] = {}
        self._mqtt_closing = False
        self._store: storage.TelemetryStore | None = None
        self.connected = asyncio.Event()

    # --- MQTT (paho callbacks, on the loop) ---------------------------------------------------------------

    def _make_client(self, session: int) -> _IngestClient:
        suffix = "-prio" if session else ""
        client = _IngestClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id + suffix,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            userdata=session,
        )
        _host, _port, user, password = _mqtt_target(self.settings.mqtt_url)
        if user:
            client.username_pw_set(user, password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_raw = functools.partial(self._on_raw, session)
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        client.max_queued_messages_set(0)
        return client

    # --- paho on the asyncio loop -----------------------------------------------------------------

    def _on_socket_open(self, client: mqtt.Client, session: int, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_reader(sock, client.loop_read)
        self._misc[session] = self._loop.create_task(self._misc_loop(client), name=f"mqtt-misc-{session}")

    def _on_socket_close(self, _client: mqtt.Client, session: int, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        misc = self._misc.pop(session, None)
        if misc is not None:
            misc.cancel()
        self._socket_closed[session].set()

    def _on_socket_register_write(self, client: mqtt.Client, _session: int, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, client.loop_write)

    def _on_socket_unregister_write(self, _client: mqtt.Client, _session: int, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)

    @staticmethod
    async def _misc_loop(client: mqtt.Client) -> None:
        """Keepalive pings and the ping timeout (what paho's own loop does once a second)."""
        while client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:  # noqa: ASYNC110 - a timer, no event
            await asyncio.sleep(1.0)

    async def _keep_connected(self, session: int, client: _IngestClient) -> None:
        """Connect, and reconnect after every loss (1 s, doubling to 10 s while the broker is away),
        until :meth:`stop` closes the session. The TCP connect itself blocks the loop for at most
        the client's connect timeout; the MQTT handshake does not."""
        host, port, _, _ = _mqtt_target(self.settings.mqtt_url)
        client.connect_async(
            host,
            port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=self._connect_properties(),
        )
        delay = 1.0
        while not self._mqtt_closing:
            self._socket_closed[session].clear()
            try:
                client.reconnect()
            except (OSError, ValueError) as e:
                log.warning("ingest.mqtt_connect_failed", session=session, error=repr(e)[:200])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 1.0
            await self._socket_closed[session].wait()
            if not self._mqtt_closing:
                await asyncio.sleep(1.0)

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        return props

    def _is_priority_topic(self, topic: str) -> bool:
        return self._priority_topic is not None and self._priority_topic.fullmatch(topic) is not None

    def _subscriptions(self, session: int) -> list[tuple[str, SubscribeOptions]]:
        qos1 = SubscribeOptions(qos=1)
        if session == 0:
            return [(self.config.subscription, qos1)]
        return [(f, qos1) for f in priority_filters(self.config.subscription)]

    def _on_connect(self, client: mqtt.Client, session: int, flags: Any, rc: Any, _props: Any) -> None:
        if rc.is_failure:
            log.error("ingest.mqtt_refused", reason=str(rc), session=session)
            return
        self._generations[session] += 1
        client.subscribe(self._subscriptions(session))
        log.info(
            "ingest.mqtt_connected",
            session=session,
            session_present=bool(flags.session_present),
            generation=self._generations[session],
        )
        if session == 0 and self._loop is not None:
            self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, session: int, _flags: Any, rc: Any, _props: Any) -> None:
        # Packet ids handed out on the old connection must not be acknowledged on the next one.
        self._generations[session] += 1
        log.warning("ingest.mqtt_disconnected", reason=str(rc), session=session)
        if session == 0 and self._loop is not None:
            self.connected.clear()

    def _on_message(self, _c: mqtt.Client, session: int, msg: mqtt.MQTTMessage) -> None:
        """Messages paho decodes itself (QoS 0, or anything the fast path hands back)."""
        self._on_raw(session, msg.topic, bytes(msg.payload), msg.mid, msg.qos, _utcnow())

    def _on_raw(
        self, session: int, topic: str, payload: bytes, mid: int, qos: int, received_at: dt.datetime
    ) -> None:
        if not self._accepting:
            return  # not acknowledged: the broker keeps it for the next session
        raw = _Raw(topic, payload, mid, qos, self._generations[session], received_at, session)
        (self._pinbox if session else self._inbox).append(raw)
        self._wake.set()

    def _ack(self, items: list[_Item]) -> None:
        for session, client in enumerate(self._clients):
            gen = self._generations[session]
            mine = [it.raw for it in items if it.raw.session == session and it.raw.generation == gen]
            client.ack_many([r.mid for r in mine if r.qos == 1])
            for r in mine:
                if r.qos == 2:
                    client.ack(r.mid, 2)

    # --- Routing -----------------------------------------------------------------

    def _classify(self, raw: _Raw) -> tuple[_Item, Message | None]:
        """Normalise one message; returns its message when it still needs its device looked up.

        Ignored and rejected input is dealt with here (acknowledged, or queued for ``dead_letter``).
        """
        self.stats.received += 1
        item = _Item(raw)
        try:
            out = normalise(raw.topic, raw.payload, now=raw.received_at, max_age=self.config.max_age)
            if isinstance(out, Ignored):
                self._ack([item])
                return item, None
            if isinstance(out, Rejection):
                item.dead = (out.reason, out.detail)
                self._to_batch(item)
                return item, None
            if out.source.scheme == "z2m" and out.source.friendly_name is None:
                # The gateway's own bridge state: only its last-seen time is tracked.
                self._gateway_seen[out.source.uid] = raw.received_at
                self._ack([item])
                return item, None
        except Exception as e:  # never crash on input: park it with the reason
            self._route_failed(item, e)
            return item, None
        return item, out

    def _dispatch(self, item: _Item, out: Message, device: DeviceRecord | None) -> None:
        """Registry checks, alarm rules, then the batch or the priority path."""
        raw = item.raw
        try:
            bad = check_device(out, device.info if device else None)
            if bad is not None or device is None:
                item.dead = (bad.reason, bad.detail) if bad else ("unknown_device", "")
                self._to_batch(item)
                return
            item.device, item.message = device, out
            item.key = dedup_key(raw.topic, raw.payload, out)
            if raw.session == 0 and (device.info.id, item.key) in self._stored_by_priority:
                # The priority session's copy of this event is already committed: just ack this one.
                self.stats.duplicates += 1
                self._ack([item])
                return
            self._last_seen[device.info.id] = raw.received_at
            if out.source.scheme == "z2m":
                self._gateway_seen[out.source.uid] = raw.received_at
            item.alarms = self._rules(device, out)
            if out.events or out.availability or item.alarms:
                self._priority.append(item)
                self._wake_priority()
            else:
                self._to_batch(item)
        except Exception as e:  # never crash on input: park it with the reason
            self._route_failed(item, e)

    def _route_failed(self, item: _Item, e: Exception) -> None:
        log.exception("ingest.route_failed", topic=item.raw.topic[:200])
        item.device = item.message = None
        item.dead = ("internal_error", repr(e)[:500])
        self._to_batch(item)

    def _rules(self, device: DeviceRecord, msg: Message) -> list[AlarmCandidate]:
        ctx, th = device.ctx, self.thresholds
        alarms: list[AlarmCandidate] = []
        for event in msg.events:
            alarms.extend(alarms_for_event(event, ctx, th))
        if msg.readings:
            alarms.extend(alarms_for_readings(msg.readings, ctx, th))
            for reading in msg.readings:
                key = (ctx.device_id, reading.metric)
                track, alarm = vitals_step(self._vitals.get(key), reading, ctx, th)
                if track is not None:
                    self._vitals[key] = track
                if alarm is not None:
                    alarms.append(alarm)
            fence = geofence_alarm(ctx, msg.readings, device.safe_zone)
            if fence is not None:
                alarms.append(fence)
        return alarms

    def _to_batch(self, item: _Item) -> None:
        if item.dead is not None:
            # Both sessions may carry a rejected event (or only one of them, e.g. before the priority
            # session has subscribed): a key on the raw bytes lets whichever copy commits first be
            # stored and the other be dropped as a duplicate.
            raw = item.raw
            item.key = raw_key(raw.topic, raw.payload) if self._is_priority_topic(raw.topic) else 0
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append(item)
        if len(self._batch) >= self.config.batch_max_msgs:
            self._batch_ready.set()

    # --- Writers ----------------------------------------------------------------------------------

    async def _with_retry(self, what: str, fn: Callable[[], Any]) -> None:
        """Run a transaction until it succeeds: unacked messages stay with the broker meanwhile."""
        while True:
            try:
                await fn()
                return
            except _DB_ERRORS as e:
                self.stats.db_errors += 1
                log.warning("ingest.db_unavailable", writer=what, error=repr(e)[:200])
                await asyncio.sleep(self.config.retry_backoff_s)
            except _TRANSIENT as e:  # never dead-letter good messages for a lost lock race
                self.stats.db_errors += 1
                log.warning("ingest.db_retry", writer=what, error=repr(e)[:200])
                await asyncio.sleep(0.01)

    async def _connect_db(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.settings.asyncpg_dsn)
        await storage.prepare_connection(conn)
        return conn

    async def _batch_writer(self) -> None:
        conn: asyncpg.Connection | None = None
        while not self._writers_stop.is_set() or self._batch:
            if not self._batch:
                await self._sleep_or(self._batch_ready, self.config.batch_max_ms / 1000)
                continue
            age_ms = (time.monotonic() - self._batch_started) * 1000
            if len(self._batch) < self.config.batch_max_msgs and age_ms < self.config.batch_max_ms:
                await self._sleep_or(self._batch_ready, (self.config.batch_max_ms - age_ms) / 1000)
                continue
            # Bounded batches: a backlog arrives faster than one transaction should grow.
            limit = self.config.batch_max_msgs
            batch, self._batch = self._batch[:limit], self._batch[limit:]
            if len(self._batch) < limit:
                self._batch_ready.clear()
            if self._batch:
                self._batch_started = time.monotonic()

            async def write(batch: list[_Item] = batch) -> None:
                nonlocal conn
                if conn is None or conn.is_closed():
                    conn = await self._connect_db()
                try:
                    await self._write_batch(conn, batch)
                except _DB_ERRORS:
                    conn.terminate()
                    conn = None
                    raise

            started = time.monotonic()
            try:
                await self._with_retry("batch", write)
                log.debug(
                    "ingest.batch_written", size=len(batch), ms=round((time.monotonic() - started) * 1000, 1)
                )
            except Exception:
                log.exception("ingest.batch_failed", size=len(batch))
                conn = None
                await self._fallback_dead_letter(batch)
            self._ack(batch)
        if conn is not None:
            await conn.close()

    async def _write_batch(self, conn: asyncpg.Connection, batch: list[_Item]) -> None:
        assert self._store is not None
        dead: list[storage.DeadLetterRow] = []
        keyed: list[_Item] = []
        claims: list[tuple[int, int, dt.datetime]] = []
        for it in batch:
            if it.dead is None:
                keyed.append(it)
                if it.device is not None:
                    claims.append((it.device.info.id, it.key, it.raw.received_at))
            elif it.key:
                claims.append((storage.DEAD_LETTER_DEVICE, it.key, it.raw.received_at))
        async with conn.transaction():
            fresh = await storage.claim_keys_copy(conn, claims)
            for it in batch:
                if it.dead is None:
                    continue
                if it.key:
                    k = (storage.DEAD_LETTER_DEVICE, it.key)
                    if k not in fresh:
                        self.stats.duplicates += 1
                        continue
                    fresh.discard(k)
                dead.append((it.raw.received_at, it.raw.topic, it.raw.payload, it.dead[0], it.dead[1]))
            rows: list[storage.TelemetryRow] = []
            for it in keyed:
                assert it.device is not None
                assert it.message is not None
                k = (it.device.info.id, it.key)
                if k not in fresh:
                    self.stats.duplicates += 1
                    continue
                fresh.discard(k)  # a second copy inside the same batch is a duplicate too
                seq = it.message.seq
                rows.extend((k[0], r.at, r.metric, r.value, seq) for r in it.message.readings)
            if rows:
                await self._store.ensure_days(conn, {r[1].date() for r in rows})
            await storage.copy_telemetry(conn, rows)
            await storage.copy_dead_letters(conn, dead)
        self.stats.telemetry_msgs += len(keyed)
        self.stats.dead_letters += len(dead)

    async def _fallback_dead_letter(self, batch: list[_Item]) -> None:
        """A batch that fails for a reason other than connectivity: park each message, keep going."""
        conn = await self._connect_db()
        try:
            for it in batch:
                reason, detail = it.dead or ("storage_error", "batch insert failed")
                await storage.copy_dead_letters(
                    conn, [(it.raw.received_at, it.raw.topic, it.raw.payload, reason, detail)]
                )
        finally:
            await conn.close()

    def _wake_priority(self) -> None:
        if self._lane_loop is not None and self._priority_ready is not None:
            self._lane_loop.call_soon_threadsafe(self._priority_ready.set)

    def _lane_main(self, started: threading.Event) -> None:
        async def lane() -> None:
            self._lane_loop = asyncio.get_running_loop()
            self._priority_ready = asyncio.Event()
            started.set()
            await self._priority_writer()

        asyncio.run(lane())

    async def _priority_writer(self) -> None:
        """Runs on the lane's loop; acknowledgements go back to the main loop, which owns MQTT."""
        assert self._priority_ready is not None
        assert self._loop is not None
        conn: asyncpg.Connection | None = None
        while not self._writers_stop.is_set() or self._priority:
            if not self._priority:
                await self._sleep_or(self._priority_ready, 0.5)
                self._priority_ready.clear()
                continue
            items = [
                self._priority.popleft()
                for _ in range(min(len(self._priority), self.config.priority_max_msgs))
            ]

            async def write(items: list[_Item] = items) -> None:
                nonlocal conn
                if conn is None or conn.is_closed():
                    conn = await self._connect_db()
                try:
                    await self._write_priority(conn, items)
                except _DB_ERRORS:
                    conn.terminate()
                    conn = None
                    raise

            self._priority_busy = True
            try:
                await self._with_retry("priority", write)
            except Exception as e:
                log.exception("ingest.priority_failed", size=len(items))
                conn = None
                for it in items:
                    it.dead = ("storage_error", repr(e)[:500])
                await self._fallback_dead_letter(items)
            finally:
                self._priority_busy = False
            self._loop.call_soon_threadsafe(self._ack, items)
        if conn is not None:
            await conn.close()

    async def _write_priority(self, conn: asyncpg.Connection, items: list[_Item]) -> None:
        """One statement (:func:`storage.write_priority`): a single round trip, however busy the
        machine, is what keeps an alarm's commit fast."""
        assert self._store is not None
        started = _utcnow()
        batch = storage.PriorityBatch()
        firsts: dict[storage.MsgKey, _Item] = {}
        for it in items:
            assert it.device is not None
            assert it.message is not None
            k = (it.device.info.id, it.key)
            if k in firsts:  # a second copy inside the batch: a duplicate
                continue
            firsts[k] = it
            m, d, key = it.message, k[0], k[1]
            batch.keys.append((d, key, it.raw.received_at))
            batch.events.extend((d, key, e.at, e.type, dict(e.data), m.seq) for e in m.events)
            batch.readings.extend((d, key, r.at, r.metric, r.value, m.seq) for r in m.readings)
            if m.availability is not None:
                batch.availability.append((d, key, m.availability == "online", it.raw.received_at))
                batch.events.append((d, key, it.raw.received_at, m.availability, {}, m.seq))
            batch.alarms.extend((key, a) for a in it.alarms)
        if batch.readings:
            await self._store.ensure_days(conn, {r[2].date() for r in batch.readings})
        fresh, new_alarms = await storage.write_priority(conn, batch)
        self.stats.duplicates += len(items) - len(fresh)
        for k in fresh:
            if firsts[k].message.availability is not None:  # type: ignore[union-attr]
                self._seen_written.pop(k[0], None)  # the next message stores last-seen (and online)
        self.stats.priority_msgs += len(items)
        remembered = self._stored_by_priority
        for it in items:
            if it.raw.session == 1 and it.device is not None:
                remembered[(it.device.info.id, it.key)] = None
        while len(remembered) > _REMEMBER_KEYS:
            del remembered[next(iter(remembered))]  # oldest first (dicts keep insertion order)
        if items:
            oldest = min(it.raw.received_at for it in items)
            log.debug(
                "ingest.priority_written",
                sessions=sorted({it.raw.session for it in items}),
                size=len(items),
                waited_ms=round((started - oldest).total_seconds() * 1000, 1),
                ms=round((_utcnow() - oldest).total_seconds() * 1000, 1),
            )
        for w in new_alarms:
            if w.created:
                self.stats.alarms_new += 1
                log.info("alarm.raised", alarm_id=w.alarm_id)
            else:
                self.stats.alarms_repeat += 1

    async def _toucher(self) -> None:
        """Flush device/gateway last-seen times every few seconds (one ordered UPDATE each)."""
        conn: asyncpg.Connection | None = None
        while not self._stopping.is_set():
            await self._sleep_or(self._stopping, self.config.touch_interval_s)
            seen, self._last_seen = self._last_seen, {}
            gws, self._gateway_seen = self._gateway_seen, {}
            written, advance = self._seen_written, dt.timedelta(seconds=self.config.touch_min_advance_s)
            seen = {d: at for d, at in seen.items() if d not in written or at - written[d] >= advance}
            if not seen and not gws:
                continue
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.settings.asyncpg_dsn)
                async with conn.transaction():
                    await storage.touch_devices(conn, seen)
                    await storage.touch_gateways(conn, gws)
                written.update(seen)
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as e:
                log.warning("ingest.touch_failed", error=repr(e)[:200])
                conn = None
                for k, v in seen.items():  # try again next round
                    self._last_seen[k] = max(v, self._last_seen.get(k, v))
        if conn is not None:
            await conn.close()

    async def _router(self) -> None:
        conn: asyncpg.Connection | None = None
        last_refresh = time.monotonic()
        while not self._stopping.is_set() or self._inbox or self._pinbox:
            if not self._wake.is_set():
                await self._wake.wait()  # set by new messages, by stop(), and by the retry paths
            self._wake.clear()
            if not self._inbox and not self._pinbox:
                continue
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.settings.asyncpg_dsn)
                if time.monotonic() - last_refresh > self.config.cache_refresh_s:
                    await self.cache.load(conn)
                    last_refresh = time.monotonic()
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as e:
                log.warning("ingest.db_unavailable", writer="router", error=repr(e)[:200])
                conn = None
                await asyncio.sleep(self.config.retry_backoff_s)
                self._wake.set()
                continue
            n = 0
            slice_end = time.monotonic() + _ROUTER_SLICE_S
            while self._inbox or self._pinbox:
                # Events from the priority session first, then the bulk of telemetry.
                raw = self._pinbox.popleft() if self._pinbox else self._inbox.popleft()
                item, out = self._classify(raw)
                if out is None:
                    continue
                try:
                    device = self.cache.peek(out) or await self.cache.get(conn, out)
                except _DB_ERRORS:
                    # Device lookup failed: put it back and retry once the database is back.
                    (self._pinbox if raw.session else self._inbox).appendleft(raw)
                    self.stats.received -= 1
                    conn = None
                    await asyncio.sleep(self.config.retry_backoff_s)
                    self._wake.set()
                    break
                queued = len(self._priority)
                self._dispatch(item, out, device)
                n += 1
                # Let the writers run during a flood: every await of theirs (each database round
                # trip) waits for the router to yield, so a long slice would hold up commits and
                # acks. An event or alarm must not wait at all: after queueing one, and while its
                # transaction is in flight, yield after every message.
                if (
                    self._priority_busy
                    or len(self._priority) > queued
                    or (n & 15 == 0 and time.monotonic() > slice_end)
                ):
                    await asyncio.sleep(0)
                    slice_end = time.monotonic() + _ROUTER_SLICE_S
        if conn is not None:
            await conn.close()

    @staticmethod
    async def _sleep_or(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(seconds, 0.001))

    # --- Lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        conn = await asyncpg.connect(self.settings.asyncpg_dsn)
        try:
            self._store = await storage.make_store(conn)
            await self.cache.load(conn)
            policy = await conn.fetchval(
                """SELECT value FROM policy_value WHERE key = 'alarm.thresholds' AND scope = '*'
                   AND valid_from <= current_date AND (valid_to IS NULL OR valid_to >= current_date)
                   ORDER BY valid_from DESC LIMIT 1"""
            )
        finally:
            await conn.close()
        if policy:
            self.thresholds = AlarmThresholds.from_policy(json.loads(policy))
        self._tasks = [
            asyncio.create_task(self._router(), name="ingest-router"),
            asyncio.create_task(self._batch_writer(), name="ingest-batch"),
            asyncio.create_task(self._toucher(), name="ingest-touch"),
        ]
        lane_started = threading.Event()
        self._lane = threading.Thread(
            target=self._lane_main, args=(lane_started,), name="ingest-priority", daemon=True
        )
        self._lane.start()
        await asyncio.to_thread(lane_started.wait, 10)
        filters = priority_filters(self.config.subscription) if self.config.priority_session else []
        if filters:
            self._priority_topic = re.compile(
                "|".join(
                    re.escape(f.split("/", 2)[2] if f.startswith("$share/") else f) for f in filters
                ).replace(r"\+", "[^/]+")
            )
        sessions = 2 if filters else 1
        self._clients = [self._make_client(i) for i in range(sessions)]
        self._socket_closed = [asyncio.Event() for _ in self._clients]
        self._connectors = [
            asyncio.create_task(self._keep_connected(i, c), name=f"mqtt-connect-{i}")
            for i, c in enumerate(self._clients)
        ]
        log.info("ingest.started", client_id=self.config.client_id, backend=self._store.backend)

    async def stop(self, *, end_session: bool = False) -> None:
        """Stop taking messages, write and acknowledge what is in hand, then disconnect.

        The broker session is kept (messages keep queueing for the next start) unless ``end_session``.
        """
        self._accepting = False
        self._stopping.set()
        self._wake.set()
        router, batch, toucher = self._tasks
        await asyncio.gather(router, toucher, return_exceptions=True)
        self._writers_stop.set()
        self._batch_ready.set()
        self._wake_priority()
        await asyncio.gather(batch, return_exceptions=True)
        if self._lane is not None:
            await asyncio.to_thread(self._lane.join)
        await asyncio.sleep(0)  # run the lane's last acknowledgements (queued with call_soon_threadsafe)
        self._mqtt_closing = True
        for client in self._clients:
            props = None
            if end_session:
                props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = 0
            client.disconnect(properties=props)  # written by the loop; the socket closes after it
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._socket_closed)), 5.0)
        for task in self._connectors:
            task.cancel()
        await asyncio.gather(*self._connectors, return_exceptions=True)
        for client in self._clients:
            client._sock_close()  # if the broker never took the DISCONNECT (it is gone)
        log.info("ingest.stopped", **self.stats.__dict__)

    async def run_forever(self) -> None:
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self.stop()


async def run_async(settings: Settings, config: IngestConfig | None = None) -> None:
    """Run one ingest worker until SIGINT/SIGTERM."""
    await IngestService(settings, config).run_forever()


def run(settings: Settings, config: IngestConfig | None = None) -> None:
    """Entry point for ``eldercare ingest``."""
    # The priority lane's thread waits for the GIL whenever its database answers; hand it over
    # within 1 ms rather than CPython's default 5 ms.
    sys.setswitchinterval(0.001)
    asyncio.run(run_async(settings, config))
