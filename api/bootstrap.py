"""The composition root: every domain of the platform, listed once — its tables, its HTTP controllers,
its scheduled jobs, its part of a principal's scope and its seed.

The kernel names no domain, not even by string: whoever needs "all of them" asks here and passes them
on — the app (:func:`domain_controllers`, :func:`scope_loaders`), the scheduler
(:func:`scheduled_jobs`), the seed (:func:`domain_seeds`), Alembic and the tests (:func:`metadata`).
Adding a domain is one more :class:`Domain` in :data:`DOMAINS`. Only ``api`` imports this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType

from litestar.types import ControllerRouterHandler
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession

import billing.allowance_jobs
import billing.allowance_models
import billing.jobs
import billing.ledger_models
import billing.models
import billing.settlement_jobs
import billing.settlement_models
import callcentre.jobs
import callcentre.models
import callcentre.welfare_jobs
import callcentre.welfare_models
import core.audit
import core.identity.models
import core.outbox
import core.policy
import dispatch.jobs
import dispatch.models
import iot_ingest.jobs
import iot_ingest.models
import registry.models
from billing import seed as billing_seed
from billing.allowance_routes import CONTROLLERS as ALLOWANCE_CONTROLLERS
from billing.routes import CONTROLLERS as BILLING_CONTROLLERS
from billing.settlement_routes import CONTROLLERS as SETTLEMENT_CONTROLLERS
from callcentre import seed as callcentre_seed
from callcentre.escalation_audit import export_metrics as export_escalation_metrics
from callcentre.routes import CONTROLLERS as CALLCENTRE_CONTROLLERS
from callcentre.stream_routes import CONTROLLERS as ALARM_STREAM_CONTROLLERS
from callcentre.welfare_routes import CONTROLLERS as WELFARE_CONTROLLERS
from core import scheduler
from core.db import Base
from core.identity.sessions import ScopeLoader
from core.seed import DomainSeed
from dispatch import seed as dispatch_seed
from dispatch.agreement_routes import CONTROLLERS as AGREEMENT_CONTROLLERS
from dispatch.routes import CONTROLLERS as DISPATCH_CONTROLLERS
from iot_ingest.monitoring.routes import CONTROLLERS as MONITORING_CONTROLLERS
from iot_ingest.routes import CONTROLLERS as IOT_CONTROLLERS
from registry import seed as registry_seed
from registry.routes import CONTROLLERS as REGISTRY_CONTROLLERS
from registry.scope import SCOPE_LOADERS as REGISTRY_SCOPE_LOADERS

# Sets Prometheus gauges from figures another process keeps in the database (the scheduler's
# heartbeats), when ``/metrics`` is read.
MetricsExporter = Callable[[AsyncSession], Awaitable[None]]

# The kernel's own tables (audit_log; app_user, its sessions and sign-in attempts; policy_value) are on
# the same metadata as the domains'.
KERNEL_MODELS: tuple[ModuleType, ...] = (core.audit, core.identity.models, core.policy, core.outbox)
# Domain table modules besides each domain's ``models`` (a domain whose tables live in several modules).
EXTRA_MODELS: tuple[ModuleType, ...] = (
    billing.ledger_models,
    billing.settlement_models,
    billing.allowance_models,
    callcentre.welfare_models,
)


@dataclass(frozen=True, slots=True)
class Domain:
    """One domain as the platform assembles it."""

    name: str
    # The module declaring its tables on the one metadata (``core.db.Base``); imported above.
    models: ModuleType | None = None
    # Its HTTP controllers, mounted by ``api.app.create_app`` in this order.
    controllers: tuple[ControllerRouterHandler, ...] = ()
    # The module whose import registers its jobs on ``core.scheduler.schedule``; imported above.
    jobs: ModuleType | None = None
    # What it adds to every signed-in principal (``core.identity.sessions.ScopeLoader``).
    scope_loaders: tuple[ScopeLoader, ...] = ()
    # Its policy defaults and reference data (``<domain>/seed.py``).
    seed: DomainSeed | None = None
    # What it adds to ``/metrics`` from the database.
    metrics: tuple[MetricsExporter, ...] = ()


# In dependency order: a domain comes after those it reads (seed hooks run in this order, so the
# registry's places exist before anyone's rows point at them). The controllers' order is the order of
# the OpenAPI document's operations: keep it.
DOMAINS: tuple[Domain, ...] = (
    Domain(
        "registry",
        models=registry.models,
        controllers=REGISTRY_CONTROLLERS,
        scope_loaders=REGISTRY_SCOPE_LOADERS,
        seed=registry_seed.SEED,
    ),
    Domain(
        "iot_ingest",
        models=iot_ingest.models,
        controllers=(*IOT_CONTROLLERS, *MONITORING_CONTROLLERS),
        jobs=iot_ingest.jobs,
    ),
    Domain(
        "dispatch",
        models=dispatch.models,
        controllers=(*DISPATCH_CONTROLLERS, *AGREEMENT_CONTROLLERS),
        jobs=dispatch.jobs,
        seed=dispatch_seed.SEED,
    ),
    Domain(
        "callcentre",
        models=callcentre.models,
        controllers=(*CALLCENTRE_CONTROLLERS, *ALARM_STREAM_CONTROLLERS),
        jobs=callcentre.jobs,
        seed=callcentre_seed.SEED,
        metrics=(export_escalation_metrics,),
    ),
    # The call centre's welfare visits (探访关爱): their plan, overrides and the jobs placing them.
    Domain("callcentre.welfare", controllers=WELFARE_CONTROLLERS, jobs=callcentre.welfare_jobs),
    Domain(
        "billing",
        models=billing.models,
        controllers=(*BILLING_CONTROLLERS,),
        jobs=billing.jobs,
        seed=billing_seed.SEED,
    ),
    # Billing's monthly settlement and ledger (their tables are in EXTRA_MODELS).
    Domain("billing.settlement", controllers=SETTLEMENT_CONTROLLERS, jobs=billing.settlement_jobs),
    # Billing's allowance rosters (their tables are in EXTRA_MODELS).
    Domain("billing.allowances", controllers=ALLOWANCE_CONTROLLERS, jobs=billing.allowance_jobs),
)


def domain_controllers() -> list[ControllerRouterHandler]:
    """Every domain's controllers, in :data:`DOMAINS` order."""
    return [c for d in DOMAINS for c in d.controllers]


def scope_loaders() -> tuple[ScopeLoader, ...]:
    """Every domain's scope loaders, for ``core.identity.sessions`` to build principals with."""
    return tuple(loader for d in DOMAINS for loader in d.scope_loaders)


def scheduled_jobs() -> scheduler.JobRegistry:
    """Every domain's jobs: the job modules in :data:`DOMAINS` registered them when imported."""
    return scheduler.schedule


def metrics_exporters() -> tuple[MetricsExporter, ...]:
    """Every domain's ``/metrics`` exporters."""
    return tuple(m for d in DOMAINS for m in d.metrics)


def domain_seeds() -> tuple[DomainSeed, ...]:
    """Every domain's seed, in :data:`DOMAINS` order (reference data before the rows that use it)."""
    return tuple(d.seed for d in DOMAINS if d.seed is not None)


def metadata() -> MetaData:
    """The one metadata with the kernel's and every domain's tables (their model modules, in
    :data:`KERNEL_MODELS` and :data:`DOMAINS`, are imported above)."""
    return Base.metadata
