"""Query-parameter types shared by the registry controllers."""

from __future__ import annotations

from typing import Annotated

from litestar.params import QueryParameter

from core.types import NO_NUL, Id32Query, Id64Query

NamePrefix = Annotated[
    str | None, QueryParameter(min_length=1, max_length=40, pattern=NO_NUL, description="Name starts with")
]
DistrictCode = Annotated[
    str | None, QueryParameter(pattern=r"^[0-9]{6}$", description="6-digit district code")
]

__all__ = ["DistrictCode", "Id32Query", "Id64Query", "NamePrefix"]
