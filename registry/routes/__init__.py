"""Registry controllers (one module per area). Handlers parse, call one service, serialise."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from registry.routes.elders import AssessmentController, ElderController
from registry.routes.figures import FiguresController
from registry.routes.guardians import GuardianController
from registry.routes.places import PlaceController
from registry.routes.providers import CaregiverController, ProviderController

CONTROLLERS: tuple[ControllerRouterHandler, ...] = (
    PlaceController,
    ElderController,
    AssessmentController,
    GuardianController,
    ProviderController,
    CaregiverController,
    FiguresController,
)
