"""Dated policy data (``policy_value``), and reading it in SQL, for every domain.

The row valid on a day is the one with the latest ``valid_from`` not after it and ``valid_to``
(inclusive) not before it. The defaults are seeded rows (each domain's ``seed.py`` declares them as
:class:`PolicyDefault` values, written by :mod:`core.seed`).

The one reader: :func:`load_policy` (SQLAlchemy session) or :func:`load_policy_conn` (asyncpg, for the
ingest's hot path) return a :class:`PolicySnapshot` of the rows valid on a day under some key prefixes,
each with its ``valid_from``. A key with no valid row falls back to the domain's seeded default (the
same :class:`PolicyDefault` the seed writes, passed in by the caller): there is never a second copy of
a number in code. A key with neither is an error (:class:`PolicyMissing`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Date,
    Double,
    String,
    UniqueConstraint,
    case,
    cast,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, now_column

POLICY_EPOCH = dt.date(2026, 1, 1)  # the national care voucher starts nationwide on this day [R]

# The PostgreSQL channel on which every change to ``policy_value`` is announced, with the key as the
# payload, inside the writing transaction (so only committed changes are heard): long-running readers
# (the ingest) listen and reload their snapshot. The channel name and payload are a contract.
POLICY_CHANGED = "policy_changed"


@dataclass(frozen=True, slots=True)
class PolicyDefault:
    """One dated policy row as seeded: valid from :data:`POLICY_EPOCH`, open-ended, editable later.

    The running system reads the database; a default is only read when its key has no valid row (see
    :class:`PolicySnapshot`). Tags in ``source`` as in DOMAIN.md: [R] official, [S] secondary source,
    [E] estimate / sensible default."""

    key: str
    scope: str
    value: dict[str, Any]
    source: str


class PolicyValue(Base):
    """Dated policy data (prices, subsidy rates, caps, thresholds): never constants in code.

    ``key`` names the policy (e.g. ``subsidy.voucher.rate_bp``), ``scope`` narrows it (a service code,
    a category, a district code or ``*``); the row valid on a date is the one with the latest
    ``valid_from`` not after it and ``valid_to`` (inclusive) not before it.
    """

    __tablename__ = "policy_value"
    __table_args__ = (
        UniqueConstraint("key", "scope", "valid_from", name="uq_policy_value_key_scope_from"),
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="range_valid"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(80))
    scope: Mapped[str] = mapped_column(String(40), server_default=text("'*'"))
    value: Mapped[dict[str, Any]] = mapped_column(JSONB)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = now_column()


def valid_on(day: Any) -> tuple[ColumnElement[bool], ...]:
    """Conditions on ``policy_value`` for rows valid on ``day`` (a date or a date expression)."""
    return PolicyValue.valid_from <= day, (PolicyValue.valid_to.is_(None)) | (PolicyValue.valid_to >= day)


def policy_number(key: str, scope: str, name: str, day: Any, default: float) -> ColumnElement[float]:
    """``value[name]`` of the latest row of (``key``, ``scope``) valid on ``day`` if that is a JSON
    number, else ``default``. A scalar expression, so a statement reads its policy in the same round
    trip as its data."""
    item = PolicyValue.value[name]
    latest = (
        select(case((func.jsonb_typeof(item) == "number", cast(item, Double))))
        .where(PolicyValue.key == key, PolicyValue.scope == scope, *valid_on(day))
        .order_by(PolicyValue.valid_from.desc())
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(latest, literal(default, Double), type_=Double)


# --- The one reader --------------------------------------------------------------------------------


class PolicyMissing(LookupError):
    """A policy key has neither a row valid on the day nor a seeded default: a deployment error."""

    def __init__(self, key: str, scope: str, day: dt.date) -> None:
        super().__init__(f"no policy {key!r} (scope {scope!r}) valid on {day.isoformat()} and no default")
        self.key, self.scope, self.day = key, scope, day


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """The policy row applied: its value and where it came from (``valid_from`` is
    :data:`POLICY_EPOCH` and ``origin`` ``"default"`` for a seeded default that was never written)."""

    key: str
    scope: str
    value: Mapping[str, Any]
    valid_from: dt.date
    valid_to: dt.date | None
    origin: Literal["row", "default"] = "row"

    def number(self, name: str) -> float:
        """``value[name]`` as a float; a missing or non-numeric field is a :class:`TypeError` naming it."""
        v = self.value.get(name)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise TypeError(f"policy {self.key!r} scope {self.scope!r}: {name!r} is not a number: {v!r}")
        return float(v)

    def text(self, name: str) -> str:
        v = self.value.get(name)
        if not isinstance(v, str):
            raise TypeError(f"policy {self.key!r} scope {self.scope!r}: {name!r} is not a string: {v!r}")
        return v

    def ref(self) -> str:
        """``key[scope]@valid_from``: what a decision records to say which policy it applied."""
        return f"{self.key}[{self.scope}]@{self.valid_from.isoformat()}"


class _Default(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def value(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    """The policy rows valid on ``day`` under some key prefixes, plus the seeded defaults to fall back
    on. Pure: build one with :func:`snapshot_from_rows` in tests, with a ``day`` of your choosing."""

    day: dt.date
    rows: Mapping[tuple[str, str], PolicyEntry]
    defaults: Mapping[tuple[str, str], PolicyEntry]

    def find(self, key: str, scope: str = "*") -> PolicyEntry | None:
        """The row valid on the day, else the seeded default, else ``None``. No scope fallback."""
        return self.rows.get((key, scope)) or self.defaults.get((key, scope))

    def entry(self, key: str, scope: str = "*") -> PolicyEntry:
        """As :meth:`find`, but a missing key is :class:`PolicyMissing`."""
        found = self.find(key, scope)
        if found is None:
            raise PolicyMissing(key, scope, self.day)
        return found

    def entry_or_star(self, key: str, scope: str) -> PolicyEntry:
        """The entry for ``scope``, else the one for ``*`` (a per-scope override of a general rule)."""
        return self.find(key, scope) or self.entry(key, "*")

    def value(self, key: str, scope: str = "*") -> Mapping[str, Any]:
        return self.entry(key, scope).value

    def number(self, key: str, name: str, scope: str = "*") -> float:
        return self.entry(key, scope).number(name)

    def scopes(self, key: str) -> dict[str, PolicyEntry]:
        """Every scope of ``key`` (rows over defaults), by scope."""
        out = {sc: e for (k, sc), e in self.defaults.items() if k == key}
        out |= {sc: e for (k, sc), e in self.rows.items() if k == key}
        return out

    def refs(self, *keys: tuple[str, str]) -> list[str]:
        """The :meth:`PolicyEntry.ref` of each (key, scope) that resolves, for a decision's record."""
        return [e.ref() for k, sc in keys if (e := self.find(k, sc)) is not None]


def snapshot_from_rows(
    day: dt.date,
    rows: Iterable[tuple[str, str, Mapping[str, Any] | str, dt.date, dt.date | None]],
    defaults: Iterable[_Default] = (),
) -> PolicySnapshot:
    """A snapshot from (key, scope, value, valid_from, valid_to) rows valid on ``day`` (in any order:
    the latest ``valid_from`` wins) and the seeded defaults (a (key, scope) seeded twice is an error)."""
    latest: dict[tuple[str, str], PolicyEntry] = {}
    for key, scope, value, valid_from, valid_to in rows:
        if valid_from > day or (valid_to is not None and valid_to < day):
            continue
        held = latest.get((key, scope))
        if held is None or valid_from > held.valid_from:
            parsed = json.loads(value) if isinstance(value, str) else value
            latest[(key, scope)] = PolicyEntry(key, scope, parsed, valid_from, valid_to)
    seeded: dict[tuple[str, str], PolicyEntry] = {}
    for d in defaults:
        if (d.key, d.scope) in seeded:
            raise ValueError(f"policy default {d.key!r} scope {d.scope!r} given twice")
        seeded[(d.key, d.scope)] = PolicyEntry(d.key, d.scope, d.value, POLICY_EPOCH, None, "default")
    return PolicySnapshot(day, latest, seeded)


def _prefix_filter(prefixes: Sequence[str]) -> ColumnElement[bool]:
    if not prefixes:
        raise ValueError("at least one key prefix")
    cond: ColumnElement[bool] = PolicyValue.key.startswith(prefixes[0], autoescape=True)
    for p in prefixes[1:]:
        cond = cond | PolicyValue.key.startswith(p, autoescape=True)
    return cond


async def load_policy(
    session: AsyncSession,
    *,
    day: dt.date,
    prefixes: Sequence[str],
    defaults: Iterable[_Default] = (),
) -> PolicySnapshot:
    """The policy valid on ``day`` for keys starting with any of ``prefixes`` (one query)."""
    stmt = select(
        PolicyValue.key, PolicyValue.scope, PolicyValue.value, PolicyValue.valid_from, PolicyValue.valid_to
    ).where(_prefix_filter(prefixes), *valid_on(day))
    rows = (await session.execute(stmt)).all()
    return snapshot_from_rows(day, [(r[0], r[1], r[2], r[3], r[4]) for r in rows], defaults)


class _Fetcher(Protocol):
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


POLICY_ROWS_SQL = """SELECT key, scope, value::text, valid_from, valid_to FROM policy_value
 WHERE key LIKE ANY($1::text[]) AND valid_from <= $2 AND (valid_to IS NULL OR valid_to >= $2)"""


async def load_policy_conn(
    conn: _Fetcher,
    *,
    day: dt.date,
    prefixes: Sequence[str],
    defaults: Iterable[_Default] = (),
) -> PolicySnapshot:
    """:func:`load_policy` over a raw asyncpg connection (the ingest's hot path)."""
    if not prefixes:
        raise ValueError("at least one key prefix")
    patterns = [p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for p in prefixes]
    rows = await conn.fetch(POLICY_ROWS_SQL, patterns, day)
    return snapshot_from_rows(day, [(r[0], r[1], r[2], r[3], r[4]) for r in rows], defaults)
