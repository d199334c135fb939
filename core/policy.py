"""Reading dated policy data (``policy_value``) in SQL, for every domain.

The row valid on a day is the one with the latest ``valid_from`` not after it and ``valid_to``
(inclusive) not before it. The defaults are seeded rows (:data:`core.seed_data.POLICY_DEFAULTS`); the
``default`` a caller passes is what to do when no row is valid at all, not a second copy of the policy.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Double, case, cast, func, literal, select

from core.models import PolicyValue


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
