"""The ingest's MQTT 5 sessions, driven on the consumer's asyncio loop.

paho runs as an external event loop (``add_reader``/``add_writer`` on its socket, ``loop_misc`` on a
timer, reconnects by :meth:`Sessions._keep_connected`), so no network thread competes with the
consumer's router and writers for the GIL. :class:`IngestClient` is paho's client with the hot path
made lean; :class:`Sessions` keeps one persistent session per subscription set connected (the main
one and the consumer's priority one) and acknowledges what the consumer has committed.

If a connection drops, the packet ids of messages not yet acknowledged are void: the broker
redelivers those messages, so acknowledgements for an older connection are discarded (they would
acknowledge someone else's packet id). Each session counts its connections in ``generations``, and
every :class:`Delivery` carries the generation it arrived in.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.clock import utc_now

log = structlog.get_logger("iot_ingest")

_RECV_BYTES = 64 * 1024
_PUBACK_HEAD = b"\x40\x02"


def mqtt_target(url: str) -> tuple[str, int, str | None, str | None]:
    """(host, port, username, password) of an ``mqtt://`` URL."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883, parts.username, parts.password


@dataclass(slots=True)
class Delivery:
    """One PUBLISH as it arrived, with what acknowledging it later takes (session, generation, id)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: dt.datetime
    session: int = 0  # 0: the main session, 1: the priority session


# ``on_raw(session, topic, payload, packet id, qos, received_at)``: called on the loop for each message.
OnRaw = Callable[[int, str, bytes, int, int, dt.datetime], None]


class IngestClient(mqtt.Client):
    """paho's MQTT 5 client with the consumer's hot path made lean.

    Stock paho reads each packet with three ``recv`` calls (type, length, body) and returns to
    ``select`` after every packet, then builds an ``MQTTMessage`` with its ``Properties``: tens of
    microseconds per message. Here one ``recv`` fetches up to 64 KiB and every complete packet in
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

    def _packet_read(self) -> MQTTErrorCode:  # noqa: C901 - the MQTT fixed-header/packet state machine, kept whole as paho's own is
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
        received_at = utc_now()  # one clock reading per read: they are microseconds apart
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


class Sessions:
    """The consumer's persistent MQTT 5 sessions: session ``i`` subscribes to ``subscriptions[i]``
    (QoS 1) under the client id ``client_id`` (``-prio`` added for session 1).

    Sessions start clean-start off with a session expiry, so the broker queues messages while the
    consumer is away; messages are acknowledged (paho ``manual_ack``) only by :meth:`ack`.
    """

    def __init__(
        self,
        *,
        mqtt_url: str,
        client_id: str,
        subscriptions: Sequence[Sequence[str]],
        keepalive_s: int,
        session_expiry_s: int,
        receive_maximum: int,
        on_raw: OnRaw,
    ) -> None:
        self._url = mqtt_url
        self._client_id = client_id
        self._filters = [list(s) for s in subscriptions]
        self._keepalive_s = keepalive_s
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._on_raw_cb = on_raw
        # Per session, bumped on every connect and disconnect.
        self.generations = [0] * len(self._filters)
        self.connected = asyncio.Event()  # the main session is connected
        self.clients: list[IngestClient] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connectors: list[asyncio.Task[None]] = []
        self._socket_closed: list[asyncio.Event] = []
        self._misc: dict[int, asyncio.Task[None]] = {}
        self._closing = False

    def start(self) -> None:
        """Create the clients and start connecting them (on the running loop)."""
        self._loop = asyncio.get_running_loop()
        self.clients = [self._make_client(i) for i in range(len(self._filters))]
        self._socket_closed = [asyncio.Event() for _ in self.clients]
        self._connectors = [
            asyncio.create_task(self._keep_connected(i, c), name=f"mqtt-connect-{i}")
            for i, c in enumerate(self.clients)
        ]

    async def close(self, *, end_session: bool = False) -> None:
        """Disconnect every session (acknowledgements already queued are written first).

        The broker keeps the sessions (messages keep queueing for the next start) unless ``end_session``.
        """
        self._closing = True
        for client in self.clients:
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
        for client in self.clients:
            client._sock_close()  # if the broker never took the DISCONNECT (it is gone)

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge these messages, except those that arrived on an earlier connection."""
        for session, client in enumerate(self.clients):
            gen = self.generations[session]
            mine = [r for r in deliveries if r.session == session and r.generation == gen]
            client.ack_many([r.mid for r in mine if r.qos == 1])
            for r in mine:
                if r.qos == 2:
                    client.ack(r.mid, 2)

    def _make_client(self, session: int) -> IngestClient:
        suffix = "-prio" if session else ""
        client = IngestClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self._client_id + suffix,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            userdata=session,
        )
        _host, _port, user, password = mqtt_target(self._url)
        if user:
            client.username_pw_set(user, password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_raw = functools.partial(self._on_raw_cb, session)
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

    async def _keep_connected(self, session: int, client: IngestClient) -> None:
        """Connect, and reconnect after every loss (1 s, doubling to 10 s while the broker is away),
        until :meth:`close` closes the session. The TCP connect itself blocks the loop for at most
        the client's connect timeout; the MQTT handshake does not."""
        host, port, _, _ = mqtt_target(self._url)
        client.connect_async(
            host,
            port,
            keepalive=self._keepalive_s,
            clean_start=False,
            properties=self._connect_properties(),
        )
        delay = 1.0
        while not self._closing:
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
            if not self._closing:
                await asyncio.sleep(1.0)

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = self._receive_maximum
        return props

    def _subscriptions(self, session: int) -> list[tuple[str, SubscribeOptions]]:
        qos1 = SubscribeOptions(qos=1)
        return [(f, qos1) for f in self._filters[session]]

    def _on_connect(self, client: mqtt.Client, session: int, flags: Any, rc: Any, _props: Any) -> None:
        if rc.is_failure:
            log.error("ingest.mqtt_refused", reason=str(rc), session=session)
            return
        self.generations[session] += 1
        client.subscribe(self._subscriptions(session))
        log.info(
            "ingest.mqtt_connected",
            session=session,
            session_present=bool(flags.session_present),
            generation=self.generations[session],
        )
        if session == 0 and self._loop is not None:
            self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, session: int, _flags: Any, rc: Any, _props: Any) -> None:
        # Packet ids handed out on the old connection must not be acknowledged on the next one.
        self.generations[session] += 1
        log.warning("ingest.mqtt_disconnected", reason=str(rc), session=session)
        if session == 0 and self._loop is not None:
            self.connected.clear()

    def _on_message(self, _c: mqtt.Client, session: int, msg: mqtt.MQTTMessage) -> None:
        """Messages paho decodes itself (QoS 0, or anything the fast path hands back)."""
        self._on_raw_cb(session, msg.topic, bytes(msg.payload), msg.mid, msg.qos, utc_now())
