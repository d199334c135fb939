"""``/api/v1/elders/{id}/monitoring`` through the real app, in a rolled-back transaction: each role's
read and write, district scoping, validation problems, the audit trail, and the settings in effect
(own part by part, else the dated living-alone default, which a later policy row changes from its
date)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import AuditLog
from core.identity.models import Role
from core.policy import PolicyValue
from iot_ingest.models import ElderMonitoring
from registry.models import Elder
from tests.factories import HANCHUAN, XIAONAN, Factory
from tests.support.registry import problem_code

pytestmark = pytest.mark.integration

EPOCH_DEFAULT = "alarm.monitoring_default[alone]@2026-01-01"
CIRCLE = {"circle": {"lat": 30.92, "lon": 113.91, "radius_m": 500}}
SQUARE = [[30.91, 113.90], [30.93, 113.90], [30.93, 113.92], [30.91, 113.92]]
FULL: dict[str, Any] = {
    "daytime": {"start": "06:30", "end": "21:00", "inactivity_hours": 8},
    "night": {"start": "22:00", "end": "06:00"},
    "safe_zone": {"polygon": SQUARE},
    "vitals": {
        "spo2_low_pct": {"value": 86, "reason": "COPD, usual SpO2 87-89 %"},
        "heart_rate_low_bpm": {"value": 35, "reason": "beta blockers"},
    },
    "reason": "care plan review 2026-11",
}


def url(elder: Elder | int) -> str:
    return f"/api/v1/elders/{elder if isinstance(elder, int) else elder.id}/monitoring"


async def test_defaults_for_an_elder_living_alone_without_settings(
    client: httpx.AsyncClient, make: Factory
) -> None:
    elder = await make.elder(living_situation="alone")
    operator = await make.account(Role.OPERATOR)
    r = await client.get(url(elder), headers=operator.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["on"] == "2026-11-20"  # the local date of the app's clock
    assert body["daytime"] == {
        "source": "policy",
        "policy": EPOCH_DEFAULT,
        "start": "07:00",
        "end": "22:00",
        "inactivity_hours": 12,
    }
    assert body["night"] == {
        "source": "policy",
        "policy": "alarm.door_open_night[*]@2026-01-01",
        "start": "00:00",
        "end": "05:00",
    }
    assert body["safe_zone"] == {"source": "none", "circle": None, "polygon": None}
    assert body["vitals"]["spo2_low_pct"] == {
        "source": "policy",
        "policy": "alarm.vitals.spo2[*]@2026-01-01",
        "value": 90,
        "unit": "%",
        "reason": None,
    }
    assert body["vitals"]["temperature_high_c"]["value"] == 38.5
    assert (body["updated_at"], body["updated_by"], body["reason"]) == (None, None, None)

    with_family = await make.elder(living_situation="with_family")
    r = await client.get(url(with_family), headers=operator.headers)
    assert r.json()["daytime"] == {
        "source": "none",
        "policy": None,
        "start": None,
        "end": None,
        "inactivity_hours": None,
    }


async def test_put_stores_own_settings_audited_and_get_says_where_each_part_comes_from(
    client: httpx.AsyncClient, make: Factory, db: AsyncSession
) -> None:
    elder = await make.elder(living_situation="alone")
    operator = await make.account(Role.OPERATOR)
    r = await client.put(url(elder), json=FULL, headers=operator.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["daytime"] == {
        "source": "elder",
        "policy": None,
        "start": "06:30",
        "end": "21:00",
        "inactivity_hours": 8,
    }
    assert body["night"] == {"source": "elder", "policy": None, "start": "22:00", "end": "06:00"}
    assert body["safe_zone"] == {"source": "elder", "circle": None, "polygon": SQUARE}
    assert body["vitals"]["spo2_low_pct"] == {
        "source": "elder",
        "policy": None,
        "value": 86,
        "unit": "%",
        "reason": "COPD, usual SpO2 87-89 %",
    }
    assert body["vitals"]["heart_rate_high_bpm"]["source"] == "policy"
    assert (body["updated_by"], body["reason"]) == (operator.user_id, "care plan review 2026-11")
    assert (await client.get(url(elder), headers=operator.headers)).json() == body

    row = await db.get(ElderMonitoring, elder.id)
    assert row is not None
    assert (row.day_start_minute, row.day_end_minute, row.inactivity_hours) == (390, 1260, 8)
    assert (row.night_start_minute, row.night_end_minute) == (1320, 360)
    assert row.safe_zone == {"polygon": SQUARE}

    # A second change: only the circle, and no daytime of its own (back to the living-alone default).
    r = await client.put(url(elder), json={"safe_zone": CIRCLE, "reason": "moved"}, headers=operator.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["daytime"]["source"] == "policy"
    assert body["daytime"]["policy"] == EPOCH_DEFAULT
    assert body["safe_zone"]["circle"] == CIRCLE["circle"]
    assert body["vitals"]["spo2_low_pct"]["source"] == "policy"

    # The same settings again change nothing and are not audited twice.
    assert (
        await client.put(url(elder), json={"safe_zone": CIRCLE, "reason": "moved"}, headers=operator.headers)
    ).status_code == 200
    audits = (
        await db.scalars(
            select(AuditLog)
            .where(AuditLog.entity == "elder_monitoring", AuditLog.entity_id == str(elder.id))
            .order_by(AuditLog.id)
        )
    ).all()
    assert [a.action for a in audits] == ["create", "update"]
    assert all(a.actor_user_id == operator.user_id and a.actor_role == "operator" for a in audits)
    create, update = audits
    assert create.before is None
    assert create.after is not None
    assert create.after["vital_overrides"]["spo2_low_pct"] == {
        "value": 86,
        "reason": "COPD, usual SpO2 87-89 %",
    }
    assert update.before == create.after
    assert update.after is not None
    assert update.after["safe_zone"] == CIRCLE
    assert update.after["day_start_minute"] is None
    assert update.after["reason"] == "moved"


async def test_roles(client: httpx.AsyncClient, make: Factory) -> None:
    elder = await make.elder(XIAONAN)
    guardian = await make.guardian(elder)
    can_read_and_change = [
        await make.account(Role.OPERATOR),
        await make.account(Role.SUPERVISOR),
        await make.account(Role.OPERATOR, districts=(XIAONAN,)),
    ]
    reads_only = [await make.account(Role.FAMILY, guardian=guardian)]
    refused = [
        await make.account(Role.ADMIN),
        await make.account(Role.CIVIL_AFFAIRS, districts=(XIAONAN,)),
        await make.account(Role.ELDER, elder=elder),
        await make.account(Role.PROVIDER_ADMIN),
        await make.account(Role.CAREGIVER),
    ]
    body = {"safe_zone": CIRCLE}
    for account in can_read_and_change:
        assert (await client.get(url(elder), headers=account.headers)).status_code == 200, account.user.role
        r = await client.put(url(elder), json=body, headers=account.headers)
        assert r.status_code == 200, (account.user.role, r.text)
    for account in reads_only:
        assert (await client.get(url(elder), headers=account.headers)).status_code == 200
        r = await client.put(url(elder), json=body, headers=account.headers)
        assert (r.status_code, problem_code(r)) == (403, "auth.forbidden")
    for account in refused:
        for r in (
            await client.get(url(elder), headers=account.headers),
            await client.put(url(elder), json=body, headers=account.headers),
        ):
            assert (r.status_code, problem_code(r)) == (403, "auth.forbidden"), account.user.role
    anonymous = await client.get(url(elder))
    assert (anonymous.status_code, problem_code(anonymous)) == (401, "auth.required")


async def test_scoping(client: httpx.AsyncClient, make: Factory) -> None:
    elder = await make.elder(XIAONAN)
    other = await make.elder(XIAONAN)
    family = await make.account(Role.FAMILY, guardian=await make.guardian(other))
    hanchuan_operator = await make.account(Role.OPERATOR, districts=(HANCHUAN,))
    hanchuan_supervisor = await make.account(Role.SUPERVISOR, districts=(HANCHUAN,))
    # Another elder's family: the elder is not theirs to see at all (404, as for a missing elder).
    r = await client.get(url(elder), headers=family.headers)
    assert (r.status_code, problem_code(r)) == (404, "elder.not_found")
    # The call centre of another district does not see the elder at all (DOMAIN §9: operators and
    # supervisors see the elders in their districts), so neither their settings.
    for account in (hanchuan_operator, hanchuan_supervisor):
        for r in (
            await client.get(url(elder), headers=account.headers),
            await client.put(url(elder), json={"safe_zone": CIRCLE}, headers=account.headers),
            await client.get(f"/api/v1/elders/{elder.id}", headers=account.headers),
        ):
            assert (r.status_code, problem_code(r)) == (404, "elder.not_found"), r.text
    # ... and can work on the elders of their own district.
    hanchuan_elder = await make.elder(HANCHUAN)
    assert (
        await client.put(url(hanchuan_elder), json={"safe_zone": CIRCLE}, headers=hanchuan_operator.headers)
    ).status_code == 200
    operator = await make.account(Role.OPERATOR)
    r = await client.get(url(2**62), headers=operator.headers)
    assert (r.status_code, problem_code(r)) == (404, "elder.not_found")


def _with(**parts: Any) -> dict[str, Any]:
    return {"reason": "test", **parts}


SELF_CROSSING = [[30.91, 113.90], [30.93, 113.92], [30.93, 113.90], [30.91, 113.92]]
FAR = [[30.91, 113.90], [30.93, 113.90], [31.80, 113.92]]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (
            _with(daytime={"start": "22:00", "end": "07:00", "inactivity_hours": 12}),
            "monitoring.window_invalid",
            "daytime",
        ),
        (
            _with(daytime={"start": "07:00", "end": "07:00", "inactivity_hours": 12}),
            "monitoring.window_invalid",
            "daytime",
        ),
        (_with(night={"start": "01:00", "end": "01:00"}), "monitoring.window_invalid", "night"),
        (_with(safe_zone={}), "monitoring.safe_zone_shape", "safe_zone"),
        (
            _with(safe_zone={"circle": CIRCLE["circle"], "polygon": SQUARE}),
            "monitoring.safe_zone_shape",
            "safe_zone",
        ),
        (_with(safe_zone={"polygon": SELF_CROSSING}), "monitoring.polygon_invalid", "safe_zone.polygon"),
        (
            _with(safe_zone={"polygon": [*SQUARE[:3], SQUARE[1]]}),
            "monitoring.polygon_invalid",
            "safe_zone.polygon",
        ),
        (_with(safe_zone={"polygon": FAR}), "monitoring.safe_zone_too_large", "safe_zone.polygon"),
        (
            _with(vitals={"spo2_low_pct": {"value": 99.5, "reason": "x"}}),
            "monitoring.vital_out_of_range",
            "vitals.spo2_low_pct",
        ),
        (
            _with(vitals={"temperature_high_c": {"value": 36.0, "reason": "x"}}),
            "monitoring.vital_out_of_range",
            "vitals.temperature_high_c",
        ),
        (
            _with(vitals={"heart_rate_low_bpm": {"value": 60, "reason": "   "}}),
            "monitoring.reason_required",
            "vitals.heart_rate_low_bpm",
        ),
        (
            _with(
                vitals={
                    "heart_rate_low_bpm": {"value": 90, "reason": "a"},
                    "heart_rate_high_bpm": {"value": 80, "reason": "b"},
                }
            ),
            "monitoring.vitals_inconsistent",
            "vitals",
        ),
        # Against the policy's high bound (130): a low bound of 100 is fine, the policy's band not empty.
    ],
)
async def test_validation_problems(
    client: httpx.AsyncClient, make: Factory, db: AsyncSession, body: dict[str, Any], code: str, field: str
) -> None:
    elder = await make.elder()
    operator = await make.account(Role.OPERATOR)
    r = await client.put(url(elder), json=body, headers=operator.headers)
    assert (r.status_code, problem_code(r)) == (422, code), r.text
    assert r.json()["field"] == field
    assert await db.get(ElderMonitoring, elder.id) is None  # nothing half-stored


@pytest.mark.parametrize(
    "body",
    [
        {"daytime": {"start": "7:00", "end": "22:00", "inactivity_hours": 12}},
        {"daytime": {"start": "07:00", "end": "24:01", "inactivity_hours": 12}},
        {"daytime": {"start": "07:00", "end": "22:00", "inactivity_hours": 0}},
        {"daytime": {"start": "07:00", "end": "22:00"}},
        {"night": {"start": "24:00", "end": "05:00"}},
        {"safe_zone": {"circle": {"lat": 91, "lon": 113.91, "radius_m": 500}}},
        {"safe_zone": {"circle": {"lat": 30.92, "lon": 113.91, "radius_m": 5}}},
        {"safe_zone": {"polygon": SQUARE[:2]}},
        {"safe_zone": {"polygon": [[30.91 + i * 1e-5, 113.90] for i in range(202)]}},
        {"safe_zone": {"polygon": [[30.91, 181], [30.93, 113.90], [30.93, 113.92]]}},
        {"vitals": {"spo2_low_pct": {"value": 85}}},  # no reason
        {"vitals": {"spo2_low_pct": 85}},
        {"vitals": {"blood_sugar": {"value": 5, "reason": "x"}}},
        {"unknown": 1},
    ],
)
async def test_malformed_bodies(client: httpx.AsyncClient, make: Factory, body: dict[str, Any]) -> None:
    elder = await make.elder()
    operator = await make.account(Role.OPERATOR)
    r = await client.put(url(elder), json=body, headers=operator.headers)
    assert (r.status_code, problem_code(r)) == (422, "validation.invalid"), r.text


async def test_closing_vertex_and_full_day(client: httpx.AsyncClient, make: Factory) -> None:
    elder = await make.elder()
    operator = await make.account(Role.OPERATOR)
    body = {
        "daytime": {"start": "00:00", "end": "24:00", "inactivity_hours": 24},
        "safe_zone": {"polygon": [*SQUARE, SQUARE[0]]},
    }
    r = await client.put(url(elder), json=body, headers=operator.headers)
    assert r.status_code == 200, r.text
    assert r.json()["safe_zone"]["polygon"] == SQUARE  # stored without the closing vertex
    assert (r.json()["daytime"]["start"], r.json()["daytime"]["end"]) == ("00:00", "24:00")


async def test_default_follows_its_dated_policy(
    client: httpx.AsyncClient, make: Factory, db: AsyncSession
) -> None:
    later = dt.date(2026, 12, 1)
    db.add(
        PolicyValue(
            key="alarm.monitoring_default",
            scope="alone",
            value={"day_start": "08:00", "day_end": "20:00", "inactivity_hours": 6},
            valid_from=later,
            source="test",
        )
    )
    await db.flush()
    elder = await make.elder(living_situation="alone")
    operator = await make.account(Role.OPERATOR)
    before = (await client.get(url(elder), params={"on": "2026-11-30"}, headers=operator.headers)).json()
    after = (await client.get(url(elder), params={"on": "2026-12-01"}, headers=operator.headers)).json()
    assert (before["on"], before["daytime"]["policy"], before["daytime"]["inactivity_hours"]) == (
        "2026-11-30",
        EPOCH_DEFAULT,
        12,
    )
    assert after["daytime"] == {
        "source": "policy",
        "policy": "alarm.monitoring_default[alone]@2026-12-01",
        "start": "08:00",
        "end": "20:00",
        "inactivity_hours": 6,
    }
    r = await client.get(url(elder), params={"on": "2026-13-01"}, headers=operator.headers)
    assert (r.status_code, problem_code(r)) == (422, "monitoring.date_invalid")
