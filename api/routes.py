"""The list of domain controllers mounted by the app; each domain adds its own here."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler


def domain_controllers() -> list[ControllerRouterHandler]:
    controllers: list[ControllerRouterHandler] = []
    return controllers
