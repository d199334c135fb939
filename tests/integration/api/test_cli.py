"""The platform shell: the ``eldercare`` CLI, service discovery with its embedded fallbacks, the
process supervisor, and ``eldercare demo`` end to end.

Runs against the real PostgreSQL server of the test database (ELDERCARE_TEST_DATABASE_URL) and the
real Mosquitto on 127.0.0.1:1883, like the rest of the suite. Embedded services keep their state in
throwaway folders under ``.eldercare/`` and are stopped and removed by the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from io import StringIO
from pathlib import Path
from typing import Literal

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from core.settings import PROJECT_ROOT, STATE_DIR
from demo.broker import (
    CONNACK_ACCEPTED,
    CONNACK_NOT_AUTHORIZED,
    DEMO_DEVICES_USER,
    DEPLOY_CONFIG,
    find_broker,
    mqtt_connack,
    split_mqtt_url,
)
from demo.net import free_port, http_status, port_open
from demo.postgres import DatabaseUnavailable, EmbeddedPostgres, asyncpg_dsn, find_database
from demo.supervisor import Component, Supervisor
from tests.conftest import TEST_DB_URL

pytestmark = pytest.mark.integration

# Databases of their own, named after the test database so that two suites on one server never meet.
_BASE = make_url(TEST_DB_URL).database or "eldercare_test"
CLI_DB_URL = make_url(TEST_DB_URL).set(database=f"{_BASE}_cli").render_as_string(hide_password=False)
SERVER = make_url(TEST_DB_URL)
LOCAL_SERVER = SERVER.host in {"127.0.0.1", "localhost"} and not SERVER.password
MQTT_URL = os.environ.get("ELDERCARE_MQTT_URL", "mqtt://127.0.0.1:1883")
PYTHON = sys.executable


async def _drop(url: str) -> None:
    name = make_url(url).database
    admin = await asyncpg.connect(asyncpg_dsn(url, database="postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _scalar(url: str, sql: str) -> object:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def _eldercare(*args: str, env: dict[str, str], timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [PYTHON, "-m", "api.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A throwaway state folder under .eldercare/ (embedded services keep their data there)."""
    path = STATE_DIR / f"test-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- migrate + seed through the CLI ----------------------------------------------------------------


async def test_migrate_on_missing_database_creates_it_then_seed_demo_twice_adds_nothing() -> None:
    await _drop(CLI_DB_URL)
    env = {**os.environ, "ELDERCARE_DATABASE_URL": CLI_DB_URL, "ELDERCARE_LOG_LEVEL": "WARNING"}
    try:
        # The database does not exist: ``migrate`` creates it, as ``demo`` does.
        migrated = await asyncio.to_thread(_eldercare, "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert "Traceback" not in migrated.stderr
        assert f"Database {_BASE}_cli created." in migrated.stdout
        assert "migrated" in migrated.stdout
        heads = await _scalar(CLI_DB_URL, "SELECT count(*) FROM alembic_version")
        assert isinstance(heads, int)
        assert heads >= 1

        first = await asyncio.to_thread(_eldercare, "seed", "--demo", "--today", "2026-11-20", env=env)
        assert first.returncode == 0, first.stderr
        assert "Demo data created." in first.stdout
        assert "demo_admin" in first.stdout
        counts = {
            table: await _scalar(CLI_DB_URL, f"SELECT count(*) FROM {table}")
            for table in ("elder", "caregiver", "provider", "device", "app_user", "district", "policy_value")
        }
        assert counts["elder"] == 2000
        assert counts["district"] == 7

        second = await asyncio.to_thread(_eldercare, "seed", "--demo", "--today", "2026-11-21", env=env)
        assert second.returncode == 0, second.stderr
        assert "already present, nothing added" in second.stdout
        again = {table: await _scalar(CLI_DB_URL, f"SELECT count(*) FROM {table}") for table in counts}
        assert again == counts
    finally:
        await _drop(CLI_DB_URL)


def test_migrate_against_a_server_that_does_not_answer_says_so_in_one_line() -> None:
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/eldercare"
    result = _eldercare("migrate", "--url", dead, env={**os.environ, "ELDERCARE_LOG_LEVEL": "WARNING"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("eldercare migrate: --url=")
    assert "does not answer" in lines[0]
    assert result.stdout == ""


async def test_seed_on_a_missing_unmigrated_or_dead_database_says_what_to_do_in_one_line() -> None:
    """Not a traceback: one line naming the URL's source and the command that helps, exit 1."""
    url = make_url(TEST_DB_URL).set(database=f"{_BASE}_cli_seed").render_as_string(hide_password=False)
    env = {**os.environ, "ELDERCARE_LOG_LEVEL": "WARNING"}
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/eldercare"
    await _drop(url)
    expected = {
        "missing": (url, "does not exist"),
        "unmigrated": (url, "is not migrated (run `eldercare migrate` first)"),
        "dead": (dead, "does not answer"),
    }
    try:
        for case, (target, says) in expected.items():
            if case == "unmigrated":
                admin = await asyncpg.connect(asyncpg_dsn(url, database="postgres"))
                try:
                    await admin.execute(f'CREATE DATABASE "{_BASE}_cli_seed"')
                finally:
                    await admin.close()
            result = await asyncio.to_thread(_eldercare, "seed", "--url", target, env=env)
            assert result.returncode == 1, (case, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, (case, result.stderr)
            assert lines[0].startswith("eldercare seed: --url="), case
            assert says in lines[0], (case, lines[0])
        assert await _scalar(url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    finally:
        await _drop(url)


def test_domain_subcommand_whose_module_is_missing_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import EXIT_UNAVAILABLE, _delegate

    assert _delegate("bench.no_such_benchmark", "the no-such benchmark", []) == EXIT_UNAVAILABLE
    assert "module bench.no_such_benchmark is missing" in capsys.readouterr().err


# --- database discovery ----------------------------------------------------------------------------


async def test_configured_database_url_wins_and_its_database_is_created() -> None:
    url = make_url(TEST_DB_URL).set(database=f"{_BASE}_cli_env").render_as_string(hide_password=False)
    await _drop(url)
    try:
        choice = await find_database(env={"ELDERCARE_DATABASE_URL": url}, state_dir=STATE_DIR)
        assert choice.origin == "environment"
        assert choice.url == url
        assert choice.embedded is None
        assert await _scalar(url, "SELECT current_database()") == f"{_BASE}_cli_env"
    finally:
        await _drop(url)


async def test_unreachable_configured_database_is_a_clear_error() -> None:
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/eldercare"
    with pytest.raises(DatabaseUnavailable, match="ELDERCARE_DATABASE_URL"):
        await find_database(env={"ELDERCARE_DATABASE_URL": dead}, state_dir=STATE_DIR)


@pytest.mark.skipif(not LOCAL_SERVER, reason="the test PostgreSQL is not a password-less local server")
async def test_local_postgres_is_used_when_nothing_is_configured() -> None:
    name = f"{_BASE}_cli_local"
    url = make_url(TEST_DB_URL).set(database=name).render_as_string(hide_password=False)
    await _drop(url)
    try:
        choice = await find_database(
            env={}, state_dir=STATE_DIR, database=name, local_port=SERVER.port or 5432
        )
        assert choice.origin == "local"
        assert make_url(choice.url).database == name
        assert await _scalar(choice.url, "SELECT current_database()") == name
    finally:
        await _drop(url)


async def test_embedded_postgres_starts_answers_and_stops(state_dir: Path) -> None:
    # Forced: the configured URL and a local server are skipped even though both exist.
    choice = await find_database(
        env={"ELDERCARE_DATABASE_URL": TEST_DB_URL}, state_dir=state_dir, force_embedded=True
    )
    assert choice.origin == "embedded"
    assert choice.embedded is not None
    try:
        assert make_url(choice.url).host == "127.0.0.1"
        version = await _scalar(choice.url, "SELECT current_setting('server_version_num')::int")
        assert isinstance(version, int)
        assert version >= 180000
        assert await _scalar(choice.url, "SELECT current_database()") == "eldercare"
        assert (state_dir / "pgdata" / "PG_VERSION").exists()
        # A second start on the same data adopts the running server instead of starting another.
        again = EmbeddedPostgres(state_dir / "pgdata")
        again.start()
        assert again.port == choice.embedded.port
    finally:
        await asyncio.to_thread(choice.embedded.stop)
    assert choice.embedded.running_port() is None
    assert choice.embedded.port is not None
    assert not await port_open("127.0.0.1", choice.embedded.port)


# --- broker discovery ------------------------------------------------------------------------------


async def test_configured_mqtt_url_wins() -> None:
    choice = await find_broker(env={"ELDERCARE_MQTT_URL": MQTT_URL}, state_dir=STATE_DIR)
    assert choice.origin == "environment"
    assert choice.url == MQTT_URL


async def test_local_broker_is_used_when_nothing_is_configured() -> None:
    host, port, _, _ = split_mqtt_url(MQTT_URL)
    if host != "127.0.0.1":
        pytest.skip("the test broker is not local")
    choice = await find_broker(env={}, state_dir=STATE_DIR, local_port=port)
    assert choice.origin == "local"
    assert choice.url == f"mqtt://127.0.0.1:{port}"


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
async def test_embedded_broker_requires_the_generated_credentials(
    state_dir: Path, kind: Literal["mosquitto", "amqtt"]
) -> None:
    choice = await find_broker(
        env={"ELDERCARE_MQTT_URL": MQTT_URL},
        state_dir=state_dir,
        force_embedded=True,
        embedded=kind,
    )
    assert choice.origin == kind
    assert choice.embedded is not None
    host, port, user, password = split_mqtt_url(choice.url)
    try:
        assert (host, user) == ("127.0.0.1", "eldercare")
        assert password == (state_dir / "mqtt_password").read_text()
        assert await mqtt_connack(host, port, username=user, password=password) == CONNACK_ACCEPTED
        assert await mqtt_connack(host, port) == CONNACK_NOT_AUTHORIZED
        assert await mqtt_connack(host, port, username=user, password="wrong") == CONNACK_NOT_AUTHORIZED
        assert "***" in choice.description
        assert password not in choice.description
        if kind == "mosquitto":
            # The production config's tuning is kept; what the ingest needs (MQTT 5, shared
            # subscriptions) works for the demo account.
            config = (state_dir / "mosquitto" / "mosquitto.conf").read_text()
            assert DEPLOY_CONFIG.exists()
            assert "max_queued_messages" in config
            assert f"listener {port} 127.0.0.1" in config
            assert "acl_file" not in config
            payload = await asyncio.to_thread(_mqtt5_shared_round_trip, host, port, user, password)
            assert payload == b"round trip"
            # The simulator's account is on the device listener, where a client id is the username;
            # each listener knows only its own account.
            assert "use_username_as_clientid true" in config
            d_host, d_port, d_user, d_password = split_mqtt_url(choice.devices_url)
            assert (d_host, d_user, d_password) == ("127.0.0.1", DEMO_DEVICES_USER, password)
            assert d_port != port
            accepted = await mqtt_connack(d_host, d_port, username=d_user, password=d_password)
            assert accepted == CONNACK_ACCEPTED
            refused = await mqtt_connack(d_host, d_port, username=user, password=password)
            assert refused == CONNACK_NOT_AUTHORIZED
            assert await mqtt_connack(host, port, username=d_user, password=d_password) == refused
        else:
            assert choice.devices_url == choice.url
    finally:
        await choice.embedded.stop()
    assert await mqtt_connack(host, port, username=user, password=password) is None


def _mqtt5_shared_round_trip(host: str, port: int, user: str | None, password: str | None) -> bytes:
    """Subscribe to a shared subscription and publish to it over MQTT 5; returns what arrived."""
    import queue

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    received: queue.Queue[bytes] = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"test-cli-{os.getpid()}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(user, password)
    client.on_message = lambda _c, _u, message: received.put(bytes(message.payload))
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(host, port)
    client.loop_start()
    try:
        client.subscribe("$share/test/eldercare/v1/test/#", qos=1)
        assert subscribed.wait(5)
        client.publish("eldercare/v1/test/cli", b"round trip", qos=1).wait_for_publish(5)
        return received.get(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


# --- supervisor ------------------------------------------------------------------------------------


async def _run_for(supervisor: Supervisor, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 15)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_supervisor_restarts_a_crashing_child_with_backoff() -> None:
    out = StringIO()
    crasher = Component("crasher", (PYTHON, "-c", "print('hello from the child'); raise SystemExit(3)"))
    supervisor = Supervisor(
        [crasher], env=dict(os.environ), cwd=PROJECT_ROOT, output=out, backoff_initial_s=0.2
    )
    await _run_for(supervisor, 2.5)
    # Starts at about 0, 0.2+, 0.6+, 1.4+ s (backoff doubling), each taking ~0.1 s to run.
    assert 2 <= supervisor.restarts["crasher"] <= 4
    assert "crasher | hello from the child" in out.getvalue()


async def test_supervisor_stops_children_and_kills_those_ignoring_sigterm() -> None:
    out = StringIO()
    polite = Component("polite", (PYTHON, "-c", "import time; print('up', flush=True); time.sleep(60)"))
    stubborn = Component(
        "stubborn",
        (
            PYTHON,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
            "time.sleep(60)",
        ),
    )
    supervisor = Supervisor(
        [polite, stubborn], env=dict(os.environ), cwd=PROJECT_ROOT, output=out, stop_timeout_s=1.0
    )
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    for _ in range(100):
        if out.getvalue().count("| up") == 2:
            break
        await asyncio.sleep(0.1)
    pids = dict(supervisor.pids)
    assert set(pids) == {"polite", "stubborn"}
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 15)
    assert time.monotonic() - started < 5
    assert not any(_alive(pid) for pid in pids.values())
    assert supervisor.restarts == {"polite": 0, "stubborn": 0}


# --- eldercare demo, end to end --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _demo(state_dir: Path, port: int) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    env = {**os.environ, "ELDERCARE_LOG_JSON": "1", "ELDERCARE_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "api.cli",
        "demo",
        "--embedded",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        cwd=PROJECT_ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    lines: list[str] = []
    try:
        yield proc, lines
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(Exception):
            EmbeddedPostgres(state_dir / "pgdata").stop()


async def _login(port: int, username: str, password: str) -> tuple[int, dict[str, object]]:
    body = json.dumps({"login": username, "password": password}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


async def test_demo_runs_everything_embedded_and_stops_cleanly_on_sigint(state_dir: Path) -> None:
    port = free_port()
    async with _demo(state_dir, port) as (proc, lines):
        assert proc.stdout is not None
        while not any("Stop with Ctrl-C" in line for line in lines):
            line = await asyncio.wait_for(proc.stdout.readline(), 240)
            assert line, f"demo exited early (code {await proc.wait()}): {lines}"
            lines.append(line.decode())
        banner = "".join(lines)
        assert f"http://127.0.0.1:{port}/api/schema/" in banner
        assert "embedded PostgreSQL" in banner
        assert "demo_admin" in banner
        assert "demo running" in banner
        assert "not answering" not in banner

        assert await http_status("127.0.0.1", port, "/health") == 200
        assert await http_status("127.0.0.1", port, "/api/schema/") == 200
        status, token = await _login(port, "demo_admin", "Eldercare-demo-2026")
        assert status == 200
        assert token["role"] == "admin"

        pgdata = state_dir / "pgdata"
        pg_port = EmbeddedPostgres(pgdata).running_port()
        assert pg_port is not None

        # The device simulator speaks for seeded homes, so its traffic is stored, not dead-lettered.
        homes = json.loads((state_dir / "demo_homes.json").read_text())
        assert homes
        assert all(h["gateway"].startswith("gw-") for h in homes)
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/eldercare")
        try:
            stored = 0
            for _ in range(120):
                stored = await conn.fetchval(
                    "SELECT count(*) FROM telemetry t JOIN device d ON d.id = t.device_id "
                    "JOIN gateway g ON g.id = d.gateway_id WHERE g.uid = ANY($1::text[])",
                    [h["gateway"] for h in homes],
                )
                if stored:
                    break
                await asyncio.sleep(0.5)
            assert stored > 0
        finally:
            await conn.close()
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert EmbeddedPostgres(pgdata).running_port() is None
    assert not await port_open("127.0.0.1", port)
    assert _processes_mentioning(str(state_dir)) == []  # mosquitto, children: all gone


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found
