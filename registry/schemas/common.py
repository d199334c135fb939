"""Constrained field types of the registry's wire schemas (the generic ones, ids, names, phones,
``UNSET``, are in :mod:`core.types`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

from core.types import NO_NUL

PlaceName = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=NO_NUL)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=NO_NUL)]
Notes = Annotated[str, msgspec.Meta(max_length=2000, pattern=NO_NUL)]
Reason = Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)]
Relation = Annotated[str, msgspec.Meta(min_length=1, max_length=20, pattern=NO_NUL)]
Address = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
# ID numbers are validated by registry.idcard, which reports which rule failed.
IdNumberIn = Annotated[str, msgspec.Meta(min_length=1, max_length=30, pattern=NO_NUL)]
LocalTime = Annotated[dt.time, msgspec.Meta(tz=False)]
