"""Scheduled call-centre work (issue #11): the escalation runner, its auditor, self-clearing alarms
and storms. Registered on :data:`core.scheduler.schedule` when this module is imported (the composition
root, ``api.bootstrap``, lists it).

Each run gets the scheduler's session inside one transaction (committed by the runner, after the
job's advisory lock made it the only run of that job anywhere); these jobs speak asyncpg to the
call centre's SQL, so they use that session's driver connection, and only flush.

The runner's interval bounds how late a step can be and how soon after its raise an alarm gets its
chain (and its family their notification): :data:`ESCALATE_EVERY_S`.
"""

from __future__ import annotations

from typing import Final

import asyncpg

from callcentre.autoclear import autoclear
from callcentre.escalation_audit import audit_escalations
from callcentre.escalation_runner import run_due
from callcentre.storms import group_storms
from core.scheduler import JobContext, every, schedule

ESCALATE_EVERY_S: Final = 2
AUDIT_EVERY_S: Final = 30
AUTOCLEAR_EVERY_S: Final = 30
STORMS_EVERY_S: Final = 15


async def _driver_connection(ctx: JobContext) -> asyncpg.Connection:
    raw = await (await ctx.session.connection()).get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


@schedule.job("callcentre.escalate", every(seconds=ESCALATE_EVERY_S))
async def _escalate(ctx: JobContext) -> None:
    await run_due(await _driver_connection(ctx), now=ctx.now)


@schedule.job("callcentre.audit_escalation", every(seconds=AUDIT_EVERY_S))
async def _audit(ctx: JobContext) -> None:
    await audit_escalations(await _driver_connection(ctx), now=ctx.now)


@schedule.job("callcentre.autoclear", every(seconds=AUTOCLEAR_EVERY_S))
async def _autoclear(ctx: JobContext) -> None:
    await autoclear(await _driver_connection(ctx), now=ctx.now)


@schedule.job("callcentre.group_storms", every(seconds=STORMS_EVERY_S))
async def _group_storms(ctx: JobContext) -> None:
    await group_storms(await _driver_connection(ctx), now=ctx.now)
