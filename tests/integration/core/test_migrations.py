"""Migrations are reversible: up → down → up on an empty database leaves the same schema."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic import command

from tests.conftest import TEST_DB_URL, alembic_config, recreate_database

pytestmark = pytest.mark.integration

URL = TEST_DB_URL + "_migrations"  # its own database, named after the test database

SCHEMA_SQL = """
SELECT table_name || '.' || column_name || ':' || data_type || ':' || is_nullable
FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1
"""


async def _schema(url: str) -> list[str]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [r[0] for r in await conn.fetch(SCHEMA_SQL)]
    finally:
        await conn.close()


async def _drop(url: str) -> None:
    base, _, name = url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")
    conn = await asyncpg.connect(base + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def test_upgrade_downgrade_upgrade() -> None:
    asyncio.run(recreate_database(URL))
    try:
        cfg = alembic_config(URL)
        command.upgrade(cfg, "heads")
        first = asyncio.run(_schema(URL))
        assert any(c.startswith("elder.id_number:") for c in first)
        assert any(c.startswith("audit_log.before:") for c in first)

        command.downgrade(cfg, "base")
        assert asyncio.run(_schema(URL)) == ["alembic_version.version_num:character varying:NO"]

        command.upgrade(cfg, "heads")
        assert asyncio.run(_schema(URL)) == first
    finally:
        asyncio.run(_drop(URL))
