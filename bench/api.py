# ruff: noqa: S310, S603, S607 - a benchmark driving local processes and calling them over loopback
"""API benchmark: ``eldercare bench api --json FILE``.

Drives the main read and write endpoints of each role through a real server (``eldercare serve``,
``--workers N``) with an external load generator, Debian's ``wrk`` (installed with ``apt-get`` when it
is missing and we are root), at fixed concurrency (``--connections``, default 16, over
``--threads`` 2). Per endpoint: ``req_per_s``, ``p50_ms``, ``p99_ms``, ``non_2xx`` and the ratio of
its rate to the ceiling measured in the same run on the same server (``GET /health``, a route that
does no I/O), and ``server_cpu_ms_per_req``: the CPU time (user + system) the server's processes
spent per request, read from ``/proc`` around the run, which other load on the machine inflates far
less than it lowers a rate. State figures as ratios: absolute rates depend on the machine and its
load, which is recorded (``/proc/loadavg``) next to every endpoint.

The database (``--database-url``, dropped, migrated and seeded with the demo data set, by the
served checkout's own ``eldercare``) gets fixtures for the caregiver's endpoints: visits on today's
plan, open offers, and en-route visits on later days for the check-in writes (each is checked in
once; a thread that runs out stops). Writes report the rows they left (``audit_log`` and
``order_transition``) per successful request.

``--checkout DIR`` serves another checkout of the project (e.g. the main branch, for a before/after
comparison in the same sitting); a checkout whose ``eldercare serve`` has no ``--workers`` is
served with uvicorn's own workers for ``--workers`` > 1. ``--workers 1,2`` measures both.

Endpoints are a table (:data:`ENDPOINTS`): a new one (e.g. the call centre's alarm queue) is one row,
with the role that calls it and its path (``{elder}``, ``{order}``, ``{visit}`` are filled from what
that role may see).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from callcentre.contract import RAISE_ELDER_ALARM, AlarmType
from callcentre.seed import POLICY_DEFAULTS as ALARM_DEFAULTS
from core.clock import SHANGHAI
from demo.data import DEMO_PASSWORD

BENCH_DB_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/eldercare_bench_api"
CHECKIN_VISITS = 6000  # en-route visits prepared for the check-in writes
CHECKIN_CAREGIVERS = 40  # caregivers they are spread over (150 each, on 5 elders each)
ORDER_ELDERS = 400  # active elders the order-create writes cycle through
OPEN_ALARMS = 10_000  # open alarms in the call centre's queue (issue #11: the queue with 10,000 open)


@dataclass(frozen=True)
class Endpoint:
    """One measured request. ``role``: whose token (``None``: anonymous); ``path`` may name
    ``{elder}`` (an elder that role sees), ``{order}``, ``{visit}``, ``{family_order}``; ``kind``
    selects a generated body for writes (``order`` or ``checkin``)."""

    name: str
    role: str | None
    path: str
    method: str = "GET"
    kind: str = ""
    group: str = "read"


ROLES = (
    "admin",
    "operator",
    "supervisor",
    "civil_affairs",
    "family",
    "elder",
    "caregiver",
    "provider_admin",
)
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("health", None, "/health", group="ceiling"),
    Endpoint("auth_me", "family", "/api/v1/auth/me", group="detail"),
    *(Endpoint(f"elders_list_{r}", r, "/api/v1/elders?limit=50", group="page") for r in ROLES),
    *(Endpoint(f"elder_detail_{r}", r, "/api/v1/elders/{elder}", group="detail") for r in ROLES),
    Endpoint("orders_list_admin", "admin", "/api/v1/orders?limit=50", group="page"),
    Endpoint("order_detail_admin", "admin", "/api/v1/orders/{order}", group="detail"),
    Endpoint("order_detail_family", "family", "/api/v1/orders/{family_order}", group="detail"),
    Endpoint("visit_detail_admin", "admin", "/api/v1/visits/{visit}", group="detail"),
    Endpoint("caregiver_plan", "caregiver", "/api/v1/caregiver/plan"),
    Endpoint("caregiver_offers", "caregiver", "/api/v1/caregiver/offers"),
    # The call centre's queue (issue #11), over OPEN_ALARMS open alarms: city-wide and one district.
    Endpoint("alarm_queue_operator", "operator", "/api/v1/callcentre/alarms?limit=50", group="page"),
    Endpoint(
        "alarm_queue_civil_affairs", "civil_affairs", "/api/v1/callcentre/alarms?limit=50", group="page"
    ),
    Endpoint("order_create_operator", "operator", "/api/v1/orders", "POST", "order", "write"),
    Endpoint(
        "checkin_caregiver", "caregiver", "/api/v1/caregiver/visits/{id}/check-in", "POST", "checkin", "write"
    ),
)


# --- The database ---------------------------------------------------------------------------------


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _recreate(url: str) -> None:
    dsn = _pg_dsn(url)
    base, name = dsn.rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _eldercare(checkout: Path) -> list[str]:
    return [str(checkout / ".venv" / "bin" / "python"), "-m", "api.cli"]


def prepare_database(url: str, checkout: Path) -> None:
    """Drop and recreate the database, migrate and seed the demo data with the served checkout."""
    asyncio.run(_recreate(url))
    for step in (["migrate", "--url", url], ["seed", "--demo", "--url", url]):
        subprocess.run(
            [*_eldercare(checkout), *step], cwd=checkout, check=True, stdout=subprocess.DEVNULL, env=_env(url)
        )
    asyncio.run(_fixtures(url))


@dataclass
class Fixtures:
    checkin_visits: list[tuple[int, str]] = field(default_factory=list)  # (visit, its caregiver's token)
    order_elders: list[int] = field(default_factory=list)


# Orders (and their visits or offers) from rows of (elder, caregiver, state, Shanghai wall-clock start).
_ORDERS_SQL = """
WITH rows AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamp[])
        AS r(elder_id, caregiver_id, state, local_start)
), orders AS (
    INSERT INTO service_order (elder_id, service_code, provider_id, caregiver_id, state, asap, urgent,
        window_start_at, window_end_at, duration_s, requirements, price_fen, offer_attempts,
        created_by_role, cancellation_fee_fen, created_at)
    SELECT r.elder_id, 'CLEAN', c.provider_id, CASE WHEN r.state = 'offered' THEN NULL ELSE c.id END,
           r.state, false, false, r.local_start AT TIME ZONE 'Asia/Shanghai',
           (r.local_start + interval '30 minutes') AT TIME ZONE 'Asia/Shanghai', 3600, '', 4000,
           CASE WHEN r.state = 'offered' THEN 1 ELSE 0 END, 'operator', 0, now()
    FROM rows r JOIN caregiver c ON c.id = r.caregiver_id
    RETURNING id, elder_id, state, window_start_at, provider_id, caregiver_id
), offers AS (
    INSERT INTO offer (order_id, caregiver_id, rank, score, eta_s, state, offered_at, deadline_at)
    SELECT o.id, r.caregiver_id, 1, 0.9, 600, 'pending', now(), now() + interval '1 day'
    FROM orders o JOIN rows r ON r.elder_id = o.elder_id
        AND r.local_start AT TIME ZONE 'Asia/Shanghai' = o.window_start_at AND r.state = 'offered'
    WHERE o.state = 'offered'
    RETURNING id
)
INSERT INTO visit (order_id, service_code, elder_id, caregiver_id, provider_id,
    scheduled_start_at, scheduled_end_at, check_in_qr_ok, checklist, pin_failures, verification)
SELECT o.id, 'CLEAN', o.elder_id, o.caregiver_id, o.provider_id, o.window_start_at,
       o.window_start_at + interval '1 hour', false, '{}'::jsonb, 0, 'pending'
FROM orders o WHERE o.state <> 'offered' AND (SELECT count(*) FROM offers) >= 0
"""

# Caregivers of the check-in writes: an account each and a session whose token is known.
_CHECKIN_ACCOUNTS_SQL = """
INSERT INTO app_user (username, display_name, password_hash, role, caregiver_id, provider_id, locale,
    is_active, failed_logins, password_change_required)
SELECT 'bench_cg_' || c.id, c.name, 'not-a-password-hash', 'caregiver', c.id, c.provider_id, 'zh-CN',
       true, 0, false
FROM caregiver c WHERE c.id = ANY($1::bigint[])
"""
_CHECKIN_SESSIONS_SQL = """
INSERT INTO auth_session (token_hash, user_id, created_at, expires_at)
SELECT t.hash, u.id, now(), now() + interval '1 day'
FROM unnest($1::bigint[], $2::text[]) AS t(caregiver_id, hash)
JOIN app_user u ON u.caregiver_id = t.caregiver_id
"""


def _checkin_token(caregiver_id: int) -> str:
    return f"bench-caregiver-{caregiver_id}-" + "t" * 20


async def _fixtures(url: str) -> None:
    """The demo caregiver: 8 visits on today's plan and 5 open offers (their elders are the ones
    they may read). ``CHECKIN_CAREGIVERS`` other caregivers, each with an account and a session:
    ``CHECKIN_VISITS`` en-route visits on later days, spread over them and 5 elders each."""
    conn = await asyncpg.connect(_pg_dsn(url))
    try:
        cg = await conn.fetchval("SELECT caregiver_id FROM app_user WHERE username = 'demo_caregiver'")
        family_elder = await conn.fetchval(
            "SELECT eg.elder_id FROM elder_guardian eg JOIN app_user u ON u.guardian_id = eg.guardian_id "
            "WHERE u.username = 'demo_family' ORDER BY eg.elder_id LIMIT 1"
        )
        elders = [
            int(r["id"])
            for r in await conn.fetch("SELECT id FROM elder WHERE status = 'active' ORDER BY id LIMIT 1000")
        ]
        others = [
            int(r["id"])
            for r in await conn.fetch(
                "SELECT id FROM caregiver WHERE id <> $1 ORDER BY id LIMIT $2", cg, CHECKIN_CAREGIVERS
            )
        ]
        today = dt.datetime.now(SHANGHAI).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
        rows: list[tuple[int, int, str, dt.datetime]] = []
        plan_elders = [family_elder, *elders[:7]]
        rows += [(e, cg, "accepted", today + dt.timedelta(hours=8 + i)) for i, e in enumerate(plan_elders)]
        rows += [(elders[10 + i], cg, "offered", today + dt.timedelta(hours=9 + i)) for i in range(5)]
        per = CHECKIN_VISITS // len(others)
        for k, other in enumerate(others):
            mine = elders[20 + 5 * k : 25 + 5 * k]
            for i in range(per):
                start = today + dt.timedelta(days=1 + i // 10, minutes=60 * (i % 10))
                rows.append((mine[i % 5], other, "en_route", start))
        await conn.execute(_ORDERS_SQL, *(list(col) for col in zip(*rows, strict=True)))
        await conn.execute(_CHECKIN_ACCOUNTS_SQL, others)
        hashes = [hashlib.sha256(_checkin_token(c).encode()).hexdigest() for c in others]
        await conn.execute(_CHECKIN_SESSIONS_SQL, others, hashes)
        await _open_alarms(conn)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _open_alarms(conn: asyncpg.Connection) -> None:
    """``OPEN_ALARMS`` open alarms: every type for each active elder in turn (one per elder and type,
    so severities mix), at its seeded severity, raised through the call centre's one writer
    (``callcentre.contract``)."""
    severity = {d.scope: d.value["severity"] for d in ALARM_DEFAULTS if d.key == "alarm.severity"}
    active = await conn.fetch("SELECT id FROM elder WHERE status = 'active' ORDER BY id")
    elders = [int(r["id"]) for r in active]
    now = dt.datetime.now(dt.UTC)
    rows = [
        (t.value, severity[t.value], None, e, now - dt.timedelta(seconds=i), '{"bench": true}')
        for i, (t, e) in enumerate((t, e) for e in elders for t in AlarmType)
    ][:OPEN_ALARMS]
    await conn.executemany(RAISE_ELDER_ALARM, rows)


async def _load_fixtures(url: str) -> Fixtures:
    conn = await asyncpg.connect(_pg_dsn(url))
    try:
        visits = await conn.fetch(
            "SELECT v.id, v.caregiver_id FROM visit v JOIN service_order o ON o.id = v.order_id "
            "WHERE o.state = 'en_route' ORDER BY v.scheduled_start_at, v.id"
        )
        elders = await conn.fetch(
            "SELECT id FROM elder WHERE status = 'active' ORDER BY id LIMIT $1", ORDER_ELDERS
        )
        return Fixtures(
            [(int(r["id"]), _checkin_token(int(r["caregiver_id"]))) for r in visits],
            [int(r["id"]) for r in elders],
        )
    finally:
        await conn.close()


async def _written_rows(url: str) -> int:
    conn = await asyncpg.connect(_pg_dsn(url))
    try:
        return int(
            await conn.fetchval(
                "SELECT (SELECT count(*) FROM audit_log) + (SELECT count(*) FROM order_transition)"
            )
        )
    finally:
        await conn.close()


# --- The server -----------------------------------------------------------------------------------


def _env(url: str, port: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ELDERCARE_DATABASE_URL=url,
        ELDERCARE_SECRET_KEY="bench-" + "x" * 40,
        ELDERCARE_LOG_JSON="1",
        ELDERCARE_LOG_LEVEL="INFO",
    )
    if port is not None:
        env.update(ELDERCARE_HOST="127.0.0.1", ELDERCARE_PORT=str(port))
    return env


_SHIM = """
from api.app import create_app
from core.settings import Settings


def app():
    return create_app(Settings.from_env())
"""


def _serve_command(checkout: Path, workers: int, shim_dir: Path) -> tuple[list[str], dict[str, str]]:
    """``eldercare serve --workers N``; for a checkout without it, uvicorn's workers over a factory."""
    helptext = subprocess.run(
        [*_eldercare(checkout), "serve", "--help"], cwd=checkout, capture_output=True, text=True, check=True
    ).stdout
    if "--workers" in helptext:
        return [*_eldercare(checkout), "serve", "--workers", str(workers)], {}
    if workers == 1:
        return [*_eldercare(checkout), "serve"], {}
    (shim_dir / "eldercare_bench_app.py").write_text(_SHIM)
    python = str(checkout / ".venv" / "bin" / "python")
    cmd = [python, "-m", "uvicorn", "--factory", "eldercare_bench_app:app", "--workers", str(workers)]
    cmd += ["--no-access-log", "--no-server-header", "--log-level", "warning"]
    return cmd, {"PYTHONPATH": f"{shim_dir}:{checkout}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A served checkout on a free port, its output thrown away (one log line per request)."""

    def __init__(self, checkout: Path, url: str, workers: int) -> None:
        self.port = _free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="eldercare-bench-")
        cmd, extra = _serve_command(checkout, workers, Path(self._tmp.name))
        env = _env(url, self.port)
        env.update(extra)
        if extra:
            cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=checkout,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 240.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError("the server did not answer /health in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._tmp.cleanup()


def _call(base: str, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


@dataclass
class Context:
    tokens: dict[str, str]
    values: dict[str, dict[str, int]]  # role -> {elder, order, visit, family_order}


def sign_in(base: str) -> Context:
    """A token per demo role, and for each role an elder (and order, visit) it may read."""
    login = "/api/v1/auth/login"
    tokens = {
        r: _call(base, "POST", login, body={"login": f"demo_{r}", "password": DEMO_PASSWORD})["access_token"]
        for r in ROLES
    }
    values: dict[str, dict[str, int]] = {}
    for r in ROLES:
        page = _call(base, "GET", "/api/v1/elders?limit=1", tokens[r])
        values[r] = {"elder": page["items"][0]["id"]} if page["items"] else {}
    orders = _call(base, "GET", "/api/v1/orders?limit=50", tokens["admin"])["items"]
    visit_order = next(o for o in orders if o["state"] in ("accepted", "en_route"))
    detail = _call(base, "GET", f"/api/v1/orders/{visit_order['id']}", tokens["admin"])
    values["admin"].update(order=orders[0]["id"], visit=detail["visit"]["id"])
    family_orders = _call(base, "GET", "/api/v1/orders?limit=1", tokens["family"])["items"]
    if family_orders:
        values["family"]["family_order"] = family_orders[0]["id"]
    return Context(tokens, values)


# --- wrk ------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
        if not found:
            subprocess.run(["apt-get", "update"], check=False, stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
            found = shutil.which("wrk")
    if not found:
        raise SystemExit("eldercare bench api: needs wrk (Debian package `wrk`): apt-get install wrk")
    return found


_DONE = """
function done(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,'
    .. '"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def _lua_list(values: Sequence[object]) -> str:
    return "{" + ",".join(json.dumps(v) for v in values) + "}"


def lua_script(ep: Endpoint, token: str | None, path: str, fx: Fixtures, threads: int) -> str:
    headers = ['wrk.headers["Content-Type"] = "application/json"']
    if token:
        headers.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    head = "\n".join(headers) + "\n"
    if ep.kind == "order":
        # Each request a different elder and day, a week ahead and later: a plain one-off order.
        body = f"""
local elders = {_lua_list(fx.order_elders)}
local n = 0
local t0 = os.time() + 7 * 86400
request = function()
  n = n + 1
  local e = elders[(n % #elders) + 1]
  local s = os.date("!%Y-%m-%dT%H:%M:00Z", t0 + (n % 20000) * 1800 + math.random(0, 1200))
  return wrk.format("POST", "{path}", nil,
    '{{"elder_id":' .. e .. ',"service_code":"CLEAN","window_start_at":"' .. s .. '"}}')
end
"""
    elif ep.kind == "checkin":
        # Each thread checks in its own share of the prepared visits, once each, as the visit's
        # caregiver, then stops.
        share = max(1, len(fx.checkin_visits) // threads)
        ids = _lua_list([v for v, _ in fx.checkin_visits])
        tokens = _lua_list([t for _, t in fx.checkin_visits])
        body = f"""
local visits = {ids}
local tokens = {tokens}
local share = {share}
local counter = 0
function setup(thread) thread:set("first", counter * share); counter = counter + 1 end
local i = 0
request = function()
  local first = tonumber(wrk.thread:get("first"))
  i = i + 1
  if i > share then i = share end
  local v = visits[first + i]
  local headers = {{}}
  headers["Authorization"] = "Bearer " .. tokens[first + i]
  headers["Content-Type"] = "application/json"
  local path = string.gsub("{path}", "{{id}}", tostring(v))
  return wrk.format("POST", path, headers, '{{"lat":30.92,"lon":113.91}}')
end
response = function(status, headers, body)
  if i >= share then wrk.thread:stop() end
end
"""
    else:
        body = f'wrk.method = "{ep.method}"\nwrk.path = "{path}"\n'
    return head + body + _DONE


def run_wrk(
    wrk: str, base: str, script: str, *, threads: int, connections: int, duration_s: int
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        name = f.name
    try:
        out = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{duration_s}s",
                "--timeout",
                "10s",
                "-s",
                name,
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(name)
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    raw: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    return raw


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by the server process and all its descendants (the
    workers of ``--workers N``). Per request, it is what a request costs the server whatever else
    runs on the machine: a rate falls when other processes take the cores, this much less."""
    total, todo, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        todo += _children(current)
    return total


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def measure(
    wrk: str,
    server: Server,
    ctx: Context,
    fx: Fixtures,
    url: str,
    eps: Sequence[Endpoint],
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for ep in eps:
        values = ctx.values.get(ep.role or "", {})
        try:
            path = ep.path.format(id="{id}", **values) if ep.kind != "checkin" else ep.path
        except KeyError:
            results[ep.name] = {"skipped": f"no record for {ep.role} to read"}
            continue
        token = ctx.tokens.get(ep.role) if ep.role else None
        before = asyncio.run(_written_rows(url)) if ep.group == "write" else 0
        load = loadavg()
        cpu_before = server_cpu_s(server.proc.pid)
        raw = run_wrk(
            wrk,
            server.base,
            lua_script(ep, token, path, fx, args.threads),
            threads=args.threads,
            connections=args.connections,
            duration_s=args.duration,
        )
        secs = raw["duration_us"] / 1e6
        cpu_s = server_cpu_s(server.proc.pid) - cpu_before
        row: dict[str, Any] = {
            "role": ep.role,
            "path": f"{ep.method} {ep.path}",
            "group": ep.group,
            "req_per_s": round(raw["requests"] / secs, 1),
            "p50_ms": round(raw["p50_us"] / 1000, 2),
            "p99_ms": round(raw["p99_us"] / 1000, 2),
            "mean_ms": round(raw["mean_us"] / 1000, 2),
            "requests": raw["requests"],
            "non_2xx": raw["non_2xx"],
            "socket_errors": raw["socket_errors"],
            "server_cpu_ms_per_req": round(1000 * cpu_s / max(raw["requests"], 1), 3),
            "loadavg": load,
        }
        if ep.group == "write":
            ok = raw["requests"] - raw["non_2xx"]
            row["rows_written_per_ok_request"] = round(
                (asyncio.run(_written_rows(url)) - before) / max(ok, 1), 2
            )
        results[ep.name] = row
        print(
            f"  {ep.name:<28} {row['req_per_s']:>8} req/s  p50 {row['p50_ms']:>7} ms"
            f"  p99 {row['p99_ms']:>7} ms  cpu {row['server_cpu_ms_per_req']:>6} ms/req"
            f"  non-2xx {row['non_2xx']}  load {load}",
            file=sys.stderr,
            flush=True,
        )
    ceiling = results.get("health", {}).get("req_per_s")
    if ceiling:
        for row in results.values():
            if "req_per_s" in row:
                row["ratio_to_ceiling"] = round(row["req_per_s"] / ceiling, 3)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="eldercare bench api", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    ap.add_argument("--database-url", default=BENCH_DB_URL, help="throwaway database (dropped and recreated)")
    ap.add_argument(
        "--checkout", type=Path, default=Path(__file__).resolve().parent.parent, help="the checkout to serve"
    )
    ap.add_argument("--workers", default="1", help="comma-separated worker counts to measure (default 1)")
    ap.add_argument("--duration", type=int, default=5, help="seconds per endpoint")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="comma-separated endpoint names (health is always measured)")
    ap.add_argument(
        "--reuse-database", action="store_true", help="keep the database as it is (earlier writes used it up)"
    )
    args = ap.parse_args(argv)
    wrk = ensure_wrk()
    checkout = args.checkout.resolve()
    eps = list(ENDPOINTS)
    if args.only:
        wanted = {"health", *args.only.split(",")}
        eps = [e for e in eps if e.name in wanted]
    out: dict[str, Any] = {
        "tool": "wrk",
        "checkout": str(checkout),
        "threads": args.threads,
        "connections": args.connections,
        "duration_s": args.duration,
        "cpus": os.cpu_count(),
        "runs": [],
    }
    for workers in [int(w) for w in args.workers.split(",")]:
        if not args.reuse_database:
            print(f"== preparing {args.database_url}", file=sys.stderr, flush=True)
            prepare_database(args.database_url, checkout)
        fx = asyncio.run(_load_fixtures(args.database_url))
        server = Server(checkout, args.database_url, workers)
        try:
            server.wait_ready()
            ctx = sign_in(server.base)
            print(f"== {workers} worker(s), {checkout}", file=sys.stderr, flush=True)
            results = measure(wrk, server, ctx, fx, args.database_url, eps, args)
        finally:
            server.stop()
        out["runs"].append({"workers": workers, "endpoints": results})
    text = json.dumps(out, indent=2, ensure_ascii=False)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
