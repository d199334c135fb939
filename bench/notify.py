"""Notification benchmark: ``eldercare bench notify --json FILE``.

The outbox dispatcher (``core.notify``) against a webhook receiver in its own process (uvicorn, on
loopback; it checks every signature and records each key's first arrival), on a throwaway database
(``--database-url``, recreated and migrated):

1. ``ceiling_posts_per_s``: the same signed requests posted straight to the receiver by httpx with as
   many in flight as the dispatcher allows (``--concurrency``), no database: what delivery could reach
   on this machine, measured in the same run.
2. ``delivered_per_s``: ``--rows`` rows enqueued beforehand, delivered by one dispatcher's loop
   (claim with lease, deliver, mark), from its start until the last row is ``sent``; ``ratio`` is that
   over the ceiling.
3. ``enqueue_to_delivery_ms_p50`` / ``_p99``: ``--latency-rows`` rows enqueued one per transaction at
   ``--latency-rate`` per second while the dispatcher runs: commit to arrival at the receiver (it wakes
   on ``NOTIFY outbox``, not on its poll).
4. ``duplicates``: deliveries beyond one per key (0 expected: nothing crashes here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DB_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/eldercare_bench_notify"
SECRET = "bench-notify-secret"  # noqa: S105 - a throwaway receiver's


# --- the receiver (its own process) -----------------------------------------------------------------


def serve_receiver(port: int) -> None:
    import uvicorn

    from core.notify.signing import verify

    arrivals: dict[str, float] = {}
    counts = {"requests": 0, "bad_signatures": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":
            payload = json.dumps({**counts, "arrivals": arrivals}).encode()
        else:
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            counts["requests"] += 1
            try:
                verify(SECRET, headers.get("x-eldercare-signature"), body, now_s=int(time.time()))
            except ValueError:
                counts["bad_signatures"] += 1
            arrivals.setdefault(headers.get("idempotency-key", ""), time.time())
            payload = b'{"ok":true}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the bench ---------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _recreate(url: str) -> None:
    import asyncpg
    from alembic import command
    from alembic.config import Config

    from core.settings import PROJECT_ROOT

    base, _, name = url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
    conn = await asyncpg.connect(base + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    await asyncio.to_thread(command.upgrade, cfg, "heads")


async def _wait_http(port: int, timeout_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                await client.get(f"http://127.0.0.1:{port}/stats")
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the receiver did not start")
            await asyncio.sleep(0.2)


async def _stats(port: int) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient() as client:
        answer: dict[str, Any] = (await client.get(f"http://127.0.0.1:{port}/stats")).json()
        return answer


async def _ceiling(url: str, n: int, concurrency: int, settings: Any) -> float:
    from core.notify.channel import Message
    from core.notify.runner import http_client
    from core.notify.webhook import WebhookChannel

    now = dt.datetime.now(dt.UTC)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    async with http_client(settings) as client:
        channel = WebhookChannel(client, secret=SECRET)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                m = Message(i, "webhook", url, "bench.ceiling", None, _payload(i), f"ceiling:{i}", now)
                await channel.send(m)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - started)


def _payload(i: int) -> dict[str, Any]:
    return {"alarm_id": i, "elder_name": "王秀英", "type": "SOS", "district": "孝南区", "count": 1}


async def _enqueue(pool: Any, url: str, keys: Sequence[str]) -> None:
    from core.outbox import enqueue

    async with pool.acquire() as conn, conn.transaction():
        for i, key in enumerate(keys):
            await enqueue(
                conn,
                channel="webhook",
                recipient=url,
                kind="bench.alarm",
                payload=_payload(i),
                idempotency_key=key,
            )


async def _until_all_sent(pool: Any) -> None:
    """Polls the table (the bench's own view; the dispatcher does not report to it)."""
    remaining = 1
    while remaining:
        remaining = await pool.fetchval("SELECT count(*) FROM notification_outbox WHERE status <> 'sent'")
        if remaining:
            await asyncio.sleep(0.05)


async def _run(args: argparse.Namespace) -> dict[str, float]:
    import asyncpg

    from core.logging import configure_logging
    from core.notify.dispatcher import Dispatcher
    from core.notify.runner import build_channels, dispatcher_config, http_client
    from core.settings import Settings
    from demo.net import free_port

    configure_logging(json=True, level="WARNING")
    await _recreate(args.database_url)
    dsn = args.database_url.replace("postgresql+asyncpg://", "postgresql://")
    settings = Settings(
        database_url=args.database_url, notify_webhook_secret=SECRET, notify_concurrency=args.concurrency
    )
    port = free_port()
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.notify", "--serve-receiver", str(port)
    )
    out: dict[str, float] = {"rows": args.rows, "concurrency": args.concurrency}
    try:
        await _wait_http(port)
        url = f"http://127.0.0.1:{port}/hook"
        out["ceiling_posts_per_s"] = round(await _ceiling(url, args.rows, args.concurrency, settings), 1)

        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=6)
        try:
            keys = [f"bulk:{i}" for i in range(args.rows)]
            for start in range(0, len(keys), 1000):
                await _enqueue(pool, url, keys[start : start + 1000])
            async with http_client(settings) as client:
                dispatcher = Dispatcher(
                    pool, build_channels(settings, client), config=dispatcher_config(settings), listen_dsn=dsn
                )
                stop = asyncio.Event()
                started = time.perf_counter()
                running = asyncio.create_task(dispatcher.run(stop))
                await _until_all_sent(pool)
                elapsed = time.perf_counter() - started
                out["delivered_per_s"] = round(args.rows / elapsed, 1)
                out["ratio"] = round(out["delivered_per_s"] / out["ceiling_posts_per_s"], 3)

                committed: dict[str, float] = {}
                for i in range(args.latency_rows):
                    key = f"latency:{i}"
                    await _enqueue(pool, url, [key])
                    committed[key] = time.time()
                    await asyncio.sleep(1 / args.latency_rate)
                await _until_all_sent(pool)
                stop.set()
                await running
            stats = await _stats(port)
        finally:
            await pool.close()
        arrivals: dict[str, float] = stats["arrivals"]
        latencies = [(arrivals[k] - t) * 1000 for k, t in committed.items() if k in arrivals]
        out["enqueue_to_delivery_ms_p50"] = round(statistics.median(latencies), 2)
        out["enqueue_to_delivery_ms_p99"] = round(_pct(latencies, 0.99), 2)
        expected = args.rows * 2 + args.latency_rows  # ceiling + bulk + latency rows
        out["duplicates"] = stats["requests"] - expected
        out["bad_signatures"] = stats["bad_signatures"]
        out["lost"] = expected - len(arrivals)
    finally:
        receiver.terminate()
        await receiver.wait()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="eldercare bench notify", description=__doc__)
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    ap.add_argument("--rows", type=int, default=5_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency-rows", type=int, default=200)
    ap.add_argument("--latency-rate", type=float, default=50.0, help="latency rows enqueued per second")
    ap.add_argument("--database-url", default=BENCH_DB_URL, help="throwaway database (recreated)")
    ap.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_receiver:
        serve_receiver(args.serve_receiver)
        return 0
    out = asyncio.run(_run(args))
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
