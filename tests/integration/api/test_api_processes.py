"""Two API processes on one database, as in production: ``eldercare serve`` (one worker) and
``eldercare serve --workers 2``, over a database of their own (migrated, demo data).

Each worker keeps the principals of live tokens in memory (``core.identity.sessions.PrincipalCache``);
these tests show that a change made through one process is seen by every worker of the other on the
very next request: a revoked token, a role change, a change of districts or of guardianship, a new
display name. Each first warms every worker's cache with the token (several requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from core.settings import PROJECT_ROOT
from demo.data import DEMO_PASSWORD
from demo.net import free_port
from demo.postgres import asyncpg_dsn
from tests.conftest import TEST_DB_URL

pytestmark = pytest.mark.integration

_BASE = make_url(TEST_DB_URL).database or "eldercare_test"
PROCS_DB_URL = make_url(TEST_DB_URL).set(database=f"{_BASE}_procs").render_as_string(hide_password=False)
START_S = 300.0  # two servers importing the app on a busy machine
WARM = 8  # requests per token and server: with two workers, both see it (round robin is not promised)


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base: str


def _env(port: int) -> dict[str, str]:
    return {
        **os.environ,
        "ELDERCARE_DATABASE_URL": PROCS_DB_URL,
        "ELDERCARE_SECRET_KEY": "processes-test-" + "k" * 40,
        "ELDERCARE_HOST": "127.0.0.1",
        "ELDERCARE_PORT": str(port),
        "ELDERCARE_LOG_LEVEL": "WARNING",
    }


def _eldercare(*args: str) -> None:
    subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "api.cli", *args],
        cwd=PROJECT_ROOT,
        env=_env(0),
        check=True,
        capture_output=True,
        timeout=600,
    )


async def _drop() -> None:
    admin = await asyncpg.connect(asyncpg_dsn(PROCS_DB_URL, database="postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{make_url(PROCS_DB_URL).database}" WITH (FORCE)')
    finally:
        await admin.close()


def _serve(*extra: str) -> Served:
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "api.cli", "serve", *extra],
        cwd=PROJECT_ROOT,
        env=_env(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return Served(proc, f"http://127.0.0.1:{port}")


def _stop(served: Served) -> None:
    if served.proc.poll() is None:
        os.killpg(served.proc.pid, signal.SIGTERM)
        try:
            served.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(served.proc.pid, signal.SIGKILL)
            served.proc.wait()


async def _until_healthy(http: httpx.AsyncClient, served: Served) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        assert served.proc.poll() is None, f"the server exited with {served.proc.returncode}"
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get(served.base + "/health")).status_code == 200:
                return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{served.base} did not answer /health within {START_S} s")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _workers(pid: int) -> list[int]:
    """The worker processes of a server: children started by multiprocessing (not its helpers)."""
    return [c for c in _children(pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


@dataclass
class Pair:
    one: Served  # eldercare serve
    two: Served  # eldercare serve --workers 2
    http: httpx.AsyncClient


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    asyncio.run(_drop())
    _eldercare("migrate", "--url", PROCS_DB_URL)
    _eldercare("seed", "--demo", "--url", PROCS_DB_URL)
    yield PROCS_DB_URL
    asyncio.run(_drop())


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pair(database: str) -> AsyncIterator[Pair]:
    one, two = _serve(), _serve("--workers", "2")
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            await asyncio.gather(_until_healthy(http, one), _until_healthy(http, two))
            yield Pair(one, two, http)
    finally:
        _stop(one)
        _stop(two)


async def _token(pair: Pair, username: str) -> str:
    r = await pair.http.post(
        pair.one.base + "/api/v1/auth/login", json={"login": username, "password": DEMO_PASSWORD}
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _me_everywhere(pair: Pair, token: str) -> list[dict[str, Any]]:
    """``/auth/me`` through both servers, often enough that every worker has cached the principal."""
    seen: list[dict[str, Any]] = []
    for _ in range(WARM):
        for served in (pair.one, pair.two):
            r = await pair.http.get(served.base + "/api/v1/auth/me", headers=_bearer(token))
            assert r.status_code == 200, r.text
            seen.append(r.json())
    return seen


async def _sql(sql: str, *args: object) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(PROCS_DB_URL))
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def _value(sql: str, *args: object) -> object:
    conn = await asyncpg.connect(asyncpg_dsn(PROCS_DB_URL))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def test_serve_workers_starts_that_many_workers_which_all_serve(pair: Pair) -> None:
    assert len(_workers(pair.two.proc.pid)) == 2
    assert len(_workers(pair.one.proc.pid)) == 0
    statuses = await asyncio.gather(*(pair.http.get(pair.two.base + "/health") for _ in range(20)))
    assert {s.status_code for s in statuses} == {200}


async def test_a_revoked_token_fails_on_its_very_next_request_in_every_process(pair: Pair) -> None:
    token = await _token(pair, "demo_family")
    await _me_everywhere(pair, token)
    r = await pair.http.post(pair.one.base + "/api/v1/auth/logout", headers=_bearer(token))
    assert r.status_code == 204
    for served in (pair.two, pair.one, pair.two):
        r = await pair.http.get(served.base + "/api/v1/auth/me", headers=_bearer(token))
        assert r.status_code == 401, (served.base, r.text)


async def test_a_role_change_shows_on_the_next_request_in_every_process(pair: Pair) -> None:
    # Through the API a role change ends the user's sessions; changed in the database directly (an
    # administrator's script), the same token carries on with the new role at once.
    token = await _token(pair, "demo_supervisor")
    assert {m["role"] for m in await _me_everywhere(pair, token)} == {"supervisor"}
    await _sql("UPDATE app_user SET role = 'operator' WHERE username = 'demo_supervisor'")
    try:
        r = await pair.http.get(pair.two.base + "/api/v1/auth/me", headers=_bearer(token))
        assert r.json()["role"] == "operator"
        assert {m["role"] for m in await _me_everywhere(pair, token)} == {"operator"}
        # A supervisor-only route is refused on the next request, in either process.
        for served in (pair.one, pair.two):
            r = await pair.http.get(served.base + "/api/v1/users", headers=_bearer(token))
            assert r.status_code == 403
    finally:
        await _sql("UPDATE app_user SET role = 'supervisor' WHERE username = 'demo_supervisor'")

    admin = await _token(pair, "demo_admin")
    users = (await pair.http.get(pair.one.base + "/api/v1/users?limit=50", headers=_bearer(admin))).json()
    supervisor = next(u for u in users["items"] if u["username"] == "demo_supervisor")
    r = await pair.http.patch(
        pair.one.base + f"/api/v1/users/{supervisor['id']}", json={"role": "operator"}, headers=_bearer(admin)
    )
    assert r.status_code == 200, r.text
    for served in (pair.two, pair.one):
        r = await pair.http.get(served.base + "/api/v1/auth/me", headers=_bearer(token))
        assert r.status_code == 401


async def test_districts_and_names_show_on_the_next_request_in_every_process(pair: Pair) -> None:
    token = await _token(pair, "demo_civil_affairs")
    before = (await _me_everywhere(pair, token))[0]
    districts = list(before["district_ids"])
    await _sql(
        "INSERT INTO user_district (user_id, district_id) SELECT u.id, d.id FROM app_user u, district d "
        "WHERE u.username = 'demo_civil_affairs' AND d.id <> ALL($1::int[])",
        districts,
    )
    r = await pair.http.get(pair.two.base + "/api/v1/auth/me", headers=_bearer(token))
    assert len(r.json()["district_ids"]) == 7
    assert all(len(m["district_ids"]) == 7 for m in await _me_everywhere(pair, token))
    await _sql(
        "DELETE FROM user_district WHERE user_id = (SELECT id FROM app_user WHERE username = "
        "'demo_civil_affairs') AND district_id <> ALL($1::int[])",
        districts,
    )
    r = await pair.http.get(pair.two.base + "/api/v1/auth/me", headers=_bearer(token))
    assert r.json()["district_ids"] == districts

    await _sql("UPDATE app_user SET display_name = '新名字' WHERE username = 'demo_civil_affairs'")
    for served in (pair.two, pair.one):
        r = await pair.http.get(served.base + "/api/v1/auth/me", headers=_bearer(token))
        assert r.json()["display_name"] == "新名字"


async def test_guardianship_changes_show_on_the_next_request_in_every_process(pair: Pair) -> None:
    family = await _token(pair, "demo_family")
    admin = await _token(pair, "demo_admin")
    elder_ids = sorted((await _me_everywhere(pair, family))[0]["elder_ids"])
    gid = await _value("SELECT guardian_id FROM app_user WHERE username = 'demo_family'")
    other = await _value("SELECT min(id) FROM elder WHERE id <> ALL($1::bigint[])", elder_ids)

    def elder(served: Served) -> str:
        return served.base + f"/api/v1/elders/{other}"

    # Not theirs: the family member may not read the other elder, in either process.
    for served in (pair.one, pair.two):
        assert (await pair.http.get(elder(served), headers=_bearer(family))).status_code == 404
    r = await pair.http.post(
        pair.one.base + f"/api/v1/elders/{other}/guardians",
        json={"guardian_id": gid, "relation": "child"},
        headers=_bearer(admin),
    )
    assert r.status_code == 201, r.text
    for served in (pair.two, pair.one, pair.two):
        r = await pair.http.get(elder(served), headers=_bearer(family))
        assert r.status_code == 200, (served.base, r.text)
    r = await pair.http.delete(
        pair.one.base + f"/api/v1/elders/{other}/guardians/{gid}", headers=_bearer(admin)
    )
    assert r.status_code == 204, r.text
    for served in (pair.two, pair.one, pair.two):
        assert (await pair.http.get(elder(served), headers=_bearer(family))).status_code == 404
    assert all(sorted(m["elder_ids"]) == elder_ids for m in await _me_everywhere(pair, family))
