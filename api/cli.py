"""The ``eldercare`` command: migrate, seed, serve, run the scheduler / ingest / simulators, benchmark,
and ``demo`` — the whole platform on one machine in one supervised process group.

Subcommands that belong to a domain (``ingest``, ``simulate``, ``bench``) import it only when run, so
the CLI works while a domain is still being built: a missing module is reported and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import structlog
from alembic import command
from alembic.config import Config

from core.clock import SHANGHAI
from core.logging import configure_logging
from core.settings import PROJECT_ROOT, STATE_DIR, Settings
from demo.broker import (
    BrokerChoice,
    BrokerUnavailable,
    EmbeddedKind,
    find_broker,
    redact,
)
from demo.net import http_status, port_free
from demo.postgres import (
    DatabaseChoice,
    DatabaseUnavailable,
    database_name,
    find_database,
    require_database,
    require_migrated,
)
from demo.supervisor import Component, Supervisor
from iot_ingest.wire import INGEST_CLIENT_ID_PREFIX

log = structlog.get_logger()

EXIT_UNAVAILABLE = 2
T = TypeVar("T")

# The command children are started with: this interpreter and this module, so the demo does not
# depend on ``.venv/bin`` being on PATH.
ELDERCARE = (sys.executable, "-m", "api.cli")
DEMO_INGEST_CLIENT_ID = f"{INGEST_CLIENT_ID_PREFIX}-demo"


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _today_shanghai() -> dt.date:
    return dt.datetime.now(SHANGHAI).date()


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "url", None):
        overrides["database_url"] = args.url
    return Settings.from_env(**overrides)


# --- migrate / seed --------------------------------------------------------------------------------


def upgrade_heads(database_url: str) -> None:
    """``alembic upgrade heads`` against ``database_url`` (blocking; run it in a thread from async code)."""
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["url"] = database_url
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per revision is noise here
    command.upgrade(cfg, "heads")


async def seed(settings: Settings, *, demo: bool, today: dt.date) -> Any:
    """Reference data (and with ``demo`` the demo data set) in one committed transaction.
    Idempotent: what exists is left alone. Returns the seed summary (demo) or the row counts."""
    from api.bootstrap import domain_seeds
    from core.db import make_engine, make_sessionmaker
    from core.seed import seed_reference
    from demo.seed import seed_demo

    engine = make_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            if demo:
                return await seed_demo(session, today=today, domains=domain_seeds())
            return await seed_reference(session, today=today, domains=domain_seeds())
    finally:
        await engine.dispose()


def _url_source(args: argparse.Namespace) -> str:
    """Where the database URL came from, for one-line errors."""
    if getattr(args, "url", None):
        return "--url"
    return "ELDERCARE_DATABASE_URL" if os.environ.get("ELDERCARE_DATABASE_URL") else "the default URL"


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(json=settings.log_json, level=settings.log_level)
    source = _url_source(args)
    try:
        # A missing database is created, as ``demo`` does; a server that does not answer is one line.
        created = asyncio.run(require_database(settings.database_url, source=source))
    except DatabaseUnavailable as exc:
        _err(f"eldercare migrate: {exc} — start PostgreSQL or point --url / ELDERCARE_DATABASE_URL at one.")
        return 1
    if created:
        _out(f"Database {database_name(settings.database_url)} created.")
    upgrade_heads(settings.database_url)
    _out("Database migrated to the latest revision (alembic upgrade heads).")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(json=settings.log_json, level=settings.log_level)
    today = args.today or _today_shanghai()
    try:
        asyncio.run(require_migrated(settings.database_url, source=_url_source(args)))
    except DatabaseUnavailable as exc:
        _err(f"eldercare seed: {exc}")
        return 1
    result = asyncio.run(seed(settings, demo=args.demo, today=today))
    if args.demo:
        state = "created" if result.created else "already present, nothing added"
        _out(f"Demo data {state}.")
        _out(_format_counts(result.counts))
        _out(_format_logins(result.logins))
    else:
        _out("Reference data loaded.")
        _out(_format_counts(result))
    return 0


def _format_counts(counts: Mapping[str, int]) -> str:
    return "Rows: " + ", ".join(f"{table} {n:,}" for table, n in counts.items())


def _format_logins(logins: Sequence[Any]) -> str:
    """One line per demo login; the password once if they all share it."""
    if not logins:
        return "No demo logins."
    width = max(len(x.username) for x in logins)
    passwords = {x.password for x in logins}
    shared = passwords.pop() if len(passwords) == 1 else None
    lines = [f"Demo logins (password for all: {shared}):" if shared else "Demo logins:"]
    for x in logins:
        own = "" if shared else f"  password {x.password}"
        lines.append(f"  {x.username.ljust(width)}  {x.role:<18} {x.display_name}{own}")
    return "\n".join(lines)


# --- serve / scheduler -----------------------------------------------------------------------------


# How long a worker of `serve --workers N` may take to answer its supervisor (its start included).
WORKER_START_S = 120
# On SIGTERM/SIGINT, how long requests in flight may finish before uvicorn cancels them. The operators'
# live feed (server-sent events) never finishes by itself: without a limit the server would wait for
# every open console for ever. Consoles reconnect (to another process) and replay what they missed.
GRACEFUL_SHUTDOWN_S = 5


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = Settings.from_env()  # also writes the per-checkout secret once, before any worker reads it
    settings = replace(settings, host=args.host or settings.host, port=args.port or settings.port)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,  # keep our structlog/stdlib set-up
        "access_log": False,  # the app logs every request itself (http.request)
        "server_header": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }
    if args.workers > 1:
        # Worker processes, each importing the app from the environment (uvicorn's supervisor
        # restarts a worker that dies or stops answering its health check, and stops them all on
        # SIGINT / SIGTERM). A worker answers the check only once it has imported the app, which takes
        # far longer than uvicorn's 5 s on a busy machine: without more time it is killed and
        # restarted over and over.
        configure_logging(json=settings.log_json, level=settings.log_level)
        uvicorn.run(
            "api.app:app_from_env",
            factory=True,
            workers=args.workers,
            timeout_worker_healthcheck=WORKER_START_S,
            **options,
        )
        return 0

    from api.app import create_app

    app = create_app(settings)  # configures logging
    uvicorn.Server(uvicorn.Config(app, **options)).run()
    return 0


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _scheduler_main(settings: Settings, *, notify: bool = True) -> None:
    from api.bootstrap import scheduled_jobs
    from core.db import make_engine, make_sessionmaker
    from core.notify.runner import run_dispatcher
    from core.scheduler import run_scheduler

    stop = asyncio.Event()
    _stop_on_signals(stop)
    engine = make_engine(settings, pool_size=2, max_overflow=2)
    try:
        work = [
            run_scheduler(settings, sessionmaker=make_sessionmaker(engine), stop=stop, jobs=scheduled_jobs())
        ]
        if notify:  # the outbox's dispatcher, beside the jobs (docs/notifications.md)
            work.append(run_dispatcher(settings, stop=stop))
        await _all_until_one_fails(work, stop)
    finally:
        await engine.dispose()


async def _all_until_one_fails(work: Sequence[Awaitable[None]], stop: asyncio.Event) -> None:
    """Run ``work`` together until each returns; the first to fail stops the others (they drain) and
    its error propagates, so the supervisor restarts the whole process rather than half of it."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        errors = [exc for t in done if (exc := t.exception()) is not None]
        if errors:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise errors[0]
    finally:
        for t in tasks:
            t.cancel()


def cmd_scheduler(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    configure_logging(json=settings.log_json, level=settings.log_level)
    # APScheduler logs two lines per run; our runner logs failures (and, at DEBUG, every run) itself.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    asyncio.run(_scheduler_main(settings, notify=not args.no_notify))
    return 0


async def _notify_main(settings: Settings) -> None:
    from core.notify.runner import run_dispatcher

    stop = asyncio.Event()
    _stop_on_signals(stop)
    await run_dispatcher(settings, stop=stop)


def cmd_notify(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    configure_logging(json=settings.log_json, level=settings.log_level)
    asyncio.run(_notify_main(settings))
    return 0


# --- domain subcommands, imported lazily -----------------------------------------------------------


def _domain_entry(module: str, attribute: str, what: str) -> Callable[..., Any] | None:
    """``module.attribute`` if the module exists, else ``None`` after telling the user (exit code 2)."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        _err(f"eldercare: {what} is not available in this checkout yet (module {module} is missing).")
        return None
    entry: Callable[..., Any] | None = getattr(importlib.import_module(module), attribute, None)
    if not callable(entry):
        _err(f"eldercare: {module} has no callable {attribute}(); {what} cannot start.")
        return None
    return entry


def cmd_ingest(args: argparse.Namespace) -> int:
    run = _domain_entry("iot_ingest.consumer", "run", "the MQTT ingest service")
    if run is None:
        return EXIT_UNAVAILABLE
    settings = Settings.from_env()
    configure_logging(json=settings.log_json, level=settings.log_level)
    result = run(settings)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    return 0


def _delegate(module: str, what: str, argv: Sequence[str]) -> int:
    main = _domain_entry(module, "main", what)
    if main is None:
        return EXIT_UNAVAILABLE
    code = main(list(argv))
    return int(code or 0)


def cmd_simulate(args: argparse.Namespace) -> int:
    return _delegate(f"simulators.{args.kind}", f"the {args.kind} simulator", args.rest)


def cmd_bench(args: argparse.Namespace) -> int:
    return _delegate(f"bench.{args.target}", f"the {args.target} benchmark", args.rest)


# --- demo ------------------------------------------------------------------------------------------


# Traffic of the demo's device simulator: gentle, so the demo leaves the machine usable.
DEMO_SIM_HOMES = 50
DEMO_SIM_RATE_PER_S = 20
DEMO_SIM_DURATION_S = 10 * 365 * 24 * 3600  # "until stopped"; the simulator exits after its duration


# The seeded homes the demo simulator speaks for: a gateway with its Zigbee sensors, and the owner's
# native devices (vitals band, fall sensor, GPS watch) where the seed gave them some.
_SIM_HOMES_SQL = """
SELECT g.uid AS gateway, e.lat, e.lon,
       max(d.friendly_name) FILTER (WHERE d.friendly_name = 'motion') AS motion,
       max(d.friendly_name) FILTER (WHERE d.friendly_name = 'water_leak') AS leak,
       (SELECT n.uid FROM device n WHERE n.elder_id = g.elder_id AND n.kind = 'vitals_band'
         AND n.status = 'active' ORDER BY n.id LIMIT 1) AS band,
       (SELECT n.uid FROM device n WHERE n.elder_id = g.elder_id AND n.kind = 'fall_sensor'
         AND n.status = 'active' ORDER BY n.id LIMIT 1) AS fall,
       (SELECT n.uid FROM device n WHERE n.elder_id = g.elder_id AND n.kind = 'gps_watch'
         AND n.status = 'active' ORDER BY n.id LIMIT 1) AS watch
FROM gateway g
JOIN elder e ON e.id = g.elder_id
JOIN device d ON d.gateway_id = g.id AND d.status = 'active'
WHERE g.status = 'active'
GROUP BY g.id, g.uid, g.elder_id, e.lat, e.lon
HAVING count(*) FILTER (WHERE d.friendly_name IN ('motion', 'water_leak')) = 2
ORDER BY g.id
LIMIT $1
"""


async def write_sim_homes(settings: Settings, path: Path, *, limit: int) -> int:
    """Write the seeded homes for ``simulate devices --homes-file``; returns how many."""
    conn = await asyncpg.connect(settings.asyncpg_dsn)
    try:
        rows = await conn.fetch(_SIM_HOMES_SQL, limit)
    finally:
        await conn.close()
    text = json.dumps([dict(r) for r in rows], ensure_ascii=False)

    def _write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    await asyncio.to_thread(_write)
    return len(rows)


def demo_components(
    *, host: str, port: int, broker: BrokerChoice, homes_file: Path | None = None
) -> tuple[list[Component], list[str]]:
    """The processes ``eldercare demo`` supervises, in start order, and notes on what was left out.

    Explicit on purpose: a new component is added here when its module exists (docs/architecture.md,
    "Adding a component"). The ingest and the device simulator speak MQTT 5, which the amqtt
    fallback broker lacks, so they run only with Mosquitto (or another MQTT 5 broker)."""
    components = [
        Component("api", (*ELDERCARE, "serve", "--host", host, "--port", str(port))),
        Component("scheduler", (*ELDERCARE, "scheduler")),
    ]
    notes: list[str] = []
    if broker.origin == "amqtt":
        notes.append("ingest and device simulator not started: amqtt has no MQTT 5 (install mosquitto)")
        return components, notes
    components += [
        Component("ingest", (*ELDERCARE, "ingest")),
        Component(
            "simulator",
            (
                *ELDERCARE,
                "simulate",
                "devices",
                *(("--homes-file", str(homes_file)) if homes_file else ("--homes", str(DEMO_SIM_HOMES))),
                "--rate",
                str(DEMO_SIM_RATE_PER_S),
                "--duration",
                str(DEMO_SIM_DURATION_S),
                # The broker URL (with its password) comes from ELDERCARE_DEVICE_MQTT_URL, not the
                # command line.
            ),
        ),
    ]
    return components, notes


async def _until_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Await ``work`` unless ``stop`` is set first (then cancel it and return ``None``)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def _wait_ready(host: str, port: int, stop: asyncio.Event, *, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline and not stop.is_set():
        if await http_status(host, port, "/ready") == 200:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    return False


def _banner(
    *,
    host: str,
    port: int,
    db: DatabaseChoice,
    broker: BrokerChoice,
    components: Sequence[Component],
    summary: Any,
    ready: bool,
    notes: Sequence[str],
) -> str:
    base = f"http://{host}:{port}"
    lines = [
        "",
        "Eldercare 智慧养老服务平台 — demo running" + ("" if ready else " (API not answering yet)"),
        f"  Web + API    {base}/",
        f"  API docs     {base}/api/schema/",
        f"  Health       {base}/health   {base}/ready   {base}/metrics",
        f"  Database     {db.description}",
        f"  MQTT broker  {broker.description}",
        f"  Processes    {', '.join(c.name for c in components)} (restarted if they crash)",
        *(f"  Note         {note}" for note in notes),
        "  " + _format_counts(summary.counts),
        *("  " + line for line in _format_logins(summary.logins).splitlines()),
        "  Stop with Ctrl-C.",
        "",
    ]
    return "\n".join(lines)


async def _demo(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    json_logs = env.get("ELDERCARE_LOG_JSON", "0") == "1"
    configure_logging(json=json_logs, level=env.get("ELDERCARE_LOG_LEVEL", "INFO"))
    base = Settings.from_env()
    host = args.host or base.host
    port = args.port or base.port
    if not port_free(host, port):
        _err(
            f"eldercare demo: {host}:{port} is in use; stop what runs there or pass --port / ELDERCARE_PORT."
        )
        return 1
    force_embedded = args.embedded or env.get("ELDERCARE_FORCE_EMBEDDED", "") == "1"
    embedded_kind: EmbeddedKind = args.broker or env.get("ELDERCARE_EMBEDDED_BROKER", "auto")  # type: ignore[assignment]

    state_dir = args.state_dir or STATE_DIR
    stop = asyncio.Event()
    _stop_on_signals(stop)
    async with contextlib.AsyncExitStack() as cleanup:
        try:
            db = await _until_stopped(
                find_database(env=env, state_dir=state_dir, force_embedded=force_embedded), stop
            )
            if db is None:
                return 130
            if db.embedded is not None:
                cleanup.push_async_callback(asyncio.to_thread, db.embedded.stop)
            broker = await _until_stopped(
                find_broker(
                    env=env,
                    state_dir=state_dir,
                    force_embedded=force_embedded,
                    embedded=embedded_kind,
                ),
                stop,
            )
            if broker is None:
                return 130
            if broker.embedded is not None:
                cleanup.push_async_callback(broker.embedded.stop)
        except (DatabaseUnavailable, BrokerUnavailable) as exc:
            _err(f"eldercare demo: {exc}")
            return 1
        log.info("demo.services", database=db.description, broker=redact(broker.url))

        settings = replace(base, database_url=db.url, mqtt_url=broker.url, host=host, port=port)
        log.info("demo.migrating")
        await asyncio.to_thread(upgrade_heads, db.url)  # alembic runs its own event loop: a thread
        log.info("demo.seeding")
        summary = await _until_stopped(seed(settings, demo=True, today=_today_shanghai()), stop)
        if summary is None:
            return 130
        log.info("demo.seeded", created=summary.created)

        child_env = {
            **env,
            "ELDERCARE_DATABASE_URL": db.url,
            "ELDERCARE_MQTT_URL": broker.url,
            "ELDERCARE_DEVICE_MQTT_URL": broker.devices_url,
            # A fixed client id: the ingest the supervisor restarts resumes its persistent session.
            "ELDERCARE_INGEST_CLIENT_ID": env.get("ELDERCARE_INGEST_CLIENT_ID") or DEMO_INGEST_CLIENT_ID,
            "ELDERCARE_LOG_JSON": "1" if json_logs else "0",
            "PYTHONUNBUFFERED": "1",
        }
        homes_file = state_dir / "demo_homes.json"
        sim_homes = await write_sim_homes(settings, homes_file, limit=DEMO_SIM_HOMES)
        log.info("demo.simulated_homes", homes=sim_homes, file=str(homes_file))
        components, notes = demo_components(
            host=host, port=port, broker=broker, homes_file=homes_file if sim_homes else None
        )
        supervisor = Supervisor(components, env=child_env, cwd=PROJECT_ROOT)
        running = asyncio.create_task(supervisor.run(stop))
        ready = await _wait_ready(host, port, stop, timeout_s=60)
        if not stop.is_set():
            _out(
                _banner(
                    host=host,
                    port=port,
                    db=db,
                    broker=broker,
                    components=components,
                    summary=summary,
                    ready=ready,
                    notes=notes,
                )
            )
        await running
        log.info("demo.stopping_services")
    log.info("demo.stopped")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args))


# --- parser ----------------------------------------------------------------------------------------


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eldercare",
        description="Eldercare 智慧养老服务平台 — smart elderly-care platform.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("migrate", help="apply every database migration (alembic upgrade heads)")
    p.add_argument("--url", help="database URL (default: ELDERCARE_DATABASE_URL)")
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser("seed", help="load reference data; with --demo also the demo data set (idempotent)")
    p.add_argument("--demo", action="store_true", help="also load the demo data set and demo logins")
    p.add_argument("--today", type=_date, help="the date the demo data is built around (default: today)")
    p.add_argument("--url", help="database URL (default: ELDERCARE_DATABASE_URL)")
    p.set_defaults(handler=cmd_seed)

    p = sub.add_parser("serve", help="run the web app and API (uvicorn)")
    p.add_argument("--host", help="bind address (default: ELDERCARE_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: ELDERCARE_PORT or 8000)")
    p.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes sharing the port (default 1; one per core in production)",
    )
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser(
        "scheduler", help="run the scheduled jobs (APScheduler) and the notification dispatcher"
    )
    p.add_argument(
        "--no-notify",
        action="store_true",
        help="do not deliver the notification outbox here (run `eldercare notify` separately)",
    )
    p.set_defaults(handler=cmd_scheduler)

    p = sub.add_parser("notify", help="run only the notification dispatcher (delivers the outbox)")
    p.set_defaults(handler=cmd_notify)

    p = sub.add_parser("ingest", help="run the MQTT device-data ingest service")
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser("simulate", help="run a simulator, e.g. `simulate devices --help`")
    p.add_argument("kind", choices=["devices"], help="what to simulate")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the simulator's own arguments")
    p.set_defaults(handler=cmd_simulate)

    p = sub.add_parser("bench", help="run a benchmark, e.g. `bench ingest --help`")
    p.add_argument(
        "target",
        choices=["ingest", "dispatch", "api", "notify", "billing", "allowances"],
        help="what to benchmark",
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own arguments")
    p.set_defaults(handler=cmd_bench)

    p = sub.add_parser(
        "demo",
        help="find or start PostgreSQL and MQTT, migrate, seed, and run every component until Ctrl-C",
    )
    p.add_argument("--host", help="API bind address (default: ELDERCARE_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="API port (default: ELDERCARE_PORT or 8000)")
    p.add_argument(
        "--embedded",
        action="store_true",
        help="skip ELDERCARE_*_URL and local services; start the embedded database and broker "
        "(same as ELDERCARE_FORCE_EMBEDDED=1)",
    )
    p.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "amqtt"],
        help="which broker to start when none is found (default: ELDERCARE_EMBEDDED_BROKER or auto = "
        "mosquitto if installed, else amqtt)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        help=f"where embedded services keep their data (default: {STATE_DIR.relative_to(PROJECT_ROOT)}/)",
    )
    p.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
