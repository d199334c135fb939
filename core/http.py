"""Typed markers for the request dependencies that ``create_app`` provides, for any domain's routes.

Use ``db: Db`` (the request's AsyncSession; the framework commits), ``principal: CurrentPrincipal``
(the signed-in user; 401 if anonymous) and ``now: Now`` (the app clock, aware UTC).
"""

from __future__ import annotations

import datetime as dt
from typing import TypeAlias

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from core.authz import Principal

Db: TypeAlias = NamedDependency[AsyncSession]
CurrentPrincipal: TypeAlias = NamedDependency[Principal]
Now: TypeAlias = NamedDependency[dt.datetime]
