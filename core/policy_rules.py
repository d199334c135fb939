"""Changing dated policy: the pure rules of the policy API (:mod:`core.policy_service` applies them).

**Who.** Admins change every key. A domain may let other roles change the keys under a prefix of its
own, by declaring :class:`PolicyEditors` in its seed (``DomainSeed.policy_editors``); billing lets its
civil-affairs officers change ``subsidy.`` and ``allowance.``. That declaration is the only copy of
the rule: the routes' role options and :func:`may_edit` are both derived from it.

**What.** Only a key that has a seeded default may be written (the default is the contract between the
code that reads the key and the people who change it). A value must have the shape of the key's seeded
defaults, merged over their scopes (:func:`value_shape`): the fields every default has are required,
those only some have are optional, and no other field is allowed; each field takes the JSON types its
defaults show (a field that is ``null`` in one scope and a number in another takes either); a field
whose defaults are all integers takes integers (``60.0`` is read as ``60``); numbers are finite and
non-negative unless a default is negative; arrays hold what the defaults' arrays hold. A scope the
defaults do not name is allowed (a new category or band), with the same shape.

**When** (Asia/Shanghai dates). Past days are never recomputed silently, so:

- a new row is valid from today or later (today: it applies to what is decided from now on; what was
  decided earlier today keeps the row it recorded); an earlier ``valid_from`` is refused;
- a row's ``valid_to`` may be set (or cleared) only to today or later, and only while the row has not
  ended (a ``valid_to`` before today is history);
- a row whose ``valid_from`` is still in the future may be deleted; a row in effect never is, nor is its
  value or start ever edited: to change a value, add a row with a later ``valid_from``.

After a row's ``valid_to``, the reader applies the row with the latest earlier ``valid_from`` still
valid, else the seeded default (:mod:`core.policy`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from core.crud import check_range
from core.errors import Conflict, Forbidden, Invalid
from core.identity.models import Role

# --- Who -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyEditors:
    """Roles that may change, besides admins, the policy keys starting with ``prefix`` (which ends
    with a dot, so ``subsidy.`` does not reach a key ``subsidyx.a``)."""

    prefix: str
    roles: frozenset[Role]

    def __post_init__(self) -> None:
        if not self.prefix.endswith(".") or len(self.prefix) < 2:
            raise ValueError(f"policy editors' prefix {self.prefix!r} must be a key prefix ending in '.'")
        if not self.roles:
            raise ValueError(f"policy editors of {self.prefix!r} name no role")


def may_edit(role: Role, key: str, editors: Iterable[PolicyEditors]) -> bool:
    """Whether ``role`` may add, end or delete rows of ``key``."""
    return role is Role.ADMIN or any(key.startswith(e.prefix) and role in e.roles for e in editors)


def check_may_edit(role: Role, key: str, editors: Iterable[PolicyEditors]) -> None:
    """:func:`may_edit`, else a 403 ``policy.key_forbidden``."""
    if not may_edit(role, key, editors):
        raise Forbidden(f"Your role may not change the policy {key!r}.", code="policy.key_forbidden")


def editor_roles(editors: Iterable[PolicyEditors]) -> frozenset[Role]:
    """Every role that may change some policy: admins and the roles the domains name."""
    return frozenset({Role.ADMIN, *(r for e in editors for r in e.roles)})


# --- What ------------------------------------------------------------------------------------------

Kind = Literal["null", "boolean", "integer", "number", "string", "array", "object"]
SCALARS: Final[frozenset[Kind]] = frozenset({"boolean", "integer", "number", "string"})
# JSON's safe integers: what every client (JavaScript too) reads back exactly.
MAX_SAFE_INTEGER: Final = 2**53 - 1
MAX_STRING: Final = 200
MAX_ARRAY: Final = 100


def kind_of(value: object) -> Kind | None:
    """The JSON type of a decoded value (``integer`` for a Python int), ``None`` for anything else."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


@dataclass(frozen=True, slots=True)
class Shape:
    """What a JSON value may be: its types, whether a number may be negative, the shape of an array's
    items (``None``: scalars of any type) and of an object's fields (required ones named)."""

    kinds: frozenset[Kind]
    negative_ok: bool = False
    items: Shape | None = None
    fields: Mapping[str, Shape] = field(default_factory=dict)
    required: frozenset[str] = frozenset()


def merged_shape(values: Sequence[object]) -> Shape:
    """The shape that admits each of ``values`` (and values like them): the union of their types
    (integers and non-integers together make ``number``), array items merged, object fields merged
    (required when every object has the field)."""
    kinds = {k for v in values if (k := kind_of(v)) is not None}
    if "number" in kinds:
        kinds.discard("integer")
    negative_ok = any(isinstance(v, int | float) and not isinstance(v, bool) and v < 0 for v in values)
    arrays = [v for v in values if isinstance(v, list)]
    elements = [e for a in arrays for e in a]
    objects = [v for v in values if isinstance(v, dict)]
    names = sorted({n for o in objects for n in o})
    return Shape(
        kinds=frozenset(kinds),
        negative_ok=negative_ok,
        items=merged_shape(elements) if elements else None,
        fields={n: merged_shape([o[n] for o in objects if n in o]) for n in names},
        required=frozenset(n for n in names if all(n in o for o in objects)),
    )


def value_shape(defaults: Iterable[Mapping[str, Any]]) -> Shape:
    """The shape of a key's value: its seeded defaults' values (one per scope), merged."""
    return merged_shape([dict(d) for d in defaults])


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a value is refused: the field (``value.rate_bp``, ``value.services[2]``) and why."""

    field: str
    reason: str


def check_value(shape: Shape, value: object, *, path: str = "value") -> tuple[Any, list[FieldError]]:
    """``value`` normalised (integral floats where integers are due become ints) and the reasons it
    does not fit ``shape`` (empty when it fits)."""
    errors: list[FieldError] = []
    out = _check(shape, value, path, errors)
    return out, errors


def _describe(kinds: frozenset[Kind]) -> str:
    return " or ".join(sorted(kinds)) if kinds else "absent"


def _check(shape: Shape, value: object, path: str, errors: list[FieldError]) -> Any:
    kind = kind_of(value)
    if kind == "number" and "integer" in shape.kinds and isinstance(value, float) and value.is_integer():
        value, kind = int(value), "integer"
    if kind == "integer" and "number" in shape.kinds:
        kind = "number"
    if kind is None or kind not in shape.kinds:
        got = kind or type(value).__name__
        errors.append(
            FieldError(path, f"must be {_describe(shape.kinds)} as in the seeded default, not {got}")
        )
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(shape, value, path, errors)
    elif isinstance(value, str):
        if len(value) > MAX_STRING or "\x00" in value:
            errors.append(FieldError(path, f"must be at most {MAX_STRING} characters, without NUL"))
    elif isinstance(value, list):
        return _check_array(shape, value, path, errors)
    elif isinstance(value, dict):
        return _check_object(shape, value, path, errors)
    return value


def _check_number(shape: Shape, value: float, path: str, errors: list[FieldError]) -> None:
    if not math.isfinite(value):
        errors.append(FieldError(path, "must be a finite number"))
    elif abs(value) > MAX_SAFE_INTEGER:
        errors.append(FieldError(path, f"must lie within ±{MAX_SAFE_INTEGER}"))
    elif value < 0 and not shape.negative_ok:
        errors.append(FieldError(path, "must not be negative"))


def _check_array(shape: Shape, value: list[Any], path: str, errors: list[FieldError]) -> list[Any]:
    if len(value) > MAX_ARRAY:
        errors.append(FieldError(path, f"must have at most {MAX_ARRAY} items"))
        return value
    items = shape.items or Shape(kinds=SCALARS)
    return [_check(items, v, f"{path}[{i}]", errors) for i, v in enumerate(value)]


def _check_object(shape: Shape, value: dict[str, Any], path: str, errors: list[FieldError]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted(shape.required - value.keys()):
        errors.append(FieldError(f"{path}.{name}", "is missing (the seeded default has it)"))
    for name, v in value.items():
        sub = shape.fields.get(name)
        if sub is None:
            errors.append(FieldError(f"{path}.{name}", "is not a field of this policy"))
            continue
        out[name] = _check(sub, v, f"{path}.{name}", errors)
    return out


@dataclass(frozen=True, slots=True)
class PolicyChecks:
    """A domain's own check of the values of its keys under ``prefix``, beyond their shape (a field
    that names one of a few models, a rate at most 100 %): ``check(key, scope, value)`` returns the
    reasons the value (already shape-checked and normalised) is refused, empty when it is fine."""

    prefix: str
    check: Callable[[str, str, Mapping[str, Any]], Sequence[FieldError]]


def checked_value(
    defaults: Sequence[Mapping[str, Any]],
    key: str,
    value: Mapping[str, Any],
    *,
    scope: str = "*",
    checks: Iterable[PolicyChecks] = (),
) -> dict[str, Any]:
    """``value`` normalised, if ``key`` has seeded defaults, ``value`` fits their shape and passes the
    ``checks`` of the domain that owns the key; else a 422: ``policy.unknown_key`` (field ``key``) or
    ``policy.value_invalid`` naming the first offending field, with every reason in ``errors``."""
    if not defaults:
        raise Invalid(
            f"{key!r} is not a policy key: only keys with a seeded default can be written.",
            code="policy.unknown_key",
            field="key",
        )
    out, errors = check_value(value_shape(defaults), dict(value))
    if not errors:
        errors = [e for c in checks if key.startswith(c.prefix) for e in c.check(key, scope, out)]
    if errors:
        raise Invalid(
            f"{errors[0].field} {errors[0].reason}.",
            code="policy.value_invalid",
            field=errors[0].field,
            errors=[{"field": e.field, "reason": e.reason} for e in errors],
        )
    assert isinstance(out, dict)
    return out


# --- When ------------------------------------------------------------------------------------------

RowStatus = Literal["future", "in_effect", "superseded", "ended"]


def check_new_row(*, today: dt.date, valid_from: dt.date, valid_to: dt.date | None) -> None:
    """A new row starts today or later (a 422 ``policy.backdated`` otherwise) and ends no earlier than it
    starts (422 ``date_range.invalid``)."""
    if valid_from < today:
        raise Invalid(
            f"valid_from ({valid_from.isoformat()}) is before today ({today.isoformat()}, Asia/Shanghai):"
            " past days are never recomputed.",
            code="policy.backdated",
            field="valid_from",
        )
    check_range(valid_from, valid_to)


def check_end(
    *, today: dt.date, valid_from: dt.date, valid_to: dt.date | None, new_valid_to: dt.date | None
) -> None:
    """Setting a row's ``valid_to`` to ``new_valid_to`` (``None``: open-ended) changes no day before
    today: the row has not ended (409 ``policy.ended``) and the new end is today or later (422
    ``policy.valid_to_past``) and no earlier than the start (422 ``date_range.invalid``)."""
    if valid_to is not None and valid_to < today:
        raise Conflict(
            f"This row ended on {valid_to.isoformat()}: past periods are never changed.",
            code="policy.ended",
        )
    if new_valid_to is not None and new_valid_to < today:
        raise Invalid(
            f"valid_to ({new_valid_to.isoformat()}) is before today ({today.isoformat()}, Asia/Shanghai):"
            " past days are never recomputed.",
            code="policy.valid_to_past",
            field="valid_to",
        )
    check_range(valid_from, new_valid_to)


def check_delete(*, today: dt.date, valid_from: dt.date) -> None:
    """Only a row not yet in effect may be deleted (409 ``policy.in_effect`` otherwise)."""
    if valid_from <= today:
        raise Conflict(
            f"This row is in effect since {valid_from.isoformat()}: it is never deleted; set its valid_to,"
            " or add a row with a later valid_from.",
            code="policy.in_effect",
        )


def row_status(*, today: dt.date, valid_from: dt.date, valid_to: dt.date | None, applies: bool) -> RowStatus:
    """Where a row stands today: not started, ended, the one applied, or valid but overridden by a row
    with a later ``valid_from`` (``applies`` says whether the reader picks it today)."""
    if valid_from > today:
        return "future"
    if valid_to is not None and valid_to < today:
        return "ended"
    return "in_effect" if applies else "superseded"
