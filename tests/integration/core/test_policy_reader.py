"""The one policy reader against PostgreSQL: the session and the raw asyncpg paths agree."""

from __future__ import annotations

import datetime as dt

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from core.policy import PolicyDefault, PolicyValue, load_policy, load_policy_conn

DEFAULTS = (PolicyDefault("test_pol.a", "*", {"n": 1}, "test"),)


async def test_session_and_asyncpg_readers_agree_by_day(db: AsyncSession) -> None:
    db.add_all(
        [
            PolicyValue(key="test_pol.a", scope="*", value={"n": 2}, valid_from=dt.date(2026, 3, 1)),
            PolicyValue(key="test_pol.a", scope="*", value={"n": 3}, valid_from=dt.date(2026, 7, 1)),
            PolicyValue(key="test_pol_b.c", scope="*", value={"n": 9}, valid_from=dt.date(2026, 3, 1)),
        ]
    )
    await db.flush()
    raw = await (await db.connection()).get_raw_connection()
    conn = raw.driver_connection
    assert isinstance(conn, asyncpg.Connection)
    for day, want in ((dt.date(2026, 2, 1), 1), (dt.date(2026, 6, 30), 2), (dt.date(2026, 7, 1), 3)):
        orm = await load_policy(db, day=day, prefixes=["test_pol."], defaults=DEFAULTS)
        fast = await load_policy_conn(conn, day=day, prefixes=["test_pol."], defaults=DEFAULTS)
        assert orm == fast
        assert orm.number("test_pol.a", "n") == want
        # ``_`` in a prefix is a literal, not a LIKE wildcard: "test_pol." does not match "test_pol_b.c".
        assert orm.find("test_pol_b.c") is None
