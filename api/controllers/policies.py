"""``/api/v1/policies``: dated policy (prices, rates, budgets, thresholds, windows) as people see and
change it. The rules are :mod:`core.policy_rules`; the use cases :mod:`core.policy_service`. The
seeded defaults and who besides admins may change which keys come from the domains' seeds, gathered
here from the composition root."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.openapi.spec import Example
from litestar.params import Body, FromPath, FromQuery, Parameter, QueryParameter

from api.bootstrap import domain_seeds
from core import policy_service
from core.clock import local_date
from core.http import CurrentPrincipal, Db, Now
from core.identity.authz import allow
from core.identity.models import Role
from core.policy import PolicyDefault
from core.policy_rules import PolicyChecks, PolicyEditors, editor_roles
from core.policy_schemas import (
    KEY_PATTERN,
    SCOPE_PATTERN,
    PolicyCreate,
    PolicyEnd,
    PolicyHistory,
    PolicyInEffectList,
    PolicyInEffectRead,
    PolicyRowRead,
)
from core.seed import policy_checks, policy_defaults, policy_editors
from core.types import NO_NUL, check_day


@functools.cache
def _defaults() -> tuple[PolicyDefault, ...]:
    return policy_defaults(domain_seeds())


@functools.cache
def _editors() -> tuple[PolicyEditors, ...]:
    return policy_editors(domain_seeds())


@functools.cache
def _checks() -> tuple[PolicyChecks, ...]:
    return policy_checks(domain_seeds())


READERS = allow(Role.ADMIN, Role.CIVIL_AFFAIRS, Role.SUPERVISOR)
# Admins, and every role a domain lets change some of its keys (each key is checked again per row).
WRITERS = allow(*sorted(editor_roles(_editors())))

_WRITE_CODES = """
Problem codes: `policy.key_forbidden` (403, your role may not change this key),
`policy.unknown_key` (422, no seeded default), `policy.value_invalid` (422, `field` names the first
offending field, `errors` lists all), `policy.backdated` (422, `valid_from` before today),
`policy.valid_to_past` (422), `date_range.invalid` (422, `valid_to` before `valid_from`),
`policy.duplicate` (409, a row of this key and scope already starts that day), `policy.ended` (409,
the row has ended), `policy.in_effect` (409, the row has started: never deleted), `policy.not_found`
(404). Dates are Asia/Shanghai. Every change is audited and announced on the PostgreSQL channel
`policy_changed` (payload: the key) when it commits."""

PolicyKeyPath = Annotated[
    str, Parameter(pattern=KEY_PATTERN, max_length=80, description="Policy key, e.g. subsidy.ltc")
]
# ``scope`` is a name Litestar reserves for the ASGI scope: the query parameter is renamed.
ScopeQuery = Annotated[
    str | None,
    QueryParameter(name="scope", pattern=SCOPE_PATTERN, max_length=40, description="Only this scope"),
]
PrefixQuery = Annotated[
    str | None,
    QueryParameter(
        pattern=r"^[a-z][a-z0-9_.]*$", max_length=80, description="Keys starting with this, e.g. subsidy."
    ),
]
ReasonQuery = Annotated[
    str | None, QueryParameter(min_length=1, max_length=200, pattern=NO_NUL, description="Why (audited)")
]

_CREATE_EXAMPLES = [
    Example(
        summary="A new LTC budget for level 3 from 2027",
        value={
            "key": "subsidy.ltc",
            "scope": "3",
            "value": {
                "model": "per_visit",
                "rate_bp": 9000,
                "budget_fen": 100_000,
                "services": ["CARE", "BATH", "CLEAN"],
            },
            "valid_from": "2027-01-01",
            "source": "示例: 医保局年度预算调整 (example)",
        },
    ),
    Example(
        summary="A lower low-battery threshold for one quarter",
        value={
            "key": "alarm.low_battery",
            "value": {"pct": 10},
            "valid_from": "2027-01-01",
            "valid_to": "2027-03-31",
            "source": "trial with the new wristbands",
        },
    ),
]
_END_EXAMPLES = [
    Example(
        summary="End a row at the end of June",
        value={"valid_to": "2027-06-30", "reason": "the pilot ends"},
    )
]


class PolicyController(Controller):
    path = "/api/v1/policies"
    tags = ["policies"]  # noqa: RUF012

    @get(
        "/",
        opt=READERS,
        summary="The policy in effect on a day",
        description="Each (key, scope) under `prefix` as the platform applies it on `on` (default: today,"
        " Asia/Shanghai): the row valid that day with the latest `valid_from`, else the seeded default"
        " (`origin: default`).",
    )
    async def list_in_effect(
        self, db: Db, now: Now, prefix: PrefixQuery = None, on: FromQuery[dt.date | None] = None
    ) -> PolicyInEffectList:
        day = local_date(now) if on is None else check_day(on, field="on")
        found = await policy_service.in_effect(session=db, day=day, prefix=prefix or "", defaults=_defaults())
        return PolicyInEffectList(
            on=day,
            items=[
                PolicyInEffectRead(
                    key=f.entry.key,
                    scope=f.entry.scope,
                    value=dict(f.entry.value),
                    valid_from=f.entry.valid_from,
                    valid_to=f.entry.valid_to,
                    source=f.source,
                    origin=f.entry.origin,
                    row_id=f.row_id,
                )
                for f in found
            ],
        )

    @get(
        "/{key:str}/history",
        opt=READERS,
        summary="Every dated row of a key, oldest first",
        description="Problem codes: `policy.unknown_key` (404).",
    )
    async def key_history(
        self, db: Db, now: Now, key: FromPath[PolicyKeyPath], only_scope: ScopeQuery = None
    ) -> PolicyHistory:
        rows = await policy_service.history(
            session=db, key=key, scope=only_scope, today=local_date(now), defaults=_defaults()
        )
        return PolicyHistory(key=key, scope=only_scope, items=[_row_read(h) for h in rows])

    @get("/rows/{row_id:int}", opt=READERS, summary="One dated row")
    async def get_row(self, db: Db, now: Now, row_id: FromPath[int]) -> PolicyRowRead:
        return _row_read(await policy_service.get_row(session=db, row_id=row_id, today=local_date(now)))

    @post(
        "/",
        opt=WRITERS,
        summary="Add a dated policy row (effective from its valid_from, today or later)",
        description="Admins change every key; civil-affairs officers the keys billing grants them"
        " (`subsidy.*`, `allowance.*`). The value has the fields and JSON types of the key's seeded"
        " default. To change a value in effect, add a row with a later `valid_from`." + _WRITE_CODES,
    )
    async def add_row(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        data: Annotated[PolicyCreate, Body(examples=_CREATE_EXAMPLES)],
    ) -> PolicyRowRead:
        view = await policy_service.add_row(
            session=db,
            actor=principal,
            data=data,
            today=local_date(now),
            defaults=_defaults(),
            editors=_editors(),
            checks=_checks(),
        )
        return _row_read(view)

    @patch(
        "/rows/{row_id:int}",
        opt=WRITERS,
        summary="End a row (set its valid_to, today or later)",
        description="Only `valid_to` changes, and only on a row that has not ended; `null` makes it"
        " open-ended again. After it, the row with the latest earlier `valid_from` applies, else the"
        " seeded default." + _WRITE_CODES,
    )
    async def end_row(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        row_id: FromPath[int],
        data: Annotated[PolicyEnd, Body(examples=_END_EXAMPLES)],
    ) -> PolicyRowRead:
        view = await policy_service.end_row(
            session=db, actor=principal, row_id=row_id, data=data, today=local_date(now), editors=_editors()
        )
        return _row_read(view)

    @delete(
        "/rows/{row_id:int}",
        opt=WRITERS,
        summary="Delete a row that is not yet in effect",
        description=_WRITE_CODES,
    )
    async def delete_row(
        self,
        db: Db,
        principal: CurrentPrincipal,
        now: Now,
        row_id: FromPath[int],
        reason: ReasonQuery = None,
    ) -> None:
        await policy_service.delete_row(
            session=db,
            actor=principal,
            row_id=row_id,
            reason=reason,
            today=local_date(now),
            editors=_editors(),
        )


def _row_read(view: policy_service.RowView) -> PolicyRowRead:
    row = view.row
    return PolicyRowRead(
        id=row.id,
        key=row.key,
        scope=row.scope,
        value=dict(row.value),
        valid_from=row.valid_from,
        valid_to=row.valid_to,
        source=row.source,
        created_at=row.created_at,
        status=view.status,
    )
