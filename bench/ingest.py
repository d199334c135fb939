# ruff: noqa: S603, S607, ASYNC221 - a benchmark driving local processes
"""Ingest benchmark: ``eldercare bench ingest --json FILE`` (or ``python -m bench.ingest``).

Starts a private Mosquitto with deploy/mosquitto/mosquitto.conf (ports and paths rewritten, no ACL;
an account per publisher process on the device listener, the ingest's on the service listener), a
database of its own, and ``--workers`` ingest processes sharing the
subscription; then measures

- ``telemetry_msgs_per_s``: messages committed per second from the first publish until the last
  message of a ``--duration`` s flood was committed, with SOS events mixed in
  (``alarm_latency_ms_p50/p99``: publish → alarm row written, for each new alarm);
- ``drain_msgs_per_s``: ingest stopped, ``--drain`` QoS 1 messages queued in its persistent
  session(s), ingest started: committed per second from the first commit until the backlog is empty
  (``drain_msgs_per_s_incl_startup`` counts from the process start); the backlog is stamped a day
  back so that counting it does not scan the live phase's rows;
- ceilings in the same run: ``ceiling_mosquitto_msgs_per_s`` (the C client ``mosquitto_sub`` at QoS 1
  reading the same flood, unpaced, just before the live phase: run concurrently it would take a
  third of this 2-core machine from the ingest) and ``ceiling_copy_rows_per_s`` (asyncpg COPY of
  telemetry-shaped rows into a temp table).

Publishers are ``--publishers`` processes running :class:`simulators.devices.RawPublisher` (a lean
MQTT 5 client that tracks every packet id until its PUBACK), paced to ``--rate`` messages per second
in total (default 32,000: "sustained" means the committed rate keeps up with the offered one;
0 = as fast as they can, which on two cores lets the publishers and the broker's queueing take
CPU from the consumer and measures an overload, not a sustained rate). ``lost`` and ``duplicates``
compare what the broker acknowledged with what is in ``telemetry`` and ``device_event``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import multiprocessing as mp
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg

from core.settings import Settings
from demo.broker import (
    DEPLOY_CONFIG,
    DEVICE_PASSWORD_FILE,
    DEVICE_PORT,
    SERVICE_PASSWORD_FILE,
    SERVICE_PORT,
    local_mosquitto_config,
    mosquitto_password_line,
)
from iot_ingest.consumer import SUBSCRIPTION
from iot_ingest.wire import INGEST_CLIENT_ID_PREFIX, TOPIC_ROOT
from simulators import devices as sim

ROOT = Path(__file__).resolve().parents[1]
ROOT_C = "bench/ceiling"  # the ceiling flood's topic root: the ingest does not subscribe to it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Bench accounts. On the device listener the client id is the username, so every publisher process
# (and each probe connection) has an account of its own; the ingest workers share the service one.
# One password for all of them, kept in the environment so that publisher processes share it however
# multiprocessing starts them.
BENCH_PASSWORD = os.environ.setdefault("ELDERCARE_BENCH_MQTT_PASSWORD", secrets.token_urlsafe(24))
INGEST_USER = "eldercare-ingest"


def publisher_user(part: int) -> str:
    return f"bench-pub-{part}"


def probe_user(i: int) -> str:
    return f"bench-probe-{i}"


def start_broker(workdir: Path, publishers: int) -> tuple[subprocess.Popen[bytes], int, int]:
    """Mosquitto with the deploy config (its two listeners on free ports, no ACL: a publisher
    process sends for many devices); returns the process, the device port and the service port."""
    port, service_port = _free_port(), _free_port()
    devices = [publisher_user(i) for i in range(publishers)] + [
        probe_user(i) for i in range(PROBE_CONNECTIONS)
    ]
    (workdir / DEVICE_PASSWORD_FILE).write_text(
        "".join(mosquitto_password_line(user, BENCH_PASSWORD) for user in devices)
    )
    (workdir / SERVICE_PASSWORD_FILE).write_text(mosquitto_password_line(INGEST_USER, BENCH_PASSWORD))
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        local_mosquitto_config(
            DEPLOY_CONFIG.read_text(),
            workdir=workdir,
            ports={DEVICE_PORT: port, SERVICE_PORT: service_port},
            run_as=getpass.getuser(),
            log_dest="none",
            drop={"acl_file"},
        )
    )
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for p in (port, service_port):
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", p), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
    return proc, port, service_port


async def prepare_db(admin_dsn: str, db_url: str, name: str, devices: int, probes: int = 0) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    subprocess.run(
        [str(ROOT / ".venv/bin/alembic"), "-x", f"url={db_url}", "upgrade", "heads"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(
            """INSERT INTO device (uid, kind, model, serial, power, status)
               SELECT 'b' || i, 'vitals_band', 'bench', 'SNb' || i, 'battery', 'active'
               FROM generate_series(0, $1 - 1) AS i""",
            devices,
        )
        # SOS buttons for the latency probe (see :func:`_prober`): one alarm each.
        await conn.execute(
            """INSERT INTO device (uid, kind, model, serial, power, status)
               SELECT 'p' || i, 'sos_button', 'bench', 'SNp' || i, 'battery', 'active'
               FROM generate_series(0, $1 - 1) AS i""",
            probes,
        )
    finally:
        await conn.close()


def _publisher(
    port: int,
    part: int,
    parts: int,
    devices: int,
    until: float,
    rate: float,
    sos_every: int,
    seq_base: int,
    limit: int,
    root: str,
    q: Any,
    ts_offset_ms: int = 0,
) -> None:
    """One publisher process: telemetry for its share of devices, an SOS every ``sos_every`` messages.

    ``rate`` is this process's target in messages per second (0: unpaced); it stops at ``until``
    (epoch seconds) or after ``limit`` messages. Puts (sent, acked, failed) on ``q``.
    """
    user = publisher_user(part)
    pub = sim.RawPublisher(port=port, client_id=user, username=user, password=BENCH_PASSWORD, window=20_000)
    mine = list(range(part, devices, parts))
    chunk_size = 250
    n, seq = 0, seq_base
    started = time.time()
    while True:
        now = time.time()
        if now >= until or n >= limit:
            break
        ms = int(now * 1000)
        ts = ms + ts_offset_ms
        chunk: list[tuple[str, bytes]] = []
        for _ in range(min(chunk_size, limit - n)):
            d = mine[n % len(mine)]
            if n % len(mine) == 0:
                seq += 1  # one sequence number per device per round
            if (n + n // len(mine)) % sos_every == sos_every - 1:  # shifts by one device a round
                body = b'{"ts":%d,"seq":%d,"type":"sos","data":{"pub_ms":%d}}' % (ts, seq, ms)
                chunk.append((f"{root}/dev/b{d}/event", body))
            else:
                body = b'{"ts":%d,"seq":%d,"values":{"hr":%d}}' % (ts, seq, 60 + n % 40)
                chunk.append((f"{root}/dev/b{d}/telemetry", body))
            n += 1
        pub.send(chunk)
        if rate > 0:
            ahead = n / rate - (time.time() - started)
            if ahead > 0:
                time.sleep(ahead)
    res = pub.close()
    q.put((res.sent, res.acked, res.failed))


PROBE_CONNECTIONS = 10


def _prober(port: int, until: float, rate: float, root: str, q: Any) -> None:
    """SOS buttons during the flood, each event from a device of its own (``p0``, ``p1``, …) over
    one of a few connections that carry nothing else, as an SOS button in a home would: it measures
    broker + ingest + database, not the publisher's own queue. Puts (sent, acked, failed) on ``q``.
    """
    pubs = [
        sim.RawPublisher(
            port=port, client_id=probe_user(i), username=probe_user(i), password=BENCH_PASSWORD, window=100
        )
        for i in range(PROBE_CONNECTIONS)
    ]
    n, started = 0, time.time()
    while time.time() < until:
        ms = int(time.time() * 1000)
        body = b'{"ts":%d,"seq":1,"type":"sos","data":{"pub_ms":%d}}' % (ms, ms)
        pubs[n % PROBE_CONNECTIONS].send([(f"{root}/dev/p{n}/event", body)])
        n += 1
        ahead = n / rate - (time.time() - started)
        if ahead > 0:
            time.sleep(ahead)
    sent = acked = failed = 0
    for pub in pubs:
        res = pub.close()
        sent, acked, failed = sent + res.sent, acked + res.acked, failed + res.failed
    q.put((sent, acked, failed))


def _proc_cpu_s(pid: int) -> tuple[str, int, float]:
    """(command name, parent pid, user + system CPU seconds) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        head, _, rest = f.read().rpartition(")")
    fields = rest.split()
    ticks = os.sysconf("SC_CLK_TCK")
    return head.split("(", 1)[1], int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks


def cpu_by_part(ingest_pids: set[int], broker_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the ingest workers, the broker, PostgreSQL (every ``postgres``
    process) and this benchmark with its children that have exited (the publishers)."""
    parts = {"ingest": 0.0, "broker": 0.0, "postgres": 0.0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm, _ppid, cpu = _proc_cpu_s(int(entry))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if int(entry) in ingest_pids:
            parts["ingest"] += cpu
        elif int(entry) == broker_pid:
            parts["broker"] += cpu
        elif comm == "postgres":
            parts["postgres"] += cpu
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    parts["publishers"] = children.ru_utime + children.ru_stime
    me = resource.getrusage(resource.RUSAGE_SELF)
    parts["bench"] = me.ru_utime + me.ru_stime
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq = (int(x) for x in f.readline().split()[1:8])
    ticks = os.sysconf("SC_CLK_TCK")
    parts["machine_busy"] = (user + nice + system + irq + softirq) / ticks
    parts["machine_idle"] = (idle + iowait) / ticks
    return parts


def flood(
    port: int,
    devices: int,
    seconds: float,
    publishers: int,
    rate: float,
    sos_every: int,
    seq_base: int,
    limit: int = 2**62,
    root: str = TOPIC_ROOT,
    ts_offset_ms: int = 0,
) -> tuple[int, int, int]:
    """Run the publishers for ``seconds`` or ``limit`` messages in total, stamped ``ts_offset_ms``
    away from their publish time.

    Returns (sent, acknowledged by the broker, refused by the broker).
    """
    q: mp.Queue[tuple[int, int, int]] = mp.Queue()
    until = time.time() + seconds
    share = -(-limit // publishers)
    procs = [
        mp.Process(
            target=_publisher,
            args=(
                port,
                i,
                publishers,
                devices,
                until,
                rate / publishers,
                sos_every,
                seq_base,
                share,
                root,
                q,
                ts_offset_ms,
            ),
        )
        for i in range(publishers)
    ]
    for p in procs:
        p.start()
    sent = acked = failed = 0
    for _ in procs:
        s, a, f = q.get(timeout=seconds + 300)
        sent += s
        acked += a
        failed += f
    for p in procs:
        p.join()
    return sent, acked, failed


def spawn_ingest(db_url: str, port: int, client_id: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iot_ingest",
            "--database-url",
            db_url,
            "--mqtt-url",
            f"mqtt://{INGEST_USER}:{BENCH_PASSWORD}@127.0.0.1:{port}",
            "--client-id",
            client_id,
            "--subscription",
            SUBSCRIPTION,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "ELDERCARE_LOG_LEVEL": "WARNING"},
    )


async def copy_ceiling(dsn: str, rows: int = 200_000) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TEMP TABLE copy_probe"
            " (device_id bigint, at timestamptz, metric text, value float8, seq bigint)"
        )
        now = dt.datetime.now(dt.UTC)
        data = [(i % 10_000, now, "hr", 60.0, i) for i in range(rows)]
        t0 = time.perf_counter()
        await conn.copy_records_to_table("copy_probe", records=data)
        return rows / (time.perf_counter() - t0)
    finally:
        await conn.close()


async def wait_stored(
    dsn: str, target: int, *, idle_s: float = 15.0, day: dt.date | None = None
) -> tuple[int, float, float | None]:
    """Poll the stored rows (telemetry + events; with ``day``, only those stamped that UTC day)
    until ``target`` or no progress for ``idle_s``.

    Returns (rows, seconds waited, seconds until the first row appeared or None). Each poll is an
    exact ``count(*)``: over millions of rows that takes ~80 ms and two parallel workers, a real
    share of this machine, which is why the drain phase stamps its backlog a day back (see
    :func:`run`) and counts only that day's partition here.
    """
    t0 = time.monotonic()
    first: float | None = None
    conn = await asyncpg.connect(dsn)
    try:
        base = await _stored(conn, day)
        last, last_change = base, time.monotonic()
        while True:
            total = await _stored(conn, day)
            now = time.monotonic()
            if first is None and total > base:
                first = now - t0
            if total >= target:
                return total, now - t0, first
            if total != last:
                last, last_change = total, now
            elif now - last_change > idle_s:
                return total, now - t0, first
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def _latencies(conn: asyncpg.Connection, uid_prefix: str) -> list[float]:
    """Publish → alarm row written (ms) for each SOS alarm of devices whose uid starts with the prefix
    (the first SOS of the alarm; repeats only count on the open alarm), sorted."""
    rows = await conn.fetch(
        """SELECT (extract(epoch FROM a.received_at) * 1000 - min((e.data->>'pub_ms')::bigint))::float8
           FROM alarm a
           JOIN device d ON d.id = a.device_id
           JOIN device_event e ON e.device_id = a.device_id AND e.type = 'sos'
           WHERE a.type = 'SOS' AND d.uid LIKE $1 || '%'
           GROUP BY a.id, a.received_at""",
        uid_prefix,
    )
    return sorted(r[0] for r in rows)


def _pct(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of sorted ``values``."""
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * q))], 1)


async def _stored(conn: asyncpg.Connection, day: dt.date | None = None) -> int:
    if day is None:
        sql = "SELECT (SELECT count(*) FROM telemetry) + (SELECT count(*) FROM device_event)"
        return int(await conn.fetchval(sql))
    start = dt.datetime.combine(day, dt.time(0), dt.UTC)
    return int(
        await conn.fetchval(
            """SELECT (SELECT count(*) FROM telemetry WHERE at >= $1 AND at < $2)
                    + (SELECT count(*) FROM device_event WHERE at >= $1 AND at < $2)""",
            start,
            start + dt.timedelta(days=1),
        )
    )


class SubCounter:
    """``mosquitto_sub`` (C client) reading a flood at QoS 1; counts lines and times them."""

    def __init__(self, port: int, topic: str) -> None:
        self.proc = subprocess.Popen(
            [
                "mosquitto_sub",
                *("-p", str(port), "-q", "1", "-t", topic),
                *("-i", f"{INGEST_USER}-bench-ceiling", "-u", INGEST_USER, "-P", BENCH_PASSWORD),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.n, self.first, self.last = 0, 0.0, 0.0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 1 << 20):
            now = time.monotonic()
            self.first = self.first or now
            self.last = now
            self.n += chunk.count(b"\n")

    def stop(self) -> float:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        return self.n / max(self.last - self.first, 1e-6)


def spawn_workers(db_url: str, port: int, n: int) -> list[subprocess.Popen[bytes]]:
    return [spawn_ingest(db_url, port, f"{INGEST_CLIENT_ID_PREFIX}-bench-{i + 1}") for i in range(n)]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=60)
        except subprocess.TimeoutExpired:
            w.kill()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings()
    server = os.environ.get("ELDERCARE_DATABASE_URL", base.database_url)
    db_url = server.rsplit("/", 1)[0] + "/" + args.database
    dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
    admin = dsn.rsplit("/", 1)[0] + "/postgres"
    await prepare_db(admin, db_url, args.database, args.devices, int(args.probe_rate * args.duration) + 100)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    broker, port, service_port = start_broker(workdir, args.publishers)
    result: dict[str, Any] = {
        "devices": args.devices,
        "duration_s": args.duration,
        "publishers": args.publishers,
        "workers": args.workers,
        "offered_rate_msgs_per_s": args.rate or "unpaced",
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    workers = spawn_workers(db_url, service_port, args.workers)
    try:
        await asyncio.sleep(4)  # imports, device cache, CONNECT + SUBSCRIBE
        # --- broker ceiling: the same flood (unpaced, under a root the ingest does not subscribe to)
        # read by the C client mosquitto_sub, before the live phase so they do not share the CPU.
        sub = SubCounter(service_port, f"{ROOT_C}/#")
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        _s, c_acked, _f = await asyncio.to_thread(
            flood,
            port,
            args.devices,
            min(args.duration, 10.0),
            args.publishers,
            0,
            10**9,
            0,
            2**62,
            ROOT_C,
        )
        c_publish_s = time.monotonic() - t0
        await asyncio.sleep(1)
        ceiling = sub.stop()
        result.update(
            ceiling_mosquitto_msgs_per_s=round(ceiling),
            ceiling_run_published_msgs_per_s=round(c_acked / c_publish_s),
            ceiling_run_received=sub.n,
        )
        # --- live flood, with the SOS latency probe alongside
        worker_pids = {w.pid for w in workers}
        cpu0 = cpu_by_part(worker_pids, broker.pid)
        probe_q: mp.Queue[tuple[int, int, int]] = mp.Queue()
        prober = mp.Process(
            target=_prober, args=(port, time.time() + args.duration, args.probe_rate, TOPIC_ROOT, probe_q)
        )
        t0 = time.monotonic()
        prober.start()
        sent, acked, failed = await asyncio.to_thread(
            flood, port, args.devices, args.duration, args.publishers, args.rate, args.sos_every, 0
        )
        publish_s = time.monotonic() - t0
        p_sent, p_acked, p_failed = await asyncio.to_thread(probe_q.get, True, 120)
        prober.join()
        sent, acked, failed = sent + p_sent, acked + p_acked, failed + p_failed
        conn = await asyncpg.connect(dsn)
        try:
            at_flood_end = await _stored(conn)
        finally:
            await conn.close()
        stored, waited, _ = await wait_stored(dsn, acked)
        cpu1 = cpu_by_part(worker_pids, broker.pid)
        conn = await asyncpg.connect(dsn)
        try:
            lat, in_stream = [await _latencies(conn, prefix) for prefix in ("p", "b")]
        finally:
            await conn.close()
        busy = cpu1["machine_busy"] - cpu0["machine_busy"]
        idle = cpu1["machine_idle"] - cpu0["machine_idle"]
        result.update(
            # CPU per committed message during the live phase, by part of the pipeline; the machine's
            # busy time includes everything else running (the kernel's network stack among it).
            live_cpu_us_per_msg={
                k: round((cpu1[k] - cpu0[k]) / max(stored, 1) * 1e6, 1)
                for k in ("ingest", "postgres", "broker", "publishers", "bench", "machine_busy")
            },
            live_machine_busy_share=round(busy / max(busy + idle, 1e-9), 3),
        )
        result.update(
            live_published=sent,
            live_acked_by_broker=acked,
            live_refused_by_broker=failed,
            live_publish_msgs_per_s=round(acked / publish_s),
            # Committed per second from the first publish until the last message was committed.
            telemetry_msgs_per_s=round(stored / (publish_s + waited)),
            committed_during_flood_msgs_per_s=round(at_flood_end / publish_s),
            backlog_at_flood_end=acked - at_flood_end,
            alarm_latency_ms_p50=_pct(lat, 0.5),
            alarm_latency_ms_p99=_pct(lat, 0.99),
            alarm_latency_ms_max=_pct(lat, 1.0),
            alarms_measured=len(lat),
            probe_rate_per_s=args.probe_rate,
            # SOS events inside the flood publishers' own streams: each waits behind the telemetry
            # that its publisher has queued ahead of it (up to its window), before the broker sees it.
            alarm_in_stream_latency_ms_p50=_pct(in_stream, 0.5),
            alarm_in_stream_latency_ms_p99=_pct(in_stream, 0.99),
            alarms_in_stream_measured=len(in_stream),
        )
        # --- drain: stop ingest, queue a backlog, start ingest, time until empty
        stop_workers(workers)
        workers = []
        # The backlog is stamped a day back (as after a day-long outage), so that it lands in a
        # partition of its own and progress is counted there, not over the live phase's rows.
        backlog_day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date()
        conn = await asyncpg.connect(dsn)
        try:
            before = await _stored(conn, backlog_day)
        finally:
            await conn.close()
        dsent, dacked, dfailed = await asyncio.to_thread(
            flood,
            port,
            args.devices,
            600,
            args.publishers,
            0,
            10**9,
            10_000_000,
            args.drain,
            TOPIC_ROOT,
            -86_400_000,
        )
        t0 = time.monotonic()
        workers = spawn_workers(db_url, service_port, args.workers)
        total, drain_s, first = await wait_stored(dsn, before + dacked, idle_s=30, day=backlog_day)
        drained = total - before
        result.update(
            drain_backlog=dacked,
            drain_refused_by_broker=dfailed,
            drain_stored=drained,
            drain_msgs_per_s=round(drained / (drain_s - (first or 0.0))),
            drain_msgs_per_s_incl_startup=round(drained / drain_s),
            drain_s=round(drain_s, 2),
            drain_startup_s=round(first or 0.0, 2),
            ceiling_copy_rows_per_s=round(await copy_ceiling(dsn)),
        )
        stop_workers(workers)
        workers = []
        conn = await asyncpg.connect(dsn)
        try:
            dup = await conn.fetchval(
                """SELECT (SELECT count(*) - count(DISTINCT (device_id, seq)) FROM telemetry)
                        + (SELECT count(*) - count(DISTINCT (device_id, seq)) FROM device_event)"""
            )
            stored_all = await _stored(conn)
        finally:
            await conn.close()
        result.update(
            published=sent + dsent,
            acked_by_broker=acked + dacked,
            stored=stored_all,
            lost=acked + dacked - stored_all,
            duplicates=int(dup),
            ratio_live_to_mosquitto=round(result["telemetry_msgs_per_s"] / max(ceiling, 1), 3),
            ratio_drain_to_copy=round(result["drain_msgs_per_s"] / result["ceiling_copy_rows_per_s"], 3),
            loadavg_1m_at_end=round(os.getloadavg()[0], 2),
        )
    finally:
        stop_workers(workers)
        broker.terminate()
        broker.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eldercare bench ingest")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=60.0, help="live flood, seconds")
    parser.add_argument("--drain", type=int, default=300_000, help="approximate backlog size, messages")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument(
        "--rate",
        type=float,
        default=32_000.0,
        help="offered msgs/s in total (the target is 30,000), 0 = unpaced",
    )
    parser.add_argument("--workers", type=int, default=2, help="ingest processes on the shared subscription")
    parser.add_argument("--sos-every", type=int, default=1000, help="an SOS in the flood every N messages")
    parser.add_argument(
        "--probe-rate", type=float, default=10.0, help="SOS/s from devices on their own connections"
    )
    parser.add_argument("--database", default="eldercare_bench_ingest")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0 if result.get("lost") == 0 and result.get("duplicates") == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
