"""Query-parameter types shared by the registry controllers."""

from __future__ import annotations

from typing import Annotated

from litestar.params import QueryParameter

from api.schemas.common import INT32_MAX, INT64_MAX, NO_NUL

NamePrefix = Annotated[
    str | None, QueryParameter(min_length=1, max_length=40, pattern=NO_NUL, description="Name starts with")
]
DistrictCode = Annotated[
    str | None, QueryParameter(pattern=r"^[0-9]{6}$", description="6-digit district code")
]
Id32Query = Annotated[int | None, QueryParameter(ge=1, le=INT32_MAX)]
Id64Query = Annotated[int | None, QueryParameter(ge=1, le=INT64_MAX)]
