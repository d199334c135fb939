"""The list of domain controllers mounted by the app; each domain adds its own here."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from api.controllers.devices import DeviceController
from api.controllers.elders import AssessmentController, ElderController
from api.controllers.figures import FiguresController
from api.controllers.guardians import GuardianController
from api.controllers.places import PlaceController
from api.controllers.providers import CaregiverController, ProviderController
from api.controllers.users import UserController
from dispatch.routes import CONTROLLERS as DISPATCH_CONTROLLERS
from iot_ingest.routes import CONTROLLERS as IOT_CONTROLLERS


def domain_controllers() -> list[ControllerRouterHandler]:
    controllers: list[ControllerRouterHandler] = [
        PlaceController,
        ElderController,
        AssessmentController,
        GuardianController,
        ProviderController,
        CaregiverController,
        DeviceController,
        UserController,
        FiguresController,
        *DISPATCH_CONTROLLERS,
        *IOT_CONTROLLERS,
    ]
    return controllers
