"""Constrained field types shared by the wire schemas and the helpers that turn a decoded
``XCreate``/``XUpdate`` into the plain mappings the services take."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any

import msgspec

from core.types import INT32_MAX, INT64_MAX, NO_NUL, Id32, Id64, Lat, Lon

__all__ = ["INT32_MAX", "INT64_MAX", "NO_NUL", "Id32", "Id64", "Lat", "Lon"]


Name = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=NO_NUL)]
PlaceName = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=NO_NUL)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=NO_NUL)]
Notes = Annotated[str, msgspec.Meta(max_length=2000, pattern=NO_NUL)]
Reason = Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)]
Relation = Annotated[str, msgspec.Meta(min_length=1, max_length=20, pattern=NO_NUL)]
Address = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
# Phones are validated and normalised by core.phone (so "+86 138-1234-5678" is accepted).
PhoneIn = Annotated[str, msgspec.Meta(min_length=1, max_length=20, pattern=NO_NUL)]
# ID numbers are validated by core.idcard, which reports which rule failed.
IdNumberIn = Annotated[str, msgspec.Meta(min_length=1, max_length=30, pattern=NO_NUL)]
LocalTime = Annotated[dt.time, msgspec.Meta(tz=False)]
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


def _plain(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return {
            f: _plain(v) for f in value.__struct_fields__ if (v := getattr(value, f)) is not msgspec.UNSET
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def given(struct: msgspec.Struct) -> dict[str, Any]:
    """The fields the client sent (``UNSET`` ones dropped), with enums and nested structs made plain."""
    return {
        name: _plain(value)
        for name in struct.__struct_fields__
        if (value := getattr(struct, name)) is not msgspec.UNSET
    }
