"""The one declarative base, engine and session factory. Services flush; the request, job or
consumer commits.

Conventions of every table: singular snake_case table names, ``_at`` for UTC ``timestamptz``, ``_on``
for dates, money in integer fen, constraint names from :data:`NAMING_CONVENTION`.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from sqlalchemy import CheckConstraint, DateTime, MetaData, event, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from core.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        dt.datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
    }


def now_column() -> Mapped[dt.datetime]:
    """A ``timestamptz`` column the database fills with the insert's time."""
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def enum_check(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    """``CHECK (column IN (...))`` over an enum's values, named ``ck_<table>_<column>_valid``."""
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


def make_engine(settings: Settings, **kwargs: object) -> AsyncEngine:
    opts: dict[str, object] = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10}
    opts.update(kwargs)
    return create_async_engine(settings.database_url, **opts)


# --- Transactions begun at the first statement that needs one ---------------------------------------

# A statement runs outside a transaction only if it is a plain SELECT: nothing that writes, locks,
# notifies or sets anything, whose effect a later rollback (or the commit) would have to govern.
_NEEDS_TRANSACTION: Final = re.compile(
    r"\b(?:INSERT|UPDATE|DELETE|MERGE|FOR\s+(?:NO\s+KEY\s+)?UPDATE|FOR\s+(?:KEY\s+)?SHARE|INTO"
    r"|pg_advisory\w*|pg_notify|set_config|nextval|setval|txid_current\w*|pg_current_xact_id\w*)\b",
    re.IGNORECASE,
)
_LAZY: Final = "_eldercare_lazy_begin"
# Execution option of a statement that may run, and commit, by itself while no transaction has begun.
STANDALONE: Final = "eldercare_standalone"
_verdicts: dict[str, bool] = {}


def runs_without_transaction(statement: str) -> bool:
    """Whether ``statement`` may run outside a transaction with the same effect as inside one under
    READ COMMITTED (each statement sees its own snapshot either way): a SELECT that neither writes nor
    locks nor calls a function with a transactional side effect. Conservative: anything else begins."""
    verdict = _verdicts.get(statement)
    if verdict is None:
        verdict = statement.lstrip()[:6].upper() == "SELECT" and _NEEDS_TRANSACTION.search(statement) is None
        if len(_verdicts) < 4096:  # statements are built once: a few hundred distinct texts
            _verdicts[statement] = verdict
    return verdict


def begin_lazily(engine: AsyncEngine) -> None:
    """Let ``engine``'s connections run reads without ``BEGIN``/``COMMIT``: a checked-out connection is
    in autocommit until the first statement that is not :func:`runs_without_transaction`; that
    statement (and every one after it, until the commit or rollback) runs in a transaction begun just
    before it. A read-only request so makes only its own statements' round trips; a write keeps the
    one transaction it had (its reads before the first write ran, as under READ COMMITTED they would
    have anyway, each on its own snapshot). The API's pool uses it (``api.app.API_POOL``).

    Raw driver calls on such a connection bypass the check: call :func:`begin_now` first, or use a
    session marked :data:`BEGIN_AT_ONCE` (:func:`begin_at_once_when_asked`), as the API does for every
    request that may write."""
    sync = engine.sync_engine

    @event.listens_for(sync, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if dbapi_connection.isolation_level != "autocommit":
            dbapi_connection.isolation_level = "autocommit"
            record.info[_LAZY] = True

    @event.listens_for(sync, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        if record.info.pop(_LAZY, False) and dbapi_connection is not None:
            dbapi_connection.isolation_level = dbapi_connection._isolation_setting

    @event.listens_for(sync, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        fairy = conn.connection
        if not fairy.info.get(_LAZY):
            return
        if context is not None and context.execution_options.get(STANDALONE):
            return  # one statement that may commit by itself (e.g. core.audit.record_read)
        if (
            many
            or (context is not None and context._is_server_side)
            or not runs_without_transaction(statement)
        ):
            _end_laziness(fairy)


# Session info key: the session's unit of work may write, so its connection begins a transaction at its
# first statement, as without begin_lazily (the API sets it for requests with unsafe methods).
BEGIN_AT_ONCE: Final = "eldercare_begin_at_once"


def begin_at_once_when_asked(factory: async_sessionmaker[AsyncSession]) -> None:
    """Sessions of ``factory`` whose ``info`` has :data:`BEGIN_AT_ONCE` begin their transaction at their
    first statement, lazy connection or not: a request that may write keeps one transaction from its
    first statement to its commit, raw driver calls on its connection included."""

    # Session events are for (sync) Session classes: a subclass of the factory's own, so that only its
    # sessions are concerned.
    base: type[Session] = factory.kw.get("sync_session_class", Session)
    own = type("BeginAtOnceWhenAsked", (base,), {})
    factory.configure(sync_session_class=own)

    @event.listens_for(own, "after_begin")
    def _after_begin(session: Any, transaction: Any, connection: Any) -> None:
        if session.info.get(BEGIN_AT_ONCE):
            fairy = connection.connection
            if fairy.info.get(_LAZY):
                _end_laziness(fairy)


def _end_laziness(fairy: Any) -> None:
    # The driver adapter begins a transaction before its next statement (and commits or rolls it
    # back with the session's) once it is no longer in autocommit.
    fairy.info.pop(_LAZY, None)
    fairy.dbapi_connection.isolation_level = fairy.dbapi_connection._isolation_setting


async def begin_now(session: AsyncSession) -> None:
    """Begin the transaction of the session's connection now, if :func:`begin_lazily` has left it in
    autocommit: for raw driver calls, which the statement check does not see. A no-op elsewhere."""
    connection = await session.connection()
    fairy = await connection.get_raw_connection()
    if fairy.info.get(_LAZY):
        _end_laziness(fairy)
        adapter: Any = fairy.dbapi_connection
        if adapter._transaction is None:
            await adapter._start_transaction()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A unit of work for jobs and consumers: commit on success, roll back on error."""
    async with factory() as session, session.begin():
        yield session
