"""The list of domain controllers mounted by the app; each domain adds its own here."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from api.controllers.users import UserController
from dispatch.routes import CONTROLLERS as DISPATCH_CONTROLLERS
from iot_ingest.routes import CONTROLLERS as IOT_CONTROLLERS
from registry.routes import CONTROLLERS as REGISTRY_CONTROLLERS


def domain_controllers() -> list[ControllerRouterHandler]:
    controllers: list[ControllerRouterHandler] = [
        *REGISTRY_CONTROLLERS,
        UserController,
        *DISPATCH_CONTROLLERS,
        *IOT_CONTROLLERS,
    ]
    return controllers
