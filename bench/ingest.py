# ruff: noqa: S603, S607, ASYNC220, ASYNC221 - a benchmark driving local processes
"""Ingest benchmark: ``eldercare bench ingest --json FILE`` (or ``python -m bench.ingest``).

Starts a private Mosquitto with deploy/mosquitto/mosquitto.conf (port and paths rewritten, anonymous
access allowed for the bench), a database of its own, and one ingest worker; then measures

- ``telemetry_msgs_per_s``: telemetry committed per second while publishers flood for ``--duration`` s,
  with SOS events mixed in (``alarm_latency_ms_p50/p99``: publish → alarm row committed);
- ``drain_msgs_per_s``: ingest stopped, ``--drain`` QoS 1 messages queued in its persistent session,
  ingest started: committed per second until the backlog is empty;
- ceilings in the same run: ``ceiling_mosquitto_msgs_per_s`` (``mosquitto_sub`` reading the same
  flood) and ``ceiling_copy_rows_per_s`` (asyncpg COPY of telemetry-shaped rows).

Publishers are separate processes, each waiting for every PUBACK; ``lost`` and ``duplicates`` compare
what was acknowledged by the broker with what is in ``telemetry``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg

from core.settings import Settings
from simulators import devices as sim

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "mosquitto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    skip = ("pid_file", "user", "persistence_location", "listener", "password_file", "acl_file", "log_dest")
    lines = [
        ln for ln in (DEPLOY / "mosquitto.conf").read_text().splitlines() if not ln.strip().startswith(skip)
    ]
    lines = [ln for ln in lines if not ln.startswith("allow_anonymous")]
    lines += [
        f"user {getpass.getuser()}",
        f"persistence_location {workdir}/",
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "log_dest none",
    ]
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, port


async def prepare_db(admin_dsn: str, db_url: str, name: str, devices: int) -> None:
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
    finally:
        await conn.close()


def _publisher(port: int, part: int, parts: int, devices: int, until: float, sos_every: int, q: Any) -> None:
    """One publisher process: telemetry for its share of devices, an SOS every ``sos_every`` messages."""

    def stream() -> Any:
        n = 0
        seq = 0
        while time.time() < until:
            for d in range(part, devices, parts):
                seq += 1
                ms = int(time.time() * 1000)
                if n % sos_every == sos_every - 1:
                    yield sim.native_event(f"b{d}", seq=seq, ts_ms=ms, type="sos", data={"pub_ms": ms})
                else:
                    yield sim.native_telemetry(f"b{d}", seq=seq, ts_ms=ms, values={"hr": 60 + n % 40})
                n += 1
                if time.time() >= until:
                    return

    res = sim.publish(stream(), host="127.0.0.1", port=port, window=2000, client_id=f"bench-pub-{part}")
    q.put((res.sent, res.acked, res.failed))


def flood(port: int, devices: int, seconds: float, publishers: int, sos_every: int) -> tuple[int, int]:
    q: mp.Queue[tuple[int, int, int]] = mp.Queue()
    until = time.time() + seconds
    procs = [
        mp.Process(target=_publisher, args=(port, i, publishers, devices, until, sos_every, q))
        for i in range(publishers)
    ]
    for p in procs:
        p.start()
    sent = acked = 0
    for _ in procs:
        s, a, _f = q.get(timeout=seconds + 120)
        sent += s
        acked += a
    for p in procs:
        p.join()
    return sent, acked


def spawn_ingest(db_url: str, port: int, client_id: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iot_ingest",
            "--database-url",
            db_url,
            "--mqtt-url",
            f"mqtt://127.0.0.1:{port}",
            "--client-id",
            client_id,
            "--subscription",
            "$share/ingest/eldercare/v1/#",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "ELDERCARE_LOG_LEVEL": "WARNING"},
    )


async def count(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        tele = await conn.fetchval("SELECT count(*) FROM telemetry")
        ev = await conn.fetchval("SELECT count(*) FROM device_event")
        return int(tele), int(ev)
    finally:
        await conn.close()


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


async def wait_stable(dsn: str, target: int, timeout: float) -> tuple[int, float]:  # noqa: ASYNC109
    """Poll telemetry+event counts until ``target`` is reached or nothing moves for 5 s."""
    t0 = time.monotonic()
    last, last_change = -1, time.monotonic()
    while time.monotonic() - t0 < timeout:
        tele, ev = await count(dsn)
        total = tele + ev
        if total >= target:
            return total, time.monotonic() - t0
        if total != last:
            last, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > 5:
            break
        await asyncio.sleep(0.2)
    return last, time.monotonic() - t0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings()
    server = os.environ.get("ELDERCARE_DATABASE_URL", base.database_url)
    db_url = server.rsplit("/", 1)[0] + "/" + args.database
    dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
    admin = dsn.rsplit("/", 1)[0] + "/postgres"
    await prepare_db(admin, db_url, args.database, args.devices)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    broker, port = start_broker(workdir)
    result: dict[str, Any] = {
        "devices": args.devices,
        "duration_s": args.duration,
        "publishers": args.publishers,
    }
    ingest = spawn_ingest(db_url, port, "bench-ingest-1")
    try:
        await asyncio.sleep(3)
        # --- live flood, with mosquitto_sub reading the same flood for the broker ceiling
        sub = subprocess.Popen(
            ["mosquitto_sub", "-p", str(port), "-q", "1", "-t", "eldercare/v1/dev/#", "-i", "bench-ceiling"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        counter = {"n": 0, "first": 0.0, "last": 0.0}

        def read_sub() -> None:
            assert sub.stdout is not None
            for _ in sub.stdout:
                now = time.monotonic()
                counter["first"] = counter["first"] or now
                counter["last"] = now
                counter["n"] += 1

        reader = threading.Thread(target=read_sub, daemon=True)
        reader.start()
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        sent, acked = await asyncio.to_thread(
            flood, port, args.devices, args.duration, args.publishers, args.sos_every
        )
        publish_s = time.monotonic() - t0
        stored, elapsed = await wait_stable(dsn, acked, timeout=120)
        await asyncio.sleep(1)
        sub.terminate()
        reader.join(timeout=5)
        ceiling = counter["n"] / max(counter["last"] - counter["first"], 1e-6)
        conn = await asyncpg.connect(dsn)
        try:
            dup = await conn.fetchval("SELECT count(*) - count(DISTINCT (device_id, seq)) FROM telemetry")
            lat = [
                r[0]
                for r in await conn.fetch(
                    """SELECT (extract(epoch FROM a.received_at) * 1000
                               - min((e.data->>'pub_ms')::bigint))::float8
                       FROM alarm a JOIN device_event e ON e.device_id = a.device_id AND e.type = 'sos'
                       WHERE a.type = 'SOS' GROUP BY a.id, a.received_at"""
                )
            ]
        finally:
            await conn.close()
        lat.sort()
        result.update(
            published=sent,
            acked_by_broker=acked,
            stored=stored,
            lost=acked - stored,
            duplicates=int(dup),
            # Committed per second from the first publish until the last message was committed.
            telemetry_msgs_per_s=round(stored / (publish_s + elapsed)),
            live_publish_msgs_per_s=round(acked / publish_s),
            alarm_latency_ms_p50=round(statistics.median(lat), 1) if lat else None,
            alarm_latency_ms_p99=round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1) if lat else None,
            alarms_measured=len(lat),
            ceiling_mosquitto_msgs_per_s=round(ceiling),
        )
        # --- drain: stop ingest, queue a backlog, start ingest, time until empty
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(timeout=60)
        before = sum(await count(dsn))
        _dsent, dacked = await asyncio.to_thread(
            flood, port, args.devices, max(1.0, args.drain / 20_000), args.publishers, 10**9
        )
        ingest = spawn_ingest(db_url, port, "bench-ingest-1")
        t0 = time.monotonic()
        total, _ = await wait_stable(dsn, before + dacked, timeout=300)
        drain_s = time.monotonic() - t0
        result.update(
            drain_backlog=dacked,
            drain_stored=total - before,
            drain_msgs_per_s=round((total - before) / drain_s),
            ceiling_copy_rows_per_s=round(await copy_ceiling(dsn)),
        )
        result["ratio_live_to_mosquitto"] = round(result["telemetry_msgs_per_s"] / max(ceiling, 1), 3)
        result["ratio_drain_to_copy"] = round(
            result["drain_msgs_per_s"] / result["ceiling_copy_rows_per_s"], 3
        )
    finally:
        ingest.send_signal(signal.SIGTERM)
        try:
            ingest.wait(timeout=30)
        except subprocess.TimeoutExpired:
            ingest.kill()
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
    parser.add_argument("--publishers", type=int, default=3)
    parser.add_argument("--sos-every", type=int, default=1000)
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
