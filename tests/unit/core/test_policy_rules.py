"""The policy API's pure rules: who may change which key (the grants the domains' seeds declare), the
shape a value must have (its key's seeded defaults, merged over their scopes) and the dates."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from api.bootstrap import domain_seeds
from core.errors import Conflict, DomainError, Forbidden, Invalid
from core.identity.models import Role
from core.policy_rules import (
    PolicyEditors,
    check_delete,
    check_end,
    check_may_edit,
    check_new_row,
    check_value,
    checked_value,
    editor_roles,
    may_edit,
    row_status,
    value_shape,
)
from core.seed import DomainSeed, PolicyDefault, policy_defaults, policy_editors

pytestmark = pytest.mark.unit

D = dt.date
TODAY = D(2026, 11, 20)
EDITORS = policy_editors(domain_seeds())


# --- Who -------------------------------------------------------------------------------------------

# (role, key, may change it) with the platform's real grants: admins everything, civil-affairs officers
# billing's subsidy.* and allowance.*, nobody else anything.
WHO: list[tuple[Role, str, bool]] = [
    (Role.ADMIN, "alarm.low_battery", True),
    (Role.ADMIN, "subsidy.ltc", True),
    (Role.ADMIN, "auth.login_failures", True),
    (Role.CIVIL_AFFAIRS, "subsidy.ltc", True),
    (Role.CIVIL_AFFAIRS, "subsidy.waterfall", True),
    (Role.CIVIL_AFFAIRS, "allowance.old_age", True),
    (Role.CIVIL_AFFAIRS, "alarm.low_battery", False),
    (Role.CIVIL_AFFAIRS, "dispatch.speed", False),
    (Role.CIVIL_AFFAIRS, "service.price_fen", False),
    (Role.CIVIL_AFFAIRS, "subsidyx.ltc", False),
    (Role.SUPERVISOR, "alarm.low_battery", False),
    (Role.SUPERVISOR, "subsidy.ltc", False),
    (Role.OPERATOR, "alarm.low_battery", False),
    (Role.PROVIDER_ADMIN, "service.price_fen", False),
    (Role.FAMILY, "subsidy.ltc", False),
]


@pytest.mark.parametrize(("role", "key", "allowed"), WHO)
def test_who_may_change_which_key(role: Role, key: str, allowed: bool) -> None:
    assert may_edit(role, key, EDITORS) is allowed
    if allowed:
        check_may_edit(role, key, EDITORS)
    else:
        with pytest.raises(Forbidden) as caught:
            check_may_edit(role, key, EDITORS)
        assert caught.value.code == "policy.key_forbidden"


def test_the_writing_roles_are_derived_from_the_grants() -> None:
    assert editor_roles(EDITORS) == {Role.ADMIN, Role.CIVIL_AFFAIRS}
    assert editor_roles(()) == {Role.ADMIN}


def test_a_domain_grants_only_keys_of_its_own() -> None:
    mine = PolicyDefault("mine.a", "*", {"n": 1}, "test")
    ok = DomainSeed(policies=(mine,), policy_editors=(PolicyEditors("mine.", frozenset({Role.OPERATOR})),))
    assert policy_editors([ok]) == ok.policy_editors
    theirs = DomainSeed(
        policies=(mine,), policy_editors=(PolicyEditors("alarm.", frozenset({Role.OPERATOR})),)
    )
    with pytest.raises(ValueError, match="alarm"):
        policy_editors([theirs])
    with pytest.raises(ValueError, match="ending in"):
        PolicyEditors("mine", frozenset({Role.OPERATOR}))
    with pytest.raises(ValueError, match="no role"):
        PolicyEditors("mine.", frozenset())


# --- What ------------------------------------------------------------------------------------------

DEFAULTS = policy_defaults(domain_seeds())


def defaults_of(key: str) -> list[dict[str, Any]]:
    return [d.value for d in DEFAULTS if d.key == key]


def test_every_seeded_default_fits_its_own_shape() -> None:
    for d in DEFAULTS:
        value, errors = check_value(value_shape(defaults_of(d.key)), d.value)
        assert errors == [], (d.key, d.scope, errors)
        assert value == d.value


# (key, value, fields refused); an empty list: accepted.
WHAT: list[tuple[str, dict[str, Any], list[str]]] = [
    ("alarm.low_battery", {"pct": 10}, []),
    ("alarm.low_battery", {"pct": 10.0}, []),
    ("alarm.low_battery", {"pct": 10.5}, ["value.pct"]),
    ("alarm.low_battery", {"pct": -1}, ["value.pct"]),
    ("alarm.low_battery", {"pct": math.inf}, ["value.pct"]),
    ("alarm.low_battery", {"pct": math.nan}, ["value.pct"]),
    ("alarm.low_battery", {"pct": "10"}, ["value.pct"]),
    ("alarm.low_battery", {"pct": None}, ["value.pct"]),
    ("alarm.low_battery", {}, ["value.pct"]),
    ("alarm.low_battery", {"pct": 10, "hysteresis": 2}, ["value.hysteresis"]),
    ("alarm.door_open_night", {"start": "23:00", "end": "05:30"}, []),
    ("alarm.door_open_night", {"start": "23:00", "end": "x" * 201}, ["value.end"]),
    ("alarm.door_open_night", {"start": "23\x00", "end": "05:30"}, ["value.start"]),
    ("alarm.severity", {"severity": "MAJOR"}, []),
    # WANDERING alone has dementia_severity: optional for every scope of the key.
    ("alarm.severity", {"severity": "MAJOR", "dementia_severity": "CRITICAL"}, []),
    ("service.price_fen", {"fen": 1200, "unit": "meal", "min_minutes": None}, []),
    ("service.price_fen", {"fen": 1200, "unit": "meal", "min_minutes": 30}, []),
    ("service.price_fen", {"fen": 1200, "unit": "meal", "min_minutes": "30"}, ["value.min_minutes"]),
    ("service.requirement", {"certificate": None, "max_level": 3, "same_gender": True}, []),
    (
        "service.requirement",
        {"certificate": None, "max_level": None, "same_gender": 1},
        ["value.same_gender"],
    ),
    ("subsidy.waterfall", {"order": ["voucher", "ltc"]}, []),
    ("subsidy.waterfall", {"order": "ltc"}, ["value.order"]),
    ("subsidy.waterfall", {"order": ["ltc", 2, None]}, ["value.order[1]", "value.order[2]"]),
    ("subsidy.waterfall", {"order": ["ltc"] * 101}, ["value.order"]),
    ("subsidy.local", {"model": "per_visit", "rate_bp": 5000, "budget_fen": 100, "services": []}, []),
    (
        "subsidy.local",
        {"model": "per_day", "rate_bp": 5000, "budget_fen": 100, "services": [], "min_age": 70},
        [],
    ),
    ("subsidy.local", {"model": "per_visit", "rate_bp": 5000, "services": []}, ["value.budget_fen"]),
    ("subsidy.local", {"rate_bp": 5000, "budget_fen": 100, "services": []}, ["value.model"]),
    ("allowance.old_age", {"min_age": 110, "max_age": None, "fen": 1}, []),
    ("allowance.old_age", {"min_age": 2**53, "max_age": None, "fen": 1}, ["value.min_age"]),
]


@pytest.mark.parametrize(("key", "value", "refused"), WHAT)
def test_a_value_has_the_shape_of_its_keys_defaults(
    key: str, value: dict[str, Any], refused: list[str]
) -> None:
    out, errors = check_value(value_shape(defaults_of(key)), value)
    assert [e.field for e in errors] == refused
    if not refused:
        assert out == value
        assert all(type(out[k]) is type(v) or isinstance(v, float) for k, v in value.items())


def test_integral_floats_become_integers_where_the_default_is_an_integer() -> None:
    out, errors = check_value(value_shape(defaults_of("alarm.low_battery")), {"pct": 10.0})
    assert (errors, out, type(out["pct"])) == ([], {"pct": 10}, int)


def test_a_negative_default_allows_negative_values_and_a_fraction_allows_fractions() -> None:
    shape = value_shape([{"offset": -5, "ratio": 0.5}, {"offset": 3, "ratio": 1}])
    assert check_value(shape, {"offset": -10, "ratio": 0.25})[1] == []
    assert [e.field for e in check_value(shape, {"offset": 1.5, "ratio": -0.1})[1]] == [
        "value.offset",
        "value.ratio",
    ]


def test_nested_objects_are_checked_field_by_field() -> None:
    shape = value_shape([{"window": {"start": "08:00", "hours": 4}}])
    assert check_value(shape, {"window": {"start": "09:00", "hours": 3}})[1] == []
    fields = [e.field for e in check_value(shape, {"window": {"start": 9, "days": 1}})[1]]
    assert fields == ["value.window.hours", "value.window.start", "value.window.days"]


def test_checked_value_names_unknown_keys_and_the_first_bad_field() -> None:
    with pytest.raises(Invalid) as unknown:
        checked_value([], "alarm.thresholds", {"x": 1})
    assert (unknown.value.code, unknown.value.extra["field"]) == ("policy.unknown_key", "key")
    value = {"model": "per_visit", "rate_bp": -1, "budget_fen": "x"}
    with pytest.raises(Invalid) as bad:
        checked_value(defaults_of("subsidy.ltc"), "subsidy.ltc", value)
    assert bad.value.code == "policy.value_invalid"
    assert bad.value.extra["field"] == "value.services"
    assert {e["field"] for e in bad.value.extra["errors"]} == {
        "value.services",
        "value.rate_bp",
        "value.budget_fen",
    }


# --- When ------------------------------------------------------------------------------------------


def _code(call: Any, **kw: Any) -> str | None:
    try:
        call(**kw)
    except DomainError as exc:
        return exc.code
    return None


@pytest.mark.parametrize(
    ("valid_from", "valid_to", "code"),
    [
        (TODAY, None, None),
        (TODAY + dt.timedelta(days=1), None, None),
        (TODAY, TODAY, None),
        (TODAY - dt.timedelta(days=1), None, "policy.backdated"),
        (D(2026, 1, 1), None, "policy.backdated"),
        (D(2027, 1, 1), D(2026, 12, 31), "date_range.invalid"),
    ],
)
def test_a_new_row_starts_today_or_later(
    valid_from: dt.date, valid_to: dt.date | None, code: str | None
) -> None:
    assert _code(check_new_row, today=TODAY, valid_from=valid_from, valid_to=valid_to) == code


@pytest.mark.parametrize(
    ("valid_from", "valid_to", "new_valid_to", "code"),
    [
        (D(2026, 1, 1), None, TODAY, None),
        (D(2026, 1, 1), None, D(2026, 12, 31), None),
        (D(2026, 1, 1), D(2026, 12, 31), None, None),  # re-opened: only days from tomorrow change
        (D(2026, 1, 1), TODAY, D(2027, 1, 31), None),  # ends today: not yet history
        (D(2026, 1, 1), None, TODAY - dt.timedelta(days=1), "policy.valid_to_past"),
        (D(2026, 1, 1), D(2026, 6, 30), D(2027, 1, 31), "policy.ended"),
        (D(2026, 1, 1), D(2026, 6, 30), None, "policy.ended"),
        (D(2027, 3, 1), None, D(2027, 1, 31), "date_range.invalid"),
    ],
)
def test_a_row_is_ended_only_from_today_on(
    valid_from: dt.date, valid_to: dt.date | None, new_valid_to: dt.date | None, code: str | None
) -> None:
    got = _code(check_end, today=TODAY, valid_from=valid_from, valid_to=valid_to, new_valid_to=new_valid_to)
    assert got == code


def test_only_a_row_not_yet_in_effect_is_deleted() -> None:
    check_delete(today=TODAY, valid_from=TODAY + dt.timedelta(days=1))
    for started in (TODAY, D(2026, 1, 1)):
        with pytest.raises(Conflict) as caught:
            check_delete(today=TODAY, valid_from=started)
        assert caught.value.code == "policy.in_effect"


def test_where_a_row_stands_today() -> None:
    assert row_status(today=TODAY, valid_from=D(2027, 1, 1), valid_to=None, applies=False) == "future"
    assert (
        row_status(today=TODAY, valid_from=D(2026, 1, 1), valid_to=D(2026, 6, 30), applies=False) == "ended"
    )
    assert row_status(today=TODAY, valid_from=D(2026, 1, 1), valid_to=TODAY, applies=True) == "in_effect"
    assert row_status(today=TODAY, valid_from=D(2026, 1, 1), valid_to=None, applies=False) == "superseded"
