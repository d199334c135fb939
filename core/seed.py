"""Seeding machinery: the hook a domain fills in, the dated policy defaults, and writing them.

Every domain seeds its own reference data and policy defaults in its ``seed.py``, as a
:class:`DomainSeed`; the composition root (``api.bootstrap``) hands the domains' seeds to
:func:`seed_reference`. The kernel names no domain: it writes what it is given, plus its own identity
defaults (:data:`AUTH_POLICY_DEFAULTS`) and the notification retries'
(:data:`core.notify.retry.NOTIFY_POLICY_DEFAULTS`).

Everything here only adds rows and flushes; the caller owns the transaction. It is idempotent: policy
values are inserted with ``ON CONFLICT DO NOTHING`` on ``(key, scope, valid_from)``, and a domain's
reference hook must be idempotent itself (it runs on every seed).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Base
from core.notify.retry import NOTIFY_POLICY_DEFAULTS
from core.policy import POLICY_EPOCH, PolicyDefault, PolicyValue
from core.policy_rules import PolicyChecks, PolicyEditors

log = structlog.get_logger(__name__)

__all__ = [
    "POLICY_EPOCH",
    "DomainSeed",
    "PolicyChecks",
    "PolicyDefault",
    "PolicyEditors",
    "SeedHook",
    "policy_checks",
    "policy_defaults",
    "policy_editors",
    "seed_reference",
]


class SeedHook(Protocol):
    """Adds a domain's rows (idempotently, only flushing) and returns its tables' row counts."""

    def __call__(self, session: AsyncSession, *, today: dt.date) -> Awaitable[dict[str, int]]: ...


@dataclass(frozen=True, slots=True)
class DomainSeed:
    """What one domain seeds on every install: its policy defaults, and the reference rows it needs
    (``reference``, run by :func:`seed_reference` before the policy defaults are written). With them,
    who besides admins may change its policy through the API (``policy_editors``, under prefixes of
    its own keys: see :mod:`core.policy_rules`), and its checks of new values of its keys beyond their
    shape (``policy_checks``)."""

    policies: tuple[PolicyDefault, ...] = ()
    reference: SeedHook | None = None
    policy_editors: tuple[PolicyEditors, ...] = ()
    policy_checks: tuple[PolicyChecks, ...] = ()


_SRC_SIGN_IN = "sign-in throttling, project default [E]: only failures count (OWASP authentication)"

# The kernel's own defaults (identity). Sign-in failures, per account: from the ``max_failures``-th
# failure in a row, each failure locks the account, first for ``lock_seconds``, then twice as long per
# further failure, at most ``max_lock_seconds``; a count idle for ``forget_after_seconds`` starts again.
# Per source address: ``max_failures`` in ``window_seconds``, sized for a call centre of ~50 operators
# behind one NAT address who all sign in at the start of a shift (successes never count).
AUTH_POLICY_DEFAULTS: tuple[PolicyDefault, ...] = (
    PolicyDefault(
        "auth.login_failures",
        "account",
        {"max_failures": 5, "lock_seconds": 30, "max_lock_seconds": 900, "forget_after_seconds": 86_400},
        _SRC_SIGN_IN,
    ),
    PolicyDefault(
        "auth.login_failures", "address", {"max_failures": 100, "window_seconds": 600}, _SRC_SIGN_IN
    ),
)


def policy_defaults(domains: Sequence[DomainSeed]) -> tuple[PolicyDefault, ...]:
    """The kernel's policy defaults (sign-in, notification retries) and every domain's, in that order.
    A ``(key, scope)`` seeded twice is an error: the second row would be skipped silently by
    ``ON CONFLICT DO NOTHING``."""
    defaults = (*AUTH_POLICY_DEFAULTS, *NOTIFY_POLICY_DEFAULTS, *(p for d in domains for p in d.policies))
    twice = [k for k, n in Counter((p.key, p.scope) for p in defaults).items() if n > 1]
    if twice:
        raise ValueError(f"policy defaults seeded twice: {sorted(twice)}")
    return defaults


def policy_editors(domains: Sequence[DomainSeed]) -> tuple[PolicyEditors, ...]:
    """Every domain's :class:`PolicyEditors`. A domain grants only keys of its own: a prefix that none
    of its seeded defaults starts with is an error (it would grant another domain's policy, or none)."""
    for d in domains:
        for e in d.policy_editors:
            if not any(p.key.startswith(e.prefix) for p in d.policies):
                raise ValueError(f"policy editors of {e.prefix!r}: the domain seeds no key under it")
    return tuple(e for d in domains for e in d.policy_editors)


def policy_checks(domains: Sequence[DomainSeed]) -> tuple[PolicyChecks, ...]:
    """Every domain's :class:`PolicyChecks`; like its editors, a domain checks only keys of its own."""
    for d in domains:
        for c in d.policy_checks:
            if not any(p.key.startswith(c.prefix) for p in d.policies):
                raise ValueError(f"policy checks of {c.prefix!r}: the domain seeds no key under it")
    return tuple(c for d in domains for c in d.policy_checks)


async def seed_reference(
    session: AsyncSession, *, today: dt.date, domains: Sequence[DomainSeed]
) -> dict[str, int]:
    """Run each domain's reference hook in order, then insert every policy default.

    Policy values are dated from :data:`POLICY_EPOCH` (2026-01-01) whatever ``today`` is, so re-running
    on a later day adds nothing. Returns the hooks' row counts and that of ``policy_value``.
    """
    defaults = policy_defaults(domains)
    counts: dict[str, int] = {}
    for d in domains:
        if d.reference is not None:
            counts.update(await d.reference(session, today=today))
    await session.execute(
        pg_insert(PolicyValue).on_conflict_do_nothing(constraint="uq_policy_value_key_scope_from"),
        [
            {
                "key": p.key,
                "scope": p.scope,
                "value": p.value,
                "valid_from": POLICY_EPOCH,
                "valid_to": None,
                "source": p.source,
            }
            for p in defaults
        ],
    )
    counts |= await table_counts(session, (PolicyValue,))
    log.info("seed.reference.done", today=today.isoformat(), **counts)
    return counts


async def table_counts(session: AsyncSession, models: Sequence[type[Base]]) -> dict[str, int]:
    """Row counts by table name, in the order given."""
    out: dict[str, int] = {}
    for model in models:
        out[model.__tablename__] = (
            await session.execute(select(func.count()).select_from(model))
        ).scalar_one()
    return out
